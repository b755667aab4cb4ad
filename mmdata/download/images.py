"""Check a downloaded body is a whole image, then resize and encode it with img2dataset.

The checks run before img2dataset's Resizer decodes anything at full size: the header
gives the pixel count (a decompression bomb is refused without allocating it), and a
reduced-size decode (JPEG DCT scaling, 1/8 per side) reads every byte of the file, which
is what finds a truncated body: OpenCV would decode it with a grey bottom and no error.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass

from PIL import Image, UnidentifiedImageError

from mmdata.core.imagefile import ImageError, PixelCapError, load_capped

_FORMAT_NAMES = {"jpg": "jpeg", "png": "png", "webp": "webp"}


@dataclass(frozen=True)
class StoredImage:
    """What goes into the image columns."""

    data: bytes
    width_px: int
    height_px: int
    format: str
    sha256: str


def check_image(data: bytes, max_pixels: int) -> str:
    """The image format of ``data``; raises ImageError when it cannot be used."""
    try:
        image = load_capped(data, max_pixels, draft_scale=8)
    except PixelCapError as exc:
        detail = f"{exc.width_px}x{exc.height_px} px > max_pixels {max_pixels}"
        raise ImageError("decompression_bomb", detail) from exc
    except UnidentifiedImageError as exc:
        raise ImageError("not_an_image", f"{_sniff(data)}: {exc}") from exc
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as exc:
        raise ImageError("decompression_bomb", str(exc)) from exc
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        reason = "truncated" if "truncated" in str(exc) else "image_decode_error"
        raise ImageError(reason, f"{type(exc).__name__}: {exc}") from exc
    return (image.format or "").lower()


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "body is HTML"
    return f"{len(data)} bytes starting {data[:8]!r}"


class ImageEncoder:
    """img2dataset's Resizer (its resize modes and encoders) plus our checks and sha256."""

    def __init__(
        self,
        *,
        image_size: int,
        resize_mode: str,
        encode_format: str,
        encode_quality: int,
        resize_only_if_bigger: bool,
        skip_reencode: bool,
        max_pixels: int,
    ) -> None:
        os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it phones home otherwise
        from img2dataset.resizer import Resizer  # 2 s to import: only where it is used

        self.max_pixels = max_pixels
        self.resizer = Resizer(
            image_size=image_size,
            resize_mode=resize_mode,
            resize_only_if_bigger=resize_only_if_bigger,
            encode_format=encode_format,
            encode_quality=encode_quality,
            skip_reencode=skip_reencode,
        )
        self.format_name = _FORMAT_NAMES[encode_format]

    def check(self, data: bytes) -> str:
        """``check_image`` with this encoder's pixel cap; thread-safe (Pillow only)."""
        return check_image(data, self.max_pixels)

    def __call__(self, data: bytes, source_format: str | None = None) -> StoredImage:
        """Resize and encode ``data``; ``source_format`` when ``check`` already ran.

        Not thread-safe: img2dataset's resizer swaps the process's stdout/stderr.
        """
        if source_format is None:
            source_format = self.check(data)
        encoded, width, height, _, _, error = self.resizer(io.BytesIO(data))
        if error is not None:
            raise ImageError("image_decode_error", f"img2dataset resizer: {error}")
        stored_format = source_format if encoded is data or encoded == data else self.format_name
        return StoredImage(
            encoded, width, height, stored_format, hashlib.sha256(encoded).hexdigest()
        )
