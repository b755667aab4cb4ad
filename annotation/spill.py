"""A per-partition spill cache for annotation files too large to hold in memory.

An importer streams each big file once and appends every record to a JSON-lines file
of the partition that owns it; a partition's reader then opens only its own files. The
cache lives in a folder named from a hash of the inputs (paths, sizes, mtimes) and the
partition size, is built in a private folder and renamed into place, and carries a
marker written last, so a half-written cache is never mistaken for a complete one.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import tempfile
import uuid
from abc import abstractmethod
from collections import defaultdict
from collections.abc import Callable, Iterator
from typing import Any, ClassVar

from annotation.gcpause import without_gc
from annotation.jsonfile import AnnotationError, iter_array
from mmdata.core.stage import Partition, Source

log = logging.getLogger(__name__)

CACHE_VERSION = "2"  # bump when the spill layout changes: old caches are then ignored
MARKER = "COMPLETE"  # written last: a cache without it is half-written and rebuilt
FLUSH_BYTES = 32 << 20  # buffered lines are flushed to disk beyond this many bytes


def cache_folder(root: str, prefix: str, inputs: dict[str, str], rows_per_partition: int) -> str:
    """The cache folder under ``root`` for these input files and partition size."""
    # Size and mtime stand in for content: hashing 700 MB per run would cost more
    # than the spill it saves.
    described = []
    for kind, path in inputs.items():
        stat = os.stat(path) if os.path.exists(path) else None
        size, mtime = (stat.st_size, stat.st_mtime_ns) if stat else (None, None)
        described.append([kind, os.path.abspath(path), size, mtime])
    text = json.dumps([CACHE_VERSION, rows_per_partition, described])
    return os.path.join(root, f"{prefix}-{hashlib.sha256(text.encode()).hexdigest()[:16]}")


def ensure(folder: str, build: Callable[[str], int]) -> int:
    """The partition count of the complete cache at ``folder``, building it if needed.

    ``build(tmp)`` spills into the empty folder ``tmp`` and returns the partition count.
    """
    marker = os.path.join(folder, MARKER)
    if os.path.exists(marker):
        log.debug("reusing spill cache %s", folder)
    else:
        log.info("spilling annotations into %s", folder)
        _build_atomically(folder, build)
    with open(marker) as handle:
        return int(handle.read())


def _build_atomically(folder: str, build: Callable[[str], int]) -> None:
    tmp = f"{folder}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    os.makedirs(tmp)
    try:
        count = build(tmp)
        with open(os.path.join(tmp, MARKER), "w") as handle:
            handle.write(str(count))
        if os.path.exists(folder) and not os.path.exists(os.path.join(folder, MARKER)):
            shutil.rmtree(folder, ignore_errors=True)  # half-written by a crashed run
        try:
            os.rename(tmp, folder)
        except OSError:  # another process renamed its complete copy first
            log.debug("another process finished %s first", folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class Spill:
    """Per-partition JSON-lines writer; buffers lines so few files are open at once."""

    def __init__(self, folder: str, kind: str) -> None:
        """Args:
        folder: the cache folder being built.
        kind: the file's name in the cache (one per input file).
        """
        self.folder, self.kind = folder, kind
        self.buffers: dict[int, list[str]] = defaultdict(list)
        self.size = 0

    def add(self, partition: int, value: Any) -> None:
        """Queue ``value`` (JSON-serialisable) for ``partition``'s file."""
        line = json.dumps(value, separators=(",", ":")) + "\n"
        self.buffers[partition].append(line)
        self.size += len(line)
        if self.size > FLUSH_BYTES:
            self.flush()

    def flush(self) -> None:
        """Append every queued line to its partition's file."""
        for partition, lines in self.buffers.items():
            with open(spill_path(self.folder, self.kind, partition), "a") as handle:
                handle.writelines(lines)
        self.buffers.clear()
        self.size = 0


def spill_path(folder: str, kind: str, partition: int) -> str:
    """Where ``kind``'s records of ``partition`` are spilled."""
    return os.path.join(folder, f"{kind}-{partition:06d}.jsonl")


def read_spill(folder: str, kind: str, partition: int) -> list:
    """The values spilled for ``partition`` from ``kind``, in file order."""
    path = spill_path(folder, kind, partition)
    if not os.path.exists(path):
        return []  # no record of this file fell into this partition
    with open(path) as handle:
        return [json.loads(line) for line in handle]


def iter_records(path: str) -> Iterator[Any]:
    """The elements of a top-level JSON array, or the one top-level object of a file
    that holds a single record (VG v1.4-style per-image files), streamed."""
    try:
        with open(path, "rb") as handle:
            head = handle.read(4096).lstrip(b"\xef\xbb\xbf \t\r\n")
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    return iter_array(path, "" if head.startswith(b"{") else "item")


class SpilledSource(Source):
    """A source whose partitions are chunks of a spill cache built on first use.

    Subclasses set ``cache_prefix`` and ``cache_dir``, and implement ``spill_inputs``
    (the files the cache depends on) and ``build_spill`` (stream them into a folder).
    ``read`` calls ``spill_folder``, which rebuilds the cache on a worker that cannot
    see it (a node without shared storage).
    """

    cache_prefix: ClassVar[str] = "mmdata"
    cache_dir: str | None = None

    @abstractmethod
    def spill_inputs(self) -> dict[str, str]:
        """Role -> path of every input file the cache is built from."""

    @abstractmethod
    def build_spill(self, folder: str, rows_per_partition: int) -> int:
        """Spill the inputs into the empty ``folder``; returns the partition count."""

    @without_gc
    def partitions(self, rows_per_partition: int) -> list[Partition]:
        folder, count = self._cache(rows_per_partition)
        spec = {"cache": folder, "rows_per_partition": rows_per_partition}
        return [Partition(i, spec) for i in range(count)]

    def spill_folder(self, partition: Partition) -> str:
        """The complete cache folder ``partition`` was planned from."""
        return self._cache(partition.spec["rows_per_partition"])[0]

    def _cache(self, rows_per_partition: int) -> tuple[str, int]:
        root = self.cache_dir or tempfile.gettempdir()
        folder = cache_folder(root, self.cache_prefix, self.spill_inputs(), rows_per_partition)
        return folder, ensure(folder, lambda tmp: self.build_spill(tmp, rows_per_partition))
