"""Other ecosystems: webdataset tars, a Hugging Face folder, Ray Data, the file list."""

from __future__ import annotations

import importlib.util
import json
import tarfile
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
import yaml

from mmdata.catalog import Catalog
from mmdata.cli import main
from mmdata.stream.interop import export_hf, hf_dataset, shard_files
from tests.stream.test_stream import corpora  # noqa: F401 - the shared fixture


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


def test_hf_folder_has_the_shards_and_a_card(corpora, tmp_path):  # noqa: F811
    out = tmp_path / "hf"
    assert export_hf(str(corpora), "a", out) == len(shard_files(str(corpora), "a"))
    card = (out / "README.md").read_text()
    config = yaml.safe_load(card.split("---")[1])
    assert config["configs"][0]["data_files"][0]["path"] == "data/train-*.parquet"
    rows = sum(pq.ParquetFile(p).metadata.num_rows for p in (out / "data").glob("*.parquet"))
    assert rows == Catalog(corpora).query("SELECT count(*) FROM images WHERE corpus = 'a'")[1][0][0]


@pytest.mark.skipif(importlib.util.find_spec("datasets") is None, reason="needs datasets")
def test_hf_dataset_loads_the_corpus(corpora):  # noqa: F811
    ds = hf_dataset(str(corpora), "a")
    assert (
        len(ds) == Catalog(corpora).query("SELECT count(*) FROM images WHERE corpus = 'a'")[1][0][0]
    )


@pytest.mark.ray
def test_ray_dataset_reads_the_same_rows(corpora, ray_session):  # noqa: F811
    from mmdata.executors.ray_data import ray_dataset

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
