"""What the sink hands the catalog: a finished shard and its files' statistics. Both
sides import this module, so neither imports the other."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc


@dataclass
class FinishedShard:
    """A shard whose files are in place, ready for the catalog."""

    index: int
    input_rows: int
    files: list[dict]  # {kind, path, rows, bytes, sha256}
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
