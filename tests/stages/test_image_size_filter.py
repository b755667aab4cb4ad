import pytest

from mmdata.stages.image_size_filter import ImageSizeFilter
from tests.stages.helpers import work_batch


def test_drops_small_elongated_and_unknown_with_reasons():
    batch = work_batch(
        width_px=[640, 40, 1000, None, 100, 0], height_px=[480, 300, 100, 10, 100, 5]
    )
    out = ImageSizeFilter(min_side_px=64, max_aspect_ratio=4.0).process(batch)
    assert out.column("status").to_pylist() == [
        "ok",
        "rejected",
        "rejected",
        "rejected",
        "ok",
        "rejected",
    ]
    assert out.column("reason").to_pylist() == [
        None,
        "too_small",
        "bad_aspect",
        "unknown_size",
        None,
        "unknown_size",
    ]
    assert out.column("_detail")[1].as_py() == "40x300 px < min_side_px 64"
    assert out.column("_detail")[2].as_py() == "1000x100 px > max_aspect_ratio 4.0"


def test_no_limits_keeps_every_known_size():
    batch = work_batch(width_px=[1, 5000], height_px=[5000, 1])
    assert ImageSizeFilter().process(batch).column("status").to_pylist() == ["ok", "ok"]


def test_bad_arguments():
    with pytest.raises(ValueError):
        ImageSizeFilter(min_side_px=-1)
    with pytest.raises(ValueError, match=">= 1"):
        ImageSizeFilter(max_aspect_ratio=0.5)
