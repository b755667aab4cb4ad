"""Drop images that are too small or too elongated to be useful for pretraining."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa
import pyarrow.compute as pc

from mmdata.core.registry import STAGES
from mmdata.core.stage import Filter, format_detail


@STAGES.register("image_size_filter")
class ImageSizeFilter(Filter):
    """Drop rows whose shorter side or aspect ratio is out of bounds.

    Rows without a known size are dropped as ``unknown_size`` rather than let through:
    a size filter that cannot see the size must not silently pass the row.
    """

    reads = ("width_px", "height_px")

    def __init__(self, *, min_side_px: int = 0, max_aspect_ratio: float = 0.0) -> None:
        """Args:
        min_side_px: smallest allowed shorter side, in pixels (0: no limit).
        max_aspect_ratio: largest allowed longer/shorter side ratio (0: no limit).
        """
        if min_side_px < 0 or max_aspect_ratio < 0:
            raise ValueError("min_side_px and max_aspect_ratio must be >= 0")
        if 0 < max_aspect_ratio < 1:
            raise ValueError(f"max_aspect_ratio must be >= 1, got {max_aspect_ratio}")
        self.min_side_px = min_side_px
        self.max_aspect_ratio = max_aspect_ratio

    def drop_masks(self, table: pa.Table) -> Mapping[str, pa.Array | tuple[pa.Array, pa.Array]]:
        width, height = table.column("width_px"), table.column("height_px")
        unknown = pc.or_kleene(
            pc.or_kleene(pc.is_null(width), pc.is_null(height)),
            pc.or_kleene(pc.less_equal(width, 0), pc.less_equal(height, 0)),
        )
        shorter = pc.min_element_wise(width, height)
        longer = pc.max_element_wise(width, height)
        masks: dict[str, pa.Array | tuple[pa.Array, pa.Array]] = {"unknown_size": unknown}
        size = format_detail("{w}x{h} px", w=width, h=height)
        if self.min_side_px:
            too_small = pc.less(shorter, self.min_side_px)
            masks["too_small"] = (
                too_small,
                pc.binary_join_element_wise(size, f" < min_side_px {self.min_side_px}", ""),
            )
        if self.max_aspect_ratio:
            ratio = pc.divide(pc.cast(longer, pa.float64()), pc.cast(shorter, pa.float64()))
            elongated = pc.greater(ratio, self.max_aspect_ratio)
            masks["bad_aspect"] = (
                elongated,
                pc.binary_join_element_wise(
                    size, f" > max_aspect_ratio {self.max_aspect_ratio}", ""
                ),
            )
        return masks
