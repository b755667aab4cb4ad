"""Drop images whose bytes (sha256) were already seen in the corpus."""

from __future__ import annotations

from collections.abc import Mapping

import pyarrow as pa

from mmdata.core.registry import STAGES
from mmdata.stages.dedup_index import DedupFilter


def sha256_key(value: object) -> int | None:
    """The first 64 bits of a hex sha256: as good a key as all of it."""
    return int(value[:16], 16) if isinstance(value, str) and len(value) == 64 else None


@STAGES.register("exact_dedup")
class ExactDedup(DedupFilter):
    """Keep the first image per sha256 across the whole run (and earlier runs).

    Runs after ``download`` or ``read_images``, which fill ``sha256``. Rows without a
    sha256 are dropped as ``unknown_sha256``: a dedup that cannot see the key must not
    silently pass the row.
    """

    reads = ("sha256",)
    key_column = "sha256"
    reason = "duplicate_image"

    def key(self, value: object) -> int | None:
        return sha256_key(value)

    def drop_masks(self, table: pa.Table) -> Mapping[str, tuple[pa.Array, pa.Array]]:
        values = table.column("sha256").to_pylist()
        missing = [sha256_key(v) is None for v in values]
        detail = pa.array(["row has no sha256" if m else None for m in missing], pa.string())
        present = [None if m else v for v, m in zip(values, missing)]
        return {"unknown_sha256": (pa.array(missing), detail), **self.judge(present)}
