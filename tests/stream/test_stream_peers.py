"""bench/stream.py's fairness claim: mmdata, MosaicML Streaming (MDS) and webdataset,
each read as the benchmark reads them, yield the same caption samples (ids, texts and
equal region tensors, as a multiset: each shuffles its own way)."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

import pytest
import torch

from mmdata.stream.decode import region_tensors

pytest.importorskip("streaming")  # mosaicml-streaming, the dev extra

BENCH = Path(__file__).resolve().parents[2] / "bench"
IMAGES, CAPTIONS, BOXES = 14, 3, 36


@pytest.fixture(scope="module")
def bench(tmp_path_factory: pytest.TempPathFactory):
    """bench/stream.py and bench/stream_peers.py, with the three corpora written once."""
    sys.path.insert(0, str(BENCH))
    try:
        import stream
        import stream_peers
    finally:
        sys.path.remove(str(BENCH))
    folder = tmp_path_factory.mktemp("peers")
    args = argparse.Namespace(
        images=IMAGES, captions=CAPTIONS, boxes=BOXES, workers=0, batch=8, streams=4,
        shuffle_buffer=10, dir=folder,
    )  # fmt: skip
    made = stream.make_corpora(args)
    return stream, stream_peers, args, made


def key(sample: dict) -> tuple:
    regions = sample["regions"]
    return (
        sample["caption_id"],
        sample["text"],
        *(
            (name, regions[name].dtype, tuple(regions[name].shape), regions[name].numpy().tobytes())
            for name in sorted(regions)
        ),
    )


def samples(bench, name: str) -> list[dict]:  # noqa: ANN001
    stream, _, args, _ = bench
    hook = region_tensors(BOXES, dtype=torch.float16)
    return list(stream.dataset(name, args.dir, args, hook))


def test_peers_yield_the_samples_mmdata_yields(bench):  # noqa: ANN001
    mmdata = samples(bench, "mmdata")
    assert len(mmdata) == IMAGES * CAPTIONS
    first = mmdata[0]["regions"]
    assert first["features"].shape == (BOXES, 2048) and first["features"].dtype == torch.float16
    assert first["mask"].dtype == torch.bool and first["classes"].dtype == torch.long
    assert first["mask"].any() and first["features"].abs().sum() > 0  # real values, not padding
    expected = Counter(key(s) for s in mmdata)
    assert len(expected) == IMAGES * CAPTIONS  # every caption distinct
    for peer in ("mds", "wds"):
        got = samples(bench, peer)
        assert Counter(key(s) for s in got) == expected, peer


def test_peers_shuffle_and_record_their_writes(bench):  # noqa: ANN001
    _, _, _, made = bench
    stored = [s["caption_id"] for s in samples(bench, "wds")]
    in_order = [f"{i}-{c}" for i in range(IMAGES) for c in range(CAPTIONS)]
    assert stored != in_order and sorted(stored) == sorted(in_order)
    for name in ("mmdata", "mds", "wds"):
        assert made[name]["write_s"] > 0 and made[name]["bytes"] > IMAGES * BOXES * 2048 * 2
