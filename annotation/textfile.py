"""Line-oriented files (TSV/CSV/JSONL) split into byte ranges for parallel import."""

from __future__ import annotations

import os
from collections.abc import Iterator

from mmdata.stage import Partition

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


def iter_lines(path: str, start: int, end: int) -> Iterator[tuple[int, bytes]]:
    """``(byte offset, line without its newline)`` for every line that starts in
    ``[start, end)``. Empty lines are skipped (CC12M's file has no final newline,
    others do)."""
    with open(path, "rb") as handle:
        if start > 0:
            handle.seek(start - 1)
            if handle.read(1) != b"\n":
                handle.readline()  # the line in progress belongs to the previous range
        offset = handle.tell()
        while offset < end:
            line = handle.readline()
            if not line:
                break
            stripped = line.rstrip(b"\r\n")
            if stripped:
                yield offset, stripped
            offset += len(line)
