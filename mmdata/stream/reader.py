"""One shard's samples: projected columns, layers zipped, one sample per image or caption,
filtered by an SQL WHERE clause. A shard that is missing, truncated or not the one the
catalog lists fails with its path named; nothing is yielded from it."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from mmdata.catalog import CatalogError, where_mask
from mmdata.io import resolve
from mmdata.schema import CAPTION, IMAGE_SCHEMA
from mmdata.stream.shards import ShardInfo, StreamError

UNITS = ("image", "caption")
IMAGE_COLUMNS = tuple(IMAGE_SCHEMA.names)
CAPTION_COLUMNS = tuple(f.name for f in CAPTION)  # caption_id, text, scene_graph


def sample_columns(unit: str) -> tuple[str, ...]:
    """The columns a sample of ``unit`` has."""
    if unit == "image":
        return IMAGE_COLUMNS
    return tuple(c for c in IMAGE_COLUMNS if c != "captions") + CAPTION_COLUMNS


def referenced(where: str | None, names: Sequence[str]) -> list[str]:
    """Sample columns a WHERE clause mentions (a word match: extra columns do no harm)."""
    if not where:
        return []
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", where))
    return [n for n in names if n in words]


class ShardReader:
    """Reads samples of ``unit`` with ``columns`` (None: all) that satisfy ``where``."""

    def __init__(
        self,
        columns: Sequence[str] | None,
        unit: str = "image",
        where: str | None = None,
    ) -> None:
        if unit not in UNITS:
            raise StreamError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        names = sample_columns(unit)
        columns = list(columns) if columns is not None else list(names)
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise StreamError(
                f"unknown {unit} columns {unknown}; {unit} samples have: {', '.join(names)}"
            )
        self.unit, self.where, self.columns = unit, where, columns
        self.filter_columns = referenced(where, names)

    # ---- reading ---------------------------------------------------------------------

    def _read(self, shard: ShardInfo, wanted: Sequence[str]) -> pa.Table:
        """The image rows of ``shard`` with the image-level columns ``wanted``, layers
        zipped in by position (their columns replace the base's)."""
        wanted = list(dict.fromkeys(wanted))
        layer_cols: dict[str, list[str]] = {}
        for _, path, _ in shard.layers:
            schema = _schema(path)
            layer_cols[path] = [c for c in wanted if c in schema.names]
        from_layers = {c for cols in layer_cols.values() for c in cols}
        table = _read_table(shard.path, [c for c in wanted if c not in from_layers], shard.rows)
        for _, path, rows in shard.layers:
            if layer_cols[path]:
                extra = _read_table(path, layer_cols[path], rows)
                for name in layer_cols[path]:
                    table = table.append_column(extra.schema.field(name), extra.column(name))
        return table.select(wanted) if wanted else table

    def _image_columns(self, columns: Sequence[str]) -> list[str]:
        """Image-level columns to read for sample columns ``columns``."""
        if self.unit == "image":
            return list(columns)
        image = [c for c in columns if c not in CAPTION_COLUMNS]
        return image + ["captions"]

    def _mask(self, table: pa.Table, shard: ShardInfo) -> np.ndarray | None:
        """Which samples of ``table`` (already in sample form) pass ``where``."""
        if not self.where:
            return None
        try:
            return where_mask(table.select(self.filter_columns), self.where, shard.path)
        except CatalogError as exc:
            raise StreamError(str(exc)) from None

    def _caption_table(self, table: pa.Table, columns: Sequence[str]) -> pa.Table:
        """One row per caption with ``columns`` (image columns taken by parent row)."""
        captions = table.column("captions").combine_chunks()
        flat = pc.list_flatten(captions)
        parents = pc.list_parent_indices(captions)
        out = {}
        for name in columns:
            if name in CAPTION_COLUMNS:
                out[name] = flat.field(name)
            else:
                out[name] = pc.take(table.column(name), parents)
        return pa.table(out) if out else pa.table({"_": pa.nulls(len(flat))}).drop(["_"])

    def count(self, shard: ShardInfo) -> int:
        """How many samples ``shard`` yields (reads only what counting needs)."""
        if self.unit == "image" and not self.where:
            return shard.rows
        table = self._read(shard, self._image_columns(self.filter_columns))
        if self.unit == "caption":
            captions = table.column("captions")
            if not self.where:
                lengths = pc.list_value_length(captions)
                return int(pc.sum(pc.fill_null(lengths, 0)).as_py() or 0)
            table = self._caption_table(table, self.filter_columns)
        mask = self._mask(table, shard)
        return int(mask.sum()) if mask is not None else table.num_rows

    def samples(self, shard: ShardInfo, start: int = 0, stop: int | None = None) -> list[dict]:
        """Samples ``[start, stop)`` of ``shard`` (in stored order, after the filter).

        In caption units the image-level values of one image are the same Python objects
        in each of its captions' samples (shared, not copied).
        """
        needed = list(dict.fromkeys([*self.columns, *self.filter_columns]))
        table = self._read(shard, self._image_columns(needed))
        if self.unit == "image":
            keep = self._mask(table, shard)
            if keep is not None:
                table = table.filter(pa.array(keep))
            return table.select(self.columns).slice(start, _length(start, stop)).to_pylist()
        keep = None
        if self.where:
            keep = self._mask(self._caption_table(table, self.filter_columns), shard)
        return self._caption_samples(table, keep, start, stop)

    def _caption_samples(
        self, table: pa.Table, keep: np.ndarray | None, start: int, stop: int | None
    ) -> list[dict]:
        image_cols = [c for c in self.columns if c not in CAPTION_COLUMNS]
        caption_cols = [c for c in self.columns if c in CAPTION_COLUMNS]
        images = table.select(image_cols).to_pylist() if image_cols else None
        captions = table.column("captions").to_pylist()
        out: list[dict[str, Any]] = []
        position = -1  # index among captions that pass the filter
        flat = -1  # index among all captions
        for row, caps in enumerate(captions):
            for cap in caps or []:
                flat += 1
                if keep is not None and not keep[flat]:
                    continue
                position += 1
                if position < start:
                    continue
                if stop is not None and position >= stop:
                    return out
                sample = dict(images[row]) if images is not None else {}
                sample.update({c: cap[c] for c in caption_cols})
                out.append(sample)
        return out


def _length(start: int, stop: int | None) -> int | None:
    return None if stop is None else max(stop - start, 0)


def _schema(path: str) -> pa.Schema:
    fs, inner = resolve(path)
    try:
        with fs.open_input_file(inner) as fh:
            return pq.ParquetFile(fh).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise StreamError(f"{path}: cannot read shard: {exc}") from None


def _read_table(path: str, columns: Sequence[str], rows: int) -> pa.Table:
    """``columns`` of the Parquet file ``path``, which must hold ``rows`` rows."""
    fs, inner = resolve(path)
    try:
        with fs.open_input_file(inner) as fh:
            parquet = pq.ParquetFile(fh)
            if parquet.metadata.num_rows != rows:
                raise StreamError(
                    f"{path}: has {parquet.metadata.num_rows} rows, the catalog lists {rows} "
                    "(replaced or truncated since it was committed)"
                )
            table = parquet.read(columns=list(columns))
    except FileNotFoundError:
        raise StreamError(f"{path}: shard listed in the catalog is missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise StreamError(f"{path}: cannot read shard: {exc}") from None
    if table.num_rows != rows:
        raise StreamError(f"{path}: read {table.num_rows} rows, the catalog lists {rows}")
    return table
