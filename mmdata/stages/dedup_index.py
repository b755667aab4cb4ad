"""Run-wide deduplication: the seen-key indexes and the base class of the dedup stages.

A dedup stage is ``run_wide``: the Ray executor runs it as one actor, so every row of
the run passes through one index and a duplicate is caught whichever partitions its two
copies came from. The first copy to reach the index is kept (in input order with the
local executor; in arrival order under Ray). On a re-run the index is first filled from
the rows already committed (``resume``), so nothing committed is duplicated later.

Keys are 64-bit integers: a Python set of 10 million of them takes about 0.6 GB. For exact
keys (sha256, URLs) the chance of any false match among 100 million keys is about 3e-4.
"""

from __future__ import annotations

import hashlib
import logging
from abc import abstractmethod
from collections.abc import Mapping
from typing import ClassVar

import pyarrow as pa
import pyarrow.parquet as pq

from mmdata.core import io
from mmdata.core.stage import Filter, Resources

log = logging.getLogger(__name__)


def hash64(text: str) -> int:
    """A stable 64-bit key for a string (Python's hash() changes between processes)."""
    return int.from_bytes(hashlib.blake2b(text.encode(), digest_size=8).digest(), "big")


class HammingIndex:
    """64-bit hashes, queried for any stored hash within ``max_distance`` bits.

    Multi-index hashing: the 64 bits are cut into ``max_distance + 1`` bands, and two
    hashes within ``max_distance`` bits agree exactly on at least one band (pigeonhole),
    so only hashes sharing a band value are compared.
    """

    def __init__(self, max_distance: int) -> None:
        self.max_distance = max_distance
        bands = max_distance + 1
        widths = [64 // bands + (1 if i < 64 % bands else 0) for i in range(bands)]
        starts = [sum(widths[:i]) for i in range(bands)]
        self._bands = [(start, (1 << width) - 1) for start, width in zip(starts, widths)]
        self._buckets: list[dict[int, list[int]]] = [{} for _ in self._bands]
        self.size = 0

    def nearest(self, value: int) -> tuple[int, int] | None:
        """``(stored hash, distance)`` of a stored hash within range, or None."""
        best: tuple[int, int] | None = None
        for (start, mask), buckets in zip(self._bands, self._buckets):
            for other in buckets.get((value >> start) & mask, ()):
                distance = (value ^ other).bit_count()
                if distance <= self.max_distance and (best is None or distance < best[1]):
                    best = (other, distance)
        return best

    def add(self, value: int) -> None:
        for (start, mask), buckets in zip(self._bands, self._buckets):
            buckets.setdefault((value >> start) & mask, []).append(value)
        self.size += 1


class DedupFilter(Filter):
    """Drops rows whose key was seen earlier in the corpus; subclasses say what the key is."""

    run_wide = True
    stateful = True
    # One set lookup per row: no CPU reserved, so the dedup actors never keep a
    # download or decode task from starting (a reserved fraction cost a whole task slot
    # on 2 cores: bench/download.py).
    default_resources = Resources(num_cpus=0.0)
    #: The column ``resume`` reads from committed shards to refill the index.
    key_column: ClassVar[str] = ""
    reason: ClassVar[str] = ""

    def __init__(self) -> None:
        self.seen: set[int] = set()

    @abstractmethod
    def key(self, value: object) -> int | None:
        """The 64-bit key of one ``key_column`` value (None: row has no key)."""

    def describe(self, value: object) -> str:
        """The detail of a duplicate."""
        return f"{self.key_column} {value} seen earlier in the corpus"

    def resume(self, done_shards: list[str]) -> None:
        for path in done_shards:
            filesystem, inner = io.resolve(path)
            table = pq.read_table(inner, columns=[self.key_column], filesystem=filesystem)
            self.remember(table.column(0).to_pylist())
        log.info(
            "%s: %d keys from %d committed shards", self.name, len(self.seen), len(done_shards)
        )

    def remember(self, values: list) -> None:
        """Add committed values to the index without judging them."""
        self.seen.update(k for k in map(self.key, values) if k is not None)

    def drop_masks(self, table: pa.Table) -> Mapping[str, tuple[pa.Array, pa.Array]]:
        return self.judge(table.column(self.key_column).to_pylist())

    def judge(self, values: list) -> dict[str, tuple[pa.Array, pa.Array]]:
        """Drop mask and details for ``values`` in order, adding the new keys."""
        mask, details = [], []
        for value in values:
            key = self.key(value)
            duplicate = key is not None and key in self.seen
            if key is not None:
                self.seen.add(key)
            mask.append(duplicate)
            details.append(self.describe(value) if duplicate else None)
        return {self.reason: (pa.array(mask), pa.array(details, pa.string()))}
