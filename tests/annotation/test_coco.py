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
    assert [p.index for p in source.partitions(2)] == [0, 1]
    assert [r["image_id"] for r in _rows(source, 2)] == [r["image_id"] for r in _rows(source)]


def test_url_prefix_instead_of_folder():
    rows = _rows(CocoSource(captions=CAPTIONS, images="https://mirror.example/val2017"))
    assert rows[1]["url"] == "https://mirror.example/val2017/000000037777.jpg"
    assert rows[1]["path"] is None


def _captions_for_instances_image(tmp_path) -> str:
    """The real captions excerpt, its first image re-pointed at the instances' image."""
    captions = json.load(open(CAPTIONS))
    image = json.load(open(INSTANCES))["images"][0]
    first = captions["images"][0]
    for ann in captions["annotations"]:
        if ann["image_id"] == first["id"]:
            ann["image_id"] = image["id"]
    first.update(id=image["id"], width=image["width"], height=image["height"])
    path = tmp_path / "captions.json"
    path.write_text(json.dumps(captions))
    return str(path)


def test_instances_become_gold_objects(tmp_path):
    captions = _captions_for_instances_image(tmp_path)
    row = _rows(CocoSource(captions=captions, instances=INSTANCES))[0]
    objects = row["gold"]["objects"]
    assert (row["image_id"], len(objects), row["_item_rejects"]) == ("coco:448263", 16, None)
    raw = json.load(open(INSTANCES))["annotations"][0]
    first = objects[0]
    assert first["object_id"] == str(raw["id"])
    assert first["box_xywh_px"] == pytest.approx(raw["bbox"])
    names = {c["id"]: c["name"] for c in json.load(open(INSTANCES))["categories"]}
    assert first["names"] == [names[raw["category_id"]]] and first["segmentation"] is None
    kept = CocoSource(captions=captions, instances=INSTANCES, keep_segmentation=True)
    segmentation = _rows(kept)[0]["gold"]["objects"][0]["segmentation"]
    assert json.loads(segmentation) == raw["segmentation"]


def test_malformed_json_names_file_and_line(tmp_path):
    bad = tmp_path / "captions.json"
    bad.write_text('{"images": [\n  {"id": 1,}\n]}')
    with pytest.raises(AnnotationError, match=r"captions.json: malformed JSON"):
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
    with pytest.raises(
        AnnotationError,
        match=r"c.json: has annotations for 1 image\(s\) not "
        r"in the captions file's 'images' .*image_id 999",
    ):
        CocoSource(captions=str(path)).partitions(10)


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


KARPATHY = str(DATA / "coco" / "karpathy_dataset_coco_first_record.json")


def test_karpathy_split_overrides_the_split_argument(tmp_path):
    data = json.load(open(CAPTIONS))
    karpathy = json.load(open(KARPATHY))
    karpathy["images"][0]["cocoid"] = 37777  # the real record, pointed at an image we have
    path = tmp_path / "dataset_coco.json"
    path.write_text(json.dumps(karpathy))
    rows = _rows(CocoSource(captions=CAPTIONS, karpathy=str(path), split="val2017"))
    assert [r["split"] for r in rows] == ["val2017", "test", "val2017"]
    assert len(data["images"]) == 3


def test_strict_records_become_item_rejects(tmp_path):
    """Duplicate and empty captions, bad boxes and unknown categories drop the item only."""
    captions = json.load(open(CAPTIONS))
    instances = json.load(open(INSTANCES))
    image = instances["images"][0]  # give the first captioned image the instances' image
    first = captions["images"][0]
    mine = [a for a in captions["annotations"] if a["image_id"] == first["id"]]
    for ann in mine:
        ann["image_id"] = image["id"]
    first.update(id=image["id"], width=image["width"], height=image["height"])
    mine[1]["caption"] = "   "
    mine[2]["id"] = mine[0]["id"]
    anns = instances["annotations"]
    anns[0]["bbox"] = [10, 10, 0, 5]
    anns[1]["bbox"] = [300, 200, 50, 50]  # the image is 320x240
    anns[2]["category_id"] = 999
    anns[3]["id"] = anns[4]["id"]
    paths = {}
    for name, data in (("captions", captions), ("instances", instances)):
        paths[name] = tmp_path / f"{name}.json"
        paths[name].write_text(json.dumps(data))
    source = CocoSource(captions=str(paths["captions"]), instances=str(paths["instances"]))
    row = source.read(source.partitions(10)[0]).to_pylist()[0]
    reasons = sorted((r["kind"], r["reason"]) for r in row["_item_rejects"])
    assert reasons == [
        ("caption", "duplicate_id"),
        ("caption", "empty_caption"),
        ("object", "box_outside_image"),
        ("object", "duplicate_id"),
        ("object", "non_positive_box"),
        ("object", "unknown_category"),
    ]
    assert len(row["captions"]) == 3 and len(row["gold"]["objects"]) == 12


def test_instances_of_another_split_are_refused():
    source = CocoSource(captions=CAPTIONS, instances=INSTANCES)
    with pytest.raises(AnnotationError, match=r"1 image\(s\) not in .* image_id 448263"):
        source.partitions(10)


def test_round_trip_to_sql_keeps_caption_counts(tmp_path):
    from collections import Counter

    from mmdata.catalog.store import Catalog
    from mmdata.engine import recipe as recipes
    from mmdata.engine.run import run_recipe
    from tests.conftest import write_recipe

    spec = {
        "name": "coco_val",
        "source": {"coco": {"captions": CAPTIONS, "split": "val2017"}},
        "output": str(tmp_path / "out"),
        "catalog": str(tmp_path / "c.duckdb"),
        "shard_rows": 2,
    }
    recipe = recipes.load(write_recipe(tmp_path / "r.yaml", spec))
    run_recipe(recipe, "local", progress=False)
    expected = Counter(f"coco:{a['image_id']}" for a in json.load(open(CAPTIONS))["annotations"])
    got = Catalog(recipe.catalog).query(
        "SELECT image_id, count(*) FROM captions GROUP BY image_id"
    )[1]
    assert dict(got) == dict(expected)
    texts = Catalog(recipe.catalog).query(
        "SELECT text FROM captions WHERE caption_id = ?", ["107395"]
    )[1]
    assert texts == [("a person with a shopping cart on a city street ",)]
