"""The detector's resize is bottom-up attention's: cv2.resize with fx = fy = the Caffe
scale and INTER_LINEAR on the BGR pixels, not Pillow's antialiased bilinear (issue 19)."""

from __future__ import annotations

import io

import cv2
import numpy as np
import pytest
from PIL import Image

from mmdata.models.regions.preprocess import prepare, target_scale


def _png(width: int, height: int, seed: int = 0) -> tuple[bytes, np.ndarray]:
    rng = np.random.default_rng(seed)
    rgb = rng.integers(0, 256, (height, width, 3), dtype=np.uint8)
    rgb[: height // 2, : width // 3] = (250, 10, 10)  # edges for the filters to differ on
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    return buf.getvalue(), rgb


@pytest.mark.parametrize(
    ("width", "height"),
    [(1500, 750), (1200, 901), (300, 200), (640, 480), (333, 517)],  # down- and up-scaled
)
def test_the_resize_is_caffes_cv2_resize(width, height):
    data, rgb = _png(width, height)
    got = prepare(data, min_size=600, max_size=1000, max_pixels=10**8)
    scale = target_scale(width, height, 600, 1000)
    caffe = cv2.resize(  # as bottom-up-attention's tools/generate_tsv.py prepares images
        np.ascontiguousarray(rgb[:, :, ::-1]),
        None,
        None,
        fx=scale,
        fy=scale,
        interpolation=cv2.INTER_LINEAR,
    )
    assert got.scale == pytest.approx(scale)
    assert got.pixels.shape == caffe.shape and got.pixels.dtype == np.uint8
    assert np.array_equal(got.pixels, caffe)


def test_shrinking_differs_from_pillows_antialiased_bilinear():
    data, rgb = _png(1500, 750)
    got = prepare(data, min_size=600, max_size=1000, max_pixels=10**8)
    h, w = got.pixels.shape[:2]
    pillow = np.asarray(Image.fromarray(rgb).resize((w, h), Image.Resampling.BILINEAR))
    assert np.abs(pillow[:, :, ::-1].astype(int) - got.pixels.astype(int)).max() > 20
