"""Progress of long work: a tqdm bar on stderr for people, JSON lines on stderr for scripts,
or nothing. Counts units (shards, files) and rows, with their rate and an ETA."""

from __future__ import annotations

import json
import sys
import time
from types import TracebackType
from typing import Any, Literal

from tqdm import tqdm

Mode = Literal["bar", "json", "quiet"]
JSON_EVERY_S = 1.0  # at most one JSON line a second, plus the last one


def mode_of(progress: bool | str) -> Mode:
    """``True``/``False`` (the library's flag) or a mode name -> a mode."""
    if progress is True:
        return "bar"
    if progress is False:
        return "quiet"
    if progress not in ("bar", "json", "quiet"):
        raise ValueError(f"progress must be bar, json or quiet, got {progress!r}")
    return progress  # type: ignore[return-value]


class Progress:
    """``update`` after each unit; the bar or the JSON lines show units done of total,
    rows, rows/s and the ETA (from the rate of units so far)."""

    def __init__(
        self,
        total: int | None,
        unit: str,
        mode: bool | str = "bar",
        desc: str = "",
        start: int = 0,
    ) -> None:
        """``total`` None: not known in advance (a rate, no ETA). ``start``: units already
        done before this process (a resumed run); the rate and ETA count only new ones."""
        self.total, self.unit, self.desc = total, unit, desc
        self.mode = mode_of(mode)
        self.start = self.done = start
        self.rows = 0
        self.started = time.perf_counter()
        self._last_json = 0.0
        self._json_done: int | None = None  # units done at the last JSON line
        self._bar = tqdm(
            total=total,
            initial=start,
            unit=unit,
            desc=desc,
            file=sys.stderr,
            disable=self.mode != "bar",
            dynamic_ncols=True,
        )

    def snapshot(self) -> dict[str, Any]:
        """Where the work stands now."""
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        left = None if self.total is None else self.total - self.done
        new = self.done - self.start
        return {
            "event": "progress",
            "task": self.desc,
            "unit": self.unit,
            "done": self.done,
            "total": self.total,
            "rows": self.rows,
            "rows_per_s": round(self.rows / elapsed, 1),
            "elapsed_s": round(elapsed, 2),
            "eta_s": round(elapsed / new * left, 1) if new and left is not None else None,
        }

    def update(self, units: int, rows: int = 0) -> None:
        self.done += units
        self.rows += rows
        if self.mode == "json":
            now = time.perf_counter()
            last = self.total is not None and self.done >= self.total
            if now - self._last_json >= JSON_EVERY_S or last:
                self._last_json = now
                self._write_json()
            return
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self._bar.set_postfix(
            rows=self.rows, rows_per_s=f"{self.rows / elapsed:.0f}", refresh=False
        )
        self._bar.update(units)

    def _write_json(self) -> None:
        self._json_done = self.done
        sys.stderr.write(json.dumps(self.snapshot()) + "\n")
        sys.stderr.flush()

    def close(self) -> None:
        """End the bar; in JSON mode, make sure the last line is the final state."""
        if self.mode == "json" and self._json_done != self.done:
            self._write_json()
        self._bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()
