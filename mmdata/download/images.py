"""Check a downloaded body is a whole image, then resize and encode it with img2dataset.

The checks run before anything is decoded at full size: the header gives the pixel
count (a decompression bomb is refused without allocating it). For a baseline RGB or
grey JPEG (most of the web) ``prepare`` then does all the work in the fetch thread:
one decode at the smallest size the resize allows (``reduced.JpegResizer``), which is
also the body check because OpenCV rejects truncated JPEGs, then img2dataset's resize,
encode and sha256. Every other body gets the Pillow check (a 1/8-scale draft decode that
reads every byte, so a truncated file fails) and img2dataset's own Resizer.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from PIL import Image, UnidentifiedImageError

from mmdata.core.imagefile import ImageError, PixelCapError, load_capped, open_capped
from mmdata.download.reduced import REDUCING_GAP, JpegResizer, cv2_rejects_truncated

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
    with _reasons(data, max_pixels):
        image = load_capped(data, max_pixels, draft_scale=8)
    return (image.format or "").lower()


@contextlib.contextmanager
def _reasons(data: bytes, max_pixels: int) -> Iterator[None]:
    """Pillow's and the pixel cap's exceptions as ImageError with the reject reason."""
    try:
        yield
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


def _sniff(data: bytes) -> str:
    head = data[:64].lstrip().lower()
    if head.startswith((b"<!doctype html", b"<html", b"<?xml", b"<head", b"<body")):
        return "body is HTML"
    return f"{len(data)} bytes starting {data[:8]!r}"


class ImageEncoder:
    """img2dataset's Resizer (its resize modes and encoders) plus our checks and sha256.

    ``reduced_decode``: decode baseline JPEGs at the smallest size the resize allows and
    resize them in the calling thread (``prepare``); False keeps img2dataset's full-size
    decode for every image. ``reducing_gap``: how many times the target the reduced
    decode must still hold per side (1: any reduction that covers it).
    """

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
        reduced_decode: bool = True,
        reducing_gap: float = REDUCING_GAP,
    ) -> None:
        if encode_format not in _FORMAT_NAMES:
            raise ValueError(f"Invalid encode format {encode_format}")
        if encode_format == "png" and not 0 <= encode_quality <= 9:
            raise ValueError(f"png encode quality is a compression level 0-9, got {encode_quality}")
        self.max_pixels = max_pixels
        self.settings = dict(
            image_size=image_size,
            resize_mode=resize_mode,
            resize_only_if_bigger=resize_only_if_bigger,
            encode_format=encode_format,
            encode_quality=encode_quality,
            skip_reencode=skip_reencode,
        )
        self.format_name = _FORMAT_NAMES[encode_format]
        # Validates resize_mode; built here so a bad setting fails at recipe validation.
        jpeg = JpegResizer(**self.settings, reducing_gap=reducing_gap)
        # resize_mode "no" has nothing to reduce, and its full-size decodes would be held
        # by every fetch thread at once: those stay on img2dataset's one-at-a-time path.
        use_jpeg = reduced_decode and resize_mode != "no" and cv2_rejects_truncated()
        self.jpeg = jpeg if use_jpeg else None
        self._resizer: Any = None
        # Pillow warns (it does not raise) between its own cap and twice it: bodies that
        # large take the checked path, where the warning is an error.
        self._fast_pixels = min(max_pixels, Image.MAX_IMAGE_PIXELS or max_pixels)

    @property
    def resizer(self) -> Any:
        """img2dataset's Resizer, imported and built on first use: importing img2dataset
        takes seconds, and a worker whose bodies are all baseline JPEGs never needs it."""
        if self._resizer is None:
            os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # it phones home otherwise
            from img2dataset.resizer import Resizer

            self._resizer = Resizer(**self.settings)
        return self._resizer

    def check(self, data: bytes) -> str:
        """``check_image`` with this encoder's pixel cap; thread-safe (Pillow only)."""
        return check_image(data, self.max_pixels)

    def prepare(self, data: bytes) -> StoredImage | str:
        """In a fetch thread: the stored image of a baseline JPEG (reduced decode, resize,
        encode, sha256), else the checked body's format for ``__call__``.

        Raises ImageError as ``check`` does. Thread-safe.
        """
        if self.jpeg is not None:
            with _reasons(data, self.max_pixels):
                header = open_capped(data, self.max_pixels)
            size = header.width * header.height
            if (
                header.format == "JPEG"
                and header.mode in ("RGB", "L")
                and size <= self._fast_pixels
            ):
                try:
                    done = self.jpeg(data, header.width, header.height, grey=header.mode == "L")
                except Exception:  # noqa: BLE001 - as img2dataset's Resizer: the body's fault
                    done = None  # img2dataset's path below gives the reason it gives
                if done is not None:
                    return self._stored(data, *done, source_format="jpeg")
            # Not a baseline JPEG, or OpenCV could not decode it: the checks name why.
        return self.check(data)

    def __call__(self, data: bytes, source_format: str | None = None) -> StoredImage:
        """Resize and encode ``data``; ``source_format`` when ``check`` already ran.

        Not thread-safe: img2dataset's resizer swaps the process's stdout/stderr.
        """
        if source_format is None:
            source_format = self.check(data)
        encoded, width, height, _, _, error = self.resizer(io.BytesIO(data))
        if error is not None:
            raise ImageError("image_decode_error", f"img2dataset resizer: {error}")
        return self._stored(data, encoded, width, height, source_format)

    def _stored(
        self, data: bytes, encoded: bytes, width: int, height: int, source_format: str
    ) -> StoredImage:
        stored_format = source_format if encoded is data or encoded == data else self.format_name
        return StoredImage(
            encoded, width, height, stored_format, hashlib.sha256(encoded).hexdigest()
        )
