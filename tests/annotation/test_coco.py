"""The coco source on real COCO files (tests/data/coco, copied from shared/realdata)."""

import json

import pytest

from annotation.coco import CocoSource
from annotation.jsonfile import AnnotationError
from tests.conftest import DATA

CAPTIONS = str(DATA / "coco" / "coco_captions_val2017_excerpt.json")
INSTANCES = str(DATA / "coco" / "coco_instances_val2017_1img_sample.json")


def _rows(source: CocoSource, rows_per_partition: int = 1000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def test_captions_grouped_per_image_in_file_order():
    rows = _rows(CocoSource(captions=CAPTIONS, images="/data/val2017", split="val2017"))
    assert [r["image_id"] for r in rows] == ["coco:397133", "coco:37777", "coco:252219"]
    assert [len(r["captions"]) for r in rows] == [5, 5, 5]
    first = rows[0]
    assert (first["width_px"], first["height_px"], first["split"]) == (640, 427, "val2017")
    assert first["path"] == "/data/val2017/000000397133.jpg"
    assert first["url"] == "http://images.cocodataset.org/val2017/000000397133.jpg"
    texts = {c["caption_id"]: c["text"] for r in rows for c in r["captions"]}
    # verbatim, trailing space included: normalising is caption_filter's job
    assert texts["107395"] == "a person with a shopping cart on a city street "


def test_partitions_are_stable_slices():
    source = CocoSource(captions=CAPTIONS)
    parts = source.partitions(2)
    assert [(p.index, p.spec["start"], p.spec["end"]) for p in parts] == [(0, 0, 2), (1, 2, 3)]
    assert [r["image_id"] for r in _rows(source, 2)] == [r["image_id"] for r in _rows(source)]


def test_url_prefix_instead_of_folder():
    rows = _rows(CocoSource(captions=CAPTIONS, images="https://mirror.example/val2017"))
    assert rows[1]["url"] == "https://mirror.example/val2017/000000037777.jpg"
    assert rows[1]["path"] is None


def test_instances_become_gold_objects():
    objects = CocoSource(captions=CAPTIONS, instances=INSTANCES)._objects_by_image[448263]
    assert len(objects) == 16
    raw = json.load(open(INSTANCES))["annotations"][0]
    first = objects[0]
    assert first["object_id"] == str(raw["id"]) and first["box_xywh_px"] == raw["bbox"]
    assert first["names"] == ["person"] if raw["category_id"] == 1 else first["names"]
    assert first["segmentation"] is None
    kept = CocoSource(captions=CAPTIONS, instances=INSTANCES, keep_segmentation=True)
    assert json.loads(kept._objects_by_image[448263][0]["segmentation"]) == raw["segmentation"]


def test_malformed_json_names_file_and_line(tmp_path):
    bad = tmp_path / "captions.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(AnnotationError, match=r"captions.json: malformed JSON at line 2"):
        CocoSource(captions=str(bad)).partitions(10)


def test_json_that_is_not_coco(tmp_path):
    other = tmp_path / "other.json"
    other.write_text('{"categories": []}')
    with pytest.raises(
        AnnotationError,
        match=r"other.json: top level lacks key\(s\) "
        r"\['images', 'annotations'\]",
    ):
        CocoSource(captions=str(other)).partitions(10)


def test_caption_of_an_unknown_image_is_an_error(tmp_path):
    data = json.load(open(CAPTIONS))
    data["annotations"][3]["image_id"] = 999
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    source = CocoSource(captions=str(path))
    with pytest.raises(AnnotationError, match=r"annotation id \d+ refers to image_id 999"):
        source.read(source.partitions(10)[0])


def test_bad_image_records_become_error_rows(tmp_path):
    data = json.load(open(CAPTIONS))
    data["images"].append(dict(data["images"][0]))  # duplicate id
    del data["images"][1]["width"]
    data["images"].append({"id": 5, "file_name": "x.jpg", "width": 1, "height": 1})
    path = tmp_path / "c.json"
    path.write_text(json.dumps(data))
    rows = _rows(CocoSource(captions=str(path)))
    assert [(r["status"], r["reason"]) for r in rows] == [
        (None, None),
        ("error", "missing_key"),
        (None, None),
        ("error", "duplicate_id"),
        ("error", "no_captions"),
    ]
    assert rows[1]["_detail"].endswith("image id 37777: lacks ['width']")
