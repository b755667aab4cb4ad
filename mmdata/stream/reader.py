"""One shard's samples: projected columns, layers zipped, one sample per image or caption,
filtered by an SQL WHERE clause. A shard that is missing, truncated or not the one the
catalog lists fails with its path named; nothing is yielded from it."""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Mapping, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq
from torch.utils.data import get_worker_info

from mmdata.catalog.store import CatalogError, where_mask
from mmdata.core.io import resolve
from mmdata.core.schema import CAPTION, IMAGE_SCHEMA
from mmdata.stream.decode import one_chunk
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
    """Reads samples of ``unit`` with ``columns`` (None: all) that satisfy ``where``.

    ``columnar`` maps image-level columns to functions that decode a row group's Arrow
    column at once (one value per image row), in place of building Python values.
    """

    def __init__(
        self,
        columns: Sequence[str] | None,
        unit: str = "image",
        where: str | None = None,
        columnar: Mapping[str, Callable[[pa.Array], list]] | None = None,
        layer_columns: Sequence[str] = (),
    ) -> None:
        if unit not in UNITS:
            raise StreamError(f"unit must be one of {', '.join(UNITS)}, got {unit!r}")
        # the image-level columns that only layers have (a layer recipe's fields)
        names = sample_columns(unit)
        names += tuple(c for c in layer_columns if c not in names)
        columns = list(columns) if columns is not None else list(names)
        unknown = [c for c in columns if c not in names]
        if unknown:
            raise StreamError(
                f"unknown {unit} columns {unknown}; {unit} samples have: {', '.join(names)}"
            )
        self.unit, self.where, self.columns = unit, where, columns
        self.columnar = {c: f for c, f in (columnar or {}).items() if c not in CAPTION_COLUMNS}
        self.filter_columns = referenced(where, names)
        # in caption units ``captions`` only carries the caption fields asked for (and the
        # list lengths): reading just those leaves skips the scene graphs' many columns
        wanted = set(columns) | set(self.filter_columns)
        self.caption_fields: tuple[str, ...] | None = None
        if unit == "caption":
            self.caption_fields = tuple(c for c in CAPTION_COLUMNS if c in wanted) or (
                "caption_id",
            )

    # ---- reading ---------------------------------------------------------------------

    def _read(
        self, shard: ShardInfo, wanted: Sequence[str], rows: tuple[int, int] | None = None
    ) -> pa.Table:
        """Image rows ``rows`` (default: all) of ``shard`` with the image-level columns
        ``wanted``, layers zipped in by position (their columns replace the base's)."""
        wanted = list(dict.fromkeys(wanted))
        layer_cols: dict[str, list[str]] = {}
        taken: set[str] = set()  # a column two layers have (image_id) is read from the first
        for _, path, _ in shard.layers:
            schema = _schema(path)
            layer_cols[path] = [c for c in wanted if c in schema.names and c not in taken]
            taken |= set(layer_cols[path])
        from_layers = {c for cols in layer_cols.values() for c in cols}
        base = [c for c in wanted if c not in from_layers]
        fields = {"captions": self.caption_fields} if self.caption_fields else {}
        table = _read_table(shard.path, base, shard.rows, rows, fields)
        for _, path, count in shard.layers:
            if layer_cols[path]:
                extra = _read_table(path, layer_cols[path], count, rows, fields)
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
        captions = one_chunk(table.column("captions"))
        flat = pc.list_flatten(captions)
        parents = pc.list_parent_indices(captions)
        out = {}
        for name in columns:
            if name in CAPTION_COLUMNS:
                out[name] = flat.field(name)
            else:
                out[name] = pc.take(table.column(name), parents)
        return pa.table(out) if out else pa.table({"_": pa.nulls(len(flat))}).drop(["_"])

    def row_groups(self, shard: ShardInfo) -> np.ndarray:
        """The first image row of each of ``shard``'s row groups, then its row count."""
        return group_starts(shard.path, shard.rows)

    def index(self, shard: ShardInfo) -> np.ndarray | None:
        """The image row of each sample of ``shard`` (None: sample i is row i), which
        lets ``samples`` read only the row groups a range of samples needs."""
        if self.unit == "image" and not self.where:
            return None
        table = self._read(shard, self._image_columns(self.filter_columns))
        if self.unit == "image":
            return np.flatnonzero(self._mask(table, shard)).astype(np.int64)
        lengths = pc.fill_null(pc.list_value_length(table.column("captions")), 0)
        rows = np.repeat(np.arange(table.num_rows), lengths.to_numpy(zero_copy_only=False))
        if self.where:
            rows = rows[self._mask(self._caption_table(table, self.filter_columns), shard)]
        return rows.astype(np.int64)

    def samples(
        self,
        shard: ShardInfo,
        start: int = 0,
        stop: int | None = None,
        rows_of: np.ndarray | None = None,
    ) -> list[dict]:
        """Samples ``[start, stop)`` of ``shard`` (stored order, after the filter).

        ``rows_of`` (from ``index``) maps samples to image rows, so only the row groups
        holding the range are read. In caption units the image-level values of one image
        are the same Python objects in each of its captions' samples (shared, not copied).
        """
        if stop is None:
            stop = len(rows_of) if rows_of is not None else shard.rows
        if stop <= start:
            return []
        first_row, last_row = (
            (start, stop - 1) if rows_of is None else (int(rows_of[start]), int(rows_of[stop - 1]))
        )
        needed = list(dict.fromkeys([*self.columns, *self.filter_columns]))
        table = self._read(shard, self._image_columns(needed), (first_row, last_row + 1))
        # the sample index of the slice's first sample, to land exactly on ``start``
        offset = 0 if rows_of is None else start - int(np.searchsorted(rows_of, first_row))
        if self.unit == "image":
            keep = self._mask(table, shard)
            if keep is not None:
                table = table.filter(pa.array(keep))
            table = table.slice(offset, stop - start)
            values = self._image_values(table, self.columns)
            return (
                [dict(zip(self.columns, row)) for row in zip(*values.values())]
                if values
                else [{} for _ in range(table.num_rows)]
            )
        keep = None
        if self.where:
            keep = self._mask(self._caption_table(table, self.filter_columns), shard)
        return self._caption_samples(table, keep, offset, offset + stop - start)

    def _image_values(self, table: pa.Table, columns: Sequence[str]) -> dict[str, list]:
        """Per image column, one Python value per row of ``table`` (columnar hooks
        decode theirs straight from Arrow)."""
        out = {}
        for name in columns:
            hook = self.columnar.get(name)
            out[name] = hook(table.column(name)) if hook else table.column(name).to_pylist()
        return out

    def _caption_samples(
        self, table: pa.Table, keep: np.ndarray | None, start: int, stop: int | None
    ) -> list[dict]:
        image_cols = [c for c in self.columns if c not in CAPTION_COLUMNS]
        caption_cols = [c for c in self.columns if c in CAPTION_COLUMNS]
        images = self._image_values(table, image_cols)
        captions = one_chunk(table.column("captions"))
        flat = pc.list_flatten(captions)  # every caption, in order
        parents = pc.list_parent_indices(captions).to_numpy()
        chosen = np.arange(len(flat)) if keep is None else np.flatnonzero(keep)
        chosen = chosen[start:stop]
        rows = parents[chosen].tolist()
        take = pa.array(chosen, pa.int64())
        # column by column, then one dict per sample: no per-caption struct dicts
        values = [[images[c][r] for r in rows] for c in image_cols]
        values += [flat.field(c).take(take).to_pylist() for c in caption_cols]
        keys = image_cols + caption_cols
        if not keys:
            return [{} for _ in rows]
        return [dict(zip(keys, row)) for row in zip(*values)]


def _schema(path: str) -> pa.Schema:
    fs, inner = resolve(path)
    try:
        with fs.open_input_file(inner) as fh:
            return pq.ParquetFile(fh).schema_arrow
    except (OSError, pa.ArrowException) as exc:
        raise StreamError(f"{path}: cannot read shard: {exc}") from None


@functools.lru_cache(maxsize=64)
def _open(path: str) -> pq.ParquetFile:
    """An open Parquet file with its parsed footer; the files a worker's sub-streams are
    reading stay open (each reads one row group at a time)."""
    fs, inner = resolve(path)
    return pq.ParquetFile(fs.open_input_file(inner))


def _parquet(path: str, rows: int) -> pq.ParquetFile:
    """The open shard ``path``, checked to hold the ``rows`` rows the catalog lists."""
    try:
        parquet = _open(path)
    except FileNotFoundError:
        raise StreamError(f"{path}: shard listed in the catalog is missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise StreamError(f"{path}: cannot read shard: {exc}") from None
    if parquet.metadata.num_rows != rows:
        raise StreamError(
            f"{path}: has {parquet.metadata.num_rows} rows, the catalog lists {rows} "
            "(replaced or truncated since it was committed)"
        )
    return parquet


@functools.lru_cache(maxsize=64)
def group_starts(path: str, rows: int) -> np.ndarray:
    """The first row of each row group of shard ``path``, then its row count."""
    meta = _parquet(path, rows).metadata
    sizes = [meta.row_group(g).num_rows for g in range(meta.num_row_groups)]
    return np.concatenate([[0], np.cumsum(sizes, dtype=np.int64)]).astype(np.int64)


@functools.lru_cache(maxsize=256)
def _leaves(path: str, rows: int, column: str, fields: tuple[str, ...]) -> tuple[str, ...]:
    """The Parquet paths reading only ``fields`` of the list-of-struct ``column`` of shard
    ``path`` (``captions.list.element.text``...), or just ``column`` when the file lacks
    one of them (read whole, it fails or succeeds as before)."""
    found: dict[str, str] = {}
    schema = _parquet(path, rows).schema
    for i in range(len(schema)):
        parts = schema.column(i).path.split(".")
        if parts[0] == column and len(parts) > 3 and parts[3] in fields:
            found.setdefault(parts[3], ".".join(parts[:4]))
    if set(found) != set(fields):
        return (column,)
    return tuple(found[f] for f in fields)


def _read_table(
    path: str,
    columns: Sequence[str],
    rows: int,
    span: tuple[int, int] | None = None,
    fields: Mapping[str, tuple[str, ...]] | None = None,
) -> pa.Table:
    """``columns`` of rows ``span`` (default all) of the Parquet file ``path``, which must
    hold ``rows`` rows; only the row groups overlapping ``span`` are read. ``fields``:
    list-of-struct columns to read only some struct fields of (``{column: fields}``)."""
    parquet = _parquet(path, rows)
    columns = [
        leaf
        for c in columns
        for leaf in (_leaves(path, rows, c, fields[c]) if c in (fields or {}) else (c,))
    ]
    # in a dataloader worker the workers are the parallelism: Arrow's own thread pool (one
    # thread per core in every worker) only contends with them (2x slower on 2 cores)
    threads = get_worker_info() is None
    try:
        if span is None:
            table = parquet.read(columns=columns, use_threads=threads)
        else:
            starts = group_starts(path, rows)
            first = int(np.searchsorted(starts, span[0], side="right")) - 1
            last = int(np.searchsorted(starts, span[1], side="left"))
            table = parquet.read_row_groups(
                list(range(first, last)), columns=columns, use_threads=threads
            )
            table = table.slice(span[0] - int(starts[first]), span[1] - span[0])
    except FileNotFoundError:
        raise StreamError(f"{path}: shard listed in the catalog is missing") from None
    except (OSError, pa.ArrowException) as exc:
        raise StreamError(f"{path}: cannot read shard: {exc}") from None
    expected = rows if span is None else span[1] - span[0]
    if table.num_rows != expected:
        raise StreamError(f"{path}: read {table.num_rows} rows where {expected} were expected")
    return table


def layer_columns(shards: Mapping[str, Sequence[ShardInfo]]) -> list[str]:
    """The columns of the layers zipped onto ``shards`` (read from the first shard's
    layer files: a layer has the same columns in every shard)."""
    for listed in shards.values():
        if listed:
            return [c for _, path, _ in listed[0].layers for c in _schema(path).names]
    return []
