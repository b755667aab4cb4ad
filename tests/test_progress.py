"""Progress for people (a tqdm bar), for scripts (JSON lines) and for nobody (quiet)."""

from __future__ import annotations

import json
import time

import pytest

from mmdata.core.progress import Progress, mode_of


def _events(err: str) -> list[dict]:
    return [json.loads(line) for line in err.strip().splitlines()]


def test_json_lines_end_with_the_final_state_even_when_updates_are_fast(capsys):
    with Progress(None, "image", "json", desc="export") as bar:
        for _ in range(50):
            bar.update(1, rows=2)
    events = _events(capsys.readouterr().err)
    assert len(events) == 2  # the first update, then (under a second later) the final state
    assert (events[-1]["done"], events[-1]["rows"], events[-1]["eta_s"]) == (50, 100, None)


def test_a_resumed_task_counts_its_rate_and_eta_from_where_it_started(capsys):
    with Progress(10, "step", "json", start=6) as bar:
        time.sleep(0.3)
        bar.update(1, rows=8)
        first = bar.snapshot()
    assert (first["done"], first["total"]) == (7, 10)
    assert first["eta_s"] == pytest.approx(first["elapsed_s"] * 3, rel=0.1)  # 3 more steps


def test_quiet_prints_nothing_and_the_bar_shows_units_and_rows(capsys):
    with Progress(3, "shard", "quiet") as bar:
        bar.update(3, rows=30)
    assert capsys.readouterr().err == ""
    with Progress(3, "shard", True) as bar:
        bar.update(3, rows=30)
    err = capsys.readouterr().err
    assert "3/3" in err and "rows=30" in err
    with pytest.raises(ValueError, match="bar, json or quiet"):
        mode_of("loud")
