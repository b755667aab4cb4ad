"""``butd-r101-c4-vg``: bottom-up-attention features as REGIONS rows."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from mmdata.core.devices import autocast
from mmdata.models.regions.base import extractor_id
from mmdata.models.regions.butd import ButdConfig, ButdDetector, Detections
from mmdata.models.regions.checkpoint import load_weights
from mmdata.models.regions.detections import detections_row
from mmdata.models.regions.preprocess import Prepared, batch
from mmdata.models.regions.selection import ExtractorError, Selection
from mmdata.models.regions.vocab import vg_vocabulary

NAME = "butd-r101-c4-vg"


def load_config(path: str | Path | None) -> ButdConfig:
    """``ButdConfig`` from a JSON file of its fields (defaults: the VG attribute model)."""
    if path is None:
        return ButdConfig()
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ExtractorError(f"{path}: cannot read the model config: {exc}") from None
    fields = {f.name: f for f in dataclasses.fields(ButdConfig)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ExtractorError(
            f"{path}: unknown config keys {unknown}; valid keys: {', '.join(sorted(fields))}"
        )
    values = {k: tuple(v) if isinstance(v, list) else v for k, v in data.items()}
    return ButdConfig(**values)


def class_names(count: int, kind: str) -> tuple[str, ...]:
    """VG names when the head has the VG size, else ``class_<i>`` (index 0 = background)."""
    vocab = vg_vocabulary(kind)
    if len(vocab) == count:
        return vocab.names
    return tuple(f"{kind[:-1]}_{i}" for i in range(count))


class ButdExtractor:
    """The bottom-up-attention detector with its weights, on one device."""

    def __init__(
        self,
        weights: str | Path | None,
        *,
        selection: Selection,
        device: torch.device,
        precision: str,
        model_config: str | Path | None = None,
        input_min_size: int | None = None,
        input_max_size: int | None = None,
        proposals: int | None = None,
    ) -> None:
        if weights is None:
            raise ExtractorError(
                f"{NAME} needs weights: a detectron2 checkpoint (.pkl or .pth), e.g. "
                "py-bottom-up-attention's faster_rcnn_from_caffe_attr.pkl"
            )
        overrides = {
            "min_size": input_min_size,
            "max_size": input_max_size,
            "rpn_post_nms_topk": proposals,
        }
        config = dataclasses.replace(
            load_config(model_config), **{k: v for k, v in overrides.items() if v is not None}
        )
        self.config, self.selection, self.device = config, selection, device
        self.min_size, self.max_size = config.min_size, config.max_size
        self.model = ButdDetector(config).eval()
        sha = load_weights(self.model, weights)
        self.model.to(device)
        self.channels_last = device.type == "cuda"
        if self.channels_last:
            self.model.to(memory_format=torch.channels_last)
        self.precision = precision
        self.objects = class_names(config.num_classes + 1, "objects")
        self.attributes = class_names(config.num_attributes + 1, "attributes")
        self.extractor_id = extractor_id(NAME, dataclasses.asdict(config), sha, selection)

    def extract(
        self, images: Sequence[Prepared], given: Sequence[np.ndarray | None] | None = None
    ) -> list[dict[str, Any]]:
        """REGIONS rows for ``images`` run as one padded batch."""
        if not images:
            return []
        given = list(given) if given is not None else [None] * len(images)
        if any(g is not None for g in given) and any(g is None for g in given):
            raise ExtractorError("a batch is either all given boxes or all detected")
        x, sizes = batch(images, self.config.pixel_mean, self.device, self.channels_last)
        scales = [p.scale for p in images]
        boxes = None
        if given[0] is not None:
            boxes = [torch.as_tensor(np.asarray(g, np.float32).reshape(-1, 4)) for g in given]
        with autocast(self.device, self.precision):
            detections = self.model.detect(x, sizes, scales, boxes)
        return [
            self.row(d, p, None if g is None else np.asarray(g, np.float32).reshape(-1, 4))
            for d, p, g in zip(detections, images, given)
        ]

    def row(self, det: Detections, image: Prepared, given: np.ndarray | None) -> dict[str, Any]:
        return detections_row(
            det, image, given, self.selection, self.extractor_id, self.objects, self.attributes
        )
