"""Line-oriented files (TSV/CSV/JSONL) split into byte ranges for parallel import."""

from __future__ import annotations

import os

from mmdata.core.stage import Partition

SAMPLE_BYTES = 1 << 20


def byte_partitions(path: str, rows_per_partition: int) -> list[Partition]:
    """Cut ``path`` into byte ranges of about ``rows_per_partition`` lines each.

    The size is estimated from the mean line length of the first MiB, so the cut is
    deterministic for a given file. A line belongs to the range holding its first byte.
    """
    size = os.path.getsize(path)
    if size == 0:
        return []
    with open(path, "rb") as handle:
        sample = handle.read(SAMPLE_BYTES)
    mean_line = max(len(sample) / max(sample.count(b"\n"), 1), 1.0)
    step = max(int(mean_line * rows_per_partition), 1)
    return [
        Partition(i, {"start": start, "end": min(start + step, size)})
        for i, start in enumerate(range(0, size, step))
    ]
