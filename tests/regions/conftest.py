"""Random-weight detectors saved by the tests, and small images to run them on."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from mmdata.models.regions.butd import ButdConfig, ButdDetector
from mmdata.models.regions.checkpoint import as_detectron2_pkl

#: Small inputs and few proposals keep a ResNet-101 on 2 CPU cores at about a second.
SMALL = {"input_min_size": 128, "input_max_size": 192, "proposals": 24}


def jpeg(width: int, height: int, seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    image = Image.new("RGB", (width, height), tuple(int(c) for c in rng.integers(0, 255, 3)))
    draw = ImageDraw.Draw(image)
    for _ in range(4):
        x, y = int(rng.integers(0, width - 20)), int(rng.integers(0, height - 20))
        w, h = int(rng.integers(10, width // 2)), int(rng.integers(10, height // 2))
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        draw.rectangle([x, y, x + w, y + h], fill=colour)
    buf = io.BytesIO()
    image.save(buf, "JPEG", quality=90)
    return buf.getvalue()


@pytest.fixture(scope="session")
def butd_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A randomly initialised butd-r101-c4-vg in detectron2's .pkl format."""
    torch.manual_seed(0)
    model = ButdDetector(ButdConfig())
    # make the random classifier decisive, so selection sees scores above 0.2
    with torch.no_grad():
        model.roi_heads.box_predictor.cls_score.weight.mul_(40.0)
    path = tmp_path_factory.mktemp("butd") / "butd_random.pkl"
    as_detectron2_pkl(model, path)
    return path


@pytest.fixture(scope="session")
def images() -> list[bytes]:
    return [jpeg(320, 240, 1), jpeg(200, 300, 2), jpeg(256, 256, 3)]
