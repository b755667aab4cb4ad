"""The local executor: plain iterators in this process, no Ray (tests, debugging)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pyarrow as pa

from mmdata.core.stage import OnError, Stage
from mmdata.engine.executors.base import (
    RunPlan,
    has_prepare,
    read_partition,
    run_prepare,
    run_stage,
)
from mmdata.engine.sink import write_parts

if TYPE_CHECKING:
    from mmdata.engine.recipe import Recipe


class LocalExecutor:
    """Runs partitions one after another; each stage sees ``batch_size`` rows at a time."""

    name = "local"

    def run(self, plan: RunPlan) -> Iterator[dict]:
        recipe = plan.recipe
        source = recipe.build_source()
        stages = [recipe.build_stage(i) for i in range(len(recipe.stages))]
        for stage in stages:
            stage.setup()
            stage.resume(list(plan.done_shards))
        for partition in plan.partitions:
            table = read_partition(source, partition, recipe.on_error, recipe.layer_fields)
            table = run_stages(recipe, stages, table)
            yield from write_parts(table, plan.staging, recipe.step_names, recipe.layer_schema)


def run_stages(recipe: Recipe, stages: list[Stage], table: pa.Table) -> pa.Table:
    """The recipe's (set-up) ``stages`` over ``table`` in this process, each fed
    ``batch_size`` rows at a time (the local executor; ``mmdata retry``)."""
    for index, (stage, spec) in enumerate(zip(stages, recipe.stages)):
        table = _batched(stage, index, table, recipe.on_error, spec.resources.batch_size)
    return table


def _batched(
    stage: Stage, index: int, table: pa.Table, on_error: OnError, batch_size: int | None
) -> pa.Table:
    size = batch_size or max(table.num_rows, 1)
    pieces = [table.slice(start, size) for start in range(0, table.num_rows, size)] or [table]
    return pa.concat_tables([_one_batch(stage, index, piece, on_error) for piece in pieces])


def _one_batch(stage: Stage, index: int, table: pa.Table, on_error: OnError) -> pa.Table:
    if has_prepare(type(stage)):
        table = run_prepare(stage, index, table, on_error)
    return run_stage(stage, index, table, on_error)
