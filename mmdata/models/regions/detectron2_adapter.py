"""``detectron2``: any detectron2 Faster R-CNN (config + weights) as a region extractor.

detectron2 is optional and imported only here, when this model is asked for. Its own
parts run the network: ``preprocess_image``, the backbone, the proposal generator, and
the ROI heads' pooling and box predictor (C4 ``Res5ROIHeads`` or FPN ``StandardROIHeads``).
Boxes are then chosen by bottom-up attention's rule (mmdata.models.regions.butd.select_boxes)
over the proposals, whose pooled features are the region features, exactly as the
``butd-r101-c4-vg`` model does; so on the same weights the two agree.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from mmdata.models.regions.base import extractor_id
from mmdata.models.regions.butd import Detections
from mmdata.models.regions.checkpoint import file_sha256
from mmdata.models.regions.detections import detections_row
from mmdata.models.regions.preprocess import Prepared
from mmdata.models.regions.selection import ExtractorError, Selection

NAME = "detectron2"
INSTALL = (
    "the detectron2 model needs detectron2, which is not installed here: "
    "pip install 'git+https://github.com/facebookresearch/detectron2.git' "
    "(it has no working PyPI wheel; see ../shared/ENVIRONMENT.md), or use model: "
    "butd-r101-c4-vg, which loads detectron2 checkpoints without it"
)


def import_detectron2() -> Any:
    """The detectron2 package, or a clear error saying how to get it."""
    try:
        import detectron2  # noqa: F401
        from detectron2 import checkpoint, config, modeling, structures
    except ImportError as exc:
        raise ExtractorError(f"{INSTALL} ({exc})") from None
    return config, modeling, checkpoint, structures


class Detectron2Extractor:
    """A detectron2 model built from its YAML config, with its checkpointer's weights."""

    def __init__(
        self,
        weights: str | Path | None,
        *,
        selection: Selection,
        device: torch.device,
        model_config: str | Path | None = None,
        input_min_size: int | None = None,
        input_max_size: int | None = None,
    ) -> None:
        config, modeling, checkpoint, structures = import_detectron2()
        if model_config is None or weights is None:
            raise ExtractorError("the detectron2 model needs model_config (YAML) and weights")
        cfg = config.get_cfg()
        cfg.merge_from_file(str(model_config))
        cfg.MODEL.WEIGHTS = str(weights)
        cfg.MODEL.DEVICE = str(device)
        cfg.freeze()
        self.cfg, self.structures = cfg, structures
        self.model = modeling.build_model(cfg).eval()
        checkpoint.DetectionCheckpointer(self.model).load(str(weights))
        self.device, self.selection = device, selection
        self.min_size = input_min_size or cfg.INPUT.MIN_SIZE_TEST
        self.max_size = input_max_size or cfg.INPUT.MAX_SIZE_TEST
        # no vocabulary comes with a detectron2 config: classes are named by index
        self.names = tuple(f"class_{i}" for i in range(cfg.MODEL.ROI_HEADS.NUM_CLASSES + 1))
        self.extractor_id = extractor_id(NAME, cfg.dump(), file_sha256(weights), selection)

    def _pooled(self, features: dict, boxes: list) -> torch.Tensor:
        heads = self.model.roi_heads
        maps = [features[f] for f in heads.in_features]
        if hasattr(heads, "_shared_roi_transform"):  # C4: res5 on each region, then mean
            return heads._shared_roi_transform(maps, boxes).mean(dim=[2, 3])
        return heads.box_head(heads.box_pooler(maps, boxes))  # FPN: the MLP head

    @torch.no_grad()
    def extract(
        self, images: Sequence[Prepared], given: Sequence[np.ndarray | None] | None = None
    ) -> list[dict[str, Any]]:
        if not images:
            return []
        bgr = self.cfg.INPUT.FORMAT == "BGR"
        inputs = [
            {
                "image": torch.from_numpy(
                    np.ascontiguousarray(p.pixels if bgr else p.pixels[:, :, ::-1])
                ).permute(2, 0, 1),
                "height": p.height,
                "width": p.width,
            }
            for p in images
        ]
        batch = self.model.preprocess_image(inputs)
        features = self.model.backbone(batch.tensor)
        Boxes = self.structures.Boxes
        if given is not None and given[0] is not None:
            boxes = [
                Boxes(
                    torch.as_tensor(np.asarray(g, np.float32).reshape(-1, 4)).to(self.device)
                    * p.scale
                )
                for g, p in zip(given, images)
            ]
        else:
            proposals, _ = self.model.proposal_generator(batch, features, None)
            boxes = [p.proposal_boxes for p in proposals]
        pooled = self._pooled(features, boxes)
        logits = self.model.roi_heads.box_predictor(pooled)[0]
        probs = F.softmax(logits.float(), dim=-1)  # detectron2: background last
        out, start = [], 0
        for i, (p, b) in enumerate(zip(images, boxes)):
            end = start + len(b)
            found = Detections(
                boxes=b.tensor.float() / p.scale,
                features=pooled[start:end],
                class_probs=probs[start:end],
                attribute_probs=None,
            )
            kept = None
            if given is not None and given[i] is not None:
                kept = np.asarray(given[i], np.float32).reshape(-1, 4)
            out.append(
                detections_row(found, p, kept, self.selection, self.extractor_id, self.names, None)
            )
            start = end
        return out
