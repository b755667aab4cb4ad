"""Other ecosystems: webdataset tars, a Hugging Face folder, Ray Data, the file list."""

from __future__ import annotations

import hashlib
import importlib.util
import io
import json
import os
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
from mmdata.models.regions.rows import class_probs_of, features_of
from mmdata.stream.interop import export_hf, hf_dataset, shard_files
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
