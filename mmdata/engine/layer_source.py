"""The input of a layer run: a base corpus' listed data shards, one partition each.

Partition ``i`` is base data shard ``i`` at the path the catalog lists (``mmdata retry``
renames shards), so ``read`` needs no catalog: Ray workers build this source from the
recipe and read the path carried in the partition. Rows come back in stored order; the
executors add the working columns (``_shard`` = i, ``_row``...) as for any source.
"""

from __future__ import annotations

from typing import ClassVar

import pyarrow as pa

from mmdata.catalog.store import Catalog, CatalogError
from mmdata.core import io
from mmdata.core.schema import IMAGE_SCHEMA
from mmdata.core.stage import Partition, Source


class LayerSource(Source):
    """The rows of ``corpus`` in ``catalog``, projected to ``columns`` (all when empty)."""

    name: ClassVar[str] = "layer_of"
    writes: ClassVar[tuple[str, ...]] = tuple(IMAGE_SCHEMA.names)

    def __init__(self, *, catalog: str, corpus: str, columns: tuple[str, ...] = ()) -> None:
        self.catalog, self.corpus, self.columns = catalog, corpus, tuple(columns)

    def partitions(self, rows_per_partition: int = 0) -> list[Partition]:
        """One partition per listed base data shard, by shard index (``rows_per_partition``
        is ignored: the base decided its partitions).

        Raises:
            CatalogError: the catalog does not hold the corpus.
        """
        catalog = Catalog(self.catalog)
        _, found = catalog.query("SELECT name FROM corpora WHERE name = ?", [self.corpus])
        if not found:
            _, names = catalog.query("SELECT name FROM corpora ORDER BY name")
            raise CatalogError(
                f"{self.catalog}: no corpus {self.corpus!r} to add a layer to "
                f"(corpora: {', '.join(n for (n,) in names) or 'none'})"
            )
        _, rows = catalog.query(
            "SELECT shard_index, path, rows FROM shards WHERE corpus = ? AND layer = 'base' "
            "AND kind = 'data' ORDER BY shard_index",
            [self.corpus],
        )
        return [Partition(index, {"path": path, "rows": n}) for index, path, n in rows]

    def read(self, partition: Partition) -> pa.Table:
        columns = list(self.columns) or None
        table = io.read_parquet(partition.spec["path"], columns)
        if table.num_rows != partition.spec["rows"]:
            raise CatalogError(
                f"{partition.spec['path']}: {table.num_rows} rows, the catalog lists "
                f"{partition.spec['rows']} (base shard {partition.index} changed on disk)"
            )
        return table
