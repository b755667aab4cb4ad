"""Checks shared by importers; each returns a reject ``(reason, detail)`` or None."""

from __future__ import annotations

import math
from typing import Any

#: Boxes may overhang the image by this many pixels (annotation tools round outward).
BOX_SLACK_PX = 1.0


def box_problem(box: Any, width: Any, height: Any) -> tuple[str, str] | None:
    """Check an ``[x, y, w, h]`` pixel box against the image size."""
    if not isinstance(box, list | tuple) or len(box) != 4:
        return "bad_box", f"box {box!r} is not [x, y, w, h]"
    if not all(
        isinstance(v, int | float) and not isinstance(v, bool) and math.isfinite(v) for v in box
    ):
        return "bad_box", f"box {box!r} has a non-number"
    x, y, w, h = box
    if w <= 0 or h <= 0:
        return "non_positive_box", f"box {list(box)} has width or height <= 0"
    if (
        isinstance(width, int | float)
        and isinstance(height, int | float)
        and (
            x < -BOX_SLACK_PX
            or y < -BOX_SLACK_PX
            or x + w > width + BOX_SLACK_PX
            or y + h > height + BOX_SLACK_PX
        )
    ):
        return "box_outside_image", f"box {list(box)} outside the {width}x{height} image"
    return None


def item_reject(
    kind: str,
    item_id: Any,
    reason: str,
    detail: str,
    text: str | None = None,
    status: str = "rejected",
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
