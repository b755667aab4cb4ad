"""The data that travels between the engine's pieces: a part (what a worker wrote for
one shard), a finished shard (what the sink hands the catalog) and a file's statistics.
The sink, the executors, the committer and the catalog import this module, so none of
them imports another for its types."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, TypedDict

import pyarrow as pa
import pyarrow.compute as pc


class FileMeta(TypedDict, total=False):
    """One written Parquet file: ``rows``, ``bytes``, ``sha256`` and ``file_stats``'
    ``captions``, ``min_image_id``, ``max_image_id``; listed files add ``kind`` (data or
    rejects) and ``path``."""

    kind: str
    path: str
    rows: int
    bytes: int
    sha256: str
    captions: int | None
    min_image_id: str | None
    max_image_id: str | None


class Part(TypedDict, total=False):
    """What a worker wrote for one shard into the staging folder (plain JSON-able data,
    so it travels through Ray blocks): the shard's rows it saw (``input_rows`` of
    ``shard_rows``), its data part (path, kept rows, their input order, file) and its
    rejects part (None when no row was rejected), and its per-step stats as JSON."""

    shard: int
    input_rows: int
    shard_rows: int
    data_path: str
    data_rows: int
    data_order: list[int]
    data_file: FileMeta
    reject_path: str | None
    reject_rows: int
    reject_order: list[int]
    reject_file: FileMeta
    stats: str


@dataclass
class FinishedShard:
    """A shard whose files are in place, ready for the catalog."""

    index: int
    input_rows: int
    files: list[FileMeta]  # with kind and path
    stats: list[dict]


def file_stats(table: pa.Table) -> dict[str, Any]:
    """The statistics a shard file is listed with: captions, min/max image id."""
    stats: dict[str, Any] = {"captions": None, "min_image_id": None, "max_image_id": None}
    if "captions" in table.column_names:
        lengths = pc.list_value_length(table.column("captions"))
        stats["captions"] = int(pc.sum(lengths).as_py() or 0)
    if "image_id" in table.column_names and table.num_rows:
        bounds = pc.min_max(table.column("image_id"))
        stats["min_image_id"] = bounds["min"].as_py()
        stats["max_image_id"] = bounds["max"].as_py()
    return stats
