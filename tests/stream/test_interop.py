"""Other ecosystems: webdataset tars, a Hugging Face folder, Ray Data, the file list."""

from __future__ import annotations

import importlib.util
import json
import re
import tarfile
from collections import defaultdict

import pyarrow.parquet as pq
import pytest
import yaml

from mmdata.catalog import Catalog
from mmdata.cli import main
from mmdata.stream import interop
from mmdata.stream.interop import (
    export_hf,
    export_webdataset,
    hf_dataset,
    sample_key,
    shard_files,
    webdataset_urls,
)
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
