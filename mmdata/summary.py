"""The end-of-run summary: rows in/out per step, drops by reason, shards, seconds."""

from __future__ import annotations

from mmdata.catalog import Catalog
from mmdata.run import RunResult
from mmdata.tables import format_rows


def summarize(result: RunResult) -> str:
    """A plain-text report of the corpus after ``result`` (all shards, not this run's)."""
    catalog = Catalog(result.catalog)
    _, steps = catalog.query(
        "SELECT step_index, stage, rows_in, rows_out, seconds FROM stage_summary "
        "WHERE corpus = ? ORDER BY step_index",
        [result.corpus],
    )
    _, drops = catalog.query(
        "SELECT step_index, unit, reason, rows FROM drops_summary WHERE corpus = ?", [result.corpus]
    )
    by_step: dict[int, list[str]] = {}
    for step, unit, reason, rows in drops:
        suffix = "" if unit == "image" else f" {unit}s"
        by_step.setdefault(step, []).append(f"{reason}={rows}{suffix}")
    table = [
        (step, stage, rows_in, rows_out, ", ".join(by_step.get(step, [])) or "-", round(seconds, 3))
        for step, stage, rows_in, rows_out, seconds in steps
    ]
    _, totals = catalog.query(
        "SELECT kind, count(*), sum(rows), sum(bytes) FROM shards WHERE corpus = ? "
        "GROUP BY kind ORDER BY kind",
        [result.corpus],
    )
    files = ", ".join(
        f"{kind}: {n} files, {rows} rows, {size / 1e6:.2f} MB" for kind, n, rows, size in totals
    )
    header = (
        f"corpus {result.corpus}: {result.shards_total} shards "
        f"({result.shards_written} written now, {result.shards_skipped} already done) "
        f"in {result.seconds:.1f} s; catalog {result.catalog}"
    )
    body = format_rows(["step", "stage", "rows_in", "rows_out", "drops", "seconds"], table)
    return "\n".join([header, body, files])
