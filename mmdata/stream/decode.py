"""Decoding hooks for ``ShardStream(decode={column: hook})``: stored values -> tensors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from mmdata.regions.geometry import layout
from mmdata.regions.rows import features_of


def image_tensor(data: bytes | None) -> torch.Tensor | None:
    """Encoded image bytes -> a (3, H, W) uint8 tensor (torchvision.io; Pillow fallback)."""
    if data is None:
        return None
    from torchvision.io import ImageReadMode, decode_image

    try:
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        return decode_image(raw, mode=ImageReadMode.RGB)
    except RuntimeError:  # a format torchvision's decoders lack: Pillow reads it
        import io

        from PIL import Image

        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(image.convert("RGB"))
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def region_tensors(
    max_boxes: int = 100, box_layout: str = "uniter7", dtype: torch.dtype = torch.float32
) -> Callable[[Mapping[str, Any] | None], dict[str, torch.Tensor]]:
    """A hook turning a ``regions`` value into fixed-size tensors with a padding mask.

    Returns ``features`` (max_boxes, D) float32, ``boxes`` (max_boxes, k) in
    ``box_layout`` (mmdata.regions.geometry), ``classes`` and ``attributes`` (long, 0 on
    padding), ``mask`` (True for real boxes). Boxes past ``max_boxes`` are dropped (the
    stored order is best first). ``dtype`` is the features' (float16 halves the bytes a
    DataLoader moves between processes).
    """

    def hook(regions: Mapping[str, Any] | None) -> dict[str, torch.Tensor]:
        n = 0 if regions is None else min(regions["num_boxes"], max_boxes)
        dim = 0 if regions is None else regions["feature_dim"]
        width = layout(np.zeros((0, 7), np.float32), box_layout).shape[1]
        features = torch.zeros(max_boxes, dim, dtype=dtype)
        boxes = torch.zeros(max_boxes, width)
        classes = torch.zeros(max_boxes, dtype=torch.long)
        attributes = torch.zeros(max_boxes, dtype=torch.long)
        mask = torch.zeros(max_boxes, dtype=torch.bool)
        if n:
            features[:n] = torch.from_numpy(features_of(regions)[:n].astype(np.float32)).to(dtype)
            geometry = np.asarray(regions["boxes_norm7"], np.float32)[:n]
            boxes[:n] = torch.from_numpy(layout(geometry, box_layout))
            classes[:n] = torch.tensor(regions["object_ids"][:n])
            if regions.get("attribute_ids") is not None:
                attributes[:n] = torch.tensor(regions["attribute_ids"][:n])
            mask[:n] = True
        return {
            "features": features,
            "boxes": boxes,
            "classes": classes,
            "attributes": attributes,
            "mask": mask,
        }

    return hook


def scene_graph_spans(graph: Mapping[str, Any] | None) -> dict[str, list[tuple]]:
    """A caption's scene graph as span lists for masking (ERNIE-ViL):

    ``objects``: (start, end, head); ``attributes``: (start, end, object index);
    ``relations``: (start, end, subject index, object index). Spans index the caption.
    """
    out: dict[str, list[tuple]] = {"objects": [], "attributes": [], "relations": []}
    if not graph:
        return out
    for index, obj in enumerate(graph.get("objects") or []):
        if obj.get("span"):
            out["objects"].append((obj["span"]["start"], obj["span"]["end"], obj["head"]))
        for attr in obj.get("attributes") or []:
            if attr.get("span"):
                out["attributes"].append((attr["span"]["start"], attr["span"]["end"], index))
    for rel in graph.get("relations") or []:
        if rel.get("span"):
            span = rel["span"]
            out["relations"].append((span["start"], span["end"], rel["subject"], rel["object"]))
    return out
