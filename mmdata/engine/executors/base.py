"""What every executor does to a partition: read it, pass it through the stages.

Executors differ only in where this runs (a loop, or Ray tasks and actors). Timing
travels with the rows: after stage ``i`` each processed row carries ``_sec_i``, its share
of the batch's wall time, so the sink can sum stage seconds per shard whatever the
batching was.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import pyarrow as pa
import pyarrow.compute as pc

from mmdata.core.batch import ITEM_REJECT, SOURCE_STAGE, mark, ok_mask, to_work
from mmdata.core.errors import MmdataError
from mmdata.core.schema import STATUS_ERROR
from mmdata.core.stage import PREPARED, OnError, Partition, Source, Stage
from mmdata.engine.recipe import Recipe

log = logging.getLogger(__name__)


class StageError(MmdataError, RuntimeError):
    """A row failed in a stage and the recipe says ``on_error: raise``."""


@dataclass(frozen=True)
class RunPlan:
    """What an executor needs: the recipe, the partitions left to do, where to stage."""

    recipe: Recipe
    partitions: list[Partition]
    staging: str  # folder for part files before the driver commits them
    done_shards: tuple[str, ...] = ()  # data shards committed by earlier runs (Stage.resume)


class Executor(Protocol):
    """Runs a plan and yields part descriptions (dicts from mmdata.engine.sink.write_parts)."""

    def run(self, plan: RunPlan) -> Iterator[dict]: ...


def read_partition(
    source: Source,
    partition: Partition,
    on_error: OnError,
    layer_fields: tuple[pa.Field, ...] = (),
) -> pa.Table:
    """The partition's rows as a working batch; in a layer run, with the layer's fields
    as null columns for its stages to fill (so every batch has the same schema)."""
    table = _stamp_stage(to_work(source.read(partition), partition.index), SOURCE_STAGE)
    for field in layer_fields:
        table = table.append_column(field, pa.nulls(table.num_rows, field.type))
    raise_on_errors(table, source.name, OnError(on_error))
    return table


def seconds_column(index: int) -> str:
    return f"_sec_{index}"


#: Per-row seconds of a stage's ``prepare``, added into its ``_sec_i`` by ``run_stage``.
PREPARE_SECONDS = "_prepare_sec"


def has_prepare(stage_cls: type[Stage]) -> bool:
    """True when the stage has CPU work to do ahead of ``process`` (``Stage.prepare``)."""
    return stage_cls.prepare is not Stage.prepare


def run_prepare(stage: Stage, index: int, table: pa.Table, on_error: OnError) -> pa.Table:
    """``stage.prepare`` over the ok rows: its ``PREPARED`` column rides to ``process``."""

    def prepare(todo: pa.Table) -> pa.Table:
        if todo.num_rows:
            todo = _process(stage, index, todo, on_error, step=stage.prepare)
        if PREPARED not in todo.column_names:
            todo = todo.append_column(PREPARED, pa.nulls(todo.num_rows, pa.binary()))
        return todo

    def skipped(rest: pa.Table) -> pa.Table:
        return rest.append_column(PREPARED, pa.nulls(rest.num_rows, pa.binary()))

    return _on_ok_rows(table, prepare, PREPARE_SECONDS, skipped)


def run_stage(stage: Stage, index: int, table: pa.Table, on_error: OnError) -> pa.Table:
    """Pass the ok rows of ``table`` through ``stage``; other rows go by untouched."""

    def process(todo: pa.Table) -> pa.Table:
        return _process(stage, index, todo, on_error) if todo.num_rows else todo

    return _fold_prepare(_on_ok_rows(table, process, seconds_column(index)), index)


def _on_ok_rows(
    table: pa.Table,
    step: Callable[[pa.Table], pa.Table],
    seconds: str,
    skipped: Callable[[pa.Table], pa.Table] = lambda rest: rest,
) -> pa.Table:
    """``step`` over the ok rows (the others through ``skipped``), each row then
    carrying its share of the step's wall time in the column ``seconds``."""
    ok = ok_mask(table)
    rest = skipped(table.filter(pc.invert(ok)))
    started = time.perf_counter()
    todo = step(table.filter(ok))
    share = (time.perf_counter() - started) / max(todo.num_rows, 1)
    todo = todo.append_column(seconds, pa.array([share] * todo.num_rows, pa.float64()))
    rest = rest.append_column(seconds, pa.array([0.0] * rest.num_rows, pa.float64()))
    return pa.concat_tables([todo, rest])


def _fold_prepare(table: pa.Table, index: int) -> pa.Table:
    """Drop what ``prepare`` handed over; its seconds join the stage's own."""
    if PREPARE_SECONDS in table.column_names:
        column = seconds_column(index)
        total = pc.add(table.column(column), table.column(PREPARE_SECONDS))
        table = table.set_column(table.schema.get_field_index(column), column, total)
        table = table.drop_columns([PREPARE_SECONDS])
    if PREPARED in table.column_names:
        table = table.drop_columns([PREPARED])
    return table


def _process(
    stage: Stage, index: int, todo: pa.Table, on_error: OnError, step: Callable | None = None
) -> pa.Table:
    try:
        out = (step or stage.process)(todo)
    except Exception as exc:  # noqa: BLE001 - the policy decides: raise or record
        if on_error == OnError.RAISE:
            raise StageError(
                f"stage {stage.name!r} failed on rows {_ids(todo)}: {type(exc).__name__}: {exc}"
            ) from exc
        log.warning("stage %s failed on %d rows: %s", stage.name, todo.num_rows, exc)
        detail = pa.array([f"{type(exc).__name__}: {exc}"] * todo.num_rows)
        out = mark(todo, pa.array([True] * todo.num_rows), STATUS_ERROR, "stage_exception", detail)
    if out.num_rows != todo.num_rows:
        raise StageError(
            f"stage {stage.name!r} returned {out.num_rows} rows for "
            f"{todo.num_rows}: stages must keep every row (mark, not drop)"
        )
    fields = type(stage).layer_fields
    if fields and all(f.name in todo.column_names for f in fields):  # a layer run
        out = _layer_columns(stage, out, todo, fields)
    out = _stamp_stage(out, index)
    raise_on_errors(out, stage.name, on_error)
    return out


def _layer_columns(
    stage: Stage, out: pa.Table, todo: pa.Table, fields: tuple[pa.Field, ...]
) -> pa.Table:
    """A layer stage's output with its input's columns in their order and its declared
    fields cast to their types, so ok and skipped rows (and Ray's blocks) concatenate."""
    if PREPARED in todo.column_names and PREPARED not in out.column_names:
        out = out.append_column(PREPARED, pa.nulls(out.num_rows, pa.binary()))
    extra = [c for c in out.column_names if c not in todo.column_names]
    missing = [c for c in todo.column_names if c not in out.column_names]
    if extra or missing:
        raise StageError(
            f"stage {stage.name!r} returned columns {extra} not declared in its "
            f"layer_fields, or dropped {missing}"
        )
    for field in fields:
        position = out.schema.get_field_index(field.name)
        try:
            column = out.column(position).cast(field.type)
        except (pa.ArrowInvalid, pa.ArrowNotImplementedError) as exc:
            raise StageError(
                f"stage {stage.name!r}: layer field {field.name!r} is "
                f"{out.schema.field(position).type}, declared {field.type}: {exc}"
            ) from exc
        out = out.set_column(position, field, column)
    return out.select(todo.column_names)


def _stamp_stage(table: pa.Table, index: int) -> pa.Table:
    """Record ``index`` as the rejecting stage of rows (and items) it just rejected."""
    newly = pc.and_(pc.invert(ok_mask(table)), pc.is_null(table.column("_reject_stage")))
    stages = pc.if_else(newly, pa.scalar(index, pa.int32()), table.column("_reject_stage"))
    table = table.set_column(table.schema.get_field_index("_reject_stage"), "_reject_stage", stages)
    rejects = table.column("_item_rejects").combine_chunks()
    if rejects.null_count == len(rejects):
        return table
    # flatten() honours slicing; offsets are rebased to match the flattened values.
    children = rejects.flatten().flatten()
    children[0] = pc.fill_null(children[0], pa.scalar(index, pa.int32()))
    values = pa.StructArray.from_arrays(children, fields=list(ITEM_REJECT))
    offsets = pc.subtract(rejects.offsets, rejects.offsets[0])
    stamped = pa.ListArray.from_arrays(offsets, values, mask=rejects.is_null())
    return table.set_column(table.schema.get_field_index("_item_rejects"), "_item_rejects", stamped)


def raise_on_errors(table: pa.Table, step: str, on_error: OnError) -> None:
    """With ``on_error: raise``, the first error row stops the run, named."""
    if OnError(on_error) != OnError.RAISE:  # a string that is neither fails here
        return
    errors = table.filter(pc.equal(table.column("status"), STATUS_ERROR))
    if errors.num_rows:
        row = errors.slice(0, 1).to_pylist()[0]
        raise StageError(
            f"{step}: image {row['image_id']} ({row['path'] or row['url']}): "
            f"{row['reason']}: {row['_detail']} "
            f"[{errors.num_rows} error row(s) in this batch; "
            "set on_error: record to keep them as rejects]"
        )


def _ids(table: pa.Table, limit: int = 3) -> str:
    ids = table.column("image_id").to_pylist()
    more = f" and {len(ids) - limit} more" if len(ids) > limit else ""
    return ", ".join(ids[:limit]) + more
