"""Run a recipe: plan what is left, execute, commit each finished shard, summarise."""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from mmdata.catalog.store import Catalog
from mmdata.core import io
from mmdata.core.progress import Progress
from mmdata.engine.committer import ShardCommitter
from mmdata.engine.executors import make_executor
from mmdata.engine.executors.base import RunPlan
from mmdata.engine.recipe import Recipe
from mmdata.engine.runlock import corpus_lock
from mmdata.engine.sink import (
    ShardAssembler,
    staging_dir,
    write_empty_layer_shard,
    write_listed_shard,
)

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run did; ``shards_written`` is 0 when everything was already done."""

    corpus: str  # the corpus (a layer run: the base corpus)
    run_id: int
    catalog: str
    shards_total: int
    shards_skipped: int
    shards_written: int
    seconds: float
    #: seconds the committer spent in catalog transactions, and how many it ran
    commit_seconds: float = 0.0
    commits: int = 0
    #: the layer the run wrote: 'base' (the corpus itself) or a layer recipe's name
    layer: str = "base"


def run_recipe(
    recipe: Recipe,
    executor: str = "local",
    address: str | None = None,
    catalog_path: str | None = None,
    progress: bool | str = True,
) -> RunResult:
    """Run ``recipe`` to completion, doing only the shards the catalog does not list.
    ``progress``: True or "bar", "json" (JSON lines on stderr), False or "quiet".

    Each finished shard is committed on its own, so a crash loses at most the shards in
    flight; their staged parts are removed by the next run. One run per local output at
    a time: a second one fails with CorpusBusyError (mmdata.engine.runlock).
    A layer recipe (``layer_of``) runs the same way over its base corpus' listed shards,
    writing one layer file per base shard (docs/architecture.md, Layers).
    """
    with corpus_lock(recipe.output, recipe.name):
        return _run_locked(recipe, executor, address, catalog_path, progress)


def _run_locked(
    recipe: Recipe,
    executor: str,
    address: str | None,
    catalog_path: str | None,
    progress: bool | str,
) -> RunResult:
    started = time.perf_counter()
    catalog = Catalog(catalog_path or recipe.catalog)
    if recipe.layer_of is not None:
        run_id, done = catalog.begin_layer_run(
            recipe.corpus, recipe.layer, recipe.text, recipe.content_hash, recipe.output,
            executor, schema_text(recipe.layer_schema),
        )  # fmt: skip
    else:
        run_id, done = catalog.begin_run(
            recipe.name, recipe.text, recipe.content_hash, recipe.output, executor
        )
    try:
        partitions = recipe.build_source(catalog.path).partitions(recipe.shard_rows)
        pending = [p for p in partitions if p.index not in done]
        staging = staging_dir(recipe.output)
        io.delete_dir(staging)  # parts of a crashed run were never listed: redo them
        log.info(
            "%s: %d shards, %d done, %d to do",
            recipe.name,
            len(partitions),
            len(partitions) - len(pending),
            len(pending),
        )
        # what a run-wide stage resumes from: the corpus' data shards, or the layer's own
        done_shards = listed_data_shards(catalog, recipe.corpus, recipe.layer)
        plan = RunPlan(recipe, pending, staging, done_shards)
        committer = _execute(recipe, plan, executor, address, catalog, run_id, progress)
    except BaseException as exc:
        catalog.end_run(run_id, "failed", f"{type(exc).__name__}: {exc}")
        raise
    catalog.end_run(run_id, "finished")
    return RunResult(
        recipe.corpus,
        run_id,
        catalog.path,
        len(partitions),
        len(partitions) - len(pending),
        committer.committed,
        time.perf_counter() - started,
        committer.busy_s,
        committer.commits,
        recipe.layer,
    )


def schema_text(schema: pa.Schema) -> str:
    """A layer's columns as the catalog compares them: ``name type [not null]``, joined."""
    return ", ".join(f"{f.name} {f.type}" + ("" if f.nullable else " not null") for f in schema)


def listed_data_shards(catalog: Catalog, corpus: str, layer: str = "base") -> tuple[str, ...]:
    """The corpus's (or its layer's) committed data shards as the catalog lists them, by
    shard index (``mmdata retry`` gives a rewritten shard a new name)."""
    _, rows = catalog.query(
        "SELECT path FROM shards WHERE corpus = ? AND layer = ? AND kind = 'data' "
        "ORDER BY shard_index",
        [corpus, layer],
    )
    return tuple(path for (path,) in rows)


def _execute(
    recipe: Recipe,
    plan: RunPlan,
    executor: str,
    address: str | None,
    catalog: Catalog,
    run_id: int,
    progress: bool | str,
) -> ShardCommitter:
    """Assemble parts as they arrive; finished shards go to the committer's thread, so
    this loop never waits on the catalog. Shards finished before a failure are still
    listed (they are whole) before the failure is raised."""
    assembler = ShardAssembler(recipe.output, recipe.layer_schema)
    with Progress(len(plan.partitions), "shard", progress, desc=recipe.name) as bar:
        committer = ShardCommitter(
            catalog,
            recipe.corpus,
            run_id,
            on_commit=lambda shards: bar.update(
                len(shards), rows=sum(s.input_rows for s in shards)
            ),
            layer=recipe.layer,
        )
        try:
            if recipe.layer_schema is not None:
                # an empty base shard reaches no worker (no rows): its layer file is
                # written here, so the layer still has one file per base shard
                empty = [p for p in plan.partitions if p.spec.get("rows") == 0]
                for partition in empty:
                    committer.submit(
                        write_empty_layer_shard(
                            recipe.output, partition.index, recipe.layer_schema,
                            recipe.step_names,
                        )
                    )  # fmt: skip
                plan = dataclasses.replace(
                    plan, partitions=[p for p in plan.partitions if p.spec.get("rows") != 0]
                )
            for part in make_executor(executor, address).run(plan):
                shard = assembler.add(part)
                if shard is not None:
                    committer.submit(shard)
        except BaseException:
            with contextlib.suppress(Exception):
                committer.close()
            raise
        committer.close()
    if assembler.pending():
        raise RuntimeError(f"shards {assembler.pending()} did not receive all their rows")
    io.delete_dir(plan.staging)
    return committer


def write_listed_corpus(
    catalog: Catalog,
    corpus: str,
    output: str,
    spec: dict[str, Any],
    shards: int,
    table_of: Callable[[int], pa.Table],
    executor: str = "local",
) -> None:
    """A corpus made outside a recipe run, in ``catalog``: ``spec`` (JSON) stands in for
    the recipe text and its hash; data shard ``i`` is ``table_of(i)``, made and written
    only for the shards the catalog does not list yet, then all listed in one commit."""
    text = json.dumps(spec, sort_keys=True)
    run_id, done = catalog.begin_run(
        corpus, text, hashlib.sha256(text.encode()).hexdigest(), output, executor
    )
    finished = [
        write_listed_shard(output, index, table_of(index))
        for index in range(shards)
        if index not in done
    ]
    catalog.commit_shards(corpus, run_id, finished)
    catalog.end_run(run_id, "finished")
