"""torchvision-frcnn on random weights the test saves; the detectron2 adapter."""

from __future__ import annotations

import importlib.util

import numpy as np
import pytest
import torch
import yaml
from torchvision.models.detection import fasterrcnn_resnet50_fpn

from mmdata.models.regions.factory import build_extractor
from mmdata.models.regions.preprocess import prepare
from mmdata.models.regions.rows import features_of
from mmdata.models.regions.selection import ExtractorError, Selection

HAS_DETECTRON2 = importlib.util.find_spec("detectron2") is not None


@pytest.fixture(scope="module")
def tv_weights(tmp_path_factory):
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("tv") / "frcnn.pth"
    torch.save(fasterrcnn_resnet50_fpn(weights=None, weights_backbone=None).state_dict(), path)
    return path


def test_torchvision_frcnn_extracts_and_pools_given_boxes(tv_weights, images):
    ex = build_extractor(
        "torchvision-frcnn",
        tv_weights,
        selection=Selection(min_boxes=5, max_boxes=12, soft_labels=True),
        device="cpu",
        input_min_size=160,
        input_max_size=224,
    )
    batch = [prepare(d, 160, 224, 10**8) for d in images]
    rows = ex.extract(batch)
    for row in rows:
        assert 5 <= row["num_boxes"] <= 12
        assert row["feature_dim"] == 1024 and features_of(row).shape == (row["num_boxes"], 1024)
        assert row["attribute_ids"] is None and row["num_classes"] == 91
        assert all(1 <= c < 91 for c in row["object_ids"])
        b = np.array(row["boxes_xyxy_px"])
        assert (b[:, 2] <= row["image_width_px"]).all() and (
            b[:, 3] <= row["image_height_px"]
        ).all()
    assert rows[0]["extractor_id"].startswith("torchvision-frcnn@")
    given = np.array([[0, 0, 50, 60], [10, 10, 300, 200]], np.float32)
    (row,) = ex.extract(batch[:1], [given])
    assert np.array_equal(np.array(row["boxes_xyxy_px"], np.float32), given)


@pytest.mark.skipif(HAS_DETECTRON2, reason="detectron2 is installed")
def test_detectron2_model_says_how_to_install_it(butd_weights):
    with pytest.raises(ExtractorError, match="needs detectron2, which is not installed"):
        build_extractor("detectron2", butd_weights, selection=Selection(), device="cpu")


@pytest.mark.skipif(not HAS_DETECTRON2, reason="needs detectron2 (not installable here)")
def test_detectron2_and_butd_agree_on_the_same_random_weights(tmp_path, images):
    """A stock detectron2 C4 R101 and mmdata's butd built to the same architecture."""
    from mmdata.models.regions.butd import ButdConfig, ButdDetector
    from mmdata.models.regions.checkpoint import as_detectron2_pkl

    config = ButdConfig(
        caffe_maxpool=False,
        rpn_channels=1024,
        res5_dilation=1,
        num_attributes=0,
        min_size=160,
        max_size=224,
        rpn_post_nms_topk=30,
    )
    torch.manual_seed(0)
    weights = tmp_path / "same.pkl"
    as_detectron2_pkl(ButdDetector(config), weights)
    (tmp_path / "butd.json").write_text(config.to_json())
    d2 = {
        "MODEL": {
            "META_ARCHITECTURE": "GeneralizedRCNN",
            "PIXEL_MEAN": [102.9801, 115.9465, 122.7717],
            "PIXEL_STD": [1.0, 1.0, 1.0],
            "BACKBONE": {"NAME": "build_resnet_backbone", "FREEZE_AT": 2},
            "RESNETS": {
                "DEPTH": 101,
                "OUT_FEATURES": ["res4"],
                "NORM": "FrozenBN",
                "STRIDE_IN_1X1": True,
            },
            "ANCHOR_GENERATOR": {"SIZES": [[64, 128, 256, 512]], "ASPECT_RATIOS": [[0.5, 1, 2]]},
            "RPN": {"IN_FEATURES": ["res4"], "POST_NMS_TOPK_TEST": 30, "NMS_THRESH": 0.7},
            "ROI_HEADS": {"NAME": "Res5ROIHeads", "IN_FEATURES": ["res4"], "NUM_CLASSES": 1600},
            "ROI_BOX_HEAD": {"POOLER_TYPE": "ROIPool", "POOLER_RESOLUTION": 14},
        },
        "INPUT": {"FORMAT": "BGR", "MIN_SIZE_TEST": 160, "MAX_SIZE_TEST": 224},
    }
    yaml_path = tmp_path / "d2.yaml"
    yaml_path.write_text(yaml.safe_dump(d2))
    selection = Selection(fixed_boxes=10)
    ours = build_extractor(
        "butd-r101-c4-vg",
        weights,
        selection=selection,
        device="cpu",
        model_config=tmp_path / "butd.json",
    )
    theirs = build_extractor(
        "detectron2", weights, selection=selection, device="cpu", model_config=yaml_path
    )
    batch = [prepare(d, 160, 224, 10**8) for d in images]
    for a, b in zip(ours.extract(batch), theirs.extract(batch)):
        assert np.allclose(a["boxes_xyxy_px"], b["boxes_xyxy_px"], atol=1e-2)
        assert a["object_ids"] == b["object_ids"]
        assert np.allclose(features_of(a), features_of(b), atol=1e-2, rtol=1e-2)
