"""Fault injection for crash tests: ``MMDATA_FAULT=point:N`` kills this process with
SIGKILL the N-th time ``point`` is reached, exactly as an out-of-memory kill or a
pulled plug would, so the tests exercise real recovery, not a polite exception."""

from __future__ import annotations

import collections
import os
import signal

ENV = "MMDATA_FAULT"
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
    if _hits[name] >= int(count or 1):
        os.kill(os.getpid(), signal.SIGKILL)
