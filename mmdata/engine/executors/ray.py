"""The Ray executor: each stage becomes a Ray Data map over Arrow batches.

Partitions are read by Ray tasks, every stage runs with its own resources (stateful or
GPU stages as an actor pool, the rest as tasks), and the last map writes part files in
the workers. Only part descriptions come back to the driver, which commits them. With
no address this starts (or reuses) an embedded local Ray; ``address`` or RAY_ADDRESS
runs the same recipe on a cluster.
"""

from __future__ import annotations

import json
import logging
import os
import socket
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from mmdata.core import faults
from mmdata.core.errors import MmdataError
from mmdata.core.registry import STAGES
from mmdata.core.stage import Partition, Source, Stage
from mmdata.engine.executors.base import (
    RunPlan,
    has_prepare,
    read_partition,
    run_prepare,
    run_stage,
)
from mmdata.engine.recipe import Recipe
from mmdata.engine.sink import write_parts

log = logging.getLogger(__name__)

#: Seconds to wait for the GCS port of a named cluster before giving up: Ray itself keeps
#: retrying a dead address for minutes.
CONNECT_TIMEOUT_S = 3.0

# Per worker process: built once, reused by every task the process runs.
_SOURCES: dict[str, Source] = {}
_STAGES: dict[tuple[str, int], Stage] = {}
_PREPARERS: dict[tuple[str, int], Stage] = {}  # built without setup(): no model


class ClusterError(MmdataError):
    """The Ray cluster named by --address or RAY_ADDRESS cannot be reached."""


def init_ray(address: str | None = None) -> None:
    """Connect to ``address`` (or RAY_ADDRESS), or start an embedded local Ray."""
    import ray

    if ray.is_initialized():
        return
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        check_reachable(address)
    env = faults.worker_env()  # crash tests reach into the workers
    try:
        ray.init(
            address=address, include_dashboard=False, log_to_driver=True, configure_logging=False,
            runtime_env={"env_vars": env} if env else None,
        )  # fmt: skip
    except ConnectionError as exc:
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {exc} (is `ray start --head` running "
            "there, and is its GCS port open to this machine?)"
        ) from None


def gcs_endpoint(address: str) -> tuple[str, int] | None:
    """``(host, port)`` of a cluster address (``host:port``, ``[v6]:port``, ``ray://host:port``);
    None for what Ray resolves itself (``auto``, ``local``) or an address without a port."""
    rest = address.strip()
    if rest.startswith("ray://"):
        rest = rest[len("ray://") :]
    elif "://" in rest or rest in ("auto", "local"):
        return None
    host, sep, port = rest.rstrip("/").rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        return None
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    return (host, int(port)) if host else None


def check_reachable(address: str, timeout: float = CONNECT_TIMEOUT_S) -> None:
    """Fail within ``timeout`` seconds when nothing listens at ``address``'s port.

    Raises:
        ClusterError: one line naming the address, before Ray's minutes of retries.
    """
    endpoint = gcs_endpoint(address)
    if endpoint is None:
        return
    try:
        socket.create_connection(endpoint, timeout=timeout).close()
    except OSError as exc:
        why = f"no answer in {timeout:g} s" if isinstance(exc, TimeoutError) else exc.strerror
        raise ClusterError(
            f"cannot reach the Ray cluster at {address}: {why or exc} (is `ray start --head` "
            "running there, and is its GCS port open to this machine?)"
        ) from None


def _source(recipe: Recipe) -> Source:
    key = recipe.content_hash
    if key not in _SOURCES:
        _SOURCES[key] = recipe.build_source()
    return _SOURCES[key]


def _stage(recipe: Recipe, index: int) -> Stage:
    key = (recipe.content_hash, index)
    if key not in _STAGES:
        stage = recipe.build_stage(index)
        stage.setup()
        _STAGES[key] = stage
    return _STAGES[key]


def read_batch(batch: pa.Table, recipe: Recipe) -> pa.Table:
    """Map: partition descriptors -> their rows as working batches."""
    tables = [
        read_partition(
            _source(recipe), Partition(i, json.loads(spec)), recipe.on_error, recipe.layer_fields
        )
        for i, spec in zip(batch.column("index").to_pylist(), batch.column("spec").to_pylist())
    ]
    return pa.concat_tables(tables)


def prepare_batch(batch: pa.Table, recipe: Recipe, index: int) -> pa.Table:
    """Map: a stage's ``prepare`` (no ``setup()``: no model in a CPU task)."""
    key = (recipe.content_hash, index)
    if key not in _PREPARERS:
        _PREPARERS[key] = recipe.build_stage(index)
    return run_prepare(_PREPARERS[key], index, batch, recipe.on_error)


def stage_batch(batch: pa.Table, recipe: Recipe, index: int) -> pa.Table:
    """Map: one stateless stage over a batch (the stage is cached per worker)."""
    return run_stage(_stage(recipe, index), index, batch, recipe.on_error)


class StageActor:
    """Actor-pool form of a stage: setup() once per actor, then every batch."""

    def __init__(self, recipe: Recipe, index: int, done_shards: tuple[str, ...] = ()) -> None:
        self.recipe, self.index = recipe, index
        self.stage = recipe.build_stage(index)
        self.stage.setup()
        self.stage.resume(list(done_shards))

    def __call__(self, batch: pa.Table) -> pa.Table:
        return run_stage(self.stage, self.index, batch, self.recipe.on_error)


def write_batch(
    batch: pa.Table, staging: str, step_names: list[str], layer: pa.Schema | None = None
) -> pa.Table:
    """Map: rows -> part files in staging; returns one JSON description per part."""
    parts = write_parts(batch, staging, step_names, layer)
    return pa.table({"part": [json.dumps(p) for p in parts]})


class RayExecutor:
    """Runs the plan as one streaming Ray Data pipeline."""

    name = "ray"

    def __init__(self, address: str | None = None) -> None:
        self.address = address

    def run(self, plan: RunPlan) -> Iterator[dict]:
        if not plan.partitions:
            return
        import ray

        init_ray(self.address)
        # Ray Data logs every progress tick at INFO; mmdata shows its own progress bar.
        if not log.isEnabledFor(logging.INFO):
            logging.getLogger("ray.data").setLevel(logging.WARNING)
            ray.data.DataContext.get_current().enable_progress_bars = False
        # Ray Data reserves a share of the CPUs for every operator; with a recipe's many
        # small stages on a few cores that leaves room for one download task at a time
        # (bench/download.py: 0.6x img2dataset with it, 1.2x without). mmdata's stages
        # declare what they need, so the plain resource limits are enough.
        ray.data.DataContext.get_current().op_resource_reservation_enabled = False
        recipe = plan.recipe
        items = [{"index": p.index, "spec": json.dumps(dict(p.spec))} for p in plan.partitions]
        ds = ray.data.from_items(items, override_num_blocks=len(items))
        ds = ds.map_batches(
            read_batch, batch_size=1, batch_format="pyarrow", fn_kwargs={"recipe": recipe}
        )
        for index in range(len(recipe.stages)):
            if has_prepare(STAGES.get(recipe.stages[index].name)):
                # decode/resize as CPU tasks ahead of the stage's (GPU) actors; not pinned
                # by resources.custom, which asks for what the model needs
                ds = ds.map_batches(
                    prepare_batch,
                    batch_size=recipe.stages[index].resources.batch_size,
                    batch_format="pyarrow",
                    num_cpus=1,
                    fn_kwargs={"recipe": recipe, "index": index},
                )
            ds = ds.map_batches(**_stage_map_args(recipe, index, plan.done_shards))
        ds = ds.map_batches(
            write_batch,
            batch_size=None,
            batch_format="pyarrow",
            fn_kwargs={
                "staging": plan.staging,
                "step_names": recipe.step_names,
                "layer": recipe.layer_schema,
            },
        )
        for batch in ds.iter_batches(batch_format="pyarrow", batch_size=None):
            for text in batch.column("part").to_pylist():
                yield json.loads(text)


def _stage_map_args(recipe: Recipe, index: int, done_shards: tuple[str, ...]) -> dict[str, Any]:
    import ray

    spec = recipe.stages[index]
    stage_cls = STAGES.get(spec.name)  # the class only: no model is built on the driver
    res = spec.resources
    args: dict[str, Any] = {
        "batch_size": res.batch_size,
        "batch_format": "pyarrow",
        "num_cpus": res.num_cpus,
    }
    if res.num_gpus:
        args["num_gpus"] = res.num_gpus
    if res.custom:  # only nodes started with these resources run the stage
        args["resources"] = dict(res.custom)
    if stage_cls.stateful or stage_cls.run_wide or res.num_gpus:
        size = 1 if stage_cls.run_wide else res.concurrency
        strategy = (
            ray.data.ActorPoolStrategy(size=size)
            if size
            else ray.data.ActorPoolStrategy(min_size=1, max_size=None)
        )
        args.update(
            fn=StageActor,
            compute=strategy,
            fn_constructor_kwargs={"recipe": recipe, "index": index, "done_shards": done_shards},
        )
    else:
        args.update(fn=stage_batch, fn_kwargs={"recipe": recipe, "index": index})
    return args
