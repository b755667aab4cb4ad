"""Catalog integrity: every listed shard exists with its recorded size, sha256 and row
count, and every shard-like file in a corpus's output (or a layer's) is listed or reported.

What a crash can leave behind is reported, never repaired here: parts in ``_staging``
(the next run of the recipe deletes them and redoes their shards), ``*.partial``
files (writes that never finished: io.PARTIAL_SUFFIX, the one suffix every writer
uses), and parquet files no catalog row lists.
"""

from __future__ import annotations

from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mmdata.catalog.store import Catalog, CatalogError
from mmdata.core import io
from mmdata.core.progress import Progress


@dataclass(frozen=True)
class Problem:
    corpus: str
    path: str
    kind: str  # missing | size | sha256 | rows | unreadable | orphan | staging | unfinished
    detail: str


@dataclass
class Report:
    shards: int  # listed shard files checked
    files: int  # files found under the corpora's outputs
    problems: list[Problem]


def check(
    catalog: Catalog,
    corpus: str | None = None,
    hashes: bool = True,
    progress: bool | str = False,
) -> Report:
    """Check the shards ``catalog`` lists (of ``corpus``, or of every corpus) against
    the files in their outputs. ``hashes=False`` skips reading whole files for sha256
    (sizes and parquet footers are still checked). ``progress``: as for ``run_recipe``,
    over the listed files and their rows."""
    where, params = ("WHERE name = ?", [corpus]) if corpus else ("", [])
    _, corpora = catalog.query(f"SELECT name, output FROM corpora {where} ORDER BY name", params)
    _, listed = catalog.query("SELECT corpus, path, rows, bytes, sha256 FROM shards ORDER BY path")
    every_listed = {path for _, path, *_ in listed}
    problems: list[Problem] = []
    shards = 0
    names = {name for name, _ in corpora}
    mine = [r for r in listed if r[0] in names]
    with Progress(len(mine), "file", progress, desc="check") as bar:
        for name, path, rows, size, sha in mine:
            shards += 1
            problem = _check_shard(path, rows, size, sha, hashes)
            if problem:
                problems.append(Problem(name, path, *problem))
            bar.update(1, rows=rows)
    files = 0
    for name, output in corpora + _layer_outputs(catalog, names):
        for path in _files_under(output):
            files += 1
            kind = _stray_kind(path, output, every_listed)
            if kind:
                problems.append(Problem(name, path, *kind))
    return Report(shards, files, problems)


def _layer_outputs(catalog: Catalog, corpora: set[str]) -> list[tuple[str, str]]:
    """(corpus, output) of each layer of ``corpora`` (none in a catalog from before
    layers, which a read-only connection does not migrate)."""
    try:
        _, rows = catalog.query("SELECT corpus, output FROM layers ORDER BY corpus, layer")
    except CatalogError:
        return []
    return [(corpus, output) for corpus, output in rows if corpus in corpora]


def _check_shard(path: str, rows: int, size: int, sha: str, hashes: bool):  # noqa: ANN202
    """(kind, detail) of what is wrong with one listed shard file, or None."""
    fs, inner = io.resolve(path)
    info = fs.get_file_info(inner)
    if info.type != pafs.FileType.File:
        return "missing", "listed in the catalog, not on disk"
    if info.size != size:
        return "size", f"{info.size} bytes, the catalog recorded {size}"
    data = io.read_bytes(path) if hashes else None
    if data is not None:
        actual = io.sha256_hex(data)
        if actual != sha:
            return "sha256", f"sha256 {actual[:16]}..., the catalog recorded {sha[:16]}..."
    try:  # the footer from the bytes already read, else from the file
        with pa.BufferReader(data) if data is not None else fs.open_input_file(inner) as handle:
            found = pq.ParquetFile(handle).metadata.num_rows
    except Exception as exc:  # noqa: BLE001 - any unreadable footer is the finding
        return "unreadable", f"not a readable parquet file: {exc}"
    if found != rows:
        return "rows", f"{found} rows, the catalog recorded {rows}"
    return None


def _files_under(output: str) -> list[str]:
    fs, inner = io.resolve(output)
    if fs.get_file_info(inner).type != pafs.FileType.Directory:
        return []
    selector = pafs.FileSelector(inner, recursive=True)
    infos = [i for i in fs.get_file_info(selector) if i.type == pafs.FileType.File]
    prefix = output[: len(output) - len(inner)] if output.endswith(inner) else ""
    return sorted(prefix + i.path for i in infos)


def _stray_kind(path: str, output: str, listed: set[str]):  # noqa: ANN202
    """(kind, detail) for a file under ``output`` that no catalog row accounts for."""
    if path in listed:
        return None
    if "/_staging/" in path[len(output) :]:
        return "staging", "a part of a run that did not finish (its next run deletes it)"
    if path.endswith(io.PARTIAL_SUFFIX):
        return "unfinished", "a write that never finished"
    if path.endswith(".parquet"):
        return "orphan", "a parquet file no catalog row lists"
    return None  # other files (a tokenizer's vocab, notes) are the user's
