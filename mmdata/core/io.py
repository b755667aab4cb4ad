"""Paths and URIs through pyarrow filesystems: local disk and object stores alike."""

from __future__ import annotations

import contextlib
import errno
import functools
import hashlib
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq

from mmdata.core.errors import StorageError

T = TypeVar("T")
RETRY_ATTEMPTS = 4
RETRY_BASE_S = 0.5
#: Errors of the disk or filesystem that waiting does not cure: a full disk or quota, a
#: read-only filesystem, a permission refused. Not retried; the CLI prints them as a line.
PERMANENT_ERRNOS = {errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM}


@functools.lru_cache(maxsize=64)
def _filesystem_for(root: str) -> pafs.FileSystem:
    return pafs.FileSystem.from_uri(root)[0]


def resolve(uri: str) -> tuple[pafs.FileSystem, str]:
    """The filesystem and in-filesystem path of a local path or a URI."""
    if uri.startswith("file://"):
        uri = uri[len("file://") :]
    if "://" not in uri:
        return pafs.LocalFileSystem(), uri
    scheme, _, rest = uri.partition("://")
    fs = _filesystem_for(f"{scheme}://{rest.split('/', 1)[0]}")
    # Bucket stores address objects as "bucket/key"; others need pyarrow's own parse.
    path = rest if scheme in ("s3", "gs", "gcs") else pafs.FileSystem.from_uri(uri)[1]
    return fs, path


def join(base: str, *parts: str) -> str:
    """Join with '/' for URIs and local paths alike."""
    return "/".join([base.rstrip("/"), *parts])


def read_bytes(uri: str) -> bytes:
    """The whole file (raises FileNotFoundError when it does not exist)."""
    fs, path = resolve(uri)
    with fs.open_input_stream(path) as stream:
        return stream.read()


def write_bytes(uri: str, data: bytes) -> None:
    """Write ``data`` to ``uri``, creating parent folders; retried with backoff."""
    fs, path = resolve(uri)

    def write() -> None:
        fs.create_dir(path.rsplit("/", 1)[0], recursive=True)
        with fs.open_output_stream(path) as stream:
            stream.write(data)

    with_retries(write, f"write {uri}")


def move(src: str, dst: str) -> None:
    """Rename ``src`` to ``dst`` (atomic on local disk; copy+delete on object stores)."""
    fs, src_path = resolve(src)
    _, dst_path = resolve(dst)

    def rename() -> None:
        fs.create_dir(dst_path.rsplit("/", 1)[0], recursive=True)
        fs.move(src_path, dst_path)

    with_retries(rename, f"move {src} -> {dst}")


def read_parquet(uri: str, columns: list[str] | None = None) -> pa.Table:
    """A Parquet file (local path or URI) as a table, optionally only ``columns``."""
    fs, path = resolve(uri)
    return pq.read_table(path, columns=columns, filesystem=fs)


def delete_file(uri: str, missing_ok: bool = False) -> None:
    """Remove one file (a missing one is an error unless ``missing_ok``)."""
    fs, path = resolve(uri)
    try:
        fs.delete_file(path)
    except FileNotFoundError:
        if not missing_ok:
            raise


def delete_dir(uri: str) -> None:
    """Remove a folder and its contents if it exists."""
    fs, path = resolve(uri)
    if fs.get_file_info(path).type != pafs.FileType.NotFound:
        fs.delete_dir(path)


def sha256_hex(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def with_retries(action: Callable[[], T], what: str) -> T:
    """Run an I/O action, retrying transient OSErrors with exponential backoff.

    A missing file, a permission refused, a full disk or quota and a read-only filesystem
    are not transient and fail at once.
    """
    for attempt in range(RETRY_ATTEMPTS):
        try:
            return action()
        except (FileNotFoundError, PermissionError):
            raise
        except OSError as exc:
            if exc.errno in PERMANENT_ERRNOS:
                raise
            if attempt == RETRY_ATTEMPTS - 1:
                error = StorageError(f"{what} failed after {RETRY_ATTEMPTS} attempts: {exc}")
                error.errno = exc.errno
                raise error from exc
            time.sleep(RETRY_BASE_S * 2**attempt)
    raise AssertionError("unreachable")


PARTIAL_SUFFIX = ".partial"


@contextlib.contextmanager
def written_whole(path: Path) -> Iterator[Path]:
    """A sibling ``.partial`` path to write ``path`` through, moved onto ``path`` only
    when the block ends without error: a crash never leaves half a file under the final
    name (local files; shards go through ``move``)."""
    partial = path.with_name(path.name + PARTIAL_SUFFIX)
    try:
        yield partial
    except BaseException:
        partial.unlink(missing_ok=True)  # a failed write leaves nothing behind
        raise
    partial.replace(path)


def remove_partials(folder: Path) -> list[Path]:
    """Delete the ``.partial`` files a killed writer left in ``folder`` (a process killed
    inside ``written_whole`` cannot clean up); returns what was removed."""
    stale = sorted(folder.glob(f"*{PARTIAL_SUFFIX}")) if folder.is_dir() else []
    for path in stale:
        path.unlink(missing_ok=True)
    return stale
