"""A progress bar for long work (tqdm on a terminal, periodic log lines otherwise)."""

from __future__ import annotations

import logging
import sys
import time
from types import TracebackType

from tqdm import tqdm

log = logging.getLogger(__name__)


class Progress:
    """Counts units (shards) and rows; shows rate and ETA."""

    def __init__(self, total: int, unit: str, enabled: bool = True, desc: str = "") -> None:
        self.rows = 0
        self.started = time.perf_counter()
        self._bar = tqdm(
            total=total,
            unit=unit,
            desc=desc,
            file=sys.stderr,
            disable=not enabled,
            dynamic_ncols=True,
        )

    def update(self, units: int, rows: int = 0) -> None:
        self.rows += rows
        elapsed = max(time.perf_counter() - self.started, 1e-9)
        self._bar.set_postfix(
            rows=self.rows, rows_per_s=f"{self.rows / elapsed:.0f}", refresh=False
        )
        self._bar.update(units)

    def __enter__(self) -> Progress:
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._bar.close()
