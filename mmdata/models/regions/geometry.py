"""Box geometry: what mmdata stores, and the variants each VLP model reads.

Stored per box: ``x1, y1, x2, y2`` in original-image pixels and the 7-d normalised
geometry UNITER uses, ``[x1/w, y1/h, x2/w, y2/h, bw/w, bh/h, bw*bh/(w*h)]``. The other
layouts are derived from those on read, so one corpus feeds every model:

========== ======================================================= ===================
layout     values                                                  read by
========== ======================================================= ===================
uniter7    x1, y1, x2, y2, w, h, area (all normalised)             UNITER, VILLA
vilbert5   x1, y1, x2, y2, area                                    ViLBERT, ERNIE-ViL
lxmert4    x1, y1, x2, y2                                          LXMERT, VisualBERT
oscar6     x1, y1, x2, y2, w, h (appended to the 2048-d feature)   Oscar, VinVL (2054)
========== ======================================================= ===================
"""

from __future__ import annotations

import numpy as np

LAYOUTS = {"uniter7": 7, "vilbert5": 5, "lxmert4": 4, "oscar6": 6}


def normalised7(boxes: np.ndarray, width: int, height: int) -> np.ndarray:
    """``(n, 4)`` pixel boxes -> ``(n, 7)`` float32 UNITER geometry."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    scale = np.array([width, height, width, height], dtype=np.float32)
    xyxy = boxes / scale
    w = xyxy[:, 2] - xyxy[:, 0]
    h = xyxy[:, 3] - xyxy[:, 1]
    return np.concatenate([xyxy, w[:, None], h[:, None], (w * h)[:, None]], axis=1)


def layout(geometry7: np.ndarray, name: str) -> np.ndarray:
    """One of :data:`LAYOUTS` from the stored 7-d geometry."""
    g = np.asarray(geometry7, dtype=np.float32).reshape(-1, 7)
    if name == "uniter7":
        return g
    if name == "vilbert5":
        return g[:, [0, 1, 2, 3, 6]]
    if name == "lxmert4":
        return g[:, :4]
    if name == "oscar6":
        return g[:, :6]
    raise ValueError(f"unknown box layout {name!r}; choose from {', '.join(LAYOUTS)}")


def with_geometry(features: np.ndarray, geometry7: np.ndarray, name: str = "oscar6") -> np.ndarray:
    """Features with the ``name`` geometry appended: Oscar's 2048 + 6 = 2054 inputs."""
    extra = layout(geometry7, name).astype(features.dtype)
    return np.concatenate([features, extra], axis=1)
