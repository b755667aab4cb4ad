"""Images that break naive pipelines: CMYK, 16-bit, 1-bit, animated, EXIF-rotated,
palette with transparency, grey with alpha, TIFF, WEBP, zero-byte, truncated, random
bytes, a decompression bomb's header, a folder where a file should be. read_images turns
each into a decoded row or a reject naming the file; every decoded one then gives the
same size, 3-channel pixels in the detector's preprocessing and in mmdata.stream."""

from __future__ import annotations

import io
import os
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mmdata.models.regions.preprocess import prepare
from mmdata.stages.read_images import ReadImages
from mmdata.stream.decode import image_tensor
from tests.stages.helpers import work_batch


def _save(image: Image.Image, fmt: str, **options) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **options)
    return buffer.getvalue()


def _exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 CW to display
    return _save(Image.new("RGB", (40, 20), "red"), "JPEG", exif=exif.tobytes())


def _animated_gif() -> bytes:
    frames = [Image.new("P", (24, 16), i) for i in (1, 2, 3)]
    buffer = io.BytesIO()
    frames[0].save(buffer, "GIF", save_all=True, append_images=frames[1:], duration=50, loop=0)
    return buffer.getvalue()


def _bomb_header_png(side: int = 100_000) -> bytes:
    def chunk(kind: bytes, data: bytes) -> bytes:
        crc = zlib.crc32(kind + data) & 0xFFFFFFFF
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", crc)

    header = struct.pack(">IIBBBBB", side, side, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def _palette_with_transparency() -> bytes:
    image = Image.new("P", (30, 10), 0)
    image.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    return _save(image, "PNG", transparency=0)


DECODABLE = {
    "cmyk.jpg": lambda: _save(Image.new("CMYK", (32, 24), (0, 255, 255, 0)), "JPEG"),
    "sixteen_bit.png": lambda: _save(Image.fromarray(np.full((12, 20), 40000, np.uint16)), "PNG"),
    "one_bit.png": lambda: _save(Image.new("1", (17, 9), 1), "PNG"),
    "animated.gif": _animated_gif,
    "exif_rotated.jpg": _exif_rotated_jpeg,
    "palette_transparent.png": _palette_with_transparency,
    "grey_alpha.png": lambda: _save(Image.new("LA", (10, 30), (128, 20)), "PNG"),
    "rgba.webp": lambda: _save(Image.new("RGBA", (21, 13), (1, 2, 3, 4)), "WEBP"),
    "image.tiff": lambda: _save(Image.new("RGB", (9, 7), "blue"), "TIFF"),
    "tiny.png": lambda: _save(Image.new("RGB", (1, 1), "white"), "PNG"),
}
BROKEN = {
    "zero_bytes.jpg": (lambda: b"", "image_decode_error"),
    "truncated.png": (
        lambda: _save(Image.new("RGB", (64, 64), "green"), "PNG")[:90],
        "image_decode_error",
    ),
    "random.jpg": (lambda: os.urandom(2048), "image_decode_error"),
    "svg_as_png.png": (lambda: b"<svg xmlns='http://www.w3.org/2000/svg'/>", "image_decode_error"),
    "bomb.png": (_bomb_header_png, "too_many_pixels"),
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("hostile-images")
    out = {}
    for name, make in {**DECODABLE, **{k: v[0] for k, v in BROKEN.items()}}.items():
        out[name] = folder / name
        out[name].write_bytes(make())
    (folder / "a_folder.jpg").mkdir()
    out["a_folder.jpg"] = folder / "a_folder.jpg"
    return out


def test_each_becomes_a_decoded_row_or_a_reject_naming_the_file(files):
    names = sorted(files)
    out = ReadImages().process(work_batch(path=[str(files[n]) for n in names]))
    rows = dict(zip(names, out.to_pylist()))
    for name in DECODABLE:
        assert rows[name]["status"] == "ok", (name, rows[name]["_detail"])
    for name, (_, reason) in BROKEN.items():
        assert (rows[name]["status"], rows[name]["reason"]) == ("error", reason), name
        assert rows[name]["_detail"].startswith(str(files[name])), rows[name]["_detail"]
    folder = rows["a_folder.jpg"]
    assert folder["status"] == "error" and str(files["a_folder.jpg"]) in folder["_detail"]


@pytest.mark.parametrize("name", sorted(DECODABLE))
def test_decoded_images_agree_on_size_and_give_rgb_everywhere(files, name):
    row = ReadImages().process(work_batch(path=[str(files[name])])).to_pylist()[0]
    size = (row["width_px"], row["height_px"])
    data = files[name].read_bytes()
    # at scale 1 the detector's input is the decoded pixels themselves (BGR)
    prepared = prepare(data, min_size=min(size), max_size=10**4, max_pixels=10**8)
    assert (prepared.width, prepared.height) == size  # stored pixels, no EXIF rotation
    assert prepared.pixels.shape == (size[1], size[0], 3)
    pixels = image_tensor(data)
    assert str(pixels.dtype) == "torch.uint8"
    assert tuple(pixels.shape) == (3, size[1], size[0]), name  # the same orientation
    # the same picture in both (decoders may differ by a rounding step in JPEG)
    stream_rgb = pixels.permute(1, 2, 0).numpy().astype(int)
    detector_rgb = prepared.pixels[:, :, ::-1].astype(int)
    assert np.abs(stream_rgb - detector_rgb).mean() < 3, name
