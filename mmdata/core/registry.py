"""Name -> class registries for stages and sources.

A registry is filled two ways: ``@STAGES.register("name")`` on a class inside mmdata, and
the ``mmdata.stages`` / ``mmdata.sources`` entry-point groups, so that ``annotation`` and
user packages plug in without mmdata importing them. (Region models are chosen by name in
mmdata.models.regions.factory: three backends, no plugin group.)
"""

from __future__ import annotations

import importlib
import logging
from collections.abc import Callable, Iterable
from importlib.metadata import entry_points
from typing import Generic, TypeVar

from mmdata.core.errors import MmdataError

log = logging.getLogger(__name__)

T = TypeVar("T")


class UnknownNameError(MmdataError, KeyError):
    """A name that no registry entry carries; the message lists the valid names."""

    def __str__(self) -> str:  # KeyError would quote the whole message
        return str(self.args[0])


class Registry(Generic[T]):
    """A named collection of classes of one kind.

    Contract: names are unique, lower_snake_case and stable (recipes name them);
    registering a second class under a taken name is an error.
    """

    def __init__(self, kind: str, entry_point_group: str) -> None:
        self.kind = kind
        self._group = entry_point_group
        self._classes: dict[str, type[T]] = {}
        self._entry_points_loaded = False

    def register(self, name: str) -> Callable[[type[T]], type[T]]:
        """Class decorator that registers the class under ``name``."""

        def decorator(cls: type[T]) -> type[T]:
            existing = self._classes.get(name)
            if existing is not None and existing is not cls:
                raise ValueError(f"{self.kind} {name!r} is already registered by {existing}")
            cls.name = name  # type: ignore[attr-defined]
            self._classes[name] = cls
            return cls

        return decorator

    def get(self, name: str) -> type[T]:
        """The class registered as ``name``.

        Raises:
            UnknownNameError: listing every registered name.
        """
        self._load_entry_points()
        try:
            return self._classes[name]
        except KeyError:
            valid = ", ".join(self.names()) or "(none)"
            raise UnknownNameError(
                f"unknown {self.kind} {name!r}; registered {self.kind}s: {valid}"
            ) from None

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        self._load_entry_points()
        return sorted(self._classes)

    def _load_entry_points(self) -> None:
        # An entry point that fails to import is logged and skipped, so one broken
        # plugin cannot take every other name down with it.
        if self._entry_points_loaded:
            return
        self._entry_points_loaded = True
        for ep in entry_points(group=self._group):
            if ep.name in self._classes:
                continue
            try:
                cls = ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure of a plugin
                log.error(
                    "%s %r: cannot load entry point %s: %s", self.kind, ep.name, ep.value, exc
                )
                continue
            self.register(ep.name)(cls)


def import_modules(modules: Iterable[str]) -> None:
    """Import user modules named by a recipe's ``imports`` so their stages register."""
    for module in modules:
        importlib.import_module(module)


STAGES: Registry = Registry("stage", "mmdata.stages")
SOURCES: Registry = Registry("source", "mmdata.sources")


def load_builtin() -> None:
    """Import mmdata's own stages so they register (cheap: no heavy imports at top)."""
    importlib.import_module("mmdata.stages")
