"""SBU Captioned Photos (``sbu-captions-all.json``) -> one image row per photo.

The file is one JSON object of three parallel lists, ``image_urls``, ``user_ids`` and
``captions`` (1M entries). Entry ``i`` of every list is photo ``i``, so a partition
cannot be read by seeking: reaching entry 900,000 means parsing the 900,000 before it,
and reading every partition that way would be quadratic. Instead ``partitions()``
streams the file once and spills each partition's entries to a JSON-lines file in a
cache folder; ``read()`` reads only its spill file.

The cache (annotation.spill) is named by a hash of (path, size, mtime,
rows_per_partition), so an edited file or another partition size gets a fresh cache,
and is built under a temporary name with a marker written last. On a multi-node Ray
cluster set ``cache_dir`` to storage every node sees; a worker that cannot find the
cache rebuilds it locally.
"""

from __future__ import annotations

from collections.abc import Iterator
from itertools import zip_longest
from typing import Any

import pyarrow as pa

from annotation.gcpause import without_gc
from annotation.jsonfile import AnnotationError, iter_array
from annotation.spill import Spill, SpilledSource, read_spill
from annotation.webrows import WEB_WRITES, rows_table, web_row
from mmdata.core.args import InputPath
from mmdata.core.registry import SOURCES
from mmdata.core.stage import Partition

LISTS = ("image_urls", "user_ids", "captions")
_MISSING = object()


@SOURCES.register("sbu")
class SbuSource(SpilledSource):
    """SBU captions JSON -> image rows ``sbu:{index}`` with one caption each.

    The user id of each photo is not part of the image schema and is dropped.
    """

    name = "sbu"
    cache_prefix = "mmdata-sbu"
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
        self.cache_dir = cache_dir

    @without_gc
    def read(self, partition: Partition) -> pa.Table:
        # Rebuilds the cache when this worker cannot see it (no shared storage).
        folder = self.spill_folder(partition)
        first = partition.index * partition.spec["rows_per_partition"]
        rows = []
        for offset, (url, caption) in enumerate(read_spill(folder, "entries", partition.index)):
            index = first + offset
            where = f"{self.json}: entry {index}"
            rows.append(web_row(self.name, index, url, caption, where, self.split))
        return rows_table(rows)

    def spill_inputs(self) -> dict[str, str]:
        return {"json": self.json}

    def build_spill(self, folder: str, rows_per_partition: int) -> int:
        """Stream the file once into per-partition files; returns the partition count."""
        spill, count = Spill(folder, "entries"), 0
        for index, entry in enumerate(self._entries()):
            spill.add(index // rows_per_partition, list(entry))
            count = index // rows_per_partition + 1
        spill.flush()
        return count

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
