"""``torchvision-frcnn``: torchvision's ResNet-50 FPN Faster R-CNN with the user's weights.

A lighter extractor than bottom-up attention: 1024-d region features (the box head's
two-layer MLP over 7x7 RoIAlign on the FPN), classes from the user's label set (COCO's 91
by default, background at index 0 as torchvision orders it), no attributes.

torchvision's own parts do the work (backbone, RPN, RoI heads and their post-processing);
mmdata only feeds them its prepared images and pools the kept boxes again for features.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.models.detection import FasterRCNN_ResNet50_FPN_Weights, fasterrcnn_resnet50_fpn
from torchvision.models.detection.image_list import ImageList

from mmdata.core.devices import autocast
from mmdata.models.regions.base import extractor_id
from mmdata.models.regions.boxes import clip
from mmdata.models.regions.checkpoint import file_sha256, fit_state, read_checkpoint
from mmdata.models.regions.preprocess import Prepared
from mmdata.models.regions.rows import region_row
from mmdata.models.regions.selection import ExtractorError, Selection

NAME = "torchvision-frcnn"


def load_labels(path: str | Path | None) -> tuple[str, ...]:
    """Class names, background first: from ``{"class_names": [...]}`` or COCO's 91."""
    if path is None:
        return tuple(FasterRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"])
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        names = data["class_names"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExtractorError(
            f'{path}: expected JSON {{"class_names": [background, ...]}}: {exc}'
        ) from None
    if len(names) < 2 or not all(isinstance(n, str) for n in names):
        raise ExtractorError(f"{path}: class_names must be >= 2 strings, background first")
    return tuple(names)


class TorchvisionExtractor:
    """torchvision's detector with its weights, on one device."""

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
    ) -> None:
        if weights is None:
            raise ExtractorError(f"{NAME} needs weights: a torchvision state dict (.pth)")
        self.labels = load_labels(model_config)
        self.min_size, self.max_size = input_min_size or 800, input_max_size or 1333
        self.model = fasterrcnn_resnet50_fpn(
            weights=None,
            weights_backbone=None,
            num_classes=len(self.labels),
            min_size=self.min_size,
            max_size=self.max_size,
        ).eval()
        state, _ = read_checkpoint(weights)
        self.model.load_state_dict(fit_state(state, self.model, False, str(weights)))
        self.model.to(device)
        self.device, self.precision, self.selection = device, precision, selection
        config = {"labels": self.labels, "min_size": self.min_size, "max_size": self.max_size}
        self.extractor_id = extractor_id(NAME, config, file_sha256(weights), selection)

    def _images(self, images: Sequence[Prepared]) -> ImageList:
        tensors = []
        for p in images:
            rgb = torch.from_numpy(np.ascontiguousarray(p.pixels[:, :, ::-1])).to(self.device)
            tensors.append(self.model.transform.normalize(rgb.permute(2, 0, 1).float() / 255.0))
        sizes = [tuple(t.shape[-2:]) for t in tensors]
        return ImageList(self.model.transform.batch_images(tensors), sizes)

    def _pool(self, features: dict, boxes: list[torch.Tensor], sizes: list) -> torch.Tensor:
        heads = self.model.roi_heads
        return heads.box_head(heads.box_roi_pool(features, boxes, sizes))

    @torch.no_grad()
    def extract(
        self, images: Sequence[Prepared], given: Sequence[np.ndarray | None] | None = None
    ) -> list[dict[str, Any]]:
        if not images:
            return []
        image_list = self._images(images)
        scales = [p.scale for p in images]
        with autocast(self.device, self.precision):
            features = self.model.backbone(image_list.tensors)
            if given is not None and given[0] is not None:
                boxes = [
                    torch.as_tensor(np.asarray(g, np.float32).reshape(-1, 4), device=self.device)
                    * s
                    for g, s in zip(given, scales)
                ]
            else:
                proposals, _ = self.model.rpn(image_list, features)
                boxes = self._detect(features, proposals, image_list.image_sizes)
            pooled = self._pool(features, boxes, image_list.image_sizes)
            logits, _ = self.model.roi_heads.box_predictor(pooled)
        probs = F.softmax(logits.float(), dim=-1).cpu()
        out, start = [], 0
        for i, (p, b) in enumerate(zip(images, boxes)):
            end = start + len(b)
            is_given = given is not None and given[i] is not None
            kept = np.asarray(given[i], np.float32).reshape(-1, 4) if is_given else None
            out.append(self._row(p, b, pooled[start:end], probs[start:end], kept))
            start = end
        return out

    def _detect(
        self, features: dict, proposals: list[torch.Tensor], sizes: list
    ) -> list[torch.Tensor]:
        """torchvision's post-processing with mmdata's thresholds; fewer than the minimum
        boxes: the best ones at any score."""
        heads = self.model.roi_heads
        low, high = self.selection.bounds()
        heads.nms_thresh, heads.detections_per_img = self.selection.nms_thresh, high
        heads.score_thresh = 0.0 if self.selection.fixed_boxes else self.selection.score_thresh
        found, _ = heads(features, proposals, sizes)
        out = []
        for i, det in enumerate(found):
            boxes = det["boxes"]
            if len(boxes) < low:  # best first (batched_nms sorts by score)
                heads.score_thresh = 0.0
                boxes = heads(features, [proposals[i]], [sizes[i]])[0][0]["boxes"][:low]
                heads.score_thresh = self.selection.score_thresh
            out.append(boxes[:high])
        return out

    def _row(
        self,
        image: Prepared,
        boxes: torch.Tensor,
        pooled: torch.Tensor,
        probs: torch.Tensor,
        given: np.ndarray | None,
    ) -> dict[str, Any]:
        conf, cls = probs[:, 1:].max(dim=1)  # torchvision: background is 0, as in mmdata
        ids = (cls + 1).numpy()
        if given is None:
            kept = clip(boxes.float().cpu() / image.scale, image.height, image.width).numpy()
        else:
            kept = given
        return region_row(
            extractor_id=self.extractor_id,
            width=image.width,
            height=image.height,
            boxes=kept,
            features=pooled.float().cpu().numpy(),
            object_ids=ids,
            object_conf=conf.numpy(),
            object_names=[self.labels[i] for i in ids],
            class_probs=probs.numpy() if self.selection.soft_labels else None,
            boxes_given=given is not None,
        )
