"""ShardStream: order, splits, resume, filters, mixing, layers, failures."""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from torch.utils.data import DataLoader

from mmdata.catalog.store import Catalog
from mmdata.demo import data as demo
from mmdata.engine import recipe as recipes
from mmdata.engine import sink
from mmdata.engine.run import run_recipe
from mmdata.stream import ShardStream, StreamError
from mmdata.stream.decode import image_tensor, scene_graph_spans
from tests.conftest import write_recipe


@pytest.fixture(scope="module")
def corpora(tmp_path_factory) -> Path:
    """Corpora ``a`` and ``b`` (the same 64 generated images) in one catalog, 8 shards each."""
    root = tmp_path_factory.mktemp("stream")
    data = demo.generate(root / "data", num_images=64)
    # 3-row groups in 8-row shards: sample ranges start and end inside row groups
    sink.ROW_GROUP_ROWS, saved = 3, sink.ROW_GROUP_ROWS
    try:
        _build(root, data)
    finally:
        sink.ROW_GROUP_ROWS = saved
    return root / "catalog.duckdb"


def _build(root: Path, data: dict) -> None:
    for name in ("a", "b"):
        spec = {
            "name": name,
            "source": {"coco": {"captions": data["captions"], "images": data["images"]}},
            "stages": [
                {"read_images": {"keep_bytes": True}},
                {"caption_filter": {"min_words": 3, "max_words": 40}},
            ],
            "output": str(root / name),
            "catalog": str(root / "catalog.duckdb"),
            "on_error": "record",
            "shard_rows": 8,
        }
        run_recipe(recipes.load(write_recipe(root / f"{name}.yaml", spec)), "local", progress=False)


def ids(samples, key="caption_id") -> list:
    return [s[key] for s in samples]


def stream(catalog, **kwargs) -> ShardStream:
    kwargs.setdefault("corpus", "a")
    kwargs.setdefault("columns", ["caption_id", "image_id", "text"])
    kwargs.setdefault("unit", "caption")
    return ShardStream(catalog=str(catalog), **kwargs)


def test_contract_and_every_caption_once(corpora):
    ds = ShardStream(
        catalog=str(corpora),
        corpus="a",
        columns=["caption_id", "text"],
        unit="caption",
        where=None,
        seed=0,
        shuffle_buffer=1000,
        rank=0,
        world_size=1,
    )
    ds.set_epoch(0)
    it = iter(ds)
    sample = next(it)
    assert set(sample) == {"caption_id", "text"}
    _, rows = Catalog(corpora).query("SELECT caption_id FROM captions WHERE corpus = 'a'")
    everything = [sample["caption_id"], *ids(it)]
    assert sorted(everything) == sorted(r[0] for r in rows) and len(ds) == len(rows)


def test_order_is_the_same_for_any_worker_count_and_changes_with_epoch(corpora):
    ds = stream(corpora, seed=3)
    ds.set_epoch(1)
    direct = ids(ds)
    for workers in (2, 4):
        loader = DataLoader(ds, batch_size=None, num_workers=workers)
        assert ids(loader) == direct, workers
    ds.set_epoch(2)
    assert ids(ds) != direct and sorted(ids(ds)) == sorted(direct)
    assert ids(stream(corpora, seed=3, shuffle_buffer=0)) != direct


def test_ranks_and_workers_split_the_epoch_exactly_once(corpora):
    everything = sorted(ids(stream(corpora)))
    seen: list = []
    sizes = []
    for rank in range(3):
        ds = stream(corpora, rank=rank, world_size=3)
        got = ids(DataLoader(ds, batch_size=None, num_workers=2))
        assert len(got) == len(ds)
        sizes.append(len(got))
        seen += got
    assert sorted(seen) == everything
    assert max(sizes) - min(sizes) <= 1


def test_resume_gives_exactly_the_samples_that_came_next(corpora):
    ds = stream(corpora, seed=5)
    ds.set_epoch(4)
    it = iter(ds)
    head = [next(it) for _ in range(41)]
    state = ds.state_dict()
    tail = list(it)
    fresh = stream(corpora, seed=5)
    fresh.load_state_dict(state)
    assert ids(fresh) == ids(tail) and len(head) + len(tail) == len(ds)
    # behind a DataLoader the training loop says how many it consumed
    loader = DataLoader(fresh, batch_size=None, num_workers=2)
    fresh.load_state_dict(ds.state_dict(num_samples=41))
    assert ids(loader) == ids(tail)
    with pytest.raises(StreamError, match="different seed"):
        stream(corpora, seed=6).load_state_dict(state)


def test_where_filters_images_and_captions(corpora):
    wide = stream(corpora, unit="image", columns=["image_id", "width_px"], where="width_px >= 300")
    got = list(wide)
    _, rows = Catalog(corpora).query(
        "SELECT image_id FROM images WHERE corpus = 'a' AND width_px >= 300"
    )
    assert sorted(ids(got, "image_id")) == sorted(r[0] for r in rows) and len(got) == len(wide)
    circles = stream(corpora, where="text LIKE '%circle%' AND height_px < 250")
    got = list(circles)
    assert got and all("circle" in s["text"] for s in got)
    _, rows = Catalog(corpora).query(
        "SELECT count(*) FROM captions c JOIN images i USING (corpus, image_id) "
        "WHERE corpus = 'a' AND text LIKE '%circle%' AND i.height_px < 250"
    )
    assert len(got) == rows[0][0]
    with pytest.raises(StreamError, match="where clause"):
        list(stream(corpora, where="width_px >>> 3"))


def test_caption_samples_share_their_image_values(corpora):
    samples = list(
        stream(
            corpora, columns=["image_id", "image_bytes", "caption_id"], shuffle_buffer=0, streams=1
        )
    )
    by_image: dict = {}
    for s in samples:
        by_image.setdefault(s["image_id"], []).append(s["image_bytes"])
    shared = [v for v in by_image.values() if len(v) > 1]
    assert shared and all(all(b is v[0] for b in v) for v in shared)


def test_mixing_follows_the_weights(corpora):
    ds = ShardStream(
        str(corpora), {"a": 0.7, "b": 0.3}, columns=["caption_id"], unit="caption", streams=4
    )
    counts: Counter = Counter()
    for epoch in range(4):
        ds.set_epoch(epoch)
        got = list(ds)
        assert len(got) == len(ds) > 50
        counts.update(s["corpus"] for s in got)
    assert abs(counts["a"] / sum(counts.values()) - 0.7) < 0.08
    ds.set_epoch(9)
    again = ShardStream(
        str(corpora), {"a": 0.7, "b": 0.3}, columns=["caption_id"], unit="caption", streams=4
    )
    again.set_epoch(9)
    assert list(ds) == list(again)  # deterministic draws


def test_decode_hooks(corpora):
    ds = stream(corpora, columns=["image_bytes", "text"], decode={"image_bytes": image_tensor})
    sample = next(iter(ds))
    assert sample["image_bytes"].dtype.is_floating_point is False
    assert sample["image_bytes"].shape[0] == 3
    graph = {
        "objects": [
            {
                "head": "dog",
                "span": {"start": 2, "end": 5},
                "attributes": [{"span": {"start": 0, "end": 1}}],
            }
        ],
        "relations": [],
    }
    assert scene_graph_spans(graph) == {
        "objects": [(2, 5, "dog")],
        "attributes": [(0, 1, 0)],
        "relations": [],
    }


def test_worker_counts_must_divide_the_streams(corpora):
    ds = stream(corpora, streams=4)
    with pytest.raises(Exception, match="do not divide streams=4"):
        list(DataLoader(ds, batch_size=None, num_workers=3))


def test_layers_are_zipped_by_position(corpora, tmp_path):
    catalog = Catalog(corpora)
    _, shards = catalog.query(
        "SELECT shard_index, path, rows, run_id FROM shards WHERE corpus = 'b' AND kind = 'data'"
    )
    with catalog.write() as con:
        for index, path, rows, run_id in shards:
            ids_ = pq.read_table(path, columns=["image_id"]).column("image_id").to_pylist()
            layer = tmp_path / f"layer-{index}.parquet"
            pq.write_table(pa.table({"phash": [f"L{i}" for i in ids_]}), layer)
            con.execute(
                "INSERT INTO shards (corpus, layer, kind, shard_index, path, rows, bytes, sha256, "
                "input_rows, run_id) VALUES ('b', 'hashes', 'data', ?, ?, ?, 0, '', ?, ?)",
                [index, str(layer), rows, rows, run_id],
            )
    ds = ShardStream(str(corpora), "b", columns=["image_id", "phash"], layers=["hashes"])
    got = list(ds)
    assert got and all(s["phash"] == f"L{s['image_id']}" for s in got)
    with pytest.raises(StreamError, match="no shard 0 in layer 'other'"):
        ShardStream(str(corpora), "b", layers=["other"])


def test_a_missing_or_truncated_shard_fails_naming_its_path(corpora, tmp_path):
    root = tmp_path / "copy"
    shutil.copytree(corpora.parent, root)
    catalog = root / "catalog.duckdb"
    with Catalog(catalog).write() as con:
        con.execute(
            "UPDATE shards SET path = replace(path, ?, ?)", [str(corpora.parent), str(root)]
        )
    _, rows = Catalog(catalog).query(
        "SELECT path FROM shards WHERE corpus = 'a' AND kind = 'data' ORDER BY shard_index"
    )
    missing, truncated = Path(rows[0][0]), Path(rows[1][0])
    missing.unlink()
    truncated.write_bytes(truncated.read_bytes()[:300])
    with pytest.raises(StreamError, match=str(missing)):
        ShardStream(str(catalog), "a", unit="caption")  # counting captions reads every shard
    ds = ShardStream(
        str(catalog), "a", columns=["image_id"], unit="image"
    )  # counts from the catalog
    with pytest.raises(StreamError) as err:
        list(ds)
    assert str(missing) in str(err.value) or str(truncated) in str(err.value)
    with pytest.raises(StreamError, match="no corpus 'zzz'"):
        ShardStream(str(catalog), "zzz")


@pytest.mark.parametrize("workers", [0, 2])
def test_resume_behind_a_batching_dataloader(corpora, workers):
    def batches(ds):
        loader = DataLoader(ds, batch_size=4, num_workers=workers)
        return [tuple(b["caption_id"]) for b in loader]

    whole = batches(stream(corpora, seed=3, batch_size=4))
    assert sum(len(b) for b in whole) == len(stream(corpora))
    for k in (1, 2, 5):  # odd and even: workers change places after a resume
        fresh = stream(corpora, seed=3, batch_size=4)
        fresh.load_state_dict(fresh.state_dict(num_samples=4 * k, num_workers=workers))
        assert batches(fresh) == whole[k:]
    moved = stream(corpora, seed=3, batch_size=4)
    moved.load_state_dict(moved.state_dict(num_samples=8, num_workers=workers + 4))
    with pytest.raises(Exception, match="same worker count"):
        batches(moved)
    with pytest.raises(StreamError, match="whole number of batches"):
        moved.load_state_dict(moved.state_dict(num_samples=6))


def test_caption_units_carry_exactly_the_stored_caption_fields(tmp_path):
    """Caption samples read only the caption fields they need from the shards; the values
    (scene graphs included) are the stored ones, and without any caption column there is
    still one sample per caption."""
    from mmdata.core.schema import IMAGE_SCHEMA, conform
    from mmdata.engine.run import write_listed_corpus

    graph = {
        "objects": [{"head": "dog", "text": "a dog", "span": {"start": 0, "end": 5},
                     "count": 1, "attributes": [], "lemma": "dog", "name": None}],
        "relations": [], "note": None,
    }  # fmt: skip
    rows = [
        {"image_id": f"i{i}", "source": "t", "status": "ok", "captions": [
            {"caption_id": f"{i}-{c}", "text": f"a dog {i} {c}",
             "scene_graph": graph if c == 0 else None} for c in range(i % 3)]}
        for i in range(7)
    ]  # fmt: skip
    table = conform(pa.Table.from_pylist(rows, schema=IMAGE_SCHEMA), IMAGE_SCHEMA)
    catalog = tmp_path / "catalog.duckdb"
    write_listed_corpus(Catalog(catalog), "g", str(tmp_path), {"t": 1}, 1, lambda _: table)
    stored = {
        c["caption_id"]: (r["image_id"], c["text"], c["scene_graph"])
        for r in rows
        for c in r["captions"]
    }
    full = ShardStream(str(catalog), "g", ["image_id", "caption_id", "text", "scene_graph"],
                       unit="caption")  # fmt: skip
    got = {s["caption_id"]: (s["image_id"], s["text"], s["scene_graph"]) for s in full}
    assert got.keys() == stored.keys()
    for key, (image, text, want) in stored.items():
        assert got[key][:2] == (image, text)
        assert (got[key][2] or {}).get("objects") == (want or {}).get("objects")
    bare = list(ShardStream(str(catalog), "g", ["image_id"], unit="caption"))
    assert Counter(s["image_id"] for s in bare) == Counter(i for i, _, _ in stored.values())
    assert all(set(s) == {"image_id"} for s in bare)
