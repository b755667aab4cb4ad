"""Executors run a recipe's partitions through its stages: locally or on Ray."""

from __future__ import annotations

from mmdata.engine.executors.base import Executor

EXECUTORS = ("local", "ray")


def make_executor(name: str, address: str | None = None) -> Executor:
    """The executor called ``name`` (``local`` or ``ray``)."""
    if name == "local":
        from mmdata.engine.executors.local import LocalExecutor

        return LocalExecutor()
    if name == "ray":
        from mmdata.engine.executors.ray import RayExecutor

        return RayExecutor(address=address)
    raise ValueError(f"unknown executor {name!r}; valid executors: {', '.join(EXECUTORS)}")
