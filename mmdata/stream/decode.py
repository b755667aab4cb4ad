"""Decoding hooks for ``ShardStream(decode={column: hook})``: stored values -> tensors."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from mmdata.models.regions.geometry import layout
from mmdata.models.regions.rows import class_probs_of, features_of


def image_tensor(data: bytes | None) -> torch.Tensor | None:
    """Encoded image bytes -> a (3, H, W) uint8 tensor (torchvision.io; Pillow fallback)."""
    if data is None:
        return None
    from torchvision.io import ImageReadMode, decode_image

    try:
        raw = torch.frombuffer(bytearray(data), dtype=torch.uint8)
        pixels = decode_image(raw, mode=ImageReadMode.RGB)
        # 16-bit PNGs decode to uint16: keep the top 8 bits, as mmdata.core.imagefile.to_rgb
        return pixels if pixels.dtype == torch.uint8 else (pixels >> 8).to(torch.uint8)
    except RuntimeError:  # a format torchvision's decoders lack: Pillow reads it
        import io

        from PIL import Image

        from mmdata.core.imagefile import to_rgb

        with Image.open(io.BytesIO(data)) as image:
            rgb = np.asarray(to_rgb(image))
        return torch.from_numpy(rgb.copy()).permute(2, 0, 1)


def one_chunk(column: pa.Array | pa.ChunkedArray) -> pa.Array:
    """``column`` as one array; a single chunk as it is (combine_chunks copies it)."""
    if isinstance(column, pa.ChunkedArray):
        return column.chunk(0) if column.num_chunks == 1 else column.combine_chunks()
    return column


class RegionTensors:
    """A decode hook turning a ``regions`` value into fixed-size tensors with a padding mask.

    Gives ``features`` (max_boxes, D) in ``dtype``, ``boxes`` (max_boxes, k) in
    ``box_layout`` (mmdata.models.regions.geometry), ``classes`` and ``attributes`` (long, 0 on
    padding), ``mask`` (True for real boxes) and, with ``soft_labels``, ``class_probs``
    (max_boxes, C) float32 (zeros when the row has none), and with ``tags`` the boxes'
    tag names (a list, Oscar's object tags). Boxes past ``max_boxes`` are
    dropped (the stored order is best first). float16 features halve the bytes a
    DataLoader moves between processes.

    Called with one stored value (a dict), or through ``arrow`` with a row group's whole
    Arrow column: ShardStream uses the latter, which reads only the fields it needs
    straight from the Arrow buffers instead of building every field as Python objects.
    """

    def __init__(
        self,
        max_boxes: int = 100,
        box_layout: str = "uniter7",
        dtype: torch.dtype = torch.float32,
        soft_labels: bool = False,
        tags: bool = False,
    ) -> None:
        self.max_boxes, self.box_layout, self.dtype = max_boxes, box_layout, dtype
        self.soft_labels, self.tags = soft_labels, tags
        self.width = layout(np.zeros((0, 7), np.float32), box_layout).shape[1]
        # numpy casts the stored float16 straight into the tensor's memory (one pass);
        # torch-only dtypes (bfloat16) go through float32
        self.numpy_cast = dtype in (torch.float16, torch.float32, torch.float64)

    def __call__(self, regions: Mapping[str, Any] | None) -> dict[str, Any]:
        if regions is None:
            return self._tensors(0, 0, None, None, None, None, None, None)
        return self._tensors(
            regions["num_boxes"],
            regions["feature_dim"],
            features_of(regions),
            np.asarray(regions["boxes_norm7"], np.float32).reshape(-1, 7),
            regions["object_ids"],
            regions.get("attribute_ids"),
            class_probs_of(regions) if self.soft_labels else None,
            regions.get("tags"),
        )

    def arrow(self, column: pa.Array) -> list[dict[str, Any]]:
        """One decoded value per row of a ``regions`` Arrow column (a row group's)."""
        column = one_chunk(column)
        valid = column.is_valid().to_numpy(zero_copy_only=False)
        count = _ints(column.field("num_boxes"))
        dims = _ints(column.field("feature_dim"))
        features = _binary_rows(column.field("features_f16"))
        boxes = _list_rows(column.field("boxes_norm7"), 7)
        classes = _list_rows(column.field("object_ids"))
        attributes = _list_rows(column.field("attribute_ids"))
        probs = _binary_rows(column.field("class_probs_f16")) if self.soft_labels else None
        classes_n = _ints(column.field("num_classes")) if self.soft_labels else None
        tags = column.field("tags").to_pylist() if self.tags else [None] * len(column)
        out = []
        for i in range(len(column)):
            if not valid[i]:
                out.append(self._tensors(0, 0, None, None, None, None, None, None))
                continue
            n, dim = int(count[i]), int(dims[i])
            row_probs = None
            if probs is not None and probs[i] is not None:
                row_probs = np.frombuffer(probs[i], "<f2").reshape(n, int(classes_n[i]))
            feats = np.frombuffer(features[i], "<f2").reshape(n, dim)
            out.append(
                self._tensors(
                    n, dim, feats, boxes[i], classes[i], attributes[i], row_probs, tags[i]
                )
            )
        return out

    def _tensors(
        self,
        count: int,
        dim: int,
        features: np.ndarray | None,
        boxes_norm7: np.ndarray | None,
        classes: Any,
        attributes: Any,
        probs: np.ndarray | None,
        tags: list[str] | None,
    ) -> dict[str, Any]:
        m = self.max_boxes
        n = min(count, m)
        out = {
            # all rows are written below when the image fills max_boxes: no zeroing pass
            "features": (torch.empty if n == m else torch.zeros)(m, dim, dtype=self.dtype),
            "boxes": torch.zeros(m, self.width),
            "classes": torch.zeros(m, dtype=torch.long),
            "attributes": torch.zeros(m, dtype=torch.long),
            "mask": torch.zeros(m, dtype=torch.bool),
        }
        if self.soft_labels:
            width = 0 if probs is None else probs.shape[1]
            out["class_probs"] = torch.zeros(m, width)
            if probs is not None and n:
                out["class_probs"].numpy()[:n] = probs[:n]
        if n:
            if self.numpy_cast:
                out["features"].numpy()[:n] = features[:n]
            else:
                out["features"][:n] = torch.from_numpy(features[:n].astype(np.float32)).to(
                    self.dtype
                )
            geometry = np.asarray(boxes_norm7[:n], np.float32)
            out["boxes"].numpy()[:n] = layout(geometry, self.box_layout)
            out["classes"].numpy()[:n] = np.asarray(classes[:n])
            if attributes is not None:
                out["attributes"].numpy()[:n] = np.asarray(attributes[:n])
            out["mask"][:n] = True
        if self.tags:
            out["tags"] = list(tags or [])[:m]
        return out


def region_tensors(
    max_boxes: int = 100,
    box_layout: str = "uniter7",
    dtype: torch.dtype = torch.float32,
    soft_labels: bool = False,
    tags: bool = False,
) -> RegionTensors:
    """The decode hook for ``regions`` (see RegionTensors)."""
    return RegionTensors(max_boxes, box_layout, dtype, soft_labels, tags)


def _ints(array: pa.Array) -> np.ndarray:
    return array.fill_null(0).to_numpy(zero_copy_only=False)


def _binary_rows(array: pa.Array) -> list[memoryview | None]:
    """Each row's bytes of a binary Arrow array as a view of its buffer (no copy)."""
    kind = np.int64 if pa.types.is_large_binary(array.type) else np.int32
    offsets = np.frombuffer(array.buffers()[1], kind)[array.offset : array.offset + len(array) + 1]
    data = array.buffers()[2]
    view = memoryview(data) if data is not None else memoryview(b"")
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return [view[offsets[i] : offsets[i + 1]] if valid[i] else None for i in range(len(array))]


def _list_rows(array: pa.Array, width: int | None = None) -> list[np.ndarray | None]:
    """Each row of a list Arrow array (of numbers, or of ``width``-wide fixed-size lists)
    as a numpy array (a view where Arrow allows)."""
    flat = array.flatten()
    if width is not None:
        flat = flat.flatten()
    values = flat.to_numpy(zero_copy_only=False)
    if width is not None:
        values = values.reshape(-1, width)
    lengths = pc.fill_null(pc.list_value_length(array), 0).to_numpy(zero_copy_only=False)
    ends = np.cumsum(lengths)
    valid = array.is_valid().to_numpy(zero_copy_only=False)
    return [
        values[end - length : end] if valid[i] else None
        for i, (end, length) in enumerate(zip(ends, lengths))
    ]


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
