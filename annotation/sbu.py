"""SBU Captioned Photos (``sbu-captions-all.json``) -> one image row per photo.

The file is one JSON object of three parallel lists, ``image_urls``, ``user_ids`` and
``captions`` (1M entries). Entry ``i`` of every list is photo ``i``, so a partition
cannot be read by seeking: reaching entry 900,000 means parsing the 900,000 before it,
and reading every partition that way would be quadratic. Instead ``partitions()``
streams the file once and spills each partition's entries to a JSON-lines file in a
cache folder; ``read()`` reads only its spill file.

The cache folder is named by a hash of (path, size, mtime, rows_per_partition), so an
edited file or another partition size gets a fresh cache. It is built under a temporary
name and renamed into place, with a marker written last, so a half-written cache is
never used. On a multi-node Ray cluster set ``cache_dir`` to storage every node sees;
a worker that cannot find its spill file rebuilds the cache locally.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Iterator
from itertools import zip_longest
from typing import Any

import pyarrow as pa

from annotation.jsonfile import AnnotationError, iter_array
from annotation.webrows import WEB_WRITES, rows_table, web_row
from mmdata.args import InputPath
from mmdata.registry import SOURCES
from mmdata.stage import Partition, Source

LISTS = ("image_urls", "user_ids", "captions")
MARKER = "COMPLETE.json"
_MISSING = object()


@SOURCES.register("sbu")
class SbuSource(Source):
    """SBU captions JSON -> image rows ``sbu:{index}`` with one caption each.

    The user id of each photo is not part of the image schema and is dropped.
    """

    name = "sbu"
    writes = WEB_WRITES

    def __init__(
        self, *, json: InputPath, cache_dir: str | None = None, split: str | None = None
    ) -> None:
        """Args:
        json: path of ``sbu-captions-all.json``.
        cache_dir: folder for the per-partition spill files (default: a folder under
            the system temporary directory).
        split: split name stored on every row.
        """
        self.json, self.split = json, split
        self.cache_dir = cache_dir or os.path.join(tempfile.gettempdir(), "mmdata-sbu-cache")

    def partitions(self, rows_per_partition: int) -> list[Partition]:
        folder = self._cache_folder(rows_per_partition)
        marker = os.path.join(folder, MARKER)
        if not os.path.exists(marker):
            self._build_cache(folder, rows_per_partition)
        with open(marker, encoding="utf-8") as handle:
            counts = json.load(handle)["rows"]
        return [
            Partition(
                i,
                {
                    "spill": os.path.join(folder, _spill_name(i)),
                    "first_row": i * rows_per_partition,
                    "rows": n,
                    "rows_per_partition": rows_per_partition,
                },
            )
            for i, n in enumerate(counts)
        ]

    def read(self, partition: Partition) -> pa.Table:
        spill = partition.spec["spill"]
        if not os.path.exists(spill):  # another machine built the cache: build ours
            rows_per_partition = partition.spec["rows_per_partition"]
            spill = self.partitions(rows_per_partition)[partition.index].spec["spill"]
        first = partition.spec["first_row"]
        rows = []
        with open(spill, encoding="utf-8") as handle:
            for offset, line in enumerate(handle):
                url, caption = json.loads(line)
                index = first + offset
                where = f"{self.json}: entry {index}"
                rows.append(web_row(self.name, index, url, caption, where, self.split))
        return rows_table(rows)

    def _cache_folder(self, rows_per_partition: int) -> str:
        try:
            stat = os.stat(self.json)
        except FileNotFoundError:
            raise AnnotationError(f"{self.json}: file not found") from None
        key = f"{os.path.abspath(self.json)}|{stat.st_size}|{stat.st_mtime_ns}|{rows_per_partition}"
        return os.path.join(self.cache_dir, hashlib.sha1(key.encode()).hexdigest()[:16])

    def _build_cache(self, folder: str, rows_per_partition: int) -> None:
        """Stream the file once into spill files, then move the folder into place."""
        os.makedirs(self.cache_dir, exist_ok=True)
        building = tempfile.mkdtemp(prefix=os.path.basename(folder) + ".", dir=self.cache_dir)
        try:
            counts = _spill(self._entries(), building, rows_per_partition)
            with open(os.path.join(building, MARKER), "w", encoding="utf-8") as handle:
                json.dump({"source": self.json, "rows": counts}, handle)  # last: complete
            shutil.rmtree(folder, ignore_errors=True)  # a half-written cache, if any
            try:
                os.rename(building, folder)
            except OSError:  # another process finished the same cache first
                if not os.path.exists(os.path.join(folder, MARKER)):
                    raise
        finally:
            shutil.rmtree(building, ignore_errors=True)

    def _entries(self) -> Iterator[tuple[Any, Any]]:
        """``(url, caption)`` per photo, streaming the three lists side by side."""
        streams = [iter_array(self.json, f"{name}.item") for name in LISTS]
        for index, values in enumerate(zip_longest(*streams, fillvalue=_MISSING)):
            if any(v is _MISSING for v in values):
                ended = [n for n, v in zip(LISTS, values, strict=True) if v is _MISSING]
                raise AnnotationError(
                    f"{self.json}: the lists {list(LISTS)} must have equal lengths, "
                    f"but {ended} end after {index} entries"
                )
            yield values[0], values[2]


def _spill_name(index: int) -> str:
    return f"part-{index:06d}.jsonl"


def _spill(entries: Iterator[tuple[Any, Any]], folder: str, rows_per_partition: int) -> list[int]:
    """Write ``rows_per_partition`` entries per file; the row count of each file."""
    counts: list[int] = []
    handle = None
    try:
        for index, entry in enumerate(entries):
            if index % rows_per_partition == 0:
                if handle:
                    handle.close()
                handle = open(os.path.join(folder, _spill_name(len(counts))), "w", encoding="utf-8")  # noqa: SIM115
                counts.append(0)
            handle.write(json.dumps(entry, ensure_ascii=False) + "\n")
            counts[-1] += 1
    finally:
        if handle:
            handle.close()
    return counts
