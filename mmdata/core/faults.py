"""Fault injection for crash tests: ``MMDATA_FAULT=point:N`` kills this process with
SIGKILL the N-th time ``point`` is reached, exactly as an out-of-memory kill or a
pulled plug would, so the tests exercise real recovery, not a polite exception.

Ray workers get the same variables (``worker_env``). Each process counts its own hits,
so with ``MMDATA_FAULT_ONCE=<file>`` only the first process to reach the point dies: it
creates the file first, and a process that finds it there carries on. That is one worker
killed, however often Ray restarts or retries it."""

from __future__ import annotations

import collections
import os
import signal

ENV = "MMDATA_FAULT"
ONCE_ENV = "MMDATA_FAULT_ONCE"
_hits: collections.Counter[str] = collections.Counter()


def point(name: str) -> None:
    """Mark a crash point; dies here if MMDATA_FAULT names it and its count is reached."""
    spec = os.environ.get(ENV)
    if not spec:
        return
    target, _, count = spec.partition(":")
    if target != name:
        return
    _hits[name] += 1
    if _hits[name] < int(count or 1):
        return
    once = os.environ.get(ONCE_ENV)
    if once:
        try:
            os.close(os.open(once, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return  # another process already died here
    os.kill(os.getpid(), signal.SIGKILL)


def worker_env() -> dict[str, str]:
    """The fault variables of this process, for the workers it starts."""
    return {k: os.environ[k] for k in (ENV, ONCE_ENV) if os.environ.get(k)}
