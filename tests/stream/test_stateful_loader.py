"""ShardStream behind torchdata's StatefulDataLoader, and behind a plain batching DataLoader."""

from __future__ import annotations

import pickle

import pytest
from torch.utils.data import DataLoader

from mmdata.stream import StreamError
from tests.stream.test_stream import corpora, stream  # noqa: F401 - the shared fixture

torchdata = pytest.importorskip("torchdata.stateful_dataloader")
StatefulDataLoader = torchdata.StatefulDataLoader


def caption_ids(batch) -> list[str]:
    if isinstance(batch, dict):  # collated
        return list(batch["caption_id"])
    return [s["caption_id"] for s in batch]


def run(loader, stop: int | None = None) -> tuple[list[str], dict | None]:
    """Caption ids of the batches ``loader`` gives (the first ``stop`` of them, then its
    state, as a trainer checkpointing after step ``stop`` would)."""
    got: list[str] = []
    for step, batch in enumerate(loader, 1):
        got += [batch["caption_id"]] if isinstance(batch["caption_id"], str) else caption_ids(batch)
        if step == stop:
            return got, loader.state_dict()
    return got, None


@pytest.mark.parametrize(("batch_size", "workers"), [(None, 0), (8, 0), (8, 2), (3, 2), (None, 2)])
def test_stateful_dataloader_resumes_exactly(corpora, batch_size, workers):  # noqa: F811
    def loader(ds):
        return StatefulDataLoader(ds, batch_size=batch_size, num_workers=workers)

    whole, _ = run(loader(stream(corpora, seed=7)))
    assert sorted(whole) == sorted(s["caption_id"] for s in stream(corpora))
    steps = 5 if batch_size else 37
    head, state = run(loader(stream(corpora, seed=7)), stop=steps)
    state = pickle.loads(pickle.dumps(state))  # as a checkpoint file would hold it
    fresh = loader(stream(corpora, seed=7))
    fresh.load_state_dict(state)
    tail, _ = run(fresh)
    assert head + tail == whole  # nothing lost, nothing repeated, same order


def test_stateful_dataloader_resumes_a_mix_and_a_second_epoch(corpora):  # noqa: F811
    def ds():
        mixed = stream(corpora, corpus={"a": 2, "b": 1}, seed=2)
        mixed.set_epoch(1)
        return mixed

    whole, _ = run(StatefulDataLoader(ds(), batch_size=4, num_workers=2))
    head, state = run(StatefulDataLoader(ds(), batch_size=4, num_workers=2), stop=9)
    fresh = StatefulDataLoader(ds(), batch_size=4, num_workers=2)
    fresh.load_state_dict(state)
    assert head + run(fresh)[0] == whole


def test_a_worker_state_only_loads_into_that_worker(corpora):  # noqa: F811
    _, state = run(StatefulDataLoader(stream(corpora), batch_size=4, num_workers=2), stop=3)
    worker_state = next(iter(state["_snapshot"]["_worker_snapshots"].values()))
    with pytest.raises(StreamError, match="outside a worker"):
        stream(corpora).load_state_dict(worker_state["dataset_state"])


def test_plain_batching_dataloader_resumes_or_says_why_not(corpora):  # noqa: F811
    """The trap the issue found: DataLoader(batch_size=8, num_workers=2) over a stream
    not told the batch size, resumed from state_dict(num_samples=40)."""

    def batches(ds):
        return [caption_ids(b) for b in DataLoader(ds, batch_size=8, num_workers=2)]

    whole = sum(batches(stream(corpora, seed=1)), [])
    fresh = stream(corpora, seed=1)
    fresh.load_state_dict(fresh.state_dict(num_samples=40, num_workers=2))
    assert sum(batches(fresh), []) == whole[40:]  # the loader's batching is read from it
    forgot = stream(corpora, seed=1)
    forgot.load_state_dict(forgot.state_dict(num_samples=40))  # num_workers left out
    with pytest.raises(Exception, match="saved with 1 dataloader worker.*StatefulDataLoader"):
        batches(forgot)
    told = stream(corpora, seed=1, batch_size=4)
    with pytest.raises(Exception, match="batches 8 samples but ShardStream was given batch_size=4"):
        batches(told)
