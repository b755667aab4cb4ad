"""matplotlib charts of a report, rendered off-screen to inline PNG data URIs."""

from __future__ import annotations

import io
from typing import Any

import matplotlib

matplotlib.use("Agg")  # no display: reports are written by servers and CI as often as not

import matplotlib.pyplot as plt  # noqa: E402 - after the backend is chosen

from mmdata.report.draw import data_uri  # noqa: E402

BLUE, GREY = "#4363d8", "#b0b0b0"


def _png(figure: plt.Figure) -> str:
    out = io.BytesIO()
    figure.tight_layout()
    figure.savefig(out, format="png", dpi=90)
    plt.close(figure)
    return data_uri(out.getvalue(), "image/png")


def funnel(steps: list[dict]) -> str:
    """Rows out of each step (the source first) as horizontal bars, drops in grey."""
    figure, axes = plt.subplots(figsize=(7, 0.45 * len(steps) + 1.0))
    names = [f"{s['step_index']}: {s['stage']}" for s in steps][::-1]
    kept = [s["rows_out"] for s in steps][::-1]
    dropped = [s["rows_in"] - s["rows_out"] for s in steps][::-1]
    axes.barh(names, kept, color=BLUE, label="rows out")
    axes.barh(names, dropped, left=kept, color=GREY, label="dropped here")
    for y, (k, d) in enumerate(zip(kept, dropped)):
        axes.text(k + d, y, f" {k}" + (f" (-{d})" if d else ""), va="center", fontsize=8)
    axes.set_xlabel("rows (images)")
    axes.legend(loc="lower right", fontsize=8)
    axes.margins(x=0.15)
    return _png(figure)


def distribution(title: str, pairs: list[tuple[Any, int]], categorical: bool) -> str:
    """Counts per value: bars over numbers in order, or a ranked bar list of names."""
    if categorical:
        figure, axes = plt.subplots(figsize=(5.2, 0.22 * len(pairs) + 1.0))
        labels = [str(v) for v, _ in pairs][::-1]
        axes.barh(labels, [n for _, n in pairs][::-1], color=BLUE)
        axes.tick_params(axis="y", labelsize=8)
    else:
        figure, axes = plt.subplots(figsize=(5.2, 2.6))
        values = [float(v) for v, _ in pairs]
        width = min((b - a for a, b in zip(values, values[1:])), default=1.0) * 0.9
        axes.bar(values, [n for _, n in pairs], width=width or 0.9, color=BLUE)
        axes.set_ylabel("count")
    axes.set_title(title, fontsize=10)
    return _png(figure)
