"""Check recipe arguments against a stage's or source's ``__init__`` signature.

The signature is the single statement of what a stage accepts: its keyword-only
parameters, their type hints and defaults. Recipes are checked against it before
anything runs, and ``mmdata stages`` prints it.
"""

from __future__ import annotations

import inspect
import types
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal


class InputPath(str):
    """Type hint for an input file or folder: resolved like Path, and a local one must
    exist when the recipe is validated (URIs are checked when read)."""


@dataclass(frozen=True)
class ArgSpec:
    """One accepted argument."""

    name: str
    annotation: Any
    default: Any  # inspect.Parameter.empty when required

    @property
    def required(self) -> bool:
        return self.default is inspect.Parameter.empty

    def describe(self) -> str:
        text = f"{self.name}: {type_name(self.annotation)}"
        return text if self.required else f"{text} = {self.default!r}"


def arg_specs(cls: type) -> list[ArgSpec]:
    """The keyword arguments ``cls.__init__`` accepts, with resolved type hints."""
    signature = inspect.signature(cls.__init__)
    hints = typing.get_type_hints(cls.__init__)
    specs = []
    for param in signature.parameters.values():
        if param.name == "self" or param.kind in (param.VAR_KEYWORD, param.VAR_POSITIONAL):
            continue
        specs.append(ArgSpec(param.name, hints.get(param.name, Any), param.default))
    return specs


def type_name(annotation: Any) -> str:
    """A short readable name for a type hint: ``int``, ``list[str]``, ``'a' | 'b'``."""
    origin = typing.get_origin(annotation)
    if origin is Literal:
        return " | ".join(repr(v) for v in typing.get_args(annotation))
    if origin in (typing.Union, types.UnionType):
        return " | ".join(type_name(a) for a in typing.get_args(annotation))
    if origin is not None:
        inner = ", ".join(type_name(a) for a in typing.get_args(annotation))
        return f"{origin.__name__}[{inner}]"
    if annotation is type(None):
        return "None"
    return getattr(annotation, "__name__", str(annotation))


def check_value(value: Any, annotation: Any, base_dir: Path | None) -> Any:
    """``value`` converted to ``annotation``; raises TypeError/ValueError when it does not fit.

    Relative paths resolve against ``base_dir`` (the recipe's folder) so recipes are
    portable; strings with a URI scheme are left alone.
    """
    origin = typing.get_origin(annotation)
    if annotation is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        return _check_union(value, typing.get_args(annotation), base_dir)
    if origin is Literal:
        choices = typing.get_args(annotation)
        if value not in choices:
            raise ValueError(f"must be one of {list(choices)}, got {value!r}")
        return value
    if origin in (list, tuple):
        if not isinstance(value, list | tuple):
            raise TypeError(f"must be a list, got {type(value).__name__}")
        (item_type, *_) = typing.get_args(annotation) or (Any,)
        return [check_value(v, item_type, base_dir) for v in value]
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise TypeError(f"must be a mapping, got {type(value).__name__}")
        return value
    return _check_scalar(value, annotation, base_dir)


def _check_union(value: Any, options: tuple, base_dir: Path | None) -> Any:
    if value is None and type(None) in options:
        return None
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return check_value(value, option, base_dir)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    raise TypeError(" or ".join(errors))


def _check_scalar(value: Any, annotation: Any, base_dir: Path | None) -> Any:
    if annotation is bool:
        if not isinstance(value, bool):
            raise TypeError(f"must be true or false, got {value!r}")
        return value
    if annotation is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"must be an integer, got {value!r}")
        return value
    if annotation is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise TypeError(f"must be a number, got {value!r}")
        return float(value)
    if annotation is str:
        if not isinstance(value, str):
            raise TypeError(f"must be a string, got {value!r}")
        return value
    if annotation in (Path, InputPath):
        if not isinstance(value, str | Path):
            raise TypeError(f"must be a path, got {value!r}")
        resolved = resolve_path(str(value), base_dir)
        if annotation is InputPath and "://" not in resolved and not _exists(resolved):
            shown = resolved if len(resolved) <= 300 else resolved[:300] + "..."
            raise ValueError(f"names {shown}, which does not exist")
        return resolved
    raise TypeError(f"unsupported argument type {annotation!r}")


def _exists(path: str) -> bool:
    """Whether ``path`` exists; a name no filesystem accepts (too long, a NUL) does not."""
    try:
        return Path(path).exists()
    except (OSError, ValueError):
        return False


def resolve_path(value: str, base_dir: Path | None) -> str:
    """Absolute form of a path; ``file://`` becomes a plain path; other URIs (``s3://``,
    ``http://``) stay as they are."""
    if value.startswith("file://"):
        value = value[len("file://") :]
    if "://" in value:
        return value
    path = Path(value).expanduser()
    if not path.is_absolute() and base_dir is not None:
        path = base_dir / path
    return str(path.resolve())


def check_args(cls: type, args: dict[str, Any], base_dir: Path | None) -> dict[str, Any]:
    """Validate ``args`` for ``cls``; returns converted kwargs.

    Raises:
        ValueError: one message listing every problem, with the accepted arguments.
    """
    specs = {s.name: s for s in arg_specs(cls)}
    problems = []
    converted: dict[str, Any] = {}
    for key, value in args.items():
        spec = specs.get(key)
        if spec is None:
            problems.append(f"unknown argument {key!r}")
            continue
        try:
            converted[key] = check_value(value, spec.annotation, base_dir)
        except (TypeError, ValueError) as exc:
            problems.append(f"argument {key!r} {exc}")
    for spec in specs.values():
        if spec.required and spec.name not in args:
            problems.append(f"missing required argument {spec.name!r}")
    if problems:
        accepted = ", ".join(s.describe() for s in specs.values()) or "(none)"
        raise ValueError("; ".join(problems) + f" (accepted: {accepted})")
    return converted
