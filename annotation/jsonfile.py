"""Loading annotation JSON with errors that name the file and the position."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import ijson

from annotation.records import is_id
from mmdata.core.errors import InputFormatError


class AnnotationError(InputFormatError):
    """An annotation file that cannot be read as its format; names file and record."""


def require_keys(record: Any, keys: tuple[str, ...], path: str, where: str) -> None:
    """Raise AnnotationError unless ``record`` is an object holding every key."""
    if not isinstance(record, dict):
        raise AnnotationError(f"{path}: {where} is {type(record).__name__}, expected an object")
    missing = [k for k in keys if k not in record]
    if missing:
        raise AnnotationError(f"{path}: {where} lacks key(s) {missing}")


def require_ids(record: dict, keys: tuple[str, ...], path: str, where: str) -> None:
    """Raise AnnotationError unless each of ``keys`` holds an int or a non-empty string
    (ids are dictionary keys and joins: a list or a float there is a broken file)."""
    for key in keys:
        if not is_id(record[key]):
            raise AnnotationError(
                f"{path}: {where}: {key} is {record[key]!r}, expected an int or a string"
            )


def iter_array(path: str, prefix: str = "item") -> Iterator[Any]:
    """Stream the elements of one JSON array without loading the file.

    ``prefix`` is ijson's path: ``item`` for a top-level array, ``images.item`` for the
    array under the top-level key ``images``. Numbers come back as int/float (not
    Decimal). Malformed JSON raises AnnotationError naming the file and the byte offset
    the parser had reached (it reads 64 KiB at a time, so the fault is in the 64 KiB
    before it).
    """
    try:
        handle = open(path, "rb")  # noqa: SIM115 - closed in finally, generator-safe
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    try:
        yield from ijson.items(handle, prefix, use_float=True)
    except ijson.JSONError as exc:
        raise AnnotationError(
            f"{path}: malformed JSON before byte {handle.tell()}: {exc}"
        ) from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 near byte {handle.tell()}: {exc}") from None
    finally:
        handle.close()
