"""A generic URL + caption list (LAION / img2dataset style) -> one image row per entry.

Formats: Parquet (split by row ranges from the file's metadata, read a row group at a
time, so a file bigger than memory is fine), and CSV / TSV / JSON lines (split by byte
ranges). CSV and TSV have a header line naming the columns; it is read once.

Limitation: byte-range splitting cuts at newlines, so a quoted CSV field that holds a
newline is not supported. Such a row is not silently mangled: its first line has an
unterminated quote and becomes an ``error`` row (reason ``malformed_line``), and its
continuation line becomes a second one (wrong column count). Convert such files to
Parquet or JSON lines first.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Iterator
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq

from annotation.jsonfile import AnnotationError
from annotation.webrows import WEB_WRITES, LineFileSource, error_row, rows_table, web_row
from mmdata.core.args import InputPath
from mmdata.core.registry import SOURCES
from mmdata.core.stage import Partition

Format = Literal["parquet", "csv", "tsv", "jsonl"]
_EXTENSIONS: dict[str, Format] = {
    ".parquet": "parquet",
    ".csv": "csv",
    ".tsv": "tsv",
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
}
_DELIMITERS = {"csv": ",", "tsv": "\t"}
_SEPARATOR_NAMES = {"csv": "comma", "tsv": "tab"}


@SOURCES.register("url_list")
class UrlListSource(LineFileSource):
    """URL + caption table (Parquet, CSV, TSV or JSON lines) -> ``url_list:{row}`` rows.

    The row number is the 0-based index of the data row in the file (the header of a
    CSV/TSV is not a row). Other columns are ignored.
    """

    name = "url_list"
    writes = WEB_WRITES

    def __init__(
        self,
        *,
        path: InputPath,
        url_col: str = "url",
        caption_col: str = "caption",
        format: Format | None = None,  # noqa: A002 - the recipe key users expect
        split: str | None = None,
    ) -> None:
        """Args:
        path: the list file.
        url_col: name of the column (or JSON key) holding the image URL.
        caption_col: name of the column (or JSON key) holding the caption.
        format: parquet, csv, tsv or jsonl; None infers it from the file extension.
        split: split name stored on every row.

        Raises:
            ValueError: the format is not given and the extension does not tell it.
        """
        self.path, self.url_col, self.caption_col, self.split = path, url_col, caption_col, split
        self.format: Format = format or _infer_format(path)
        self.header_lines = 1 if self.format in _DELIMITERS else 0
        self._indexes: tuple[int, int, int] | None = None

    def _path(self) -> str:
        return self.path

    def partitions(self, rows_per_partition: int) -> list[Partition]:
        if self.format != "parquet":
            self._check_text_columns()
            return super().partitions(rows_per_partition)
        rows = self._parquet_file().metadata.num_rows
        return [
            Partition(i, {"start": s, "end": min(s + rows_per_partition, rows)})
            for i, s in enumerate(range(0, rows, rows_per_partition))
        ]

    def read(self, partition: Partition) -> pa.Table:
        if self.format != "parquet":
            self._check_text_columns()
            return super().read(partition)
        start, end = partition.spec["start"], partition.spec["end"]
        try:
            pairs = list(_parquet_rows(self._parquet_file(), self._columns(), start, end))
        except _DAMAGED as exc:
            raise AnnotationError(
                f"{self.path}: rows {start}-{end - 1} cannot be read (a damaged Parquet "
                f"file?): {type(exc).__name__}: {exc}"
            ) from None
        rows = [
            web_row(self.name, row, url, caption, f"{self.path}: row {row}", self.split)
            for row, (url, caption) in enumerate(pairs, start)
        ]
        return rows_table(rows)

    def _columns(self) -> list[str]:
        return [self.url_col, self.caption_col]

    def _missing(self, have: list[str]) -> None:
        missing = [c for c in self._columns() if c not in have]
        if missing:
            raise AnnotationError(
                f"{self.path}: no column {missing} (url_col={self.url_col!r}, "
                f"caption_col={self.caption_col!r}); the file has columns {have}"
            )

    def _parquet_file(self) -> pq.ParquetFile:
        try:
            handle = pq.ParquetFile(self.path)
        except _DAMAGED as exc:
            raise AnnotationError(
                f"{self.path}: not a readable Parquet file: {type(exc).__name__}: {exc}"
            ) from None
        self._missing(handle.schema_arrow.names)
        return handle

    def _check_text_columns(self) -> None:
        """Read the header (CSV/TSV) or first record (JSONL) once and find the columns."""
        if self._indexes is not None:
            return
        first = _first_line(self.path)
        if self.format == "jsonl":
            try:
                record = json.loads(first)
            except json.JSONDecodeError as exc:
                raise AnnotationError(f"{self.path}: line 1 is not JSON: {exc}") from None
            self._missing(list(record) if isinstance(record, dict) else [])
            self._indexes = (0, 0, 0)
            return
        header = next(csv.reader([first], delimiter=_DELIMITERS[self.format]))
        self._missing(header)
        self._indexes = (header.index(self.url_col), header.index(self.caption_col), len(header))

    def _parse(self, text: str, row_number: int, where: str) -> dict:
        if self.format == "jsonl":
            return self._parse_json(text, row_number, where)
        url_index, caption_index, width = self._indexes or (0, 0, 0)
        try:
            fields = next(csv.reader([text], delimiter=_DELIMITERS[self.format], strict=True))
        except csv.Error as exc:
            detail = (
                f"{where}: {exc} (a quoted field spanning lines is not supported "
                "when the file is split into byte ranges)"
            )
            return error_row(self.name, row_number, "malformed_line", detail, self.split)
        if len(fields) != width:
            separator = _SEPARATOR_NAMES[self.format]
            return self._malformed(row_number, where, str(width), len(fields), separator)
        return web_row(
            self.name, row_number, fields[url_index], fields[caption_index], where, self.split
        )

    def _parse_json(self, text: str, row_number: int, where: str) -> dict:
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            detail = f"{where}: not a JSON record: {exc}"
            return error_row(self.name, row_number, "malformed_line", detail, self.split)
        if not isinstance(record, dict) or any(c not in record for c in self._columns()):
            detail = f"{where}: not an object with keys {self._columns()}"
            return error_row(self.name, row_number, "missing_key", detail, self.split)
        url, caption = record[self.url_col], record[self.caption_col]
        return web_row(self.name, row_number, url, caption, where, self.split)


# What pyarrow raises on a truncated or corrupted Parquet file: Arrow's own errors, an
# OSError from the thrift decoder, or invalid UTF-8 surfacing when strings are converted.
_DAMAGED = (pa.ArrowException, OSError, UnicodeDecodeError)


def _infer_format(path: str) -> Format:
    extension = os.path.splitext(path)[1].lower()
    if extension not in _EXTENSIONS:
        raise ValueError(
            f"{path}: cannot tell the format from the extension {extension!r}; "
            f"set format to one of {sorted(set(_EXTENSIONS.values()))}"
        )
    return _EXTENSIONS[extension]


def _first_line(path: str) -> str:
    with open(path, "rb") as handle:
        line = handle.readline().rstrip(b"\r\n")
    try:
        return line.decode("utf-8-sig")  # a BOM would otherwise stick to the first name
    except UnicodeDecodeError:
        raise AnnotationError(f"{path}: line 1 is not UTF-8") from None


def _parquet_rows(
    handle: pq.ParquetFile, columns: list[str], start: int, end: int
) -> Iterator[tuple[Any, Any]]:
    """``(url, caption)`` of rows ``[start, end)``, reading only the row groups that
    overlap the range, one batch at a time."""
    metadata = handle.metadata
    group_start, groups, position = 0, [], None
    for group in range(metadata.num_row_groups):
        rows = metadata.row_group(group).num_rows
        if group_start < end and group_start + rows > start:
            groups.append(group)
            position = group_start if position is None else position
        group_start += rows
    if position is None:
        return
    url_col, caption_col = columns
    for batch in handle.iter_batches(batch_size=65536, row_groups=groups, columns=columns):
        lo, hi = max(start - position, 0), min(end - position, batch.num_rows)
        if lo < hi:
            piece = batch.slice(lo, hi - lo)
            urls, captions = piece.column(url_col), piece.column(caption_col)
            yield from zip(urls.to_pylist(), captions.to_pylist(), strict=True)
        position += batch.num_rows
        if position >= end:
            return
