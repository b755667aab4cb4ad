"""The end-of-run summary: rows in/out per step, drops by reason, shards, seconds; as a
dict (`mmdata run --json`) or as text."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from mmdata.catalog.store import Catalog
from mmdata.core.tables import format_rows

if TYPE_CHECKING:
    from mmdata.engine.run import RunResult


def step_stats(catalog: Catalog, corpus: str, layer: str = "base") -> list[dict[str, Any]]:
    """Each step of ``corpus`` (or of its layer ``layer``; the source is step -1): rows
    in and out, seconds, and its drops as ``{unit, reason, rows}`` (by unit, then most
    rows first)."""
    columns, steps = catalog.query(
        "SELECT step_index, stage, rows_in, rows_out, seconds FROM stage_summary "
        "WHERE corpus = ? AND layer = ? ORDER BY step_index",
        [corpus, layer],
    )
    _, drops = catalog.query(
        "SELECT step_index, unit, reason, rows FROM drops_summary "
        "WHERE corpus = ? AND layer = ? ORDER BY step_index, unit, rows DESC, reason",
        [corpus, layer],
    )
    return [
        {
            **dict(zip(columns, step)),
            "drops": [
                {"unit": unit, "reason": reason, "rows": rows}
                for index, unit, reason, rows in drops
                if index == step[0]
            ],
        }
        for step in steps
    ]


def summary_dict(result: RunResult) -> dict[str, Any]:
    """The corpus after ``result`` (all its shards, not only this run's) as plain data."""
    catalog = Catalog(result.catalog)
    _, files = catalog.query(
        "SELECT kind, count(*), sum(rows), sum(bytes) FROM shards WHERE corpus = ? "
        "AND layer = ? GROUP BY kind ORDER BY kind",
        [result.corpus, result.layer],
    )
    return {
        "event": "summary",
        **dataclasses.asdict(result),
        "steps": step_stats(catalog, result.corpus, result.layer),
        "files": {kind: {"files": n, "rows": rows, "bytes": size} for kind, n, rows, size in files},
    }


def summarize(result: RunResult) -> str:
    """The same as text: a header, one table row per step, the files."""
    summary = summary_dict(result)
    table = [
        (
            s["step_index"],
            s["stage"],
            s["rows_in"],
            s["rows_out"],
            ", ".join(
                f"{d['reason']}={d['rows']}" + ("" if d["unit"] == "image" else f" {d['unit']}s")
                for d in s["drops"]
            )
            or "-",
            round(s["seconds"], 3),
        )
        for s in summary["steps"]
    ]
    files = ", ".join(
        f"{kind}: {f['files']} files, {f['rows']} rows, {f['bytes'] / 1e6:.2f} MB"
        for kind, f in summary["files"].items()
    )
    header = (
        f"corpus {result.corpus}"
        + ("" if result.layer == "base" else f", layer {result.layer}")
        + f": {result.shards_total} shards "
        f"({result.shards_written} written now, {result.shards_skipped} already done) "
        f"in {result.seconds:.1f} s; catalog {result.catalog}"
    )
    body = format_rows(["step", "stage", "rows_in", "rows_out", "drops", "seconds"], table)
    return "\n".join([header, body, files])
