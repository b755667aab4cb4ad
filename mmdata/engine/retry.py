"""``mmdata retry``: re-attempt the rows a corpus rejected for transient reasons.

img2dataset's users ask for this more than for anything else (its issues #333 and #395):
after a crawl, try the failed URLs of every shard again. ``retry_corpus`` takes the
image-level rejects of a corpus whose reason is one of ``reasons`` (by default
``timeout``, ``http_429``, ``http_5xx`` = any 5xx status, ``connection_error``), runs the
corpus's own recipe on just those input rows, and rewrites each shard they belong to:

- The recipe is the one the catalog stored (``corpora.recipe_text``), rebuilt and checked
  against the stored hash; partitions are deterministic, so shard ``i``'s input rows are
  read again and the retried ones picked by image id. Every stage runs on them as in a
  run (``setup``, then ``resume`` with the corpus's committed data shards, so the dedup
  stages judge a recovered image against everything already kept).
- New data file = the shard's old rows + the newly kept ones, in input-row order. New
  rejects file = the old rejects minus every reject row of the retried images (item rows
  too), plus the new rejects of those images: a row that fails again stays a reject, with
  the reason of this attempt. Both are written under new names
  (``data/shard-00003.retry-<run_id>.parquet``), then ``Catalog.commit_shards`` lists
  every rewritten shard in one transaction, then the old files are deleted. A crash
  before the switch leaves only unlisted new files, a crash after it only the old ones;
  the next retry deletes such leftovers (unlisted ``*.retry-*`` files, and unlisted copies
  of a shard the catalog lists elsewhere) under the run lock.
- Per-shard stats are the old ones minus what the retried rows contributed (read from
  their old reject rows: rows in and out of every step up to the one that rejected them,
  the drop itself, their item drops) plus this attempt's stats for them, so
  ``stage_summary`` and ``drops_summary`` stay exact; the funnel is checked before
  anything is written. Seconds add up: a shard's seconds are all the time spent on it.
- The attempt is a run in ``runs`` (executor ``retry``), a row in ``retries`` and one row
  per tried image in ``retry_rows`` (catalog/003_retries.sql), written before the switch;
  its status becomes ``finished`` after it. An attempt that died is settled by the next
  one: ``finished`` if the catalog lists its files, else ``interrupted`` (nothing applied).
- The run lock (``runlock.corpus_lock``) keeps a retry and a run of one corpus apart.

A row moves from rejects to images exactly once: after the switch it is no longer a
reject, so no later retry finds it.
"""

from __future__ import annotations

import copy
import logging
import re
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs

from mmdata.catalog.store import Catalog
from mmdata.core import faults, io
from mmdata.core.batch import ok_mask, public
from mmdata.core.errors import MmdataError
from mmdata.core.progress import Progress
from mmdata.core.schema import IMAGE_SCHEMA, REJECT_SCHEMA, STATUS_OK, validate
from mmdata.core.stage import Partition, Source, Stage
from mmdata.engine import recipe as recipes
from mmdata.engine.executors.base import read_partition
from mmdata.engine.executors.local import run_stages
from mmdata.engine.recipe import Recipe
from mmdata.engine.runlock import corpus_lock
from mmdata.engine.sink import (
    FinishedShard,
    _write_whole,
    in_input_order,
    reject_rows,
    rejects_path,
    shard_path,
    stage_stats,
)

log = logging.getLogger(__name__)

#: What the download stage gives a URL worth asking again (mmdata.download.fetch).
DEFAULT_REASONS = ("timeout", "http_429", "http_5xx", "connection_error")
_STATUS_CLASS = re.compile(r"http_([1-5])xx")
_STATUS = re.compile(r"http_([1-5])\d\d")
_REASON = re.compile(r"[a-z0-9_]+")
#: Shard files a crashed retry can leave (``.partial``: a write that never finished).
_SHARD_FILE = re.compile(r"shard-(\d+)(\.retry-\d+)?\.parquet(\.partial)?")


class RetryError(MmdataError, RuntimeError):
    """The corpus cannot be retried as asked (unknown corpus, changed input, ...)."""


def reason_matcher(reasons: Iterable[str]) -> Callable[[str], bool]:
    """A predicate on reject reasons: each name matches itself, and ``http_5xx`` (any
    ``http_Nxx``) every status of that class (``http_500``, ``http_503``, ``http_520``...).

    Raises:
        RetryError: no reason, or one that is not a reason name.
    """
    exact: set[str] = set()
    classes: set[str] = set()
    for name in (r.strip() for r in reasons):
        if not name:
            continue
        status_class = _STATUS_CLASS.fullmatch(name)
        if status_class:
            classes.add(status_class.group(1))
        elif _REASON.fullmatch(name):
            exact.add(name)
        else:
            raise RetryError(f"--reasons: {name!r} is not a reject reason (e.g. http_503)")
    if not exact and not classes:
        raise RetryError("--reasons: no reason given")

    def matches(reason: str | None) -> bool:
        if reason is None:
            return False
        status = _STATUS.fullmatch(reason)
        return reason in exact or (status is not None and status.group(1) in classes)

    return matches


@dataclass
class RetryResult:
    """What a retry did; ``failed_again`` counts the rows still rejected, by the reason
    this attempt gave them."""

    corpus: str
    run_id: int
    catalog: str
    reasons: list[str]
    shards: int = 0
    tried: int = 0
    recovered: int = 0
    failed_again: dict[str, int] = field(default_factory=dict)
    leftovers_removed: int = 0
    applied: bool = False  # the catalog lists the rewritten shards (or there were none)
    seconds: float = 0.0


@dataclass
class _Listed:
    """A shard's files as the catalog lists them."""

    input_rows: int
    files: dict[str, str] = field(default_factory=dict)  # kind -> path


def retry_corpus(
    catalog_path: str | Path,
    corpus: str,
    reasons: Iterable[str] = DEFAULT_REASONS,
    recipe_path: str | Path | None = None,
    progress: bool | str = True,
) -> RetryResult:
    """Re-attempt the image-level rejects of ``corpus`` whose reason matches ``reasons``;
    what now succeeds moves to the corpus (see the module's docstring).

    ``recipe_path``: the corpus's recipe file, for when the stored text does not rebuild
    the same recipe here (relative paths, ``${VARS}``); its hash must match the stored one.
    ``progress``: as for ``run_recipe``.

    Raises:
        RetryError: no such corpus, a recipe that does not match, an input changed since.
        CorpusBusyError: a run or another retry of the corpus holds its output.
    """
    started = time.perf_counter()
    catalog = Catalog(catalog_path)
    reasons = [r.strip() for r in reasons if r.strip()]
    matches = reason_matcher(reasons)
    recipe = _stored_recipe(catalog, corpus, recipe_path)
    with corpus_lock(recipe.output, corpus):
        run_id, _ = catalog.begin_run(
            corpus, recipe.text, recipe.content_hash, recipe.output, "retry"
        )
        result = RetryResult(corpus, run_id, catalog.path, reasons)
        try:
            _settle_earlier_attempts(catalog, corpus)
            _begin_attempt(catalog, run_id, corpus, reasons)
            listing = _listing(catalog, corpus)
            result.leftovers_removed = _remove_leftovers(recipe.output, listing)
            wanted = _matching_rejects(listing, matches)
            if wanted:
                _retry(catalog, recipe, run_id, listing, wanted, result, progress)
            result.applied = True
            _end_attempt(catalog, run_id, "finished")
        except BaseException as exc:
            error = f"{type(exc).__name__}: {exc}"
            # applied, then failed (deleting a replaced file): the record says it happened
            _end_attempt(catalog, run_id, "finished" if result.applied else "failed", error)
            catalog.end_run(run_id, "failed", error)
            raise
        catalog.end_run(run_id, "finished")
    result.seconds = time.perf_counter() - started
    return result


def _stored_recipe(catalog: Catalog, corpus: str, recipe_path: str | Path | None) -> Recipe:
    """The corpus's recipe, rebuilt from the catalog's text (or ``recipe_path``)."""
    _, rows = catalog.query("SELECT recipe_text, recipe_hash FROM corpora WHERE name = ?", [corpus])
    if not rows:
        _, names = catalog.query("SELECT name FROM corpora ORDER BY name")
        known = ", ".join(n for (n,) in names) or "none"
        raise RetryError(f"no corpus {corpus!r} in {catalog.path} (corpora: {known})")
    text, stored_hash = rows[0]
    hint = "; pass the recipe file with --recipe"
    try:
        if recipe_path is not None:
            recipe = recipes.load(recipe_path)
        else:
            recipe = recipes.parse(text, f"the recipe of {corpus!r} in {catalog.path}", Path.cwd())
    except recipes.RecipeError as exc:
        raise RetryError(f"{exc}{'' if recipe_path else hint}") from exc
    if recipe.name != corpus or recipe.content_hash != stored_hash:
        where = recipe_path or "the recipe text stored in the catalog"
        raise RetryError(
            f"{where} does not rebuild corpus {corpus!r} here (recipe hash "
            f"{recipe.content_hash}, the corpus was built by {stored_hash}: relative paths "
            f"or ${{VARIABLES}} resolve differently){'' if recipe_path else hint}"
        )
    return recipe


def _listing(catalog: Catalog, corpus: str) -> dict[int, _Listed]:
    _, rows = catalog.query(
        "SELECT shard_index, kind, path, input_rows FROM shards "
        "WHERE corpus = ? AND layer = 'base' ORDER BY shard_index, kind",
        [corpus],
    )
    listing: dict[int, _Listed] = {}
    for index, kind, path, input_rows in rows:
        listing.setdefault(index, _Listed(input_rows)).files[kind] = path
    return listing


def _matching_rejects(
    listing: dict[int, _Listed], matches: Callable[[str | None], bool]
) -> dict[int, dict[str, tuple[str, str]]]:
    """Per shard: image id -> (stage, reason) of its image-level reject, when it matches."""
    wanted: dict[int, dict[str, tuple[str, str]]] = {}
    for index, listed in sorted(listing.items()):
        if "rejects" not in listed.files or "data" not in listed.files:
            continue
        table = _read(listed.files["rejects"], ["image_id", "item_kind", "stage", "reason"])
        for row in table.to_pylist():
            if row["item_kind"] is None and matches(row["reason"]):
                wanted.setdefault(index, {})[row["image_id"]] = (row["stage"], row["reason"])
    return wanted


def _retry(
    catalog: Catalog,
    recipe: Recipe,
    run_id: int,
    listing: dict[int, _Listed],
    wanted: dict[int, dict[str, tuple[str, str]]],
    result: RetryResult,
    progress: bool | str,
) -> None:
    _, layered = catalog.query(
        "SELECT DISTINCT shard_index, layer FROM shards WHERE corpus = ? AND layer <> 'base' "
        "ORDER BY ALL",
        [recipe.name],
    )
    aligned = [(index, layer) for index, layer in layered if index in wanted]
    if aligned:
        raise RetryError(
            f"corpus {recipe.name!r}: shard {aligned[0][0]} has layer {aligned[0][1]!r} "
            "aligned with its rows; adding rows would misalign it, so nothing was retried"
        )
    source = recipe.build_source()
    partitions = {p.index: p for p in source.partitions(recipe.shard_rows)}
    missing = sorted(set(wanted) - set(partitions))
    if missing:
        raise RetryError(
            f"corpus {recipe.name!r}: the source no longer has partitions {missing}: "
            "its input changed since the run"
        )
    stages = [recipe.build_stage(i) for i in range(len(recipe.stages))]
    done = [listing[i].files["data"] for i in sorted(listing) if "data" in listing[i].files]
    for stage in stages:
        stage.setup()
        stage.resume(done)
    finished: list[FinishedShard] = []
    records: list[dict[str, Any]] = []
    with Progress(len(wanted), "shard", progress, desc=f"retry {recipe.name}") as bar:
        for index in sorted(wanted):
            shard, shard_records = _retry_shard(
                catalog,
                recipe,
                source,
                partitions[index],
                stages,
                listing[index],
                wanted[index],
                run_id,
            )
            finished.append(shard)
            records += shard_records
            bar.update(1, rows=len(shard_records))
    faults.point("retry_written")  # new files written, the catalog not yet switched
    result.shards = len(finished)
    result.tried = len(records)
    result.recovered = sum(r["status"] == STATUS_OK for r in records)
    result.failed_again = dict(
        Counter(r["reason"] for r in records if r["status"] != STATUS_OK).most_common()
    )
    _record_rows(catalog, run_id, records, result)
    catalog.commit_shards(recipe.name, run_id, finished)  # the switch: one transaction
    result.applied = True
    faults.point("retry_committed")  # listed; the replaced files not yet deleted
    for index in sorted(wanted):
        for path in listing[index].files.values():
            io.delete_file(path, missing_ok=True)


def _retry_shard(
    catalog: Catalog,
    recipe: Recipe,
    source: Source,
    partition: Partition,
    stages: list[Stage],
    listed: _Listed,
    wanted: dict[str, tuple[str, str]],
    run_id: int,
) -> tuple[FinishedShard, list[dict[str, Any]]]:
    """Run the stages on the shard's wanted rows, write its new files (unlisted yet)."""
    index = partition.index
    work = read_partition(source, partition, recipe.on_error)
    position = _positions(work, index)
    gone_ids = sorted(wanted)
    lost = [i for i in gone_ids if i not in position]
    if lost:
        raise RetryError(
            f"shard {index}: image ids {lost[:3]} are no longer in the source's partition: "
            "its input changed since the run"
        )
    chosen = work.filter(pc.is_in(work.column("image_id"), value_set=pa.array(gone_ids)))
    rows = run_stages(recipe, stages, chosen)
    rows = rows.take(pc.sort_indices(rows.column("_row")))

    kept = rows.filter(ok_mask(rows))
    new_data = public(kept)
    validate(new_data)
    new_rejects, new_reject_order = reject_rows(rows, recipe.step_names)

    old_data = _read(listed.files["data"]).cast(IMAGE_SCHEMA)
    old_data_ids = old_data.column("image_id").to_pylist()
    if set(old_data_ids) & set(gone_ids):
        raise RetryError(f"shard {index}: an image is both kept and rejected; nothing changed")
    data = in_input_order(
        [
            (old_data, _order(old_data_ids, position, index)),
            (new_data.cast(IMAGE_SCHEMA), kept.column("_row").to_pylist()),
        ]
    )
    old_rejects = _read(listed.files["rejects"]).cast(REJECT_SCHEMA)
    retried = pc.is_in(old_rejects.column("image_id"), value_set=pa.array(gone_ids))
    gone = old_rejects.filter(retried)  # every reject row of the retried images
    stay = old_rejects.filter(pc.invert(retried))
    rejects = in_input_order(
        [
            (stay, _order(stay.column("image_id").to_pylist(), position, index)),
            (new_rejects.cast(REJECT_SCHEMA), new_reject_order),
        ]
    )
    stats = _adjusted_stats(
        _old_stats(catalog, recipe.name, index),
        gone,
        stage_stats(rows, recipe.step_names),
        recipe.step_names,
        index,
    )
    _check_funnel(index, stats, listed.input_rows, data, rejects)

    files = [_write(shard_path(recipe.output, index), run_id, "data", data, IMAGE_SCHEMA)]
    if rejects.num_rows:
        path = rejects_path(recipe.output, index)
        files.append(_write(path, run_id, "rejects", rejects, REJECT_SCHEMA))
    records = [
        {
            "shard_index": index,
            "image_id": row["image_id"],
            "old_stage": wanted[row["image_id"]][0],
            "old_reason": wanted[row["image_id"]][1],
            "status": row["status"],
            "stage": None
            if row["status"] == STATUS_OK
            else recipe.step_names[row["_reject_stage"] + 1],
            "reason": None if row["status"] == STATUS_OK else row["reason"],
        }
        for row in rows.select(["image_id", "status", "reason", "_reject_stage"]).to_pylist()
    ]
    return FinishedShard(index, listed.input_rows, files, stats), records


def _positions(work: pa.Table, index: int) -> dict[str, int]:
    """image id -> input row of the partition (ids must be unique to place rows)."""
    position: dict[str, int] = {}
    for image_id, row in zip(work.column("image_id").to_pylist(), work.column("_row").to_pylist()):
        if image_id in position:
            raise RetryError(
                f"shard {index}: image id {image_id!r} is on two input rows; "
                "retry places rows by image id"
            )
        position[image_id] = row
    return position


def _order(image_ids: list[str], position: dict[str, int], index: int) -> list[int]:
    try:
        return [position[i] for i in image_ids]
    except KeyError as exc:
        raise RetryError(
            f"shard {index}: image id {exc.args[0]!r} of its files is no longer in the "
            "source's partition: its input changed since the run"
        ) from None


def _old_stats(catalog: Catalog, corpus: str, index: int) -> list[dict[str, Any]]:
    where = "WHERE corpus = ? AND layer = 'base' AND shard_index = ?"
    _, steps = catalog.query(
        f"SELECT step_index, stage, rows_in, rows_out, seconds FROM stage_stats {where} "
        "ORDER BY step_index",
        [corpus, index],
    )
    _, drops = catalog.query(
        f"SELECT step_index, unit, reason, rows FROM stage_drops {where}", [corpus, index]
    )
    stats = [
        {"index": i, "name": n, "rows_in": r_in, "rows_out": r_out, "drops": {}, "seconds": sec}
        for i, n, r_in, r_out, sec in steps
    ]
    by_index = {s["index"]: s for s in stats}
    for step, unit, reason, rows in drops:
        by_index[step]["drops"].setdefault(unit, {})[reason] = rows
    return stats


def _adjusted_stats(
    old: list[dict[str, Any]],
    gone: pa.Table,
    new: list[dict[str, Any]],
    step_names: list[str],
    index: int,
) -> list[dict[str, Any]]:
    """``old`` minus what the retried rows contributed (from their old reject rows),
    plus ``new`` (this attempt's stats of the same rows)."""
    if [s["index"] for s in old] != [s["index"] for s in new]:
        raise RetryError(f"shard {index}: its stats do not list the recipe's steps")
    steps: dict[str, list[int]] = {}
    for step, name in enumerate(step_names, start=-1):
        steps.setdefault(name, []).append(step)
    stats = copy.deepcopy(old)
    by_index = {s["index"]: s for s in stats}
    for row in gone.select(["item_kind", "stage", "reason"]).to_pylist():
        candidates = steps.get(row["stage"], [])
        if len(candidates) != 1:
            raise RetryError(
                f"shard {index}: a reject names stage {row['stage']!r}, which is "
                f"{'not' if not candidates else 'more than once'} in the recipe"
            )
        step = candidates[0]
        _add_drop(by_index[step], row["item_kind"] or "image", row["reason"], -1)
        if row["item_kind"] is None:  # the row went in up to this step and out before it
            for s in stats:
                s["rows_in"] -= s["index"] <= step
                s["rows_out"] -= s["index"] < step
    for total, part in zip(stats, new):
        for key in ("rows_in", "rows_out", "seconds"):
            total[key] += part[key]
        for unit, reasons in part["drops"].items():
            for reason, rows in reasons.items():
                _add_drop(total, unit, reason, rows)
    return stats


def _add_drop(step: dict[str, Any], unit: str, reason: str, rows: int) -> None:
    reasons = step["drops"].setdefault(unit, {})
    reasons[reason] = reasons.get(reason, 0) + rows
    if reasons[reason] == 0:
        del reasons[reason]
    if not reasons:
        del step["drops"][unit]


def _check_funnel(
    index: int, stats: list[dict[str, Any]], input_rows: int, data: pa.Table, rejects: pa.Table
) -> None:
    """The new stats must describe the new files exactly; else nothing is written."""
    image_rejects = pc.sum(pc.is_null(rejects.column("item_kind"))).as_py() or 0
    image_drops = sum(sum(s["drops"].get("image", {}).values()) for s in stats)
    item_drops = sum(
        sum(r.values()) for s in stats for unit, r in s["drops"].items() if unit != "image"
    )
    problems = []
    if stats[0]["rows_in"] != input_rows:
        problems.append(f"{stats[0]['rows_in']} rows into the source, {input_rows} input rows")
    if stats[-1]["rows_out"] != data.num_rows:
        problems.append(f"{stats[-1]['rows_out']} rows out of the last step, {data.num_rows} kept")
    for before, after in zip(stats, stats[1:]):
        if before["rows_out"] != after["rows_in"]:
            problems.append(
                f"step {before['index']} gives {before['rows_out']} rows, "
                f"step {after['index']} takes {after['rows_in']}"
            )
    if image_drops != image_rejects or image_drops != input_rows - data.num_rows:
        problems.append(f"{image_drops} image drops, {image_rejects} image rejects")
    if item_drops != rejects.num_rows - image_rejects:
        problems.append(f"{item_drops} item drops, {rejects.num_rows - image_rejects} item rejects")
    negative = [s["index"] for s in stats if min(s["rows_in"], s["rows_out"]) < 0]
    if negative:
        problems.append(f"negative counts at steps {negative}")
    if problems:
        raise RetryError(
            f"shard {index}: its stats would not match its files ({'; '.join(problems)}); "
            "nothing was changed"
        )


def _write(final: str, run_id: int, kind: str, table: pa.Table, schema: pa.Schema) -> dict:
    """Write ``table`` next to ``final`` under this attempt's name; its file entry."""
    path = f"{final.removesuffix('.parquet')}.retry-{run_id}.parquet"
    return {"kind": kind, "path": path, **_write_whole(path, table, schema)}


def _read(path: str, columns: list[str] | None = None) -> pa.Table:
    return io.read_parquet(path, columns).replace_schema_metadata(None)


def _remove_leftovers(output: str, listing: dict[int, _Listed]) -> int:
    """Delete the unlisted shard files a crashed retry left: its new files (``.retry-``
    names) and the files it had replaced (copies of a shard listed under another name).
    Called under the run lock; a run's own leftovers (unlisted shards) are not touched."""
    listed = {path for entry in listing.values() for path in entry.files.values()}
    done = {index for index, entry in listing.items() if "data" in entry.files}
    removed = 0
    for folder in ("data", "rejects"):
        directory = io.join(output, folder)
        filesystem, inner = io.resolve(directory)
        selector = pafs.FileSelector(inner, allow_not_found=True)
        for info in filesystem.get_file_info(selector):
            match = _SHARD_FILE.fullmatch(info.base_name)
            path = io.join(directory, info.base_name)
            if info.type != pafs.FileType.File or not match or path in listed:
                continue
            if match.group(2) or int(match.group(1)) in done:
                log.info("removing %s, left by an interrupted retry", path)
                filesystem.delete_file(info.path)
                removed += 1
    return removed


# ---- the record: retries and retry_rows (catalog/003_retries.sql) ------------------------


def _settle_earlier_attempts(catalog: Catalog, corpus: str) -> None:
    """Attempts left 'running' died: 'finished' when the catalog lists their files (the
    switch happened), else 'interrupted' (nothing of them was applied)."""
    with catalog.write() as con:
        running = con.execute(
            "SELECT run_id FROM retries WHERE corpus = ? AND status = 'running'", [corpus]
        ).fetchall()
        for (run_id,) in running:
            (applied,) = con.execute(
                "SELECT count(*) FROM shards WHERE corpus = ? AND path LIKE ?",
                [corpus, f"%.retry-{run_id}.parquet"],
            ).fetchone()
            con.execute(
                "UPDATE retries SET status = ?, finished_at = current_timestamp WHERE run_id = ?",
                ["finished" if applied else "interrupted", run_id],
            )


def _begin_attempt(catalog: Catalog, run_id: int, corpus: str, reasons: list[str]) -> None:
    with catalog.write() as con:
        con.execute(
            "INSERT INTO retries (run_id, corpus, reasons, status) VALUES (?, ?, ?, 'running')",
            [run_id, corpus, ",".join(reasons)],
        )


def _record_rows(
    catalog: Catalog, run_id: int, records: list[dict[str, Any]], result: RetryResult
) -> None:
    """The tried rows and the counts, before the switch (the status says if it happened)."""
    with catalog.write() as con:
        if records:
            con.executemany(
                "INSERT INTO retry_rows (run_id, corpus, shard_index, image_id, old_stage, "
                "old_reason, status, stage, reason) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                [
                    [
                        run_id,
                        result.corpus,
                        r["shard_index"],
                        r["image_id"],
                        r["old_stage"],
                        r["old_reason"],
                        r["status"],
                        r["stage"],
                        r["reason"],
                    ]
                    for r in records
                ],
            )
        con.execute(
            "UPDATE retries SET shards = ?, rows_tried = ?, rows_recovered = ?, "
            "rows_failed_again = ? WHERE run_id = ?",
            [
                result.shards,
                result.tried,
                result.recovered,
                result.tried - result.recovered,
                run_id,
            ],
        )


def _end_attempt(catalog: Catalog, run_id: int, status: str, error: str | None = None) -> None:
    with catalog.write() as con:
        con.execute(
            "UPDATE retries SET status = ?, error = ?, finished_at = current_timestamp "
            "WHERE run_id = ?",
            [status, error, run_id],
        )


# ---- output ------------------------------------------------------------------------------


def retry_dict(result: RetryResult) -> dict[str, Any]:
    """``mmdata retry --json``."""
    return {"event": "summary", **result.__dict__}


def summarize_retry(result: RetryResult) -> str:
    """One screen: what was tried, recovered, and what failed again, by reason."""
    from mmdata.core.tables import format_rows

    lines = [
        f"corpus {result.corpus}: retried {result.tried} rejected rows "
        f"({', '.join(result.reasons)}) in {result.shards} shards in {result.seconds:.1f} s; "
        f"catalog {result.catalog}",
        f"recovered: {result.recovered} (now in images)",
        f"failed again: {result.tried - result.recovered}",
    ]
    if result.failed_again:
        lines.append(format_rows(["reason", "rows"], list(result.failed_again.items())))
    if result.leftovers_removed:
        lines.append(f"removed {result.leftovers_removed} files an interrupted retry left")
    if not result.tried:
        lines.append("nothing to retry: no image was rejected for these reasons")
    return "\n".join(lines)
