"""Opening encoded images safely, for every stage that decodes them.

The pixel cap is checked from the header before any pixel is decoded, so a
decompression bomb costs nothing; ``ImageError`` carries the reject reason.
"""

from __future__ import annotations

import io
import warnings

import numpy as np
from PIL import Image

#: The default pixel cap: Pillow's own decompression-bomb limit (89,478,485 pixels).
MAX_PIXELS: int = Image.MAX_IMAGE_PIXELS


class ImageError(Exception):
    """An image that cannot be used; ``reason`` is the reject reason."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason


class PixelCapError(ValueError):
    """The header says the image has more pixels than allowed."""

    def __init__(self, width_px: int, height_px: int, max_pixels: int) -> None:
        super().__init__(f"{width_px}x{height_px} > max_pixels {max_pixels}")
        self.width_px, self.height_px, self.max_pixels = width_px, height_px, max_pixels


def open_capped(data: bytes, max_pixels: int) -> Image.Image:
    """Open ``data`` and read its header only (format, mode, size: no pixels decoded),
    checking the pixel cap. Raises like ``load_capped``; Pillow's bomb guard warns
    (``Image.DecompressionBombWarning``) unless the caller turns warnings into errors."""
    image = Image.open(io.BytesIO(data))
    if image.width * image.height > max_pixels:
        raise PixelCapError(image.width, image.height, max_pixels)
    return image


def load_capped(data: bytes, max_pixels: int, draft_scale: int = 1) -> Image.Image:
    """Open and decode ``data``, checking the pixel cap from the header first, so a
    decompression bomb costs nothing. ``draft_scale`` > 1 lets JPEG decode at that
    fraction per side (still reading every byte, so truncation is still found).

    Raises:
        PixelCapError: over ``max_pixels``.
        OSError, SyntaxError, ValueError, EOFError, Image.DecompressionBomb*: Pillow's.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        image = open_capped(data, max_pixels)
        if draft_scale > 1:
            size = (max(image.width // draft_scale, 1), max(image.height // draft_scale, 1))
            image.draft("RGB", size)
        image.load()
    return image


def decode_or_reject(data: bytes, max_pixels: int) -> Image.Image:
    """Fully decode ``data`` (truncated files fail here, not later in a trainer).

    Raises:
        ImageError: ``too_many_pixels`` (over ``max_pixels``, or so large that Pillow's
            own bomb guard refuses to open it), else ``image_decode_error``.
    """
    try:
        return load_capped(data, max_pixels)
    except PixelCapError as exc:
        raise ImageError("too_many_pixels", str(exc)) from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("too_many_pixels", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise ImageError("image_decode_error", f"{type(exc).__name__}: {exc}") from exc


#: Pillow's modes of 16- and 32-bit grey images (16-bit PNG and TIFF open as these).
WIDE_GREY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")


def eight_bit(image: Image.Image) -> Image.Image:
    """``image`` with 16- or 32-bit grey brought to 8 bits by keeping the top 8, as
    torchvision decodes it (Pillow's own conversion would clip everything above 255 to
    white); other modes are returned as they are."""
    if image.mode not in WIDE_GREY_MODES:
        return image
    grey = (np.asarray(image).astype(np.int64) >> 8).clip(0, 255).astype(np.uint8)
    return Image.fromarray(grey, "L")


def to_rgb(image: Image.Image) -> Image.Image:
    """8-bit RGB pixels of ``image`` (see ``eight_bit``)."""
    return eight_bit(image).convert("RGB")
