import hashlib

from PIL import Image

from mmdata.stages.read_images import ReadImages
from tests.stages.helpers import work_batch


def _jpeg(path, size=(32, 24)):
    Image.new("RGB", size, (200, 10, 10)).save(path, format="JPEG")
    return str(path)


def test_reads_decodes_and_records(tmp_path):
    good = _jpeg(tmp_path / "a.jpg")
    truncated = tmp_path / "t.jpg"
    truncated.write_bytes((tmp_path / "a.jpg").read_bytes()[:60])
    (tmp_path / "text.jpg").write_text("not an image")
    batch = work_batch(
        path=[
            good,
            str(truncated),
            str(tmp_path / "gone.jpg"),
            str(tmp_path / "text.jpg"),
            None,
            good,
        ],
        width_px=[32, None, None, None, None, 99],
        height_px=[24, None, None, None, None, 99],
    )
    out = ReadImages().process(batch)
    assert out.column("status").to_pylist() == ["ok"] + ["error"] * 5
    assert out.column("reason").to_pylist() == [
        None,
        "image_decode_error",
        "file_not_found",
        "image_decode_error",
        "missing_path",
        "size_mismatch",
    ]
    row = out.slice(0, 1).to_pylist()[0]
    data = (tmp_path / "a.jpg").read_bytes()
    assert (row["width_px"], row["height_px"], row["format"]) == (32, 24, "jpeg")
    assert row["sha256"] == hashlib.sha256(data).hexdigest() and row["image_bytes"] == data
    details = out.column("_detail").to_pylist()
    assert details[1].startswith(str(truncated)) and "gone.jpg" in details[2]
    assert "file is 32x24, annotation says 99x99" in details[5]


def test_pixel_cap_is_checked_before_decoding(tmp_path):
    big = _jpeg(tmp_path / "big.jpg", (400, 300))
    out = ReadImages(max_pixels=1000, keep_bytes=False).process(work_batch(path=[big]))
    assert out.column("reason").to_pylist() == ["too_many_pixels"]
    ok = ReadImages(keep_bytes=False).process(work_batch(path=[big]))
    assert ok.column("image_bytes").to_pylist() == [None]
    assert ok.column("width_px").to_pylist() == [400]
