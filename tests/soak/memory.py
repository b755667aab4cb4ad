"""Resident memory of processes, read from Linux's /proc (no psutil here)."""

from __future__ import annotations

import resource
from pathlib import Path


def rss_mb(pid: int | str = "self") -> float:
    """Resident memory of process ``pid`` (this one by default), in MB."""
    pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    return pages * resource.getpagesize() / 2**20


def ray_workers_mb() -> float:
    """Resident memory of every Ray worker process (``ray::`` in its command line)."""
    total = 0.0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            if b"ray::" in (proc / "cmdline").read_bytes():
                total += rss_mb(proc.name)
        except (OSError, IndexError):
            continue  # it ended while we looked
    return total
