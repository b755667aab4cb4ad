"""butd-r101-c4-vg on random weights: shapes, box rules, determinism, given boxes, batching."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from mmdata.models.regions.butd import select_boxes
from mmdata.models.regions.factory import build_extractor
from mmdata.models.regions.geometry import normalised7
from mmdata.models.regions.preprocess import prepare, target_scale
from mmdata.models.regions.rows import features_of
from mmdata.models.regions.selection import ExtractorError, Selection
from mmdata.models.regions.vocab import vg_vocabulary
from tests.regions.conftest import SMALL


def extractor(weights, **selection):
    return build_extractor(
        "butd-r101-c4-vg", weights, selection=Selection(**selection), device="cpu", **SMALL
    )


def prepared(images):
    return [
        prepare(data, SMALL["input_min_size"], SMALL["input_max_size"], 10**8) for data in images
    ]


@pytest.fixture(scope="module")
def butd(butd_weights):
    return extractor(butd_weights, min_boxes=10, max_boxes=20, soft_labels=True)


@pytest.fixture(scope="module")
def rows(butd, images):
    return butd.extract(prepared(images))


def test_rows_have_the_shapes_and_types_the_schema_says(rows, images):
    for row, (w, h) in zip(rows, [(320, 240), (200, 300), (256, 256)]):
        n = row["num_boxes"]
        assert (row["image_width_px"], row["image_height_px"]) == (w, h)
        assert row["feature_dim"] == 2048 and features_of(row).shape == (n, 2048)
        assert features_of(row).dtype == np.float16
        assert np.isfinite(features_of(row).astype(np.float32)).all()
        assert len(row["boxes_xyxy_px"]) == len(row["object_ids"]) == len(row["tags"]) == n
        assert len(row["attribute_ids"]) == len(row["attribute_names"]) == n
        assert all(1 <= c <= 1600 for c in row["object_ids"])  # never background
        assert all(1 <= a <= 400 for a in row["attribute_ids"])  # never "no attribute"
        names = vg_vocabulary("objects").names
        assert row["tags"] == [names[c] for c in row["object_ids"]]
        assert np.allclose(row["boxes_norm7"], normalised7(np.array(row["boxes_xyxy_px"]), w, h))
        probs = np.frombuffer(row["class_probs_f16"], "<f2").reshape(n, row["num_classes"])
        assert row["num_classes"] == 1601 and row["background_index"] == 0
        assert np.allclose(probs.astype(np.float32).sum(1), 1.0, atol=1e-2)
        assert row["extractor_id"].startswith("butd-r101-c4-vg@")


def test_box_counts_follow_min_and_max(rows):
    assert all(10 <= row["num_boxes"] <= 20 for row in rows)


def test_boxes_lie_inside_their_image(rows):
    for row in rows:
        b = np.array(row["boxes_xyxy_px"])
        assert (b[:, 0] >= 0).all() and (b[:, 1] >= 0).all()
        assert (b[:, 2] <= row["image_width_px"]).all() and (
            b[:, 3] <= row["image_height_px"]
        ).all()
        assert (b[:, 2] >= b[:, 0]).all() and (b[:, 3] >= b[:, 1]).all()


def test_same_input_same_output(butd, images, rows):
    again = butd.extract(prepared(images))
    for a, b in zip(rows, again):
        assert a["boxes_xyxy_px"] == b["boxes_xyxy_px"] and a["features_f16"] == b["features_f16"]


def test_fixed_boxes_gives_exactly_that_many(butd_weights, images):
    rows = extractor(butd_weights, fixed_boxes=7).extract(prepared(images[:1]))
    assert rows[0]["num_boxes"] == 7


def test_given_boxes_come_back_exactly(butd, images):
    given = np.array([[0, 0, 100.5, 80.25], [30, 40, 319, 239], [5, 5, 6, 6]], np.float32)
    (row,) = butd.extract(prepared(images[:1]), [given])
    assert row["boxes_given"] and row["num_boxes"] == 3
    assert np.array_equal(np.array(row["boxes_xyxy_px"], np.float32), given)
    empty = butd.extract(prepared(images[:1]), [np.zeros((0, 4), np.float32)])[0]
    assert empty["num_boxes"] == 0 and features_of(empty).shape == (0, 2048)


def test_batched_padded_features_match_one_image_at_a_time(butd, images):
    """The fast path (a padded batch) against the plain per-image loop, same boxes."""
    given = [np.array([[10, 10, 120, 100], [50, 60, 190, 230]], np.float32)] * 3
    batch = butd.extract(prepared(images), given)
    for i, image in enumerate(images):
        (single,) = butd.extract(prepared([image]), given[:1])
        a = features_of(batch[i]).astype(np.float32)
        b = features_of(single).astype(np.float32)
        # float16 storage: agree to half precision, relative to the feature scale
        assert np.abs(a - b).max() <= 2e-3 * max(np.abs(b).max(), 1.0)


def test_select_boxes_rule_on_known_scores():
    boxes = torch.tensor(
        [[0, 0, 10, 10], [1, 1, 10, 10], [50, 50, 60, 60], [0, 0, 5, 5]], dtype=torch.float32
    )
    # columns: class 1, class 2, background (last)
    probs = torch.tensor([[0.9, 0.05, 0.05], [0.8, 0.15, 0.05], [0.1, 0.3, 0.6], [0.05, 0.05, 0.9]])
    # box 1 loses class 1 to box 0 (IoU 0.81) and its class-2 score is low: conf 0.15
    keep = select_boxes(boxes, probs, score_thresh=0.2, nms_thresh=0.3, min_boxes=1, max_boxes=10)
    assert keep.tolist() == [0, 2]
    keep = select_boxes(boxes, probs, score_thresh=0.2, nms_thresh=0.3, min_boxes=3, max_boxes=10)
    assert keep.tolist() == [0, 2, 1]
    keep = select_boxes(boxes, probs, score_thresh=0.0, nms_thresh=0.3, min_boxes=1, max_boxes=1)
    assert keep.tolist() == [0]


def test_caffe_resize_rule():
    assert target_scale(640, 480, 600, 1000) == 600 / 480
    assert target_scale(2000, 500, 600, 1000) == 1000 / 2000


def test_bad_options_and_missing_weights_are_clear(butd_weights):
    with pytest.raises(ExtractorError, match="needs weights"):
        build_extractor("butd-r101-c4-vg", None, selection=Selection(), device="cpu")
    with pytest.raises(ExtractorError, match="min_boxes"):
        build_extractor(
            "butd-r101-c4-vg", butd_weights, selection=Selection(min_boxes=5, max_boxes=2)
        )
    with pytest.raises(ExtractorError, match="unknown region model"):
        build_extractor("yolo", butd_weights, selection=Selection())


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_fp16_fast_path_matches_the_fp32_reference(butd_weights, images):
    given = [np.array([[10, 10, 120, 100], [50, 60, 190, 230]], np.float32)] * 3
    reference = build_extractor(
        "butd-r101-c4-vg",
        butd_weights,
        selection=Selection(),
        device="cpu",
        precision="fp32",
        **SMALL,
    ).extract(prepared(images), given)
    fast = build_extractor(
        "butd-r101-c4-vg", butd_weights, selection=Selection(), device="cuda", **SMALL
    ).extract(prepared(images), given)
    for a, b in zip(fast, reference):
        a, b = features_of(a).astype(np.float32), features_of(b).astype(np.float32)
        assert np.abs(a - b).max() <= 5e-2 * max(np.abs(b).max(), 1.0)
