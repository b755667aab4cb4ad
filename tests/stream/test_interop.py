"""Other ecosystems: webdataset tars, a Hugging Face folder, Ray Data, the file list."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
import re
import tarfile
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import yaml

from mmdata.catalog.store import Catalog
from mmdata.commands.cli import main
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from mmdata.exports import interop
from mmdata.exports.interop import (
    export_hf,
    export_webdataset,
    hf_dataset,
    sample_key,
    shard_files,
    webdataset_urls,
)
from mmdata.models.regions.rows import class_probs_of, features_of
from tests.conftest import demo_recipe, write_recipe
from tests.stream.test_stream import corpora  # noqa: F401 - the shared fixture

needs_datasets = pytest.mark.skipif(
    importlib.util.find_spec("datasets") is None, reason="needs datasets"
)


def test_shard_files_are_the_catalogs_data_shards_in_order(corpora):  # noqa: F811
    files = shard_files(str(corpora), "a")
    _, rows = Catalog(corpora).query(
        "SELECT path FROM shards WHERE corpus = 'a' AND kind = 'data' ORDER BY shard_index"
    )
    assert files == [r[0] for r in rows]


def test_webdataset_tars_hold_one_sample_per_image(corpora, tmp_path):  # noqa: F811
    out = tmp_path / "wds"
    args = ["export", "--format", "webdataset", "--corpus", "a", "--out", str(out)]
    assert main([*args, "--catalog", str(corpora)]) == 0
    samples: dict = defaultdict(dict)
    for tar_path in sorted(out.glob("a-*.tar")):
        with tarfile.open(tar_path) as tar:
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples[key][ext] = tar.extractfile(member).read()
    _, rows = Catalog(corpora).query(
        "SELECT image_id, len(captions) FROM images WHERE corpus = 'a'"
    )
    assert len(samples) == len(rows)
    for image_id, n in rows:
        sample = samples[image_id.replace(":", "_")]
        meta = json.loads(sample["json"])
        assert meta["image_id"] == image_id and len(meta["captions"]) == n
        assert sample["jpg"][:2] == b"\xff\xd8"  # a JPEG
        assert sample["txt"].decode() == meta["captions"][0]["text"]


def _tar_samples(out, corpus="a") -> dict[str, dict[str, dict[str, bytes]]]:
    """tar name -> sample key -> extension -> bytes; asserts no member name repeats."""
    tars = {}
    for tar_path in sorted(out.glob(f"{corpus}-*.tar")):
        with tarfile.open(tar_path) as tar:
            names = tar.getnames()
            assert len(names) == len(set(names)), tar_path
            samples: dict = defaultdict(dict)
            for member in tar.getmembers():
                key, ext = member.name.split(".", 1)
                samples[key][ext] = tar.extractfile(member).read()
        tars[tar_path.name] = dict(samples)
    return tars


def _rows(catalog, corpus="a") -> list[dict]:
    return [
        r for path in shard_files(str(catalog), corpus) for r in pq.read_table(path).to_pylist()
    ]


def test_caption_unit_has_every_caption_once_with_its_image(corpora, tmp_path):  # noqa: F811
    out = tmp_path / "wds"
    args = ["export", "--format", "webdataset", "--unit", "caption", "--corpus", "a"]
    assert main([*args, "--out", str(out), "--catalog", str(corpora)]) == 0
    samples = {k: v for tar in _tar_samples(out).values() for k, v in tar.items()}
    rows = _rows(corpora)
    expected = {}
    for row in rows:
        for n, caption in enumerate(row["captions"]):
            expected[f"{sample_key(row['image_id'])}_c{n}"] = (row, n, caption)
    assert len(expected) == sum(len(r["captions"]) for r in rows) > len(rows)
    assert set(samples) == set(expected)  # every caption once, keys unique across tars
    for key, (row, n, caption) in expected.items():
        sample = samples[key]
        assert "." not in key and set(sample) == {"jpg", "json", "txt"}
        assert sample["txt"].decode() == caption["text"]
        assert sample["jpg"] == row["image_bytes"]  # the image, repeated per caption
        meta = json.loads(sample["json"])
        assert meta["image_id"] == row["image_id"] and meta["caption_index"] == n
        assert meta["caption_id"] == caption["caption_id"] and meta["text"] == caption["text"]
        assert "scene_graph" in meta and meta["width_px"] == row["width_px"]
    _, captions = Catalog(corpora).query("SELECT count(*) FROM captions WHERE corpus = 'a'")
    assert len(samples) == captions[0][0]


def test_webdataset_reads_the_caption_unit_as_written(corpora, tmp_path):  # noqa: F811
    import webdataset as wds

    out = tmp_path / "wds"
    total = export_webdataset(str(corpora), "a", out, unit="caption")
    urls = webdataset_urls(out, "a")
    assert urls == f"{out}/a-{{00000..00007}}.tar"
    got = list(wds.WebDataset(urls, shardshuffle=False).decode())
    assert len(got) == total == len({s["__key__"] for s in got})
    assert all(set(s) >= {"jpg", "json", "txt"} for s in got)
    assert all(s["txt"] == s["json"]["text"] for s in got)


@pytest.mark.parametrize("unit", ["image", "caption"])
def test_sizes_json_counts_the_samples_of_each_tar(corpora, tmp_path, unit):  # noqa: F811
    out = tmp_path / "wds"
    total = export_webdataset(str(corpora), "a", out, unit=unit)
    sizes = json.loads((out / "sizes.json").read_text())
    tars = _tar_samples(out)
    assert sizes == {name: len(samples) for name, samples in tars.items()}
    assert sorted(sizes) == [f"a-{i:05d}.tar" for i in range(8)]
    assert all(isinstance(v, int) for v in sizes.values()) and sum(sizes.values()) == total
    rows = _rows(corpora)
    per = len(rows) if unit == "image" else sum(len(r["captions"]) for r in rows)
    assert total == per


def test_image_unit_is_the_default_and_unchanged(corpora, tmp_path):  # noqa: F811
    out = tmp_path / "wds"
    total = export_webdataset(str(corpora), "a", out)
    rows = _rows(corpora)
    samples = {k: v for tar in _tar_samples(out).values() for k, v in tar.items()}
    assert total == len(rows) == len(samples)
    for row in rows:
        sample = samples[row["image_id"].replace(":", "_")]
        assert set(sample) == {"jpg", "json", "txt"}
        assert sample["txt"].decode() == row["captions"][0]["text"]
        assert json.loads(sample["json"])["captions"] == row["captions"]


def test_a_re_export_replaces_the_corpus_and_keeps_other_corpora(corpora, tmp_path):  # noqa: F811
    out = tmp_path / "wds"
    export_webdataset(str(corpora), "b", out)
    b_sizes = json.loads((out / "sizes.json").read_text())
    export_webdataset(str(corpora), "a", out, unit="caption")
    (out / "a-00031.tar").write_bytes(b"a tar of an older export with more shards")
    images = export_webdataset(str(corpora), "a", out, unit="image")
    sizes = json.loads((out / "sizes.json").read_text())
    a_sizes = {k: v for k, v in sizes.items() if k.startswith("a-")}
    assert sum(a_sizes.values()) == images  # the image unit's counts, not the caption's
    assert {k: v for k, v in sizes.items() if k.startswith("b-")} == b_sizes
    assert sorted(p.name for p in out.iterdir()) == sorted([*sizes, "sizes.json"])


def test_a_failed_export_leaves_sizes_json_without_the_corpus(corpora, tmp_path, monkeypatch):  # noqa: F811
    out = tmp_path / "wds"
    export_webdataset(str(corpora), "b", out)
    export_webdataset(str(corpora), "a", out)
    written = interop._write_tar

    def fail_on_shard_3(shard, target, unit="image"):
        if shard.index == 3:
            raise OSError("disk full")
        return written(shard, target, unit)

    monkeypatch.setattr(interop, "_write_tar", fail_on_shard_3)
    with pytest.raises(OSError, match="disk full"):
        export_webdataset(str(corpora), "a", out, unit="caption")
    sizes = json.loads((out / "sizes.json").read_text())
    assert sizes and all(k.startswith("b-") for k in sizes)  # no stale count of a's tars
    assert not list(out.glob("*.partial"))


def test_unit_is_only_for_webdataset(corpora, tmp_path, capsys):  # noqa: F811
    args = ["export", "--format", "hf", "--unit", "caption", "--corpus", "a"]
    assert main([*args, "--out", str(tmp_path / "hf"), "--catalog", str(corpora)]) == 2
    assert "--unit is for --format webdataset" in capsys.readouterr().err
    with pytest.raises(Exception, match="unit must be one of image, caption"):
        export_webdataset(str(corpora), "a", tmp_path / "wds", unit="region")


def test_sample_keys_have_no_dots_and_do_not_collide():
    assert sample_key("coco:42") == "coco_42"  # as before
    assert sample_key("flickr30k:1000092795") == "flickr30k_1000092795"
    assert sample_key("url_list:7") == "url_list_7"
    ids = ("web:a.b", "web:a_b", "web:a/b", "web:a:b", "web_a:b", "web_a_b", "web:a-b", "a")
    keys = [sample_key(i) for i in ids]
    assert len(set(keys)) == len(keys)
    assert all(re.fullmatch(r"[A-Za-z0-9_-]+", k) for k in keys)


def test_hf_folder_has_new_files_and_a_card(corpora, tmp_path):  # noqa: F811
    out = tmp_path / "hf"
    assert export_hf(str(corpora), "a", out) == len(shard_files(str(corpora), "a"))
    card = (out / "README.md").read_text()
    config = yaml.safe_load(card.split("---")[1])
    assert config["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    exported = sorted((out / "data").glob("*.parquet"))
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in exported)
    assert rows == _count(corpora, "a")
    assert not list(out.rglob("*.partial"))
    # the export shares no file with the corpus: writing to it leaves the corpus whole
    corpus_files = [Path(p) for p in shard_files(str(corpora), "a")]
    inodes = {_inode(p) for p in corpus_files}
    assert not inodes & {_inode(p) for p in out.rglob("*")}
    before = {p: _sha256(p) for p in corpus_files}
    query = "SELECT image_id, len(captions) FROM images WHERE corpus = 'a' ORDER BY 1"
    answer = Catalog(corpora).query(query)
    for path in exported:
        with path.open("r+b") as handle:
            handle.write(b"scribbled over")
            handle.truncate(100)
    assert {p: _sha256(p) for p in corpus_files} == before
    assert Catalog(corpora).query(query) == answer
    # exporting again over a folder with more shards leaves only this export's files
    (out / "data" / "train-00009-of-00010.parquet").write_bytes(b"old")
    (out / "data" / "train-00010-of-00010.parquet.partial").write_bytes(b"killed")
    (out / "README.md.partial").write_bytes(b"killed")
    assert export_hf(str(corpora), "a", out) == len(exported)
    assert sorted((out / "data").iterdir()) == exported
    assert sorted(p.name for p in out.iterdir()) == ["README.md", "data"]


def _inode(path: Path) -> tuple[int, int]:
    stat = os.stat(path)
    return stat.st_dev, stat.st_ino


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _count(catalog: Path, corpus: str) -> int:
    query = "SELECT count(*) FROM images WHERE corpus = ?"
    return Catalog(catalog).query(query, [corpus])[1][0][0]


@pytest.fixture(scope="module")
def with_regions(tmp_path_factory, demo_data) -> Path:
    """A corpus ``r`` with images, captions, gold objects and (random) regions with soft
    labels, in 16-row shards: the catalog's path."""
    root = tmp_path_factory.mktemp("regions")
    spec = demo_recipe(demo_data, root, name="r", imports=["tests.stream.random_regions"])
    spec["stages"].append({"test_random_regions": {"dim": 16, "classes": 5}})
    run_recipe(recipes.load(write_recipe(root / "r.yaml", spec)), "local", progress=False)
    return root / "catalog.duckdb"


@needs_datasets
def test_hf_export_loads_decoded_images_and_region_arrays(with_regions, tmp_path):
    import datasets
    import numpy as np
    from PIL import Image

    out = tmp_path / "hf"
    args = ["export", "--format", "hf", "--corpus", "r", "--out", str(out)]
    assert main([*args, "--catalog", str(with_regions)]) == 0
    ds = datasets.load_dataset(str(out), split="train", cache_dir=str(tmp_path / "cache"))
    assert isinstance(ds.features["image"], datasets.Image)
    corpus = {}
    for path in shard_files(str(with_regions), "r"):
        corpus.update((row["image_id"], row) for row in pq.read_table(path).to_pylist())
    assert len(ds) == len(corpus) == _count(with_regions, "r")
    arrays = ds.with_format("numpy")
    kinds = set()
    for i, row in enumerate(ds):
        mine = corpus[row["image_id"]]
        image = row["image"]
        assert isinstance(image, Image.Image)
        assert image.size == (mine["width_px"], mine["height_px"])
        assert image.tobytes() == Image.open(io.BytesIO(mine["image_bytes"])).tobytes()
        assert [c["text"] for c in row["captions"]] == [c["text"] for c in mine["captions"]]
        assert row["captions"][0]["scene_graph"] == mine["captions"][0]["scene_graph"]
        assert row["gold"] == mine["gold"]
        if mine["regions"] is None:
            assert row["regions"] is None
            kinds.add("none")
            continue
        assert row["regions"]["num_boxes"] == mine["regions"]["num_boxes"]
        assert row["regions"]["tags"] == mine["regions"]["tags"]
        regions, expected = arrays[i]["regions"], features_of(mine["regions"])
        kinds.add("boxes" if len(expected) else "no boxes")
        if len(expected):
            assert regions["features"].shape == (mine["regions"]["num_boxes"], 16)
            assert np.array_equal(regions["features"].astype(np.float16), expected)
            assert np.array_equal(regions["class_probs"], class_probs_of(mine["regions"]))
            assert np.array_equal(regions["boxes_xyxy_px"], mine["regions"]["boxes_xyxy_px"])
    assert kinds == {"none", "no boxes", "boxes"}
    first = next(i for i, r in enumerate(ds) if r["regions"] and r["regions"]["num_boxes"])
    tensor = ds.with_format("torch")[first]["regions"]["features"]
    assert tuple(tensor.shape) == (ds[first]["regions"]["num_boxes"], 16)


@needs_datasets
def test_hf_dataset_loads_the_corpus_with_decoded_images(corpora, tmp_path):  # noqa: F811
    from PIL import Image

    ds = hf_dataset(str(corpora), "a", cache_dir=str(tmp_path / "cache"))
    assert len(ds) == _count(corpora, "a")
    assert isinstance(ds[0]["image_bytes"], Image.Image)
    assert ds[0]["image_bytes"].size == (ds[0]["width_px"], ds[0]["height_px"])


@pytest.mark.ray
def test_ray_dataset_reads_the_same_rows(corpora, ray_session):  # noqa: F811
    from mmdata.exports.ray_data import ray_dataset

    ds = ray_dataset(str(corpora), "a", columns=["image_id"])
    ids = sorted(r["image_id"] for r in ds.take_all())
    _, rows = Catalog(corpora).query("SELECT image_id FROM images WHERE corpus = 'a' ORDER BY 1")
    assert ids == [r[0] for r in rows]


def test_hf_dataset_without_datasets_says_how(corpora, monkeypatch):  # noqa: F811
    import builtins

    real = builtins.__import__

    def no_datasets(name, *args, **kwargs):
        if name == "datasets":
            raise ImportError("no datasets")
        return real(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_datasets)
    with pytest.raises(Exception, match="pip install datasets"):
        hf_dataset(str(corpora), "a")
