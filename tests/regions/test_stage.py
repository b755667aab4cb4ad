"""The regions stage in a Ray recipe: rows in shards, views in the catalog, exports."""

from __future__ import annotations

import base64
import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest

from mmdata.catalog.store import Catalog
from mmdata.core.schema import STATUS_ERROR
from mmdata.demo import data as demo
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from mmdata.exports.regions import LXMERT_FIELDS, ExportError, export_regions
from mmdata.stages.regions import Regions
from tests.conftest import write_recipe
from tests.regions.conftest import SMALL
from tests.stages.helpers import work_batch

REAL_TSV = Path(__file__).parents[2] / "tests" / "data" / "regions" / "lxmert_obj36_rows.tsv"


def recipe_for(tmp_path: Path, data: dict, weights: Path, **regions) -> recipes.Recipe:
    spec = {
        "name": "regions_test",
        "source": {
            "coco": {
                "captions": data["captions"],
                "instances": data["instances"],
                "images": data["images"],
                "split": "train",
            }
        },
        "stages": [
            {"read_images": {"keep_bytes": True}},
            {"regions": {"weights": str(weights), "device": "cpu", **SMALL, **regions}},
        ],
        "output": str(tmp_path / "corpus"),
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 4,
    }
    return recipes.load(write_recipe(tmp_path / "regions.yaml", spec))


@pytest.fixture(scope="module")
def coco8(tmp_path_factory):
    """8 generated COCO images; image 7 is truncated on purpose."""
    return demo.generate(tmp_path_factory.mktemp("coco8"), num_images=8)


@pytest.fixture(scope="module")
def ray_catalog(tmp_path_factory, coco8, butd_weights, ray_session):
    out = tmp_path_factory.mktemp("regions_ray")
    recipe = recipe_for(out, coco8, butd_weights, min_boxes=10, max_boxes=16, soft_labels=True)
    run_recipe(recipe, "ray", progress=False)
    return Catalog(recipe.catalog)


@pytest.mark.ray
def test_ray_recipe_writes_regions_queryable_in_sql(ray_catalog):
    columns, rows = ray_catalog.query(
        "SELECT image_id, extractor, num_boxes, image_w, image_h FROM regions ORDER BY image_id"
    )
    assert columns == ["image_id", "extractor", "num_boxes", "image_w", "image_h"]
    assert len(rows) == 7  # image 7 does not decode: a reject, not a region row
    assert all(10 <= n <= 16 and e.startswith("butd-r101-c4-vg@") for _, e, n, _, _ in rows)
    _, boxes = ray_catalog.query(
        "SELECT image_id, box_index, x1, y1, x2, y2, cls, cls_name, cls_conf, attr, attr_name, "
        "attr_conf FROM region_boxes"
    )
    assert len(boxes) == sum(r[2] for r in rows)
    sizes = {r[0]: (r[3], r[4]) for r in rows}
    for image_id, _, x1, y1, x2, y2, cls, name, conf, attr, attr_name, attr_conf in boxes:
        w, h = sizes[image_id]
        assert 0 <= x1 <= x2 <= w and 0 <= y1 <= y2 <= h
        assert 1 <= cls <= 1600 and name and 0 < conf <= 1
        assert 1 <= attr <= 400 and attr_name and 0 < attr_conf <= 1
    _, top = ray_catalog.query("SELECT cls_name, count(*) FROM region_boxes GROUP BY 1 LIMIT 3")
    assert top
    _, rejects = ray_catalog.query("SELECT image_id, reason FROM rejects WHERE item_kind IS NULL")
    assert ("coco:7", "image_decode_error") in rejects


@pytest.mark.ray
def test_exports_in_lxmert_and_uniter_layouts(ray_catalog, tmp_path):
    tsv = tmp_path / "feats.tsv"
    assert export_regions(ray_catalog.path, tsv, "lxmert-tsv") == 7
    _, rows = ray_catalog.query(
        "SELECT image_id, regions.object_ids, regions.num_boxes FROM images "
        "WHERE regions IS NOT NULL ORDER BY image_id"
    )
    decoded = read_lxmert_tsv(tsv)
    assert [d["img_id"] for d in decoded] == [r[0] for r in rows]
    for item, (_, ids, n) in zip(decoded, rows):
        assert item["num_boxes"] == n and item["features"].shape == (n, 2048)
        assert item["objects_id"].tolist() == [i - 1 for i in ids]  # LXMERT: no background
        assert item["boxes"].shape == (n, 4) and item["attrs_conf"].dtype == np.float32
    folder = tmp_path / "npz"
    folder.mkdir()
    (folder / "coco_9.npz.partial").write_bytes(b"left by a killed export")
    assert export_regions(ray_catalog.path, folder, "uniter-npz") == 7
    assert not list(folder.glob("*.partial"))
    dump = np.load(folder / "coco_1.npz")
    assert set(dump.files) == {"norm_bb", "features", "conf", "soft_labels"}
    n = dump["features"].shape[0]
    assert dump["norm_bb"].shape == (n, 6) and dump["soft_labels"].shape == (n, 1601)
    assert np.all((dump["norm_bb"][:, :4] >= 0) & (dump["norm_bb"][:, :4] <= 1))


def read_lxmert_tsv(path: Path) -> list[dict]:
    """LXMERT's own way of reading its TSV (utils.load_obj_tsv), column for column."""
    csv.field_size_limit(sys.maxsize)
    out = []
    with open(path) as fh:
        for item in csv.DictReader(fh, LXMERT_FIELDS, delimiter="\t"):
            for key in ("img_h", "img_w", "num_boxes"):
                item[key] = int(item[key])
            n = item["num_boxes"]
            decode = [
                ("objects_id", (n,), np.int64),
                ("objects_conf", (n,), np.float32),
                ("attrs_id", (n,), np.int64),
                ("attrs_conf", (n,), np.float32),
                ("boxes", (n, 4), np.float32),
                ("features", (n, -1), np.float32),
            ]
            for key, shape, dtype in decode:
                item[key] = np.frombuffer(base64.b64decode(item[key]), dtype=dtype).reshape(shape)
            out.append(item)
    return out


def test_the_lxmert_reader_reads_real_bottom_up_attention_rows():
    """The layout check against real Caffe BUTD rows (features column dropped upstream)."""
    fields = LXMERT_FIELDS[:-1]
    with open(REAL_TSV) as fh:
        rows = list(csv.DictReader(fh, fields, delimiter="\t"))
    first = rows[0]
    n = int(first["num_boxes"])
    ids = np.frombuffer(base64.b64decode(first["objects_id"]), np.int64)
    boxes = np.frombuffer(base64.b64decode(first["boxes"]), np.float32).reshape(n, 4)
    assert n == 36 and ids[:4].tolist() == [72, 291, 291, 291]
    from mmdata.models.regions.vocab import vg_vocabulary

    # LXMERT id 72 is line 72 of the vocabulary, mmdata's class 73: "sky"
    assert vg_vocabulary("objects").names[int(ids[0]) + 1] == "sky"
    assert (boxes[:, 2] <= int(first["img_w"])).all()


def test_given_boxes_are_the_gold_boxes(tmp_path, coco8, butd_weights):
    recipe = recipe_for(tmp_path, coco8, butd_weights, given_boxes=True)
    run_recipe(recipe, "local", progress=False)
    catalog = Catalog(recipe.catalog)
    _, rows = catalog.query(
        "SELECT regions.boxes_xyxy_px, regions.boxes_given, gold.objects FROM images "
        "WHERE regions IS NOT NULL"
    )
    assert rows
    for boxes, given, objects in rows:
        gold = [o["box_xywh_px"] for o in objects]
        expected = [[x, y, x + w, y + h] for x, y, w, h in gold]
        assert given and np.allclose(boxes, expected)
    # without soft_labels: true, UNITER's layout is refused in one line, nothing written
    folder = tmp_path / "npz"
    with pytest.raises(ExportError) as refused:
        export_regions(recipe.catalog, folder, "uniter-npz", corpus="regions_test")
    message = str(refused.value)
    assert "\n" not in message and "'soft_labels: true'" in message
    assert f"{len(rows)} of {len(rows)} images with regions in regions_test" in message
    assert not folder.exists() or not list(folder.iterdir())


def test_an_image_that_does_not_decode_is_an_error_row_naming_it(butd_weights):
    stage = Regions(weights=str(butd_weights), device="cpu", **SMALL)
    table = work_batch(image_bytes=[b"not an image"], path=["/data/x.jpg"])
    out = stage.prepare(table)
    row = out.to_pylist()[0]
    assert row["status"] == STATUS_ERROR and row["reason"] == "image_decode_error"
    assert "t:0" in row["_detail"] and "/data/x.jpg" in row["_detail"]


@pytest.mark.ray
def test_region_exports_count_images_as_rows_in_their_progress(ray_catalog, tmp_path, capsys):
    for fmt, out in (("lxmert-tsv", tmp_path / "f.tsv"), ("uniter-npz", tmp_path / "npz")):
        assert export_regions(ray_catalog.path, out, fmt, progress="json") == 7
        last = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
        assert (last["done"], last["rows"]) == (7, 7), last
