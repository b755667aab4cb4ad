"""Loading annotation JSON with errors that name the file and the position."""

from __future__ import annotations

import functools
import json
import os
from typing import Any

from mmdata.errors import InputFormatError


class AnnotationError(InputFormatError):
    """An annotation file that cannot be read as its format; names file and record."""


def load_json(path: str) -> Any:
    """Parse ``path``, cached per process by (path, size, mtime) so Ray tasks reading
    partitions of the same file parse it once per worker."""
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    return _load_cached(path, stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=4)
def _load_cached(path: str, size: int, mtime_ns: int) -> Any:
    with open(path, "rb") as handle:
        try:
            return json.load(handle)
        except json.JSONDecodeError as exc:
            raise AnnotationError(
                f"{path}: malformed JSON at line {exc.lineno} column {exc.colno} "
                f"(byte {exc.pos}): {exc.msg}"
            ) from None
        except UnicodeDecodeError as exc:
            raise AnnotationError(f"{path}: not UTF-8 at byte {exc.start}") from None


def require_keys(record: Any, keys: tuple[str, ...], path: str, where: str) -> None:
    """Raise AnnotationError unless ``record`` is an object holding every key."""
    if not isinstance(record, dict):
        raise AnnotationError(f"{path}: {where} is {type(record).__name__}, expected an object")
    missing = [k for k in keys if k not in record]
    if missing:
        raise AnnotationError(f"{path}: {where} lacks key(s) {missing}")
