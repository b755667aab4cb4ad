"""One run per corpus output at a time.

A run deletes the staging folder it finds (the parts of a crashed run) and writes shard
files by their index, so a second run of the same corpus would delete the first one's
parts and overwrite its shards. The first run holds an exclusive ``flock`` on
``<output>/.mmdata-run.lock`` until it ends; the operating system drops the lock when the
process dies, so a crash never leaves the corpus locked.

On S3 (``s3://`` outputs) there is no flock: the lock is a lease object at the same name,
created with a conditional write (``If-None-Match: *``), so of two writers exactly one
creates it. The holder renews it every ``LEASE_RENEW_S`` (``If-Match`` its own ETag) and
deletes it at the end; a lease not renewed for ``LEASE_TTL_S`` (its holder crashed) is
taken over, again by a conditional write, so only one of several takers wins. Other
object stores have no lock: run one writer per corpus there.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow.fs as pafs

from mmdata.core import io
from mmdata.core.errors import MmdataError

LOCK_FILE = ".mmdata-run.lock"
LEASE_TTL_S = float(os.environ.get("MMDATA_LEASE_TTL_S", "60"))
LEASE_RENEW_S = LEASE_TTL_S / 3
log = logging.getLogger(__name__)


class CorpusBusyError(MmdataError):
    """Another process is running a recipe into the same output."""


@contextlib.contextmanager
def corpus_lock(output: str, corpus: str) -> Iterator[None]:
    """Hold the run lock of a local ``output`` for the block (no-op for object stores)."""
    fs, inner = io.resolve(output)
    if output.startswith("s3://"):
        with _s3_lease(output, corpus):
            yield
        return
    if not isinstance(fs, pafs.LocalFileSystem):
        log.warning("%s: no run lock on this object store; run one writer per corpus", output)
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


def _holder() -> str:
    started = datetime.datetime.now().isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()} (since {started})"


def _s3_client() -> Any:
    import boto3  # only S3 outputs need it; it finds AWS_ENDPOINT_URL like pyarrow does
    from botocore.config import Config

    config = Config(retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5)
    return boto3.client("s3", config=config)


def _precondition_failed(exc: Exception) -> bool:
    code = getattr(exc, "response", {}).get("Error", {}).get("Code", "")
    return code in ("PreconditionFailed", "412", "ConditionalRequestConflict")


@contextlib.contextmanager
def _s3_lease(output: str, corpus: str) -> Iterator[None]:
    """Hold the lease object ``<output>/.mmdata-run.lock`` on S3 for the block."""
    import botocore.exceptions

    bucket, _, prefix = output[len("s3://") :].partition("/")
    key = f"{prefix.rstrip('/')}/{LOCK_FILE}".lstrip("/")
    client = _s3_client()
    holder = _holder()

    def body() -> bytes:
        return json.dumps({"holder": holder, "expires": time.time() + LEASE_TTL_S}).encode()

    def busy(who: str) -> CorpusBusyError:
        return CorpusBusyError(
            f"corpus {corpus!r}: {who} is running a recipe into {output} (its lease "
            f"s3://{bucket}/{key} is held); wait for it to end (or stop it: the next run "
            f"resumes where it stopped; a stopped holder's lease lapses {LEASE_TTL_S:.0f} s "
            "after its last renewal)"
        )

    try:
        etag = client.put_object(Bucket=bucket, Key=key, Body=body(), IfNoneMatch="*")["ETag"]
    except botocore.exceptions.ClientError as exc:
        if not _precondition_failed(exc):
            raise
        current = client.get_object(Bucket=bucket, Key=key)
        lease = json.loads(current["Body"].read() or b"{}")
        if lease.get("expires", 0) > time.time():
            raise busy(lease.get("holder", "another process")) from None
        try:  # a lapsed lease: take it over unless another taker was first
            etag = client.put_object(Bucket=bucket, Key=key, Body=body(), IfMatch=current["ETag"])[
                "ETag"
            ]
        except botocore.exceptions.ClientError as exc2:
            if _precondition_failed(exc2):
                raise busy("another process") from None
            raise
        log.warning("%s: took over a lapsed run lease of %s", output, lease.get("holder"))

    state = {"etag": etag, "lost": False}
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(LEASE_RENEW_S):
            try:
                state["etag"] = client.put_object(
                    Bucket=bucket, Key=key, Body=body(), IfMatch=state["etag"]
                )["ETag"]
            except botocore.exceptions.ClientError as exc:
                if _precondition_failed(exc):
                    state["lost"] = True
                    log.error("%s: the run lease was taken by another writer", output)
                    return
                log.warning("%s: renewing the run lease failed: %s", output, exc)

    thread = threading.Thread(target=renew, name="run-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        if not state["lost"]:
            try:
                client.delete_object(Bucket=bucket, Key=key, IfMatch=state["etag"])
            except (botocore.exceptions.BotoCoreError, botocore.exceptions.ClientError) as exc:
                # the lease lapses by itself after LEASE_TTL_S
                log.warning("%s: could not release the run lease: %s", output, exc)
    if state["lost"]:
        raise CorpusBusyError(
            f"corpus {corpus!r}: the run lease of {output} lapsed and another writer took "
            "it; check the corpus (mmdata check) and re-run"
        )
