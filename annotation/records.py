"""Checks shared by importers; each returns a reject ``(reason, detail)`` or None."""

from __future__ import annotations

import math
from typing import Any

_NUMBER = (int, float)
#: Boxes may overhang the image by this many pixels (annotation tools round outward).
BOX_SLACK_PX = 1.0


def box_problem(box: Any, width: Any, height: Any) -> tuple[str, str] | None:
    """Check an ``[x, y, w, h]`` pixel box against the image size."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return "bad_box", f"box {box!r} is not [x, y, w, h]"
    x, y, w, h = box
    # Exact types (bool is an int subclass); NaN or inf anywhere makes the sum non-finite.
    # Written out, not as all(...): this runs for every object of every VG image.
    numbers = type(x) in _NUMBER and type(y) in _NUMBER and type(w) in _NUMBER
    if not (numbers and type(h) in _NUMBER and math.isfinite(x + y + w + h)):
        return "bad_box", f"box {box!r} has a non-number"
    if w <= 0 or h <= 0:
        return "non_positive_box", f"box {list(box)} has width or height <= 0"
    if (
        type(width) in _NUMBER
        and type(height) in _NUMBER
        and (
            x < -BOX_SLACK_PX
            or y < -BOX_SLACK_PX
            or x + w > width + BOX_SLACK_PX
            or y + h > height + BOX_SLACK_PX
        )
    ):
        return "box_outside_image", f"box {list(box)} outside the {width}x{height} image"
    return None


#: The largest image side an annotation may claim (larger: a typo or hostile input).
MAX_SIDE_PX = 1 << 20


def is_id(value: Any) -> bool:
    """An id a record may carry: an int (not a bool) or a non-empty string."""
    return type(value) is int or (type(value) is str and value != "")


def size_problem(width: Any, height: Any) -> tuple[str, str] | None:
    """Check an image's annotated pixel size: two ints in 1..MAX_SIDE_PX."""
    for name, value in (("width", width), ("height", height)):
        if type(value) is not int or not 0 < value <= MAX_SIDE_PX:
            return "bad_size", f"{name} {value!r} is not a pixel count in 1..{MAX_SIDE_PX}"
    return None


# Fields an importer only carries along: a wrong type becomes null (the row still fits
# the schema), while the fields it checks become rejects.


def number_or_none(value: Any) -> float | None:
    finite = type(value) in _NUMBER and math.isfinite(value) and abs(value) < 1e300
    return float(value) if finite else None


def text_or_none(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def pixels_or_none(value: Any) -> int | None:
    return value if type(value) is int and 0 < value <= MAX_SIDE_PX else None
