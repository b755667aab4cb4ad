"""Checkpoint loading: every key mapped, nothing ignored, clear failures."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
import torch

from mmdata.models.regions.butd import ButdConfig, ButdDetector
from mmdata.models.regions.checkpoint import (
    CheckpointError,
    caffe2_name,
    fit_state,
    load_weights,
    read_checkpoint,
)

#: A ButdDetector small enough to build in a blink (same names, fewer blocks).
TINY = ButdConfig(depth=50, num_classes=5, num_attributes=3, rpn_channels=16)


def test_detectron2_pkl_maps_every_parameter_and_buffer(butd_weights):
    with butd_weights.open("rb") as fh:
        blobs = pickle.load(fh, encoding="latin1")["model"]
    model = ButdDetector().eval()
    load_weights(model, butd_weights)
    state = model.state_dict()
    assert set(state) == set(blobs)  # every key of the file used, every model key filled
    for name, value in blobs.items():
        assert torch.equal(state[name], torch.from_numpy(value)), name
    assert "roi_heads.box_predictor.cls_embedding.weight" in blobs
    assert blobs["roi_heads.box_predictor.cls_score.weight"].shape == (1601, 2048)
    assert blobs["roi_heads.box_predictor.bbox_pred.weight"].shape == (6400, 2048)


def test_pth_state_dicts_load_bare_or_under_model(tmp_path):
    torch.manual_seed(1)
    source = ButdDetector(TINY)
    for i, wrap in enumerate((lambda s: s, lambda s: {"model": s}, lambda s: {"state_dict": s})):
        path = tmp_path / f"w{i}.pth"
        torch.save(wrap({f"module.{k}": v for k, v in source.state_dict().items()}), path)
        target = ButdDetector(TINY)
        load_weights(target, path)
        for k, v in source.state_dict().items():
            assert torch.equal(target.state_dict()[k], v)


def test_caffe2_names_and_class_order_are_converted(tmp_path):
    assert caffe2_name("res2_0_branch2a_w") == "backbone.res2.0.conv1.weight"
    assert caffe2_name("res3_1_branch2b_bn_s") == "backbone.res3.1.conv2.norm.weight"
    assert caffe2_name("res_conv1_bn_b") == "backbone.stem.conv1.norm.bias"
    assert caffe2_name("conv1_w") == "backbone.stem.conv1.weight"
    assert caffe2_name("res5_0_branch1_w") == "roi_heads.res5.0.shortcut.weight"
    assert caffe2_name("rpn_cls_logits_w") == "proposal_generator.rpn_head.objectness_logits.weight"
    assert caffe2_name("cls_score_b") == "roi_heads.box_predictor.cls_score.bias"

    torch.manual_seed(2)
    model = ButdDetector(TINY)
    d2 = model.state_dict()
    inverse = {caffe2_name(c2): c2 for c2 in _caffe2_names(d2)}
    blobs = {}
    for name, value in d2.items():
        if name.endswith(("running_mean", "running_var")):
            continue  # Caffe2 folds BN: no statistics in the file
        value = value.numpy()
        if name.startswith("roi_heads.box_predictor.bbox_pred"):
            value = np.concatenate([np.zeros_like(value[:4]), value])  # background rows first
        elif name.startswith(
            (
                "roi_heads.box_predictor.cls_score",
                "roi_heads.box_predictor.cls_embedding",
                "roi_heads.box_predictor.attr_score",
            )
        ):
            value = np.concatenate([value[-1:], value[:-1]])  # background first
        blobs[inverse[name]] = value
    path = tmp_path / "c2.pkl"
    with path.open("wb") as fh:
        pickle.dump({"blobs": blobs}, fh)
    loaded = ButdDetector(TINY)
    load_weights(loaded, path)
    for name, value in d2.items():
        if name.endswith("running_mean"):
            assert not loaded.state_dict()[name].any()
        elif name.endswith("running_var"):
            assert (loaded.state_dict()[name] == 1).all()
        else:
            assert torch.equal(loaded.state_dict()[name], value), name


def _caffe2_names(state: dict) -> list[str]:
    """Caffe2 blob names for a detectron2 state dict (test helper: the inverse mapping)."""
    names = []
    for name in state:
        if name.endswith(("running_mean", "running_var")):
            continue
        n = name.removeprefix("backbone.").removeprefix("roi_heads.")
        n = n.removeprefix("box_predictor.").removeprefix("proposal_generator.rpn_head.")
        stem = {
            "stem.conv1.norm.weight": "res_conv1_bn_s",
            "stem.conv1.norm.bias": "res_conv1_bn_b",
        }
        if n in stem or n == "stem.conv1.weight":
            names.append(stem.get(n, "conv1_w"))
            continue
        n = n.replace(".shortcut.", ".branch1.").replace(".conv1.", ".branch2a.")
        n = n.replace(".conv2.", ".branch2b.").replace(".conv3.", ".branch2c.")
        n = n.replace("norm.weight", "bn_s").replace("norm.bias", "bn_b")
        n = n.replace("objectness_logits.", "rpn_cls_logits.").replace(
            "anchor_deltas.", "rpn_bbox_pred."
        )
        if name.startswith("proposal_generator.rpn_head.conv."):
            n = n.replace("conv.", "conv_rpn.")
        n = n.replace(".weight", "_w").replace(".bias", "_b").replace(".", "_")
        names.append(n)
    return names


def test_a_wrong_checkpoint_names_its_missing_unexpected_and_misshaped_keys(tmp_path):
    state = ButdDetector(TINY).state_dict()
    state.pop("backbone.res2.0.conv1.weight")
    state["roi_heads.box_predictor.extra.weight"] = torch.zeros(2)
    state["roi_heads.box_predictor.cls_score.weight"] = torch.zeros(9, 2048)
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(CheckpointError) as err:
        load_weights(ButdDetector(TINY), path)
    message = str(err.value)
    assert str(path) in message
    assert "1 missing (backbone.res2.0.conv1.weight)" in message
    assert "1 unexpected (roi_heads.box_predictor.extra.weight)" in message
    assert "roi_heads.box_predictor.cls_score.weight: file (9, 2048), model (6, 2048)" in message


def test_a_corrupt_or_foreign_file_fails_clearly(tmp_path, butd_weights):
    truncated = tmp_path / "cut.pkl"
    truncated.write_bytes(butd_weights.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="cut.pkl: not a readable checkpoint"):
        read_checkpoint(truncated)
    text = tmp_path / "notes.pth"
    text.write_text("not weights")
    with pytest.raises(CheckpointError, match="notes.pth: not a readable checkpoint"):
        read_checkpoint(text)
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        read_checkpoint(tmp_path / "absent.pkl")
    listing = tmp_path / "list.pkl"
    listing.write_bytes(pickle.dumps([1, 2, 3]))
    with pytest.raises(CheckpointError, match="expected a dict"):
        read_checkpoint(listing)
    with pytest.raises(CheckpointError, match="missing"):
        fit_state({}, ButdDetector(TINY), False, "empty")
