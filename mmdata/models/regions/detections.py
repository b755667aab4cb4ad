"""``detections_row``: detectron2-ordered detections (bottom-up attention's Caffe model
or detectron2 itself) as one image's REGIONS row, boxes chosen by bottom-up attention's
rule."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from mmdata.models.regions.boxes import clip
from mmdata.models.regions.butd import Detections, select_boxes
from mmdata.models.regions.preprocess import Prepared
from mmdata.models.regions.rows import region_row
from mmdata.models.regions.selection import Selection
from mmdata.models.regions.vocab import detectron2_to_caffe


def detections_row(
    det: Detections,
    image: Prepared,
    given: np.ndarray | None,
    selection: Selection,
    extractor: str,
    objects: Sequence[str],
    attributes: Sequence[str] | None,
) -> dict[str, Any]:
    """The REGIONS row of one image's detections in detectron2's class order (background
    last): boxes chosen by bottom-up attention's rule, or exactly the ``given`` boxes;
    classes and attributes moved to mmdata's order (background / "none" 0)."""
    if given is None:
        low, high = selection.bounds()
        s = selection
        keep = select_boxes(det.boxes, det.class_probs, s.score_thresh, s.nms_thresh, low, high)
        boxes = clip(det.boxes[keep].cpu(), image.height, image.width).numpy()
    else:
        keep = torch.arange(len(given))
        boxes = given  # exactly the boxes asked for
    probs = det.class_probs[keep].cpu()
    conf, cls = probs[:, :-1].max(dim=1)  # background is last in detectron2's order
    object_ids = detectron2_to_caffe(cls.numpy(), probs.shape[1] - 1)  # background is 0
    attr_ids = attr_conf = attr_names = None
    if det.attribute_probs is not None and attributes is not None:
        attrs = det.attribute_probs[keep].cpu()
        a_conf, a_idx = attrs[:, :-1].max(dim=1)  # "no attribute" is last
        attr_ids = detectron2_to_caffe(a_idx.numpy(), attrs.shape[1] - 1)
        attr_conf = a_conf.numpy()
        attr_names = [attributes[i] for i in attr_ids]
    soft = None
    if selection.soft_labels:
        soft = torch.cat([probs[:, -1:], probs[:, :-1]], dim=1).numpy()
    return region_row(
        extractor_id=extractor,
        width=image.width,
        height=image.height,
        boxes=boxes,
        features=det.features[keep].float().cpu().numpy(),
        object_ids=object_ids,
        object_conf=conf.numpy(),
        object_names=[objects[i] for i in object_ids],
        attribute_ids=attr_ids,
        attribute_conf=attr_conf,
        attribute_names=attr_names,
        class_probs=soft,
        boxes_given=given is not None,
    )
