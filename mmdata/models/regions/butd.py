"""bottom-up-attention's Faster R-CNN (ResNet-101 C4, Visual Genome) in torch + torchvision.ops.

The architecture of py-bottom-up-attention's detectron2 port, module for module, so its
checkpoints load by name (mmdata.models.regions.checkpoint):

- backbone: ResNet C4 with Caffe's stem pooling and strides in the 1x1 convs;
- RPN on res4 (stride 16): 3x3 conv to ``rpn_channels``, 12 anchors (64..512 x 0.5/1/2);
- box head: RoIPool 14x14 on res4, res5 at stride 1 with dilation 2 (bottom-up
  attention's test net), mean over the 14x14 map: the 2048-d region feature;
- predictors: ``cls_score`` (1600 classes + background, background last as detectron2
  orders it), class-specific ``bbox_pred`` (1600 x 4), and the attribute head
  (``cls_embedding`` of the arg-max class, concatenated to the feature, ``fc_attr`` +
  ReLU, ``attr_score`` over 400 attributes + "none", none last).

Box selection follows the original Caffe extractor (generate_tsv): per-class NMS over
every class, a box's confidence is its best surviving class score, keep those above
``score_thresh`` within ``[min_boxes, max_boxes]`` (or exactly ``fixed_boxes``). Boxes
and features are both those of the kept proposals, so they always agree. In given-boxes
mode the given boxes are pooled and classified, with no RPN, NMS or selection.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn
from torchvision.ops import batched_nms, nms, roi_align, roi_pool

from mmdata.models.regions.boxes import apply_deltas, cell_anchors, clip, grid_anchors
from mmdata.models.regions.resnet import ResNetC4, res5_head

#: Caffe's BGR pixel means (the ResNet was trained on mean-subtracted BGR, std 1).
CAFFE_PIXEL_MEAN = (102.9801, 115.9465, 122.7717)


@dataclass(frozen=True)
class ButdConfig:
    """Everything that shapes the network or its outputs (hashed into the extractor id)."""

    depth: int = 101
    caffe_maxpool: bool = True  # stem pool without padding, rounding up (Caffe)
    num_classes: int = 1600
    num_attributes: int = 400
    rpn_channels: int = 512
    anchor_sizes: tuple[float, ...] = (64.0, 128.0, 256.0, 512.0)
    anchor_ratios: tuple[float, ...] = (0.5, 1.0, 2.0)
    rpn_pre_nms_topk: int = 6000
    rpn_post_nms_topk: int = 300
    rpn_nms_thresh: float = 0.7
    pooler: str = "roipool"  # or "roialign" (detectron2's ROIAlignV2)
    pooler_resolution: int = 14
    res5_dilation: int = 2
    box_reg_weights: tuple[float, float, float, float] = (10.0, 10.0, 5.0, 5.0)
    attribute_embed_dim: int = 256
    attribute_hidden: int = 512
    pixel_mean: tuple[float, float, float] = CAFFE_PIXEL_MEAN
    min_size: int = 600
    max_size: int = 1000

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), sort_keys=True)


class RPNHead(nn.Module):
    def __init__(self, cin: int, hidden: int, anchors: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, hidden, 3, padding=1)
        self.objectness_logits = nn.Conv2d(hidden, anchors, 1)
        self.anchor_deltas = nn.Conv2d(hidden, anchors * 4, 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        t = F.relu(self.conv(x))
        return self.objectness_logits(t), self.anchor_deltas(t)


class ProposalGenerator(nn.Module):
    """detectron2's RPN at test time: top-k by objectness, decode, clip, NMS, top-k."""

    def __init__(self, config: ButdConfig) -> None:
        super().__init__()
        self.config = config
        cell = cell_anchors(config.anchor_sizes, config.anchor_ratios)
        self.register_buffer("cell", cell, persistent=False)
        self.rpn_head = RPNHead(1024, config.rpn_channels, len(cell))

    def forward(
        self,
        features: torch.Tensor,
        sizes: list[tuple[int, int]],
        feature_sizes: list[tuple[int, int]],
        stride: int = 16,
    ) -> list[torch.Tensor]:
        """Proposals per image; only anchors on the image's own feature cells count, so
        the padding of a batch adds none."""
        logits, deltas = self.rpn_head(features)
        n, a, _, _ = logits.shape
        out = []
        cfg = self.config
        for i, (height, width) in enumerate(sizes):
            fh, fw = feature_sizes[i]
            image_logits = logits[i, :, :fh, :fw].permute(1, 2, 0).reshape(-1)
            image_deltas = deltas[i, :, :fh, :fw].reshape(a, 4, fh, fw)
            image_deltas = image_deltas.permute(2, 3, 0, 1).reshape(-1, 4)
            anchors = grid_anchors(self.cell, fh, fw, stride)
            k = min(cfg.rpn_pre_nms_topk, image_logits.shape[0])
            scores, idx = image_logits.float().topk(k)
            boxes = apply_deltas(image_deltas[idx], anchors[idx], (1.0, 1.0, 1.0, 1.0))
            boxes = clip(boxes, height, width)
            keep = (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
            boxes, scores = boxes[keep], scores[keep]
            keep = nms(boxes, scores, cfg.rpn_nms_thresh)[: cfg.rpn_post_nms_topk]
            out.append(boxes[keep])
        return out


class BoxPredictor(nn.Module):
    """Class scores (background last), class-specific deltas, and attribute scores."""

    def __init__(self, config: ButdConfig, dim: int = 2048) -> None:
        super().__init__()
        c = config.num_classes
        self.cls_score = nn.Linear(dim, c + 1)
        self.bbox_pred = nn.Linear(dim, c * 4)
        self.num_attributes = config.num_attributes
        if config.num_attributes:
            self.cls_embedding = nn.Embedding(c + 1, config.attribute_embed_dim)
            self.fc_attr = nn.Linear(dim + config.attribute_embed_dim, config.attribute_hidden)
            self.attr_score = nn.Linear(config.attribute_hidden, config.num_attributes + 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        scores = self.cls_score(x)
        deltas = self.bbox_pred(x)
        if not self.num_attributes:
            return scores, deltas, None
        # the arg-max over every class, background included, as the Caffe net did
        embedded = self.cls_embedding(scores.argmax(-1))
        hidden = F.relu(self.fc_attr(torch.cat([x, embedded.to(x.dtype)], -1)))
        return scores, deltas, self.attr_score(hidden)


class RoiHeads(nn.Module):
    def __init__(self, config: ButdConfig) -> None:
        super().__init__()
        self.config = config
        self.res5 = res5_head(config.depth, stride_in_1x1=True, dilation=config.res5_dilation)
        self.box_predictor = BoxPredictor(config)

    def pool(self, features: torch.Tensor, boxes: list[torch.Tensor]) -> torch.Tensor:
        """The 2048-d feature of each box (boxes in input-image pixels)."""
        rois = [b.to(features.dtype) for b in boxes]
        size = self.config.pooler_resolution
        if self.config.pooler == "roialign":
            x = roi_align(features, rois, size, 1 / 16, sampling_ratio=0, aligned=True)
        else:
            x = roi_pool(features, rois, size, 1 / 16)
        return self.res5(x).mean(dim=(2, 3))


@dataclass
class Detections:
    """One image's regions, boxes in original-image pixels, classes in detectron2 order."""

    boxes: torch.Tensor  # (n, 4)
    features: torch.Tensor  # (n, 2048)
    class_probs: torch.Tensor  # (n, num_classes + 1), background last
    attribute_probs: torch.Tensor | None  # (n, num_attributes + 1), none last


class ButdDetector(nn.Module):
    """The whole network; ``detect`` runs it on a padded batch of preprocessed images."""

    def __init__(self, config: ButdConfig | None = None) -> None:
        super().__init__()
        self.config = config or ButdConfig()
        self.backbone = ResNetC4(
            self.config.depth, stride_in_1x1=True, caffe_pool=self.config.caffe_maxpool
        )
        self.proposal_generator = ProposalGenerator(self.config)
        self.roi_heads = RoiHeads(self.config)

    @torch.no_grad()
    def detect(
        self,
        images: torch.Tensor,
        sizes: list[tuple[int, int]],
        scales: list[float],
        given: list[torch.Tensor] | None = None,
    ) -> list[Detections]:
        """Regions of each image of the padded batch ``images`` (N, 3, H, W).

        ``sizes`` are the resized (h, w) of each image, ``scales`` resized / original;
        ``given`` (original pixels, one tensor per image) skips the RPN.
        """
        features = self.backbone(images, sizes)
        if given is None:
            feature_sizes = self.backbone.out_sizes(sizes)
            proposals = self.proposal_generator(features, sizes, feature_sizes)
        else:
            proposals = [g.to(features.device).float() * s for g, s in zip(given, scales)]
        pooled = self.roi_heads.pool(features, proposals).float()
        scores, _, attr_logits = self.roi_heads.box_predictor(pooled)
        probs = F.softmax(scores.float(), dim=-1)
        attr = None if attr_logits is None else F.softmax(attr_logits.float(), dim=-1)
        out, start = [], 0
        for boxes, scale in zip(proposals, scales):
            end = start + len(boxes)
            out.append(
                Detections(
                    boxes=boxes.float() / scale,
                    features=pooled[start:end],
                    class_probs=probs[start:end],
                    attribute_probs=None if attr is None else attr[start:end],
                )
            )
            start = end
        return out


def select_boxes(
    boxes: torch.Tensor,
    class_probs: torch.Tensor,
    score_thresh: float,
    nms_thresh: float,
    min_boxes: int,
    max_boxes: int,
) -> torch.Tensor:
    """Indices of the proposals to keep, best first (bottom-up attention's rule).

    For every foreground class, NMS over all proposals by that class's score; a
    proposal's confidence is its best score among the classes it survived for. Keep
    those with confidence >= ``score_thresh``, at least ``min_boxes`` and at most
    ``max_boxes`` (for a fixed count, both equal).
    """
    fg = class_probs[:, :-1]  # background is last
    n, c = fg.shape
    if n == 0:
        return torch.zeros(0, dtype=torch.long, device=boxes.device)
    # a candidate is only suppressed by a higher score of its class, so dropping low
    # scores first leaves every confidence above the floor exact (and NMS small)
    floor = min(score_thresh, 0.01)
    for attempt_floor in (floor, 0.0):
        rows, cols = torch.nonzero(fg >= attempt_floor, as_tuple=True)
        kept = batched_nms(boxes[rows], fg[rows, cols], cols, nms_thresh)
        conf = torch.zeros(n, dtype=fg.dtype, device=fg.device)
        conf.scatter_reduce_(0, rows[kept], fg[rows[kept], cols[kept]], reduce="amax")
        if int((conf > 0).sum()) >= min(min_boxes, n) or attempt_floor == 0.0:
            break
    order = torch.argsort(conf, descending=True, stable=True)
    count = int((conf >= score_thresh).sum())
    count = max(min(count, max_boxes), min(min_boxes, n))
    return order[:count]
