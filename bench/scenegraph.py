"""Scene-graph parsers on FACTUAL dev: mmdata's against sng_parser, quality and speed, one core.

    python bench/scenegraph.py [--gold PATH] [--model NAME] [--limit N] [--repeat 3]

Prints SPICE-style tuple P / R / F1 per kind and overall for both parsers (the scorer of
``mmdata sg-eval``), captions/s for both on one core, and the ratios against the targets:
F1 at least 10 points higher overall and on relations, at least 3x the speed. Both load the
same spaCy model. mmdata's parser takes the captions as a list (``parse_many``, batched
through ``nlp.pipe``); sng_parser parses one at a time, as its users call it. Only parsing
is timed, after a warm-up, best of ``--repeat`` runs.
"""

from __future__ import annotations

import argparse
import os
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_GOLD = ROOT / "tests" / "data" / "factual" / "factual_random_dev.csv"
WARMUP = 50
TARGET_POINTS, TARGET_SPEEDUP = 10.0, 3.0


def one_core() -> None:
    """Pin this process to one CPU; set before numpy and thinc start their BLAS threads."""
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        os.environ[var] = "1"
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})


def best_time(run: Callable[[], object], repeat: int) -> tuple[float, object]:
    """The fastest of ``repeat`` runs in seconds, and the last run's result."""
    times, result = [], None
    for _ in range(repeat):
        started = time.perf_counter()
        result = run()
        times.append(time.perf_counter() - started)
    return min(times), result


def verdict(label: str, value: float, target: float, fmt: str) -> str:
    """``label: value (target >= target: ok)``, or MISSED; both shown with ``fmt``."""
    ok = "ok" if value >= target else "MISSED"
    return f"{label}: {fmt.format(value)} (target >= {fmt.format(target)}: {ok})"


def time_parsers(captions: list[str], name: str, repeat: int) -> dict[str, tuple[float, list]]:
    """``{parser: (captions/s, its raw output)}`` for mmdata's parser and sng_parser."""
    from mmdata.models.scenegraph.evaluate import sng_parser_for
    from mmdata.models.scenegraph.parser import CaptionParser

    ours, peer = CaptionParser(model=name), sng_parser_for(name)
    runs = {
        "mmdata": lambda: ours.parse_many(captions),  # the whole list: batched
        "sng_parser": lambda: [peer.parse(c) for c in captions],  # one call per caption
    }
    ours.parse_many(captions[:WARMUP])
    [peer.parse(c) for c in captions[:WARMUP]]
    timed = {k: best_time(run, repeat) for k, run in runs.items()}
    return {k: (len(captions) / seconds, out) for k, (seconds, out) in timed.items()}


def print_targets(reports: dict, rates: dict[str, float]) -> None:
    """The F1 differences in points and the speed ratio, each against its target."""
    for kind in ("overall", "relation"):
        points = 100 * (reports["mmdata"].scores[kind].f1 - reports["sng_parser"].scores[kind].f1)
        label = f"F1 {kind}, mmdata - sng_parser"
        print(verdict(label, points, TARGET_POINTS, "{:+.1f} points"))
    speedup = rates["mmdata"] / rates["sng_parser"]
    print(verdict("speed, mmdata / sng_parser", speedup, TARGET_SPEEDUP, "{:.1f}x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="FACTUAL CSV")
    parser.add_argument("--model", help="spaCy model (default: en_core_web_sm or its re-upload)")
    parser.add_argument("--limit", type=int, help="only the first N captions")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per parser (best)")
    args = parser.parse_args()
    one_core()
    from mmdata.models.scenegraph import evaluate as ev  # imports spaCy: after one_core()
    from mmdata.models.scenegraph.parser import load_model

    golds = ev.load_factual(args.gold)[: args.limit]
    name = ev.resolve_model(args.model)
    timed = time_parsers([g.caption for g in golds], name, args.repeat)
    lemmatiser = ev.Lemmatiser(load_model(name))
    peer_graphs = [ev.sng_to_graph(r, lemmatiser) for r in timed["sng_parser"][1]]
    graphs = {"mmdata": timed["mmdata"][1], "sng_parser": peer_graphs}
    reports = {k: ev.evaluate(g, golds, lemmatiser) for k, g in graphs.items()}
    print(f"FACTUAL dev: {len(golds)} captions, spaCy model {name}, one core")
    print(ev.format_report(reports))
    rates = {k: rate for k, (rate, _) in timed.items()}
    print(", ".join(f"{k} {rate:.0f} captions/s" for k, rate in rates.items()))
    print_targets(reports, rates)


if __name__ == "__main__":
    main()
