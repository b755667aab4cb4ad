"""img2dataset's resize modes on a JPEG decoded at reduced size (libjpeg DCT scaling).

img2dataset decodes every image at full size (``cv2.imdecode(..., IMREAD_UNCHANGED)``)
before shrinking it. libjpeg can decode a JPEG at 1/2, 1/4 or 1/8 scale per side for a
fraction of the work (OpenCV's ``IMREAD_REDUCED_*``), so when the resize shrinks the
image, the decode uses the largest reduction that still leaves ``reducing_gap`` times the
resize target on both sides (Pillow's ``thumbnail`` does the same with its ``draft``), and
the resize starts from there, at the exact full-size scale: libjpeg rounds a reduced side
up (a partial 8-pixel block becomes a whole pixel), so resizing the reduced image to the
target would stretch it by up to a pixel; OpenCV's ``fx``/``fy`` form keeps the geometry,
and the surplus edge row or column is cut off. Everything else is img2dataset's
Resizer: the target size is computed from the full size with albumentations' formula
(SmallestMaxSize / LongestMaxSize), the interpolation is chosen from the full size, the
crop and padding are albumentations' CenterCrop / PadIfNeeded built as img2dataset builds
them, and the encoder and its parameters are the Resizer's own. Only pixels can differ
from a full-size decode (bench/download.py measures the PSNR).

The decode is also the body check: this OpenCV returns no image for a truncated or
corrupt JPEG (checked once per process by ``cv2_rejects_truncated``; where it does not,
``JpegResizer`` is not used). Everything here releases the GIL and touches no file
descriptors, so unlike img2dataset's Resizer it runs in the fetch threads.
"""

from __future__ import annotations

import contextlib
import functools
import os
import threading
import warnings
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np

#: libjpeg's DCT scale denominators that OpenCV exposes, largest reduction first.
SCALES = (8, 4, 2)
#: How many times the target the reduced image must still hold, per side (see module).
REDUCING_GAP = 1.0
#: Decodes larger than this (pixels) run at most two at a time per process.
BIG_DECODE_PX = 4_000_000
_BIG_DECODES = threading.BoundedSemaphore(2)
_REDUCED_COLOR = {
    1: cv2.IMREAD_UNCHANGED,
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}
_REDUCED_GREY = {
    1: cv2.IMREAD_UNCHANGED,
    2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
    4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
    8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
}
#: IMREAD_UNCHANGED ignores EXIF orientation (img2dataset's semantics); the reduced
#: flags would apply it without this.
_KEEP_ORIENTATION = cv2.IMREAD_IGNORE_ORIENTATION


@dataclass(frozen=True)
class ResizePlan:
    """What img2dataset's Resizer does to an image of a given full size."""

    width_px: int  # size after the resize, before any crop or padding
    height_px: int
    interpolation: int
    scale: int  # decode at 1/scale per side (1: full size)
    fx: float  # resize factors from the decoded image (exact: full size / scale)
    fy: float


def reduced_size(width_px: int, height_px: int, scale: int) -> tuple[int, int]:
    """libjpeg's output size at 1/scale: each side rounded up."""
    return -(-width_px // scale), -(-height_px // scale)


@functools.cache
def cv2_rejects_truncated() -> bool:
    """Whether this OpenCV returns no image for a truncated JPEG, at full and reduced size
    (probed once per process).

    OpenCV builds differ (older ones fill the missing rows with grey and return the
    image); the reduced decode may stand in for the body check only where it rejects.
    """
    noise = np.random.default_rng(0).integers(0, 256, (64, 64, 3), dtype=np.uint8)
    ok, encoded = cv2.imencode(".jpg", noise)
    if not ok:
        return False
    cut = np.ascontiguousarray(encoded.ravel()[: encoded.size // 2])
    return all(cv2.imdecode(cut, flag) is None for flag in (cv2.IMREAD_UNCHANGED, _flag(2, False)))


def _flag(scale: int, grey: bool) -> int:
    if scale == 1:
        return cv2.IMREAD_UNCHANGED
    return (_REDUCED_GREY if grey else _REDUCED_COLOR)[scale] | _KEEP_ORIENTATION


#: img2dataset's Resizer settings per encode format: (cv2 quality flag, imghdr name).
ENCODERS = {
    "jpg": (cv2.IMWRITE_JPEG_QUALITY, "jpeg"),
    "png": (cv2.IMWRITE_PNG_COMPRESSION, "png"),
    "webp": (cv2.IMWRITE_WEBP_QUALITY, "webp"),
}
RESIZE_MODES = ("no", "keep_ratio", "center_crop", "border", "keep_ratio_largest")


class JpegResizer:
    """img2dataset's ``Resizer`` for baseline RGB or greyscale JPEGs, reduced decode first.

    Takes the Resizer's arguments and sets itself up as the Resizer's constructor does
    (its default interpolations: lanczos up, area down), without importing img2dataset
    (seconds of start-up in every worker; tests/download/test_reduced.py checks the
    settings against a real Resizer). Thread-safe.
    """

    def __init__(
        self,
        *,
        image_size: int,
        resize_mode: str,
        resize_only_if_bigger: bool,
        encode_format: str,
        encode_quality: int,
        skip_reencode: bool,
        reducing_gap: float = REDUCING_GAP,
    ) -> None:
        if reducing_gap < 1:
            raise ValueError(f"reducing_gap must be >= 1, got {reducing_gap}")
        if resize_mode not in RESIZE_MODES:
            raise ValueError(f"Invalid option for resize_mode: {resize_mode}")
        self.reducing_gap = reducing_gap
        self.size = image_size
        self.only_if_bigger = resize_only_if_bigger
        self.upscale, self.downscale = cv2.INTER_LANCZOS4, cv2.INTER_AREA
        quality_flag, self.what_ext = ENCODERS[encode_format]
        self.extension = f".{encode_format}"
        self.encode_params = [int(quality_flag), encode_quality]
        self.skip_reencode = skip_reencode
        self.smallest_side = resize_mode in ("keep_ratio", "center_crop")
        self.largest_side = resize_mode in ("border", "keep_ratio_largest")
        self.crop = resize_mode == "center_crop"
        self.pad = resize_mode == "border"
        self._local = threading.local()  # albumentations transforms: one set per thread
        cv2.setNumThreads(1)  # as img2dataset's Resizer does: parallelism is per image

    def plan(self, width_px: int, height_px: int) -> ResizePlan | None:
        """img2dataset's resize decision for this full size; None: no resize."""
        if self.smallest_side:
            side = min(width_px, height_px)
        elif self.largest_side:
            side = max(width_px, height_px)
        else:  # resize_mode "no"
            return None
        downscale = side > self.size
        if self.only_if_bigger and not downscale:
            return None
        # albumentations' MaxSizeTransform: scale = max_size / side, round each side.
        factor = self.size / side
        height, width = max(1, round(height_px * factor)), max(1, round(width_px * factor))
        scale = 1
        if downscale:
            gap = self.reducing_gap
            for candidate in SCALES:  # the reduced image holds gap x the target, exactly
                if width_px >= gap * candidate * width and height_px >= gap * candidate * height:
                    scale = candidate
                    break
        interpolation = self.downscale if downscale else self.upscale
        fx, fy = width * scale / width_px, height * scale / height_px
        return ResizePlan(width, height, interpolation, scale, fx, fy)

    def decode(self, data: bytes, plan: ResizePlan | None, grey: bool) -> np.ndarray | None:
        """The pixels at the plan's scale (BGR or grey, as img2dataset decodes them);
        None when OpenCV cannot decode ``data`` (truncated or corrupt)."""
        scale = plan.scale if plan is not None else 1
        return cv2.imdecode(np.frombuffer(data, np.uint8), _flag(scale, grey))

    def resize(self, image: np.ndarray, plan: ResizePlan | None) -> np.ndarray:
        """img2dataset's resize, crop and padding of decoded pixels."""
        if plan is None:
            return image
        if plan.scale > 1:  # the full size's geometry; the rounded-up edge is cut off
            image = cv2.resize(
                image, None, fx=plan.fx, fy=plan.fy, interpolation=plan.interpolation
            )
            image = image[: plan.height_px, : plan.width_px]
            if image.shape[:2] != (plan.height_px, plan.width_px):  # float rounding: refit
                dsize = (plan.width_px, plan.height_px)
                image = cv2.resize(image, dsize, interpolation=plan.interpolation)
        elif image.shape[:2] != (plan.height_px, plan.width_px):  # albumentations' resize
            dsize = (plan.width_px, plan.height_px)
            image = cv2.resize(image, dsize, interpolation=plan.interpolation)
        if self.crop:
            image = self._transforms()[0](image=image)["image"]
        elif self.pad:
            image = self._transforms()[1](image=image)["image"]
        return image

    def encode_needed(self, data: bytes, plan: ResizePlan | None) -> bool:
        """img2dataset's rule: re-encode after a resize, or when the format differs."""
        if plan is not None or not self.skip_reencode:
            return True
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            import imghdr  # what img2dataset's Resizer uses to decide

        return imghdr.what(None, h=data[:32]) != self.what_ext

    def __call__(
        self, data: bytes, width_px: int, height_px: int, grey: bool
    ) -> tuple[bytes, int, int] | None:
        """(encoded, width, height) of a JPEG of this full size; None when OpenCV cannot
        decode it (the caller then runs the checks that name the reason)."""
        plan = self.plan(width_px, height_px)
        scale = plan.scale if plan is not None else 1
        decoded_w, decoded_h = reduced_size(width_px, height_px, scale)
        # Every fetch thread may be here at once: big decodes go a few at a time, so
        # memory stays near img2dataset's one full-size image per process.
        gate = _BIG_DECODES if decoded_w * decoded_h > BIG_DECODE_PX else contextlib.nullcontext()
        with gate:
            image = self.decode(data, plan, grey)
            if image is None:
                return None
            image = self.resize(image, plan)
        height, width = image.shape[:2]
        if not self.encode_needed(data, plan):
            return data, width, height
        encoded = cv2.imencode(self.extension, image, params=self.encode_params)[1]
        return encoded.tobytes(), width, height

    def _transforms(self) -> tuple[Any, Any]:
        transforms = getattr(self._local, "transforms", None)
        if transforms is None:
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it phones home otherwise
            import albumentations as A

            # Exactly as img2dataset's Resizer builds them.
            crop = A.CenterCrop(height=self.size, width=self.size)
            pad = A.PadIfNeeded(
                min_height=self.size,
                min_width=self.size,
                border_mode=cv2.BORDER_CONSTANT,
                value=[255, 255, 255],
                p=1.0,
            )
            transforms = self._local.transforms = (crop, pad)
        return transforms
