"""Shared by the web URL+caption sources (cc3m, cc12m, sbu, url_list).

Each input row becomes one image row ``{source}:{row number}`` with one caption, where
the row number is the 0-based index of the row in the file (data rows only: a CSV
header is not counted). Problems with a row become a row with a status and a reason,
never an exception, so one bad line in 12 million does not stop an import.

Line files are cut into byte ranges (annotation.textfile.byte_partitions); for exact
row numbers ``line_partitions`` counts the line starts before each range once, in
1 MiB chunks, and stores them in the partition spec as ``first_line``.
"""

from __future__ import annotations

import os
import re
from abc import abstractmethod
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from annotation.gcpause import without_gc
from annotation.textfile import byte_partitions
from mmdata.core.schema import IMAGE_SCHEMA, STATUS_ERROR, STATUS_REJECTED
from mmdata.core.stage import Partition, Source

CHUNK_BYTES = 1 << 20
WEB_WRITES: tuple[str, ...] = ("image_id", "source", "split", "url", "captions")
ROW_SCHEMA = pa.schema(
    [
        IMAGE_SCHEMA.field(n)
        for n in ("image_id", "source", "split", "url", "path", "captions", "gold")
    ]
    + [IMAGE_SCHEMA.field("status"), IMAGE_SCHEMA.field("reason")]
    + [pa.field("_detail", pa.string())]
)
#: http(s), then a non-empty host: what urlsplit would call scheme and netloc.
_HTTP_URL = re.compile(r"(?i:https?)://[^/?#\s]")


def url_problem(url: Any) -> str | None:
    """Why ``url`` cannot be downloaded, or None when it is an http(s) URL."""
    if not isinstance(url, str) or not url.strip():
        return "missing url"
    # A compiled pattern, not urlsplit: this runs once per row of 12M-row files.
    if not _HTTP_URL.match(url):
        return f"url {url!r} is not http(s)"
    return None


def web_row(
    source: str,
    row_number: int,
    url: Any,
    caption: Any,
    where: str,
    split: str | None = None,
    gold: dict | None = None,
) -> dict:
    """One image row with one caption; rejected when the url or the caption is unusable.

    The caption is kept verbatim (normalising whitespace is caption_filter's job).
    """
    image_id = f"{source}:{row_number}"
    text = caption if isinstance(caption, str) or caption is None else str(caption)
    row: dict[str, Any] = {
        "image_id": image_id,
        "source": source,
        "split": split,
        "url": url if isinstance(url, str) else None,
        "captions": [{"caption_id": f"{image_id}#0", "text": text, "scene_graph": None}],
        "gold": gold,
    }
    problem = url_problem(url)
    if problem:
        return _rejected(row, "bad_url", f"{where}: {problem}")
    if text is None or not text.strip():
        return _rejected(row, "empty_caption", f"{where}: empty caption")
    return row


def _rejected(row: dict, reason: str, detail: str) -> dict:
    return {**row, "status": STATUS_REJECTED, "reason": reason, "_detail": detail}


def error_row(
    source: str, row_number: int, reason: str, detail: str, split: str | None = None
) -> dict:
    """A row that could not be parsed: status error, with the reason and where it was."""
    return {
        "image_id": f"{source}:{row_number}",
        "source": source,
        "split": split,
        "status": STATUS_ERROR,
        "reason": reason,
        "_detail": detail,
    }


def rows_table(rows: list[dict]) -> pa.Table:
    """The rows as a table in ROW_SCHEMA (image columns plus ``_detail``)."""
    return pa.Table.from_pylist(rows, schema=ROW_SCHEMA)


def line_starts_before(path: str, positions: list[int]) -> list[int]:
    """For each byte position (ascending), how many lines start before it.

    A line starts at byte 0 and after every newline, so the count before ``p > 0`` is
    1 + the newlines in ``[0, p - 1)``. One sequential read of the file in total.
    """
    counts: list[int] = []
    newlines, offset = 0, 0
    with open(path, "rb") as handle:
        for position in positions:
            stop = max(position - 1, 0)
            while offset < stop:
                chunk = handle.read(min(CHUNK_BYTES, stop - offset))
                if not chunk:
                    break
                newlines += chunk.count(b"\n")
                offset += len(chunk)
            counts.append(0 if position == 0 else 1 + newlines)
    return counts


def line_partitions(path: str, rows_per_partition: int) -> list[Partition]:
    """Byte ranges of about ``rows_per_partition`` lines, each with its ``first_line``.

    Ranges where no line starts (a line longer than the range) are dropped, and the
    rest numbered 0..n-1, so every partition holds at least one line.
    """
    ranges = byte_partitions(path, rows_per_partition)
    if not ranges:
        return []
    bounds = [p.spec["start"] for p in ranges] + [os.path.getsize(path)]
    starts = line_starts_before(path, bounds)
    kept = [
        {"start": r.spec["start"], "end": r.spec["end"], "first_line": starts[i]}
        for i, r in enumerate(ranges)
        if starts[i + 1] > starts[i]
    ]
    return [Partition(i, spec) for i, spec in enumerate(kept)]


def iter_range_lines(path: str, spec: dict) -> Iterator[tuple[int, int, bytes]]:
    """``(0-based line index, byte offset, line without newline)`` for each line that
    starts in the spec's byte range, blank lines included (so indexes stay exact).

    A line belongs to the range holding its first byte, so ranges cut anywhere
    neither lose nor repeat a line.
    """
    start, end, index = spec["start"], spec["end"], spec["first_line"]
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
            yield index, offset, line.rstrip(b"\r\n")
            index += 1
            offset += len(line)


class LineFileSource(Source):
    """A source with one row per line of a text file, split into byte ranges.

    Subclasses set ``header_lines`` and implement ``_path`` and ``_parse``; this class
    numbers rows, skips blank lines and turns invalid UTF-8 into ``bad_encoding`` rows.
    """

    #: Lines before the first data row (1 for a CSV header); not counted as rows.
    header_lines: int = 0
    split: str | None = None

    @abstractmethod
    def _path(self) -> str: ...

    @abstractmethod
    def _parse(self, text: str, row_number: int, where: str) -> dict | None:
        """The row for one decoded, non-blank line, or None when the line is not data."""

    def partitions(self, rows_per_partition: int) -> list[Partition]:
        return line_partitions(self._path(), rows_per_partition)

    @without_gc
    def read(self, partition: Partition) -> pa.Table:
        return rows_table(list(self._rows(partition)))

    def _rows(self, partition: Partition) -> Iterator[dict]:
        """The row of each data line of ``partition`` (blank lines and lines ``_parse``
        turns down yield none)."""
        path = self._path()
        for index, offset, line in iter_range_lines(path, dict(partition.spec)):
            if index < self.header_lines or not line:
                continue
            row_number = index - self.header_lines
            where = f"{path}: line {index + 1} (byte {offset})"
            try:
                text = line.decode("utf-8")
            except UnicodeDecodeError as exc:
                detail = f"{where}: invalid UTF-8 at byte {offset + exc.start}"
                yield self._error_row(row_number, "bad_encoding", detail)
                continue
            row = self._parse(text, row_number, where)
            if row is not None:
                yield row

    def _error_row(self, row_number: int, reason: str, detail: str) -> dict:
        """An error row for data row ``row_number`` (``{name}:{row}``, as ``web_row``)."""
        return error_row(self.name, row_number, reason, detail, self.split)

    def _malformed(
        self, row_number: int, where: str, expected: str, got: int, separator: str = "tab"
    ) -> dict:
        detail = f"{where}: expected {expected} {separator}-separated columns, got {got}"
        return self._error_row(row_number, "malformed_line", detail)
