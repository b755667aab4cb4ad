"""Helpers on the working batch: image rows plus the executors' internal columns.

A working batch is an Arrow table in IMAGE_SCHEMA followed by INTERNAL_FIELDS. Rows
are never removed while a batch travels: a rejected row keeps flowing with its status,
reason and stage so the sink can count it and write it to the rejects.
"""

from __future__ import annotations

from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from mmdata.core.schema import (
    IMAGE_SCHEMA,
    INTERNAL_FIELDS,
    STATUS_OK,
    STATUS_REJECTED,
    conform,
)

#: A part of a row dropped while the row stays (a caption by caption_filter, an object
#: with a bad box by an importer): it goes to the rejects with its own kind and reason.
ITEM_REJECT = pa.struct(
    [
        ("stage", pa.int32()),  # null until the executor stamps the step index
        ("kind", pa.string()),  # caption | object | relation | region | ...
        ("item_id", pa.string()),
        ("text", pa.string()),
        ("status", pa.string()),  # rejected | error
        ("reason", pa.string()),
        ("detail", pa.string()),
    ]
)


def item_reject(
    kind: str,
    item_id: Any,
    reason: str,
    detail: str,
    text: str | None = None,
    status: str = STATUS_REJECTED,
) -> dict:
    """One entry of a row's ``_item_rejects`` (the executor stamps the stage)."""
    return {
        "stage": None,
        "kind": kind,
        "item_id": None if item_id is None else str(item_id),
        "text": text,
        "status": status,
        "reason": reason,
        "detail": detail,
    }


WORK_SCHEMA = pa.schema(
    list(IMAGE_SCHEMA) + INTERNAL_FIELDS + [pa.field("_item_rejects", pa.list_(ITEM_REJECT))]
)
SOURCE_STAGE = -1  # _reject_stage of rows a source rejected


def to_work(table: pa.Table, shard: int) -> pa.Table:
    """Conform a source's rows and add the internal columns for partition ``shard``.

    A source may give a ``_detail`` column saying why it rejected a row, and an
    ``_item_rejects`` column with the parts of rows it dropped (ITEM_REJECT, stage null).
    """
    detail = pa.nulls(table.num_rows, pa.string())
    item_rejects = pa.nulls(table.num_rows, pa.list_(ITEM_REJECT))
    if "_detail" in table.column_names:
        detail = table.column("_detail")
        table = table.drop_columns(["_detail"])
    if "_item_rejects" in table.column_names:
        item_rejects = table.column("_item_rejects")
        table = table.drop_columns(["_item_rejects"])
    table = conform(table, IMAGE_SCHEMA)
    n = table.num_rows
    status = pc.fill_null(table.column("status"), STATUS_OK)
    table = table.set_column(table.schema.get_field_index("status"), "status", status)
    rejected = pc.not_equal(status, STATUS_OK)
    internal = {
        "_shard": pa.array([shard] * n, pa.int64()),
        "_row": pa.array(range(n), pa.int64()),
        "_shard_rows": pa.array([n] * n, pa.int64()),
        "_reject_stage": pc.if_else(rejected, SOURCE_STAGE, pa.scalar(None, pa.int32())),
        "_detail": detail,
        "_item_rejects": item_rejects,
    }
    for name, column in internal.items():
        field = WORK_SCHEMA.field(name)
        table = table.append_column(field, column.cast(field.type))
    return table


def set_columns(table: pa.Table, columns: dict[str, pa.Array]) -> pa.Table:
    """Replace columns by name, keeping the working schema's types."""
    for name, column in columns.items():
        index = table.schema.get_field_index(name)
        field = WORK_SCHEMA.field(name)
        table = table.set_column(index, field, column.cast(field.type))
    return table


def mark(
    table: pa.Table,
    mask: pa.Array,
    status: str,
    reason: str,
    detail: pa.Array | None = None,
    stage_index: int | None = None,
) -> pa.Table:
    """Set status/reason/detail on the rows of ``mask`` that are still ok."""
    mask = pc.and_(pc.fill_null(mask, False), pc.equal(table.column("status"), STATUS_OK))
    columns = {
        "status": pc.if_else(mask, status, table.column("status")),
        "reason": pc.if_else(mask, reason, table.column("reason")),
    }
    if detail is not None:
        columns["_detail"] = pc.if_else(mask, detail, table.column("_detail"))
    if stage_index is not None:
        stage = pa.scalar(stage_index, pa.int32())
        columns["_reject_stage"] = pc.if_else(mask, stage, table.column("_reject_stage"))
    return set_columns(table, columns)


def ok_mask(table: pa.Table) -> pa.Array:
    """True for rows still travelling (status ok)."""
    return pc.equal(table.column("status"), STATUS_OK)


def public(table: pa.Table) -> pa.Table:
    """The image columns only, as stored in shards."""
    return table.select(IMAGE_SCHEMA.names)
