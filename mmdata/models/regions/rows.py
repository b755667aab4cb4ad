"""Region rows (the REGIONS struct of mmdata.core.schema): build one, read its arrays back."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from mmdata.models.regions.geometry import normalised7


def region_row(
    *,
    extractor_id: str,
    width: int,
    height: int,
    boxes: np.ndarray,
    features: np.ndarray,
    object_ids: np.ndarray,
    object_conf: np.ndarray,
    object_names: Sequence[str],
    attribute_ids: np.ndarray | None = None,
    attribute_conf: np.ndarray | None = None,
    attribute_names: Sequence[str] | None = None,
    class_probs: np.ndarray | None = None,
    boxes_given: bool = False,
) -> dict[str, Any]:
    """One image's detector output as a REGIONS dict (features stored as float16)."""
    boxes = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    features = np.asarray(features)
    n = len(boxes)
    if features.shape[0] != n:
        raise ValueError(f"{features.shape[0]} feature rows for {n} boxes")
    probs = None if class_probs is None else np.asarray(class_probs, dtype="<f2")
    return {
        "extractor_id": extractor_id,
        "image_width_px": int(width),
        "image_height_px": int(height),
        "num_boxes": n,
        "boxes_xyxy_px": boxes.tolist(),
        "boxes_norm7": normalised7(boxes, width, height).tolist(),
        "boxes_given": bool(boxes_given),
        "feature_dim": int(features.shape[1]) if features.ndim == 2 else 0,
        "features_f16": np.ascontiguousarray(features, dtype="<f2").tobytes(),
        "object_ids": np.asarray(object_ids, dtype=np.int32).tolist(),
        "object_conf": np.asarray(object_conf, dtype=np.float32).tolist(),
        "attribute_ids": None
        if attribute_ids is None
        else np.asarray(attribute_ids, dtype=np.int32).tolist(),
        "attribute_conf": None
        if attribute_conf is None
        else np.asarray(attribute_conf, dtype=np.float32).tolist(),
        "attribute_names": None if attribute_names is None else list(attribute_names),
        "class_probs_f16": None if probs is None else np.ascontiguousarray(probs).tobytes(),
        "num_classes": None if probs is None else int(probs.shape[1]),
        "background_index": None if probs is None else 0,
        "tags": list(object_names),
    }


def features_of(regions: Mapping[str, Any]) -> np.ndarray:
    """The ``(num_boxes, feature_dim)`` float16 features of a region row."""
    n, d = regions["num_boxes"], regions["feature_dim"]
    return np.frombuffer(regions["features_f16"], dtype="<f2").reshape(n, d)


def class_probs_of(regions: Mapping[str, Any]) -> np.ndarray | None:
    """The ``(num_boxes, num_classes)`` soft labels, background at ``background_index``."""
    if regions.get("class_probs_f16") is None:
        return None
    n, c = regions["num_boxes"], regions["num_classes"]
    return np.frombuffer(regions["class_probs_f16"], dtype="<f2").reshape(n, c)
