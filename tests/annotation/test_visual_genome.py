"""The visual_genome source on real VG files (tests/data/visual_genome, from shared/realdata)."""

import json
import os
import shutil
from pathlib import Path

import pytest

from annotation.jsonfile import AnnotationError
from annotation.spill import MARKER
from annotation.visual_genome import VisualGenomeSource
from mmdata.catalog.store import Catalog
from mmdata.engine import recipe as recipe_mod
from mmdata.engine.run import run_recipe
from tests.conftest import DATA, ROOT, write_recipe

V12 = DATA / "visual_genome" / "v1.2_first5images"
V14 = DATA / "visual_genome" / "v1.4style_per_image"
FILES = {
    "image_data": V12 / "image_data.json",
    "objects": V12 / "objects_v1_2.json",
    "attributes": V12 / "attributes.json",
    "relationships": V12 / "relationships_v1_2.json",
    "region_descriptions": V12 / "region_descriptions.json",
}


def _load(name: str) -> list:
    return json.loads(FILES[name].read_text())


def _source(tmp_path: Path, **overrides) -> VisualGenomeSource:
    args = {k: str(v) for k, v in FILES.items()}
    args.update(overrides)
    return VisualGenomeSource(**{k: v for k, v in args.items() if v}, cache_dir=str(tmp_path))


def _rows(source: VisualGenomeSource, rows_per_partition: int = 1000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def _modified(tmp_path: Path, name: str, change) -> str:
    """A copy of a real file with ``change`` applied to its parsed JSON."""
    data = _load(name)
    change(data)
    path = tmp_path / f"modified_{name}.json"
    path.write_text(json.dumps(data))
    return str(path)


def _by_id(rows: list[dict]) -> dict[str, dict]:
    return {r["image_id"]: r for r in rows}


def test_one_row_per_image_with_counts_from_the_files(tmp_path):
    rows = _rows(_source(tmp_path))
    assert [r["image_id"] for r in rows] == ["vg:1", "vg:2", "vg:3", "vg:4", "vg:5"]
    objects = [len(r["objects"]) for r in _load("objects")]
    relations = [len(r["relationships"]) for r in _load("relationships")]
    regions = [len(r["regions"]) for r in _load("region_descriptions")]
    # Every relationship endpoint and attribute object is also in objects_v1_2.json.
    assert [len(r["gold"]["objects"]) for r in rows] == objects == [40, 27, 52, 24, 34]
    assert [len(r["gold"]["relations"]) for r in rows] == relations == [41, 23, 50, 16, 28]
    assert [len(r["gold"]["regions"]) for r in rows] == regions == [262, 256, 255, 257, 248]
    assert all(r["status"] is None and r["_item_rejects"] == [] for r in rows)
    assert all(r["captions"] == [] and r["source"] == "vg" for r in rows)


def test_image_columns(tmp_path):
    first = _rows(_source(tmp_path))[0]
    assert first["url"] == "https://cs.stanford.edu/people/rak248/VG_100K_2/1.jpg"
    assert (first["width_px"], first["height_px"], first["path"]) == (800, 600, None)


def test_images_folder_or_url_prefix(tmp_path):
    folder = _rows(_source(tmp_path, images="/data/vg"))[1]
    assert folder["path"] == "/data/vg/2.jpg"
    assert folder["url"] == "https://cs.stanford.edu/people/rak248/VG_100K/2.jpg"
    prefix = _rows(_source(tmp_path, images="https://mirror.example/vg/"))[1]
    assert (prefix["url"], prefix["path"]) == ("https://mirror.example/vg/2.jpg", None)


def test_known_values(tmp_path):
    gold = _rows(_source(tmp_path))[0]["gold"]
    region = next(g for g in gold["regions"] if g["region_id"] == "1382")
    assert region["text"] == "the clock is green in colour"
    assert region["box_xywh_px"] == [421, 57, 82, 139]
    clock = gold["objects"][0]
    assert (clock["object_id"], clock["names"], clock["category_id"]) == (
        "1058498",
        ["clock"],
        None,
    )
    assert clock["box_xywh_px"] == [421, 91, 79, 339]
    assert clock["attributes"] == ["green", "tall"] and clock["synsets"] == ["clock.n.01"]
    shade = next(r for r in gold["relations"] if r["relation_id"] == "15927")
    subject, obj = gold["objects"][shade["subject"]], gold["objects"][shade["object"]]
    assert (subject["names"], shade["predicate"], obj["names"]) == (["shade"], "ON", ["street"])
    assert (subject["object_id"], obj["object_id"]) == ("5045", "5046")
    assert shade["synsets"] == ["along.r.01"]


def test_scene_graph_mirrors_gold(tmp_path):
    gold = _rows(_source(tmp_path))[0]["gold"]
    graph = gold["scene_graph"]
    assert len(graph["objects"]) == len(gold["objects"])
    assert graph["objects"][0] == {
        "head": "clock",
        "text": "clock",
        "span": None,
        "count": None,
        "attributes": [
            {"text": "green", "span": None, "lemma": None, "name": None},
            {"text": "tall", "span": None, "lemma": None, "name": None},
        ],
        "lemma": None,
        "name": None,
    }
    assert [(r["subject"], r["predicate"], r["object"]) for r in graph["relations"]] == [
        (r["subject"], r["predicate"], r["object"]) for r in gold["relations"]
    ]
    assert all(r["span"] is None for r in graph["relations"])


def test_partitions_give_the_same_rows(tmp_path):
    source = _source(tmp_path)
    assert [p.index for p in source.partitions(2)] == [0, 1, 2]
    assert _rows(source, 2) == _rows(source, 1000)
    assert [r["image_id"] for r in source.read(source.partitions(2)[1]).to_pylist()] == [
        "vg:3",
        "vg:4",
    ]


def test_cache_is_reused_and_a_half_written_one_rebuilt(tmp_path):
    folder = _source(tmp_path).partitions(2)[0].spec["cache"]
    sentinel = Path(folder) / "sentinel"
    sentinel.write_text("")
    assert _source(tmp_path).partitions(2)[0].spec["cache"] == folder
    assert sentinel.exists()  # reused, not rebuilt
    (Path(folder) / MARKER).unlink()
    assert _source(tmp_path).partitions(2)[0].spec["cache"] == folder
    assert not sentinel.exists() and (Path(folder) / MARKER).exists()
    # another partition size is another cache
    assert _source(tmp_path).partitions(3)[0].spec["cache"] != folder


def test_default_cache_under_system_temp(tmp_path, monkeypatch):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    source = VisualGenomeSource(image_data=str(FILES["image_data"]))
    folder = source.partitions(2)[0].spec["cache"]
    assert Path(folder).parent == tmp_path and Path(folder).name.startswith("mmdata-vg-")
    shutil.rmtree(folder)  # a worker that cannot see the cache rebuilds it
    assert len(source.read(source.partitions(2)[2])) == 1


def test_v14_relationships_with_merged_objects(tmp_path):
    rel_path = V14 / "relationships.json"
    source = _source(
        tmp_path,
        objects=None,
        region_descriptions=None,
        relationships=str(rel_path),
        attributes=str(V14 / "attributes.json"),
    )
    rows = _by_id(_rows(source))
    gold = rows["vg:1"]["gold"]
    raw = json.loads(rel_path.read_text())["relationships"]
    assert len(gold["relations"]) == len(raw) == 41
    first = gold["relations"][0]
    assert first["relation_id"] == "15927"
    sidewalk = gold["objects"][first["object"]]
    # merged endpoint: 'names' list, its own object_id; 5046 (street in v1.2) merged into it
    assert (sidewalk["object_id"], sidewalk["names"]) == ("1058534", ["sidewalk"])
    ids = {o["object_id"] for o in gold["objects"]}
    attribute_ids = {str(a["object_id"]) for a in _load_json(V14 / "attributes.json")}
    # Quirk of the real file: attributes.json still lists 5046 (street) as an object of
    # its own, though relationships.json says it was merged into 1058534; both stay, and
    # the relation keeps pointing at the endpoint's own id.
    assert attribute_ids <= ids and "5046" in ids
    assert len(gold["objects"]) == len(ids)
    assert all(not rows[f"vg:{i}"]["gold"]["relations"] for i in (2, 3, 4, 5))


def _load_json(path: Path) -> list:
    return json.loads(path.read_text())["attributes"]


def test_v14_self_relation_of_a_merged_object(tmp_path):
    # relationships2.json: "walk sign says walk sign", 5090 merged into 5069
    source = _source(
        tmp_path,
        objects=None,
        attributes=None,
        region_descriptions=None,
        relationships=str(V14 / "relationships2.json"),
    )
    gold = _by_id(_rows(source))["vg:2"]["gold"]
    says = next(r for r in gold["relations"] if r["relation_id"] == "15972")
    assert says["subject"] == says["object"]
    assert gold["objects"][says["subject"]]["names"] == ["walk sign"]
    assert len(gold["relations"]) == 23


def _rejects(row: dict) -> list[tuple]:
    return [(r["kind"], r["item_id"], r["reason"]) for r in row["_item_rejects"]]


def test_bad_object_boxes_drop_object_and_its_relations(tmp_path):
    def change(data):
        data[0]["objects"][0]["w"] = 0  # clock 1058498
        data[0]["objects"][1]["x"] = 790  # 5046 street, 714 wide on an 800 image

    source = _source(tmp_path, objects=_modified(tmp_path, "objects", change))
    row = _rows(source)[0]
    rejects = _rejects(row)
    assert rejects[:2] == [
        ("object", "1058498", "non_positive_box"),
        ("object", "5046", "box_outside_image"),
    ]
    assert ("relation", "15927", "dangling_relation") in rejects
    dangling = [r for r in rejects if r[2] == "dangling_relation"]
    assert len(row["gold"]["relations"]) == 41 - len(dangling)
    assert len(row["gold"]["objects"]) == 38
    assert "modified_objects.json: image id 1: box" in row["_item_rejects"][0]["detail"]


def test_duplicate_and_missing_key_items(tmp_path):
    def objects(data):
        data[1]["objects"].append(dict(data[1]["objects"][0]))
        del data[1]["objects"][2]["h"]

    def regions(data):
        data[2]["regions"].append(dict(data[2]["regions"][0]))
        data[2]["regions"][1]["height"] = -3

    def relations(data):
        data[3]["relationships"].append(dict(data[3]["relationships"][0]))

    source = _source(
        tmp_path,
        objects=_modified(tmp_path, "objects", objects),
        region_descriptions=_modified(tmp_path, "region_descriptions", regions),
        relationships=_modified(tmp_path, "relationships", relations),
    )
    rows = _rows(source)
    assert ("object", "5069", "duplicate_id") in _rejects(rows[1])
    assert [r[2] for r in _rejects(rows[1])][0] == "missing_key"
    assert _rejects(rows[2]) == [
        (
            "region",
            str(_load("region_descriptions")[2]["regions"][1]["region_id"]),
            "non_positive_box",
        ),
        ("region", "1392", "duplicate_id"),
    ]
    assert len(rows[2]["gold"]["regions"]) == 255 - 1
    assert _rejects(rows[3]) == [("relation", "15997", "duplicate_id")]
    assert len(rows[3]["gold"]["relations"]) == 16


def test_relation_endpoint_not_in_objects_is_added(tmp_path):
    def change(data):
        data[0]["objects"] = [o for o in data[0]["objects"] if o["object_id"] != 5045]

    row = _rows(_source(tmp_path, objects=_modified(tmp_path, "objects", change)))[0]
    shade = next(r for r in row["gold"]["relations"] if r["relation_id"] == "15927")
    added = row["gold"]["objects"][shade["subject"]]
    assert (added["object_id"], added["names"], added["box_xywh_px"]) == (
        "5045",
        ["shade"],
        [119, 338, 274, 192],
    )
    assert len(row["gold"]["objects"]) == 40 and row["_item_rejects"] == []


def test_image_errors(tmp_path):
    def change(data):
        del data[1]["height"]
        data.append(dict(data[0]))

    rows = _rows(_source(tmp_path, image_data=_modified(tmp_path, "image_data", change)))
    assert len(rows) == 6
    assert (rows[1]["status"], rows[1]["reason"]) == ("error", "missing_key")
    assert "image_data.json: image id 2: lacks ['height']" in rows[1]["_detail"]
    assert (rows[5]["image_id"], rows[5]["status"], rows[5]["reason"]) == (
        "vg:1",
        "error",
        "duplicate_id",
    )
    assert rows[0]["status"] is None and len(rows[0]["gold"]["objects"]) == 40
    # the repeat is found whichever partition it lands in
    one_per_shard = _rows(
        _source(tmp_path, image_data=_modified(tmp_path, "image_data", change)), 1
    )
    assert [r["reason"] for r in one_per_shard] == [r["reason"] for r in rows]


def test_annotation_of_an_unknown_image_is_an_error(tmp_path):
    def change(data):
        data[3]["id"] = 999

    path = _modified(tmp_path, "region_descriptions", change)
    with pytest.raises(AnnotationError, match=r"region_descriptions.json: image id 999 is not in"):
        _source(tmp_path, region_descriptions=path).partitions(2)


def test_malformed_json_names_file(tmp_path):
    bad = tmp_path / "relationships.json"
    bad.write_text(FILES["relationships"].read_text()[:5000] + "}{")
    with pytest.raises(AnnotationError, match=r"relationships.json: malformed JSON"):
        _source(tmp_path, relationships=str(bad)).partitions(2)
    # the half-built cache is not left behind as if complete
    assert not any(p.name.startswith("mmdata-vg-") for p in tmp_path.iterdir())


def _vg_dir(tmp_path: Path) -> Path:
    vg_dir = tmp_path / "vg"
    (vg_dir / "images").mkdir(parents=True)
    names = {"objects": "objects.json", "relationships": "relationships.json"}
    for kind, path in FILES.items():
        shutil.copyfile(path, vg_dir / names.get(kind, path.name))
    return vg_dir


def test_vg_recipe_validates(tmp_path):
    vg_dir = _vg_dir(tmp_path)
    loaded = recipe_mod.load(ROOT / "recipes" / "vg.yaml", {"VG_DIR": str(vg_dir)})
    assert loaded.name == "vg"
    assert loaded.build_source().image_data == str(vg_dir / "image_data.json")


def test_end_to_end_local(tmp_path):
    source = {k: str(v) for k, v in FILES.items()}
    recipe = {
        "name": "vg_test",
        "source": {"visual_genome": {**source, "cache_dir": str(tmp_path / "cache")}},
        "stages": [],
        "output": str(tmp_path / "corpus"),
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 2,
    }
    loaded = recipe_mod.load(write_recipe(tmp_path / "vg.yaml", recipe))
    result = run_recipe(loaded, "local", progress=False)
    assert (result.shards_total, result.shards_written) == (3, 3)
    catalog = Catalog(loaded.catalog)

    def count(view: str) -> int:
        return catalog.query(f"SELECT count(*) FROM {view}")[1][0][0]

    # no rejects in the real sample: the counts are the files' own
    assert count("images") == 5
    assert count("gold_objects") == sum(len(r["objects"]) for r in _load("objects"))
    assert count("gold_relations") == sum(len(r["relationships"]) for r in _load("relationships"))
    assert count("region_captions") == sum(len(r["regions"]) for r in _load("region_descriptions"))
    _, shade = catalog.query(
        "SELECT subject, predicate, object FROM gold_relations WHERE relation_id = '15927'"
    )
    assert shade == [("shade", "ON", "street")]
    assert os.path.isdir(tmp_path / "cache")
