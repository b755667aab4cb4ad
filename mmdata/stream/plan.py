"""Which samples a rank and a dataloader worker read, and in what order: integers only.

Everything here is computed from per-shard sample counts and (seed, epoch), before any
data is read, so every worker of every rank derives the same plan on its own:

1. the shards are permuted (seed, epoch) and their samples laid end to end;
2. that sequence is cut into ``world_size`` contiguous, balanced blocks (one per rank);
3. a rank's block is cut into ``streams`` contiguous, balanced sub-streams;
4. each sub-stream is shuffled by a shuffle buffer run over sample ids (so the order is
   known without the data, and a resume can skip exactly what was consumed);
5. the rank's sequence is the round robin of its sub-streams: position ``p`` is
   sub-stream ``p % streams``. A torch DataLoader with ``W`` workers hands position ``p``
   to worker ``p % W``; when ``W`` divides ``streams`` that is the worker owning
   sub-stream ``p % streams``, so every worker count gives the same sequence, and each
   worker reads only its own sub-streams' shards. After a resume the DataLoader starts again at
   worker 0; ShardStream._start says which worker continues which (batching loaders too).

Balanced blocks differ by at most one sample, which keeps the round robin aligned to the
end of the epoch.
"""

from __future__ import annotations

import random
from dataclasses import dataclass


@dataclass(frozen=True)
class Span:
    """Samples ``[start, stop)`` of shard ``shard`` (its position in the shard list)."""

    shard: int
    start: int
    stop: int


def rng_for(*key: int | str) -> random.Random:
    """A generator seeded by ``key`` (stable across processes and Python runs)."""
    return random.Random("/".join(str(k) for k in key))


def shard_order(num_shards: int, seed: int, epoch: int) -> list[int]:
    order = list(range(num_shards))
    rng_for("shards", seed, epoch).shuffle(order)
    return order


def balanced_cuts(total: int, parts: int) -> list[tuple[int, int]]:
    """``parts`` contiguous ranges over ``total`` items; the first ``total % parts`` get one
    more, so lengths differ by at most one and never increase with the index."""
    base, extra = divmod(total, parts)
    cuts, start = [], 0
    for i in range(parts):
        stop = start + base + (1 if i < extra else 0)
        cuts.append((start, stop))
        start = stop
    return cuts


def spans_of(order: list[int], counts: list[int], start: int, stop: int) -> list[Span]:
    """The shard pieces covering samples ``[start, stop)`` of the permuted sequence."""
    spans, offset = [], 0
    for shard in order:
        n = counts[shard]
        lo, hi = max(start, offset), min(stop, offset + n)
        if lo < hi:
            spans.append(Span(shard, lo - offset, hi - offset))
        offset += n
        if offset >= stop:
            break
    return spans


def rank_streams(
    counts: list[int], seed: int, epoch: int, rank: int, world_size: int, streams: int
) -> list[list[Span]]:
    """The sub-streams of ``rank``: each a list of shard pieces, read in order."""
    order = shard_order(len(counts), seed, epoch)
    lo, hi = balanced_cuts(sum(counts), world_size)[rank]
    return [spans_of(order, counts, lo + a, lo + b) for a, b in balanced_cuts(hi - lo, streams)]


def buffer_order(length: int, buffer: int, rng: random.Random) -> list[int]:
    """The order a shuffle buffer of ``buffer`` slots emits ids ``0..length-1`` in.

    At any point at most ``buffer`` ids have been read and not yet emitted, so a reader
    following this order holds at most ``buffer`` samples.
    """
    if buffer <= 1:
        return list(range(length))
    out: list[int] = []
    pool: list[int] = []
    for i in range(length):
        if len(pool) < buffer:
            pool.append(i)
            continue
        j = rng.randrange(buffer)
        out.append(pool[j])
        pool[j] = i
    rng.shuffle(pool)
    return out + pool
