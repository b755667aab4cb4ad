"""Detector regions per image: boxes, pooled features, classes, attributes, tags."""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa

from mmdata.core.args import InputPath
from mmdata.core.batch import WORK_SCHEMA, mark, set_columns
from mmdata.core.imagefile import MAX_PIXELS, ImageError
from mmdata.core.io import read_bytes
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_ERROR
from mmdata.core.stage import PREPARED, Resources, Stage


def gold_boxes_xyxy(gold: dict[str, Any] | None) -> np.ndarray:
    """The gold objects' boxes (COCO/VG ``xywh`` pixels) as ``(n, 4)`` x1, y1, x2, y2."""
    boxes = [
        o["box_xywh_px"]
        for o in ((gold or {}).get("objects") or [])
        if o.get("box_xywh_px") is not None
    ]
    xywh = np.asarray(boxes, dtype=np.float32).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


@STAGES.register("regions")
class Regions(Stage):
    """Run a Faster R-CNN over each image and fill ``regions``.

    ``prepare`` (CPU tasks under Ray) decodes and resizes; ``process`` (one actor per GPU
    with ``resources: {num_gpus: 1}``) runs padded batches of ``batch_size`` images.
    An image that does not decode becomes an error row naming the image and its file.
    With ``given_boxes`` the features are pooled for the gold object boxes (COCO, VG)
    instead of detected ones; an image with no gold box gets zero regions.
    """

    reads = ("image_bytes",)
    writes = ("regions",)
    stateful = True
    default_resources = Resources(num_cpus=1.0, batch_size=16)

    def __init__(
        self,
        *,
        model: str = "butd-r101-c4-vg",
        weights: InputPath | None = None,
        model_config: InputPath | None = None,
        min_boxes: int = 10,
        max_boxes: int = 100,
        score_thresh: float = 0.2,
        nms_thresh: float = 0.3,
        fixed_boxes: int | None = None,
        given_boxes: bool = False,
        device: str = "auto",
        precision: str = "auto",
        batch_size: int | None = None,
        input_min_size: int | None = None,
        input_max_size: int | None = None,
        proposals: int | None = None,
        soft_labels: bool = False,
        max_pixels: int = MAX_PIXELS,
    ) -> None:
        """Args:
        model: butd-r101-c4-vg, torchvision-frcnn or detectron2.
        weights: checkpoint file (.pkl or .pth; detectron2: anything its checkpointer reads).
        model_config: butd: JSON of ButdConfig fields; torchvision: JSON (num_classes,
            class_names); detectron2: its YAML config (required).
        min_boxes, max_boxes, score_thresh: keep boxes whose best class survives per-class
            NMS (``nms_thresh``) with score >= score_thresh, clamped to [min, max].
        fixed_boxes: exactly this many boxes per image (e.g. 36) instead.
        given_boxes: pool the gold object boxes instead of detecting.
        device: auto (cuda when available), cpu, cuda or cuda:N.
        precision: auto (fp16 on cuda, fp32 on cpu), fp32, fp16 or bf16 (cuda autocast).
        batch_size: images per forward pass (padded to the largest); default 8 on cuda,
            1 on cpu, where batching only costs (docs/benchmarks.md).
        input_min_size, input_max_size: resize shorter side to min unless longer > max
            (butd default 600 / 1000).
        proposals: RPN boxes kept after NMS (butd default 300).
        soft_labels: also store each box's full class distribution (MRC-kl, UNITER).
        max_pixels: refuse larger images (decompression bombs).
        """
        from mmdata.models.regions.selection import MODELS, Selection

        if model not in MODELS:
            raise ValueError(f"unknown region model {model!r}; choose from {', '.join(MODELS)}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.selection = Selection(
            min_boxes, max_boxes, score_thresh, nms_thresh, fixed_boxes, soft_labels
        )
        self.selection.check()
        self.model, self.weights, self.model_config = model, weights, model_config
        self.given_boxes, self.device, self.precision = given_boxes, device, precision
        self.batch_size, self.max_pixels = batch_size, max_pixels
        self.input_min_size, self.input_max_size = input_min_size, input_max_size
        self.proposals = proposals
        self._extractor = None

    def setup(self) -> None:
        from mmdata.models.regions.factory import build_extractor  # torch model: only in workers

        self._extractor = build_extractor(
            self.model,
            self.weights,
            selection=self.selection,
            device=self.device,
            precision=self.precision,
            model_config=self.model_config,
            input_min_size=self.input_min_size,
            input_max_size=self.input_max_size,
            proposals=self.proposals,
        )

    def prepare(self, table: pa.Table) -> pa.Table:
        from mmdata.models.regions.preprocess import prepare
        from mmdata.models.regions.sizes import input_sizes

        min_size, max_size = input_sizes(
            self.model, self.model_config, self.input_min_size, self.input_max_size
        )
        blobs: list[bytes | None] = []
        failed: dict[int, str] = {}
        reasons: dict[int, str] = {}
        rows = table.select(["image_id", "path", "image_bytes"]).to_pylist()
        for i, row in enumerate(rows):
            try:
                data = row["image_bytes"]
                if data is None:
                    if not row["path"]:
                        raise ImageError("no_image", "no image bytes and no path")
                    data = read_bytes(row["path"])
                blobs.append(prepare(data, min_size, max_size, self.max_pixels).to_bytes())
            except (ImageError, OSError) as exc:
                reasons[i] = getattr(exc, "reason", "image_read_error")
                failed[i] = f"{row['image_id']} ({row['path'] or 'image_bytes'}): {exc}"
                blobs.append(None)
        table = table.append_column(PREPARED, pa.array(blobs, pa.binary()))
        for reason in set(reasons.values()):
            mask = pa.array([reasons.get(i) == reason for i in range(len(rows))])
            detail = pa.array([failed.get(i) for i in range(len(rows))], pa.string())
            table = mark(table, mask, STATUS_ERROR, reason, detail)
        return table

    def process(self, table: pa.Table) -> pa.Table:
        from mmdata.models.regions.preprocess import Prepared

        if self._extractor is None:
            self.setup()
        if PREPARED not in table.column_names:
            table = self.prepare(table)  # called directly, without an executor
        blobs = table.column(PREPARED).to_pylist()
        golds = table.column("gold").to_pylist() if self.given_boxes else [None] * len(blobs)
        regions: list[dict | None] = [None] * len(blobs)
        prepared = {i: Prepared.from_bytes(b) for i, b in enumerate(blobs) if b is not None}
        # same-shaped images side by side: a padded batch then wastes the least compute
        todo = sorted(prepared, key=lambda i: prepared[i].pixels.shape[:2])
        size = self.batch_size or (8 if self._extractor.device.type == "cuda" else 1)
        for start in range(0, len(todo), size):
            idx = todo[start : start + size]
            images = [prepared[i] for i in idx]
            given = [gold_boxes_xyxy(golds[i]) for i in idx] if self.given_boxes else None
            for i, row in zip(idx, self._extractor.extract(images, given)):
                regions[i] = row
        column = pa.array(regions, WORK_SCHEMA.field("regions").type)
        return set_columns(table, {"regions": column})
