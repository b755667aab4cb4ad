"""Soak: the streaming reader over a million samples for several epochs, with memory
measured at the end of each epoch: it must stay flat, not grow with samples read."""

from __future__ import annotations

import gc
import time

import numpy as np
import pyarrow as pa
import pytest

from mmdata.catalog.store import Catalog
from mmdata.core.schema import IMAGE_SCHEMA, conform
from mmdata.engine.run import write_listed_corpus
from mmdata.stream import ShardStream
from tests.soak.memory import rss_mb

IMAGES, CAPTIONS_PER_IMAGE, IMAGES_PER_SHARD = 100_000, 10, 5_000
SAMPLES = IMAGES * CAPTIONS_PER_IMAGE  # one sample per caption: a million
EPOCHS = 3


def _shard(first: int, count: int) -> pa.Table:
    """``count`` images from ``first`` with ten captions each, built column-wise (a
    million Python dicts would take longer than the soak itself)."""
    ids = np.arange(first, first + count)
    captions = np.repeat(ids, CAPTIONS_PER_IMAGE)
    numbers = np.tile(np.arange(CAPTIONS_PER_IMAGE), count)
    caption_ids = pa.array([f"{i}-{c}" for i, c in zip(captions, numbers)])
    texts = pa.array([f"caption {c} of image {i}" for i, c in zip(captions, numbers)])
    structs = pa.StructArray.from_arrays(
        [caption_ids, texts, pa.nulls(len(captions))], ["caption_id", "text", "scene_graph"]
    )
    offsets = pa.array(np.arange(0, len(captions) + 1, CAPTIONS_PER_IMAGE, dtype=np.int32))
    table = pa.table(
        {
            "image_id": pa.array([f"soak:{i}" for i in ids]),
            "source": pa.array(["soak"] * count),
            "status": pa.array(["ok"] * count),
            "captions": pa.ListArray.from_arrays(offsets, structs),
        }
    )
    return conform(table, IMAGE_SCHEMA)


@pytest.fixture(scope="module")
def million(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("soak")
    write_listed_corpus(
        Catalog(folder / "catalog.duckdb"),
        "soak",
        str(folder),
        {"images": IMAGES, "captions_per_image": CAPTIONS_PER_IMAGE},
        IMAGES // IMAGES_PER_SHARD,
        lambda index: _shard(index * IMAGES_PER_SHARD, IMAGES_PER_SHARD),
        "soak",
    )
    return str(folder / "catalog.duckdb")


def test_a_million_samples_for_three_epochs_in_flat_memory(million):
    stream = ShardStream(million, "soak", columns=["caption_id", "text"], unit="caption")
    rss, seen_first = [], None
    for epoch in range(EPOCHS):
        stream.set_epoch(epoch)
        started, count, digest = time.perf_counter(), 0, 0
        for sample in stream:
            count += 1
            digest = (digest + hash(sample["caption_id"])) % 2**64  # order-blind
        gc.collect()
        rss.append(rss_mb())
        rate = count / (time.perf_counter() - started)
        print(f"epoch {epoch}: {count} samples, {rate:,.0f} samples/s, RSS {rss[-1]:.0f} MB")
        assert count == SAMPLES
        seen_first = digest if seen_first is None else seen_first
        assert digest == seen_first  # the same million samples, in another order
    # the first epoch sets up buffers and caches; later epochs must not add to them
    assert rss[-1] - rss[0] < 64, f"memory grew over epochs: {rss} MB"
