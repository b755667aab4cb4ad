"""One run per corpus output at a time.

A run deletes the staging folder it finds (the parts of a crashed run) and writes shard
files by their index, so a second run of the same corpus would delete the first one's
parts and overwrite its shards. The first run holds an exclusive ``flock`` on
``<output>/.mmdata-run.lock`` until it ends; the operating system drops the lock when the
process dies, so a crash never leaves the corpus locked. Object-store outputs have no
such lock (see the closing note of issue 9): run one writer per corpus there.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.fs as pafs

from mmdata import io
from mmdata.errors import MmdataError

LOCK_FILE = ".mmdata-run.lock"


class CorpusBusyError(MmdataError):
    """Another process is running a recipe into the same output."""


@contextlib.contextmanager
def corpus_lock(output: str, corpus: str) -> Iterator[None]:
    """Hold the run lock of a local ``output`` for the block (no-op for object stores)."""
    fs, inner = io.resolve(output)
    if not isinstance(fs, pafs.LocalFileSystem):
        yield
        return
    folder = Path(inner)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / LOCK_FILE
    handle = open(path, "a+", encoding="utf-8")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            raise CorpusBusyError(
                f"corpus {corpus!r}: {holder} is running a recipe into {folder}; wait for it "
                "to end (or stop it: the next run resumes where it stopped)"
            ) from None
        handle.seek(0)
        handle.truncate()
        started = datetime.datetime.now().isoformat(timespec="seconds")
        handle.write(f"pid {os.getpid()} (since {started})")
        handle.flush()
        yield
    finally:
        handle.close()  # releases the lock
