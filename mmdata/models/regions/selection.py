"""Region-model names and box-selection options: light, importable without torch."""

from __future__ import annotations

from dataclasses import dataclass

from mmdata.core.errors import MmdataError

MODELS = ("butd-r101-c4-vg", "torchvision-frcnn", "detectron2")


class ExtractorError(MmdataError, ValueError):
    """A model that cannot be built as asked (message says why)."""


@dataclass(frozen=True)
class Selection:
    """How many boxes to keep and which (bottom-up attention's 10-100 rule by default)."""

    min_boxes: int = 10
    max_boxes: int = 100
    score_thresh: float = 0.2
    nms_thresh: float = 0.3
    fixed_boxes: int | None = None  # exactly this many (36 for the "fixed 36" features)
    soft_labels: bool = False  # store the full class distribution (MRC-kl, UNITER)

    def bounds(self) -> tuple[int, int]:
        if self.fixed_boxes is not None:
            return self.fixed_boxes, self.fixed_boxes
        return self.min_boxes, self.max_boxes

    def check(self) -> None:
        if self.fixed_boxes is not None and self.fixed_boxes < 1:
            raise ExtractorError(f"fixed_boxes must be >= 1, got {self.fixed_boxes}")
        if not 1 <= self.min_boxes <= self.max_boxes:
            raise ExtractorError(
                f"need 1 <= min_boxes <= max_boxes, got {self.min_boxes}, {self.max_boxes}"
            )
        for name in ("score_thresh", "nms_thresh"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ExtractorError(f"{name} must be in [0, 1], got {getattr(self, name)}")
