"""Shard writing: workers write part files, the driver assembles and renames them.

A partition's rows may reach the writer in several blocks (Ray re-batches between
stages), so workers write one *part* per (block, shard) into a staging folder and
return its description. The driver counts input rows per shard; once every row of a
partition is accounted for (kept or rejected) it moves the single part into place, or
merges several in input order, and hands the finished shard to the catalog. Nothing in
staging is visible to readers: a shard exists once the catalog lists it.
"""

from __future__ import annotations

import json
import uuid
from collections import defaultdict
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmdata.core import faults, io
from mmdata.core.batch import ok_mask, public
from mmdata.core.schema import IMAGE_SCHEMA, REJECT_SCHEMA, STATUS_OK, validate, with_version
from mmdata.core.shards import FileMeta, FinishedShard, Part, file_stats
from mmdata.engine.executors.base import seconds_column

SOURCE_INDEX = -1


def shard_path(output: str, index: int) -> str:
    return io.join(output, "data", f"shard-{index:05d}.parquet")


def rejects_path(output: str, index: int) -> str:
    return io.join(output, "rejects", f"shard-{index:05d}.parquet")


def staging_dir(output: str) -> str:
    return io.join(output, "_staging")


#: Parquet row groups hold about this many (uncompressed) bytes. A streaming reader
#: reads whole row groups, so every sub-stream edge inside one costs up to a group of
#: extra reading; bigger groups compress better and keep footers small.
ROW_GROUP_BYTES = 8 << 20
#: ... and between these many rows (text-only rows are tiny, feature rows large).
ROW_GROUP_MIN_ROWS = 8
ROW_GROUP_ROWS = 1024


def row_group_rows(table: pa.Table) -> int:
    """Rows per row group for ``table``: about ROW_GROUP_BYTES each, within the bounds."""
    per_row = max(table.nbytes // max(table.num_rows, 1), 1)
    return max(1, min(ROW_GROUP_ROWS, max(ROW_GROUP_MIN_ROWS, ROW_GROUP_BYTES // per_row)))


def encode_parquet(table: pa.Table, schema: pa.Schema) -> bytes:
    """Parquet bytes of ``table`` with SCHEMA_VERSION in the file metadata."""
    sink = pa.BufferOutputStream()
    pq.write_table(
        table.cast(with_version(schema)),
        sink,
        compression="zstd",
        row_group_size=row_group_rows(table),
    )
    return sink.getvalue().to_pybytes()


def write_parts(
    table: pa.Table, staging: str, step_names: list[str], layer: pa.Schema | None = None
) -> list[Part]:
    """Write the rows of ``table`` as one data part and one rejects part per shard; in a
    layer run (``layer``: the layer file's schema) one layer part per shard holding every
    row, and no rejects.

    ``step_names[0]`` is the source, ``step_names[i + 1]`` stage ``i``. Returns one
    JSON-able description per shard found in ``table``.
    """
    parts = []
    for shard in pc.unique(table.column("_shard")).to_pylist():
        rows = table.filter(pc.equal(table.column("_shard"), shard))
        rows = rows.take(pc.sort_indices(rows.column("_row")))
        if layer is not None:
            parts.append(_write_layer_part(rows, shard, staging, step_names, layer))
        else:
            parts.append(_write_part(rows, shard, staging, step_names))
    return parts


def layer_rows(rows: pa.Table, schema: pa.Schema) -> pa.Table:
    """A layer file's rows: one per input row, in the given order; the layer fields are
    null where the row is not ok (its status and reason say why)."""
    ok = ok_mask(rows)
    columns = []
    for spec in schema:
        column = rows.column(spec.name).cast(spec.type)
        if spec.name not in ("image_id", "status", "reason"):
            column = pc.if_else(ok, column, pa.nulls(rows.num_rows, spec.type))
        columns.append(column)
    table = pa.Table.from_arrays(columns, schema=schema)
    validate(table, schema)
    return table


def _new_part(
    rows: pa.Table, shard: int, staging: str, kind: str, kept: pa.Table, step_names: list[str]
) -> Part:
    """A part's description before its files are written: its shard's input rows, the
    staged data file (``{shard}-{token}.{kind}.parquet``) holding ``kept``, no rejects."""
    token = uuid.uuid4().hex[:12]
    return {
        "shard": shard,
        "input_rows": rows.num_rows,
        "shard_rows": rows.column("_shard_rows")[0].as_py(),
        "data_path": io.join(staging, f"{shard:05d}-{token}.{kind}.parquet"),
        "data_rows": kept.num_rows,
        "data_order": kept.column("_row").to_pylist(),
        "reject_path": None,
        "reject_rows": 0,
        "reject_order": [],
        "stats": json.dumps(stage_stats(rows, step_names)),
    }


def _write_layer_part(
    rows: pa.Table, shard: int, staging: str, step_names: list[str], schema: pa.Schema
) -> Part:
    table = layer_rows(rows, schema)
    part = _new_part(rows, shard, staging, "layer", rows, step_names)
    part["data_file"] = _write_file(part["data_path"], table, schema)
    faults.point("worker_write")
    return part


def _write_part(rows: pa.Table, shard: int, staging: str, step_names: list[str]) -> Part:
    kept = rows.filter(ok_mask(rows))
    validate(public(kept))  # a stage that broke the schema fails here, before any write
    rejects, reject_order = reject_rows(rows, step_names)
    part = _new_part(rows, shard, staging, "data", kept, step_names)
    part.update(reject_rows=rejects.num_rows, reject_order=reject_order)
    part["data_file"] = _write_file(part["data_path"], public(kept), IMAGE_SCHEMA)
    faults.point("worker_write")  # between a part's two files (Ray worker or local process)
    if rejects.num_rows:
        part["reject_path"] = part["data_path"].removesuffix(".data.parquet") + ".rejects.parquet"
        part["reject_file"] = _write_file(part["reject_path"], rejects, REJECT_SCHEMA)
    return part


def _write_file(path: str, table: pa.Table, schema: pa.Schema) -> FileMeta:
    data = encode_parquet(table, schema)
    io.write_bytes(path, data)
    return {
        "rows": table.num_rows,
        "bytes": len(data),
        "sha256": io.sha256_hex(data),
        **file_stats(table),
    }


def reject_rows(rows: pa.Table, step_names: list[str]) -> tuple[pa.Table, list[int]]:
    """One reject row per rejected image and per dropped item, in input order."""
    records, order = [], []
    columns = [
        "image_id",
        "url",
        "path",
        "status",
        "reason",
        "_detail",
        "_reject_stage",
        "_item_rejects",
        "_row",
    ]
    for row in rows.select(columns).to_pylist():
        base = {"image_id": row["image_id"], "url": row["url"], "path": row["path"]}
        for item in row["_item_rejects"] or []:
            detail = (
                item["detail"] if item["text"] is None else (f"{item['detail']}: {item['text']!r}")
            )
            records.append(
                {
                    **base,
                    "item_kind": item["kind"],
                    "item_id": item["item_id"],
                    "stage": step_names[item["stage"] + 1],
                    "status": item["status"],
                    "reason": item["reason"],
                    "detail": (detail or "")[:500],
                }
            )
            order.append(row["_row"])
        if row["status"] != STATUS_OK:
            records.append(
                {
                    **base,
                    "item_kind": None,
                    "item_id": None,
                    "stage": step_names[row["_reject_stage"] + 1],
                    "status": row["status"],
                    "reason": row["reason"],
                    "detail": row["_detail"],
                }
            )
            order.append(row["_row"])
    return pa.Table.from_pylist(records, schema=REJECT_SCHEMA), order


def stage_stats(rows: pa.Table, step_names: list[str]) -> list[dict]:
    """Per step: rows in/out, drops by unit (image, caption, object...) and reason, seconds."""
    stages = rows.column("_reject_stage").to_pylist()
    reasons = rows.column("reason").to_pylist()
    items = [i for entries in rows.column("_item_rejects").to_pylist() for i in entries or []]
    stats = []
    for index, name in enumerate(step_names, start=SOURCE_INDEX):
        drops: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
        for stage, reason in zip(stages, reasons):
            if stage == index:
                drops["image"][reason] += 1
        for item in items:
            if item["stage"] == index:
                drops[item["kind"]][item["reason"]] += 1
        column = seconds_column(index)
        seconds = pc.sum(rows.column(column)).as_py() or 0.0 if column in rows.column_names else 0.0
        stats.append(
            {
                "index": index,
                "name": name,
                "rows_in": sum(1 for s in stages if s is None or s >= index),
                "rows_out": sum(1 for s in stages if s is None or s > index),
                "drops": {unit: dict(r) for unit, r in drops.items()},
                "seconds": seconds,
            }
        )
    return stats


@dataclass
class ShardAssembler:
    """Driver side: gathers parts until a shard is complete, then puts it in place."""

    output: str
    #: a layer run's file schema: data files in it, no rejects (None: a corpus run)
    layer: pa.Schema | None = None
    _parts: dict[int, list[Part]] = field(default_factory=lambda: defaultdict(list))

    def add(self, part: Part) -> FinishedShard | None:
        """Take one part; returns the shard when its last rows have arrived."""
        parts = self._parts[part["shard"]]
        parts.append(part)
        received = sum(p["input_rows"] for p in parts)
        if received < part["shard_rows"]:
            return None
        if received > part["shard_rows"]:
            raise RuntimeError(
                f"shard {part['shard']}: {received} rows arrived for "
                f"{part['shard_rows']} input rows (a row was duplicated)"
            )
        del self._parts[part["shard"]]
        return self._finish(part["shard"], parts)

    def pending(self) -> list[int]:
        """Shards with some parts but not all (non-empty only after a failure)."""
        return sorted(self._parts)

    def _finish(self, index: int, parts: list[Part]) -> FinishedShard:
        data = _place(
            [(p["data_path"], p["data_order"], p["data_file"]) for p in parts],
            shard_path(self.output, index),
            IMAGE_SCHEMA if self.layer is None else self.layer,
        )
        files = [{"kind": "data", **data}]
        faults.point("shard_placed")  # data file in place, rejects file still staged
        reject_parts = [
            (p["reject_path"], p["reject_order"], p["reject_file"])
            for p in parts
            if p["reject_path"]
        ]
        if reject_parts:
            rejects = _place(reject_parts, rejects_path(self.output, index), REJECT_SCHEMA)
            files.append({"kind": "rejects", **rejects})
        return FinishedShard(
            index,
            sum(p["input_rows"] for p in parts),
            files,
            merge_stats([json.loads(p["stats"]) for p in parts]),
        )


def write_empty_layer_shard(
    output: str, index: int, schema: pa.Schema, step_names: list[str]
) -> FinishedShard:
    """Layer shard ``index`` of an empty base shard: a zero-row file (no rows reach a
    worker, so the driver writes it), with zero-row stats for every step."""
    meta = _write_whole(shard_path(output, index), schema.empty_table(), schema)
    stats = [
        {"index": i, "name": name, "rows_in": 0, "rows_out": 0, "drops": {}, "seconds": 0.0}
        for i, name in enumerate(step_names, start=SOURCE_INDEX)
    ]
    return FinishedShard(index, 0, [{"kind": "data", "path": shard_path(output, index), **meta}],
                         stats)  # fmt: skip


def _write_whole(final: str, table: pa.Table, schema: pa.Schema) -> FileMeta:
    """Write ``table`` to ``final`` through a ``.partial`` sibling moved into place (the
    suffix io.written_whole uses, so one suffix marks an unfinished file everywhere)."""
    partial = final + io.PARTIAL_SUFFIX
    meta = _write_file(partial, table, schema)
    io.move(partial, final)
    return meta


def write_listed_shard(output: str, index: int, table: pa.Table) -> FinishedShard:
    """Write ``table`` (image rows) as data shard ``index`` of ``output`` and describe it
    for ``Catalog.commit_shards``: for corpora made outside a recipe run (the demo's
    oracle corpus, benchmark corpora)."""
    path = shard_path(output, index)
    meta = _write_whole(path, table, IMAGE_SCHEMA)
    return FinishedShard(index, table.num_rows, [{"kind": "data", "path": path, **meta}], [])


def _place(parts: list[tuple[str, list[int], dict]], final: str, schema: pa.Schema) -> dict:
    """Move one part to ``final``, or merge several in input-row order."""
    if len(parts) == 1:
        path, _, meta = parts[0]
        io.move(path, final)
        return {"path": final, **meta}
    merged = in_input_order([(io.read_parquet(path), rows) for path, rows, _ in parts])
    meta = _write_whole(final, merged, schema)
    faults.point("parts_merged")  # merged file in place, its parts not yet deleted
    for path, _, _ in parts:
        io.delete_file(path)
    return {"path": final, **meta}


def in_input_order(pieces: list[tuple[pa.Table, list[int]]]) -> pa.Table:
    """Tables of one shard, each with the input row of each of its rows, as one table in
    input-row order (a stable sort: rows of one input row keep their order)."""
    order = pa.array([row for _, rows in pieces for row in rows], pa.int64())
    return pa.concat_tables([table for table, _ in pieces]).take(pc.sort_indices(order))


def merge_stats(per_part: list[list[dict]]) -> list[dict]:
    """Sum the per-step stats of a shard's parts."""
    merged = [dict(s, drops={u: dict(r) for u, r in s["drops"].items()}) for s in per_part[0]]
    for stats in per_part[1:]:
        for total, part in zip(merged, stats):
            for key in ("rows_in", "rows_out", "seconds"):
                total[key] += part[key]
            for unit, reasons in part["drops"].items():
                unit_total = total["drops"].setdefault(unit, {})
                for reason, count in reasons.items():
                    unit_total[reason] = unit_total.get(reason, 0) + count
    return merged
