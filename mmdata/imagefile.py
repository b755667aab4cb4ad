"""Opening encoded images safely, for every stage that decodes them.

The pixel cap is checked from the header before any pixel is decoded, so a
decompression bomb costs nothing; ``ImageError`` carries the reject reason.
"""

from __future__ import annotations

import io
import warnings

from PIL import Image


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
        image = Image.open(io.BytesIO(data))
        if image.width * image.height > max_pixels:
            raise PixelCapError(image.width, image.height, max_pixels)
        if draft_scale > 1:
            size = (max(image.width // draft_scale, 1), max(image.height // draft_scale, 1))
            image.draft("RGB", size)
        image.load()
    return image
