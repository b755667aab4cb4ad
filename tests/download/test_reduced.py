"""The reduced-size JPEG path against img2dataset's own Resizer.

Same output size, channels and encoding in every resize mode mmdata exposes, for odd
sizes and both resize_only_if_bigger settings; identical bytes wherever no reduction is
taken; close pixels where one is; the same reject reasons for bad bodies.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import subprocess
import sys
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from mmdata.core.imagefile import ImageError
from mmdata.demo.webserver import bomb_png
from mmdata.download.images import ImageEncoder, StoredImage
from mmdata.download.reduced import SCALES, JpegResizer, cv2_rejects_truncated, reduced_size

MODES = ("keep_ratio", "center_crop", "border", "keep_ratio_largest")


def photo(width: int, height: int, mode: str = "RGB", seed: int = 0, **save: object) -> bytes:
    """A smooth-plus-texture JPEG (gradients, a disc, mild noise) of this size."""
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    rgb = np.stack(
        [255 * x / max(width, 1), 255 * y / max(height, 1), 128 + 100 * np.sin((x + y) / 9)], -1
    )
    disc = (x - width / 3) ** 2 + (y - height / 2) ** 2 < (min(width, height) / 4) ** 2
    rgb[disc] = (200, 40, 90)
    rgb += np.random.default_rng(seed).normal(0, 6, rgb.shape)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    if mode != "RGB":
        image = image.convert(mode)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=90, **save)
    return out.getvalue()


def encoder(mode: str, size: int, only_if_bigger: bool = False, **kw: object) -> ImageEncoder:
    options = dict(
        image_size=size,
        resize_mode=mode,
        encode_format="jpg",
        encode_quality=95,
        resize_only_if_bigger=only_if_bigger,
        skip_reencode=True,
        max_pixels=Image.MAX_IMAGE_PIXELS,
    )
    return ImageEncoder(**{**options, **kw})  # type: ignore[arg-type]


def reference(enc: ImageEncoder, data: bytes) -> tuple[bytes, int, int]:
    """img2dataset's Resizer on the same body: full-size decode."""
    encoded, width, height, _, _, error = enc.resizer(io.BytesIO(data))
    assert error is None
    return encoded, width, height


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if mse == 0 else 10 * np.log10(255**2 / mse)


def decoded(data: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def test_this_opencv_rejects_truncated_jpegs() -> None:
    # The reduced path stands in for the body check only because of this.
    assert cv2_rejects_truncated()


SIZES = [(1, 1), (37, 23), (23, 37), (64, 64), (257, 129), (129, 257), (301, 300), (520, 17),
         (17, 520), (999, 333), (640, 480)]  # fmt: skip


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("only_if_bigger", [False, True])
def test_same_size_and_encoding_as_img2dataset(mode: str, only_if_bigger: bool) -> None:
    for (width, height), size, grey in itertools.product(SIZES, (16, 64), (False, True)):
        data = photo(width, height, "L" if grey else "RGB", seed=width * height)
        enc = encoder(mode, size, only_if_bigger)
        got = enc.prepare(data)
        assert isinstance(got, StoredImage), (width, height, size, mode)
        want = enc(data)  # the checked path: img2dataset's Resizer, full-size decode
        case = (mode, only_if_bigger, width, height, size, grey)
        assert (got.width_px, got.height_px, got.format) == (
            want.width_px, want.height_px, want.format
        ), case  # fmt: skip
        ours, theirs = decoded(got.data), decoded(want.data)
        assert ours.shape == theirs.shape, case  # channels too: grey stays grey
        assert (got.data == data) == (want.data == data), case  # skip_reencode alike
        assert got.sha256 == hashlib.sha256(got.data).hexdigest()
        plan = enc.jpeg.plan(width, height)  # type: ignore[union-attr]
        if plan is None or plan.scale == 1:
            assert got == want, case  # same decode, same resize: the same bytes
        else:
            assert psnr(ours, theirs) > 30, case


def test_reduction_is_the_largest_that_covers_the_target() -> None:
    enc = encoder("keep_ratio", 256)
    assert enc.jpeg is not None
    assert enc.jpeg.plan(640, 480).scale == 1  # 480 -> 256: 1/2 would give 240
    assert enc.jpeg.plan(1280, 960).scale == 2  # 480x640 covers 256x341
    assert enc.jpeg.plan(4000, 3000).scale == 8  # 500x375 covers 341x256
    assert enc.jpeg.plan(2047, 2047).scale == 4  # 2047 < 8 x 256
    assert enc.jpeg.plan(2048, 2048).scale == 8
    for width, height in itertools.product(range(250, 2200, 37), range(250, 2200, 53)):
        plan = enc.jpeg.plan(width, height)
        assert plan is not None
        covered = [s for s in SCALES if width >= s * plan.width_px and height >= s * plan.height_px]
        assert plan.scale == (max(covered) if covered and min(width, height) > 256 else 1)
        reduced = reduced_size(width, height, plan.scale)
        assert round(reduced[0] * plan.fx) >= plan.width_px
        assert round(reduced[1] * plan.fy) >= plan.height_px
    gapped = encoder("keep_ratio", 256, reducing_gap=2.0)
    assert gapped.jpeg is not None and gapped.jpeg.plan(4000, 3000).scale == 4


@pytest.mark.parametrize("mode", MODES)
def test_large_photo_close_to_a_full_size_decode(mode: str) -> None:
    data = photo(2001, 1333, seed=7)
    enc = encoder(mode, 256)
    got = enc.prepare(data)
    assert isinstance(got, StoredImage)
    want, want_w, want_h = reference(enc, data)
    assert (got.width_px, got.height_px) == (want_w, want_h)
    assert enc.jpeg is not None and enc.jpeg.plan(2001, 1333).scale == 4  # type: ignore[union-attr]
    assert psnr(decoded(got.data), decoded(want)) > 35


def test_orientation_ignored_as_img2dataset_does() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90: img2dataset's IMREAD_UNCHANGED does not apply it
    data = photo(1200, 600, exif=exif.tobytes())
    enc = encoder("keep_ratio", 100)
    got = enc.prepare(data)
    assert isinstance(got, StoredImage)
    _, want_w, want_h = reference(enc, data)
    assert (got.width_px, got.height_px) == (want_w, want_h) == (200, 100)


def test_progressive_and_444_jpegs() -> None:
    for save in ({"progressive": True}, {"subsampling": 0}):
        data = photo(900, 700, **save)
        enc = encoder("keep_ratio", 100)
        got = enc.prepare(data)
        assert isinstance(got, StoredImage)
        want, want_w, want_h = reference(enc, data)
        assert (got.width_px, got.height_px) == (want_w, want_h)
        assert psnr(decoded(got.data), decoded(want)) > 35


def test_other_bodies_take_the_checked_path() -> None:
    enc = encoder("keep_ratio", 64)
    png = io.BytesIO()
    Image.new("RGBA", (90, 70), (10, 200, 30, 128)).save(png, "PNG")
    assert enc.prepare(png.getvalue()) == "png"
    cmyk = photo(300, 200, "CMYK")
    assert enc.prepare(cmyk) == "jpeg"  # OpenCV's CMYK conversion: img2dataset's path
    stored = enc(cmyk, "jpeg")
    assert (stored.width_px, stored.height_px) == (96, 64)


def test_bad_bodies_keep_their_reasons() -> None:
    enc = encoder("keep_ratio", 64)
    whole = photo(800, 600)
    for cut in (len(whole) // 3, len(whole) // 2, len(whole) - 2):
        with pytest.raises(ImageError) as caught:
            enc.prepare(whole[:cut])
        assert caught.value.reason == "truncated"
    with pytest.raises(ImageError) as caught:
        enc.prepare(b"<!doctype html><html><body>not found</body></html>")
    assert caught.value.reason == "not_an_image"
    with pytest.raises(ImageError) as caught:
        enc.prepare(bomb_png())
    assert caught.value.reason == "decompression_bomb"
    small_cap = encoder("keep_ratio", 64, max_pixels=1000)
    with pytest.raises(ImageError) as caught:
        small_cap.prepare(photo(100, 100))
    assert caught.value.reason == "decompression_bomb"


def test_reduced_decode_off_and_mode_no_use_img2dataset() -> None:
    data = photo(1000, 800)
    assert encoder("keep_ratio", 64, reduced_decode=False).prepare(data) == "jpeg"
    assert encoder("no", 64).jpeg is None


@pytest.mark.parametrize(
    "encode_format,quality", [("jpg", 95), ("jpg", 80), ("png", 9), ("webp", 90)]
)
@pytest.mark.parametrize("mode", (*MODES, "no"))
def test_settings_are_img2dataset_resizers(mode: str, encode_format: str, quality: int) -> None:
    enc = encoder(mode, 77, True, encode_format=encode_format, encode_quality=quality)
    jpeg = JpegResizer(**enc.settings)  # type: ignore[arg-type]
    theirs = enc.resizer  # the real one, built from the same settings
    assert jpeg.encode_params == theirs.encode_params
    assert jpeg.extension == f".{theirs.encode_format}" and jpeg.what_ext == theirs.what_ext
    assert (jpeg.upscale, jpeg.downscale) == (
        theirs.upscale_interpolation,
        theirs.downscale_interpolation,
    )
    assert (jpeg.size, jpeg.only_if_bigger, jpeg.skip_reencode) == (
        theirs.image_size,
        theirs.resize_only_if_bigger,
        theirs.skip_reencode,
    )
    assert theirs.resize_mode.name == mode


def test_bad_settings_fail_at_construction() -> None:
    with pytest.raises(ValueError, match="resize_mode"):
        encoder("squash", 64)
    with pytest.raises(ValueError, match="encode format"):
        encoder("keep_ratio", 64, encode_format="gif")
    with pytest.raises(ValueError, match="png"):
        encoder("keep_ratio", 64, encode_format="png", encode_quality=95)


def test_jpeg_downloads_do_not_import_img2dataset() -> None:
    # Importing img2dataset costs seconds of CPU in every cold worker: a download of
    # JPEGs without X-Robots-Tag headers needs none of it.
    code = (
        "import sys\n"
        "from mmdata.demo.webserver import FaultServer\n"
        "from mmdata.stages.download import Download\n"
        "from tests.stages.helpers import work_batch\n"
        "stage = Download(resize_mode='center_crop', image_size=32,\n"
        "                 allowed_networks=['127.0.0.1/32'])\n"
        "with FaultServer() as server:\n"
        "    urls = [server.url('/img/red.jpg'), server.url('/gen/3.jpg')]\n"
        "    rows = stage.process(work_batch(url=urls)).to_pylist()\n"
        "assert [(r['width_px'], r['height_px']) for r in rows] == [(32, 32)] * 2, rows\n"
        "assert 'img2dataset' not in sys.modules, 'img2dataset imported'\n"
    )
    root = Path(__file__).resolve().parents[2]
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=root)
    assert done.returncode == 0, done.stderr[-2000:]


def test_a_failure_in_the_reduced_path_falls_back_to_img2dataset(monkeypatch) -> None:
    enc = encoder("keep_ratio", 64)
    data = photo(300, 200)

    def broken(*args: object) -> None:
        raise cv2.error("simulated")

    monkeypatch.setattr(enc.jpeg, "resize", broken)
    assert enc.prepare(data) == "jpeg"  # checked; the stage's thread runs the Resizer
    assert enc(data, "jpeg").width_px == 96


def test_big_decodes_run_two_at_a_time(monkeypatch) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from mmdata.download import reduced

    inside, most = 0, 0
    lock = threading.Lock()
    real_decode = reduced.JpegResizer.decode

    def counting(self, *args):  # type: ignore[no-untyped-def]
        nonlocal inside, most
        with lock:
            inside += 1
            most = max(most, inside)
        try:
            time.sleep(0.02)
            return real_decode(self, *args)
        finally:
            with lock:
                inside -= 1

    monkeypatch.setattr(reduced, "BIG_DECODE_PX", 100)  # their 1/4 decodes count as big
    monkeypatch.setattr(reduced.JpegResizer, "decode", counting)
    enc = encoder("keep_ratio", 16)
    bodies = [photo(120, 90, seed=s) for s in range(8)]
    with ThreadPoolExecutor(8) as pool:
        stored = list(pool.map(enc.prepare, bodies))
    assert all(isinstance(s, StoredImage) for s in stored)
    assert most == 2
