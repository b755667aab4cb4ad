"""``ShardStream``: a corpus as a torch IterableDataset, deterministic and resumable.

See mmdata.stream.plan for how samples are split across ranks and workers and ordered.
Memory per worker: the shuffle buffer plus, per sub-stream, one row group's worth of
samples being read (projected columns only); never the corpus or a whole shard.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset, get_worker_info
from torch.utils.data._utils.fetch import _IterableDatasetFetcher

from mmdata.stream.plan import Span, buffer_order, rank_streams, rng_for
from mmdata.stream.reader import ShardReader, layer_columns
from mmdata.stream.shards import ShardInfo, StreamError, resolve_shards

#: Sub-streams per rank: any dataloader worker count dividing it gives the same order.
STREAMS = 48
STATE_KEYS = (
    "corpora",
    "unit",
    "where",
    "seed",
    "world_size",
    "streams",
    "shuffle_buffer",
    "batch_size",
)


def dist_rank_world() -> tuple[int, int]:
    """torch.distributed's rank and world size, or (0, 1) when it is not running."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


class ShardStream(IterableDataset):
    """Samples of one corpus, or a weighted mix of corpora, from a catalog's shards.

    Args:
        catalog: the DuckDB catalog file (opened read-only, once, here).
        corpus: a corpus name, or ``{name: weight}`` to mix corpora (each sample of a
            mix then also has ``corpus``).
        columns: sample columns to read (None: all).
        unit: ``image`` (one sample per image) or ``caption`` (one per caption).
        where: an SQL boolean expression over sample columns, evaluated shard by shard.
        seed: with the epoch, decides the whole order.
        shuffle_buffer: samples held for shuffling per rank (split over sub-streams).
        rank, world_size: this process's share (default: torch.distributed, else 0 of 1).
        layers: layers zipped onto the base shards by position.
        decode: ``{column: function}`` applied to each sample's value. A function with
            an ``arrow`` method (like decode.region_tensors) decodes an image column a
            row group at a time from Arrow instead.
        streams: sub-streams per rank; a dataloader's worker count must divide it.
        batch_size: the DataLoader's batch size, to check it: a DataLoader that batches
            takes whole batches from its workers in turn, so the order then depends on
            the worker count and a resume must follow it. A torch DataLoader's batch size
            is also read from its fetcher when the stream starts; the two must agree.

    Resuming: behind ``torchdata.stateful_dataloader.StatefulDataLoader`` its
    ``state_dict()`` / ``load_state_dict()`` resume exactly, any batch size and worker
    count (the same when saving and loading): each worker reports and restores its own
    position. Iterated directly, ``state_dict()`` counts what it yielded. Behind a plain
    DataLoader, ``state_dict(num_samples=..., num_workers=...)`` with what the training
    loop consumed.
    """

    def __init__(
        self,
        catalog: str,
        corpus: str | Mapping[str, float],
        columns: Sequence[str] | None = None,
        unit: str = "image",
        where: str | None = None,
        seed: int = 0,
        shuffle_buffer: int = 1000,
        rank: int | None = None,
        world_size: int | None = None,
        layers: Sequence[str] = (),
        decode: Mapping[str, Callable[[Any], Any]] | None = None,
        streams: int = STREAMS,
        batch_size: int | None = None,
    ) -> None:
        super().__init__()
        weights = {corpus: 1.0} if isinstance(corpus, str) else dict(corpus)
        if not weights or any(w <= 0 for w in weights.values()):
            raise StreamError(f"corpus weights must be positive, got {weights}")
        total = sum(weights.values())
        self.corpora = {name: w / total for name, w in sorted(weights.items())}
        if (rank is None) != (world_size is None):
            raise StreamError("give both rank and world_size, or neither")
        self.rank, self.world_size = (rank, world_size) if rank is not None else dist_rank_world()
        if not 0 <= self.rank < self.world_size:
            raise StreamError(f"rank {self.rank} is not in [0, {self.world_size})")
        if streams < 1 or shuffle_buffer < 0 or (batch_size is not None and batch_size < 1):
            raise StreamError("streams and batch_size must be >= 1 and shuffle_buffer >= 0")
        self.batch_size = batch_size
        self.catalog, self.unit, self.where, self.seed = catalog, unit, where, seed
        self.shuffle_buffer, self.streams = shuffle_buffer, streams
        decode = dict(decode or {})
        columnar = {c: f.arrow for c, f in decode.items() if hasattr(f, "arrow")}
        self.shards: dict[str, list[ShardInfo]] = {
            name: resolve_shards(catalog, name, layers) for name in self.corpora
        }
        self.reader = ShardReader(columns, unit, where, columnar, layer_columns(self.shards))
        # what the reader does not decode is decoded here, sample by sample
        self.decode = {c: f for c, f in decode.items() if c not in self.reader.columnar}
        # sample -> image row per shard (None: the same), and so the sample counts every
        # worker of every rank plans with; reads only the columns the filter needs
        self.rows_of = {
            name: [self.reader.index(s) for s in shards] for name, shards in self.shards.items()
        }
        self.counts = {
            name: [s.rows if r is None else len(r) for s, r in zip(shards, self.rows_of[name])]
            for name, shards in self.shards.items()
        }
        self.epoch = 0
        self._resume = 0  # samples of this epoch consumed before the last load_state_dict
        self._resume_workers = 0  # the dataloader workers that consumed them
        self._yielded = 0  # samples yielded by this object since then (direct iteration)
        # a dataloader worker's own place, restored from its state: (workers, role, done)
        self._own: tuple[int, int, int] | None = None
        # where this object's current iteration is: [workers, role, round-robin position]
        self._cursor: list[int] | None = None

    # ---- epochs and resume -------------------------------------------------------------

    def set_epoch(self, epoch: int) -> None:
        """Start ``epoch`` from its beginning (a new order)."""
        self.epoch, self._resume, self._yielded, self._own = epoch, 0, 0, None

    def state_dict(self, num_samples: int | None = None, num_workers: int = 0) -> dict[str, Any]:
        """Where this rank is.

        In a dataloader worker (as StatefulDataLoader asks it): that worker's own place.
        Elsewhere: ``num_samples`` consumed this epoch (default: the samples this object
        yielded, right when iterating it directly; behind a plain DataLoader pass the
        count the training loop consumed and the loader's ``num_workers``).
        """
        state = {k: getattr(self, k) for k in STATE_KEYS}
        info = get_worker_info()
        if info is not None and num_samples is None:
            place = self._cursor or self._start(info.id, info.num_workers, self.batch_size or 1)
            workers, role, done = place
            return {**state, "epoch": self.epoch, "worker": info.id, "num_workers": workers,
                    "role": role, "done": done}  # fmt: skip
        consumed = self._resume + self._yielded if num_samples is None else num_samples
        return {**state, "epoch": self.epoch, "consumed": consumed, "num_workers": num_workers}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue exactly after the last sample counted in ``state``."""
        differ = [k for k in STATE_KEYS if state.get(k) != getattr(self, k)]
        if differ:
            raise StreamError(
                f"cannot resume: the state was saved with different {', '.join(differ)}"
            )
        self.epoch, self._yielded, self._cursor = state["epoch"], 0, None
        if "worker" in state:  # one dataloader worker's place (StatefulDataLoader)
            info = get_worker_info()
            here = (info.id, info.num_workers) if info else None
            if here != (state["worker"], state["num_workers"]):
                where = f"worker {here[0]} of {here[1]}" if here else "outside a worker"
                raise StreamError(
                    f"cannot resume: the state of dataloader worker {state['worker']} of "
                    f"{state['num_workers']} was loaded {where}; resume through the same "
                    "DataLoader settings (StatefulDataLoader.load_state_dict)"
                )
            self._resume, self._resume_workers = 0, 0
            self._own = (state["num_workers"], state["role"], state["done"])
            return
        if self.batch_size and state["consumed"] % self.batch_size:
            raise StreamError(
                f"cannot resume after {state['consumed']} samples: not a whole number of "
                f"batches of {self.batch_size}"
            )
        self._resume, self._own = state["consumed"], None
        self._resume_workers = state.get("num_workers", 0)

    # ---- sizes -------------------------------------------------------------------------

    def _plans(self) -> dict[str, list[list[Span]]]:
        return {
            name: rank_streams(
                counts, self.seed, self.epoch, self.rank, self.world_size, self.streams
            )
            for name, counts in self.counts.items()
        }

    def _mix_lengths(self, lengths: dict[str, list[int]]) -> list[list[str]]:
        """Per sub-stream, the corpus of each draw; all sub-streams cut to one length so
        the round robin stays aligned. One corpus: no draws needed."""
        names = list(self.corpora)
        weights = [self.corpora[n] for n in names]
        draws = []
        for s in range(self.streams):
            rng = rng_for("mix", self.seed, self.epoch, self.rank, s)
            left = {n: lengths[n][s] for n in names}
            picks: list[str] = []
            while True:
                name = rng.choices(names, weights)[0]
                if left[name] == 0:
                    break
                left[name] -= 1
                picks.append(name)
            draws.append(picks)
        shortest = min(len(d) for d in draws)
        return [d[:shortest] for d in draws]

    def _layout(self) -> tuple[dict[str, list[list[Span]]], list[list[str]] | None, list[int]]:
        """This epoch's plan per corpus, the mix's draws per sub-stream (None for one
        corpus), and each sub-stream's length."""
        plans = self._plans()
        lengths = {n: [_total(p) for p in plan] for n, plan in plans.items()}
        if len(self.corpora) == 1:
            return plans, None, next(iter(lengths.values()))
        draws = self._mix_lengths(lengths)
        return plans, draws, [len(d) for d in draws]

    def __len__(self) -> int:
        """Samples this rank yields in the current epoch."""
        return sum(self._layout()[2])

    # ---- iteration ---------------------------------------------------------------------

    def __iter__(self) -> Iterator[dict[str, Any]]:
        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        if self.streams % workers:
            raise StreamError(
                f"{workers} dataloader workers do not divide streams={self.streams}: "
                "choose a worker count that divides it (or set streams)"
            )
        role, done = self._start(worker, workers, self._loader_batch(_loader_batch_size()))[1:]
        own = [s for s in range(self.streams) if s % workers == role]
        self._cursor = [workers, role, done]
        plans, draws, stream_len = self._layout()
        name = next(iter(self.corpora))  # the corpus, when there is one
        sources: dict[tuple[str, int], Iterator[dict]] = {}
        for i, s in enumerate(own):
            # own[i]'s share of the first ``done`` positions of the round robin below
            skip = min(stream_len[s], max(0, -(-(done - i) // len(own))))
            if draws is None:
                sources[(name, s)] = self._substream(name, plans[name][s], s, skip)
            else:
                taken = {n: draws[s][:skip].count(n) for n in self.corpora}
                for n in self.corpora:
                    sources[(n, s)] = self._substream(n, plans[n][s], s, taken[n])
        position = 0
        for j in range(max(stream_len, default=0)):
            for s in own:
                if j >= stream_len[s]:
                    continue
                position += 1
                if position <= done:
                    continue
                key = (name, s) if draws is None else (draws[s][j], s)
                sample = next(sources[key])
                if draws is not None:
                    sample = {**sample, "corpus": key[0]}  # which corpus a mixed sample is
                self._yielded += 1
                self._cursor[2] = position
                yield sample

    def _loader_batch(self, found: int | None) -> int:
        """Samples a DataLoader takes from a worker per turn: ``found`` (read from the
        loader's fetcher) or, where that was not possible, ``batch_size`` (else 1)."""
        if found is not None and self.batch_size and found != self.batch_size:
            raise StreamError(
                f"the DataLoader batches {found} samples but ShardStream was given "
                f"batch_size={self.batch_size}: give them the same batch size"
            )
        return found or self.batch_size or 1

    def _start(self, worker: int, workers: int, group: int) -> tuple[int, int, int]:
        """(workers, role, done): the sub-streams dataloader worker ``worker`` of
        ``workers`` reads are those of ``role`` (``s % workers == role``), and the first
        ``done`` positions of their round robin were consumed before a resume.

        A worker's own restored place (StatefulDataLoader) is used as it is. From a count
        of samples: a DataLoader takes ``group`` samples (its batch size; 1 when it does
        not batch) from each worker in turn and after a resume starts again at worker 0,
        so worker ``w`` continues the sequence of worker ``(w + k) % W`` of the saved run,
        ``k`` the batches consumed. Without batching every worker count gives one order.
        """
        if self._own is not None:
            if self._own[0] != workers:
                raise StreamError(
                    f"cannot resume: saved with {self._own[0]} dataloader worker(s), now "
                    f"{workers}; use the same worker count"
                )
            return self._own
        if group > 1 and self._resume and max(self._resume_workers, 1) != workers:
            raise StreamError(
                f"cannot resume: saved with {max(self._resume_workers, 1)} dataloader "
                f"worker(s) and batch_size={group}, now {workers}; use the same worker count "
                "(pass num_workers to state_dict), or resume through torchdata's "
                "StatefulDataLoader"
            )
        if workers == 1:
            return 1, 0, self._resume
        if self._resume % group:
            raise StreamError(
                f"cannot resume after {self._resume} samples: not a whole number of "
                f"batches of {group}"
            )
        batches = self._resume // group
        role = (worker + batches) % workers
        return workers, role, group * max(0, -(-(batches - role) // workers))

    def _decoded(self, rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``rows`` through the decode hooks. A value shared by several samples (an
        image's, in caption units) is decoded once and stays shared."""
        if not self.decode:
            return rows
        done: dict[tuple[str, int], Any] = {}
        out = []
        for row in rows:  # fresh dicts from the reader: decoded in place
            for column, function in self.decode.items():
                if column in row:
                    key = (column, id(row[column]))
                    if key not in done:
                        done[key] = function(row[column])
                    row[column] = done[key]
            out.append(row)
        return out

    def _chunks(self, corpus: str, spans: list[Span]) -> Iterator[Span]:
        for span in spans:
            groups = self.reader.row_groups(self.shards[corpus][span.shard])
            yield from chunk_span(span, self.rows_of[corpus][span.shard], groups)

    def _substream(self, corpus: str, spans: list[Span], s: int, skip: int) -> Iterator[dict]:
        """Sub-stream ``s`` of ``corpus`` in shuffle-buffer order, its first ``skip`` gone."""
        buffer = -(-self.shuffle_buffer // self.streams) if self.shuffle_buffer else 0
        rng = rng_for("buffer", self.seed, self.epoch, self.rank, corpus, s)
        order = buffer_order(_total(spans), buffer, rng)
        done = set(order[:skip])
        store: dict[int, dict] = {}
        pieces = iter(self._chunks(corpus, spans))
        base = 0  # id of the first sample of the next piece
        for target in order[skip:]:
            while target not in store:
                piece = next(pieces)
                ids = range(base, base + piece.stop - piece.start)
                base += len(ids)
                if all(i in done for i in ids):
                    continue  # consumed before a resume: not even read
                shard = self.shards[corpus][piece.shard]
                rows_of = self.rows_of[corpus][piece.shard]
                rows = self.reader.samples(shard, piece.start, piece.stop, rows_of)
                if len(rows) != len(ids):
                    raise StreamError(
                        f"{shard.path}: gave {len(rows)} samples where {len(ids)} were "
                        "counted (changed while streaming?)"
                    )
                rows = self._decoded([r for i, r in zip(ids, rows) if i not in done])
                store.update(zip([i for i in ids if i not in done], rows))
            yield store.pop(target)


def _loader_batch_size() -> int | None:
    """The batch size of the torch DataLoader fetcher that is starting this stream's
    iterator (1 when it does not batch), None when no such fetcher is the caller. torch
    tells a dataset nothing about batching, yet batching decides which worker hands out
    which sample; so it is read from the fetcher's frame (torch's and torchdata's loaders
    both fetch through ``_IterableDatasetFetcher.fetch``)."""
    frame = sys._getframe(2)  # _loader_batch_size <- __iter__'s body <- its first next()
    fetcher = frame.f_locals.get("self")
    if not isinstance(fetcher, _IterableDatasetFetcher):
        return None
    if not fetcher.auto_collation:
        return 1
    return len(frame.f_locals.get("possibly_batched_index") or ()) or None


def chunk_span(span: Span, rows_of: Any, groups: np.ndarray) -> Iterator[Span]:
    """``span`` cut at its shard's row-group edges (``groups``: each group's first image
    row, then the row count). A piece is read and held at once: each row group is read
    once per sub-stream, and memory is bounded by a row group (mmdata.engine.sink sizes them)."""
    start = span.start
    while start < span.stop:
        row = start if rows_of is None else int(rows_of[start])
        limit = int(groups[np.searchsorted(groups, row, side="right")])  # next group's first row
        if rows_of is None:
            stop = min(span.stop, limit)
        else:
            stop = int(np.searchsorted(rows_of, limit, side="left"))
            stop = min(max(stop, start + 1), span.stop)
        yield Span(span.shard, start, stop)
        start = stop


def _total(spans: list[Span]) -> int:
    return sum(s.stop - s.start for s in spans)
