"""Scene-graph parsers on FACTUAL: mmdata's against sng_parser, quality by two scorers, speed.

    python bench/scenegraph.py [--gold PATH] [--rows START:END] [--model NAME] [--limit N]
                               [--repeat 3]

Prints, as Markdown tables ready for docs/benchmarks.md: FACTUAL's own evaluator (SPICE and
Set Match, ``mmdata.models.scenegraph.factual_eval``; skipped with a one-line reason when
it is not installed) and mmdata's SPICE-style tuple P / R / F1 (the scorer of ``mmdata
sg-eval``), for all captions and for those of 8 words or more; captions/s for both parsers
on one core; and each target with its verdict: SPICE >= 88.4, Set Match >= 70, SPICE >= 80
on 8+ words, a SPICE lead >= 10 on both, speed >= 3x (issue 23), and mmdata's scorer's F1
lead >= 10 points overall and on relations. Both parsers load the same spaCy model.
mmdata's parser takes the captions as a list (``parse_many``, batched through ``nlp.pipe``);
sng_parser parses one at a time, as its users call it. Only parsing is timed, after a
warm-up, best of ``--repeat`` runs.
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
PARSERS = ("mmdata", "sng_parser")
LONG_WORDS = 8  # issue 23's long-caption subset: 8 words or more
ALL, LONG = "all captions", f"{LONG_WORDS}+ words"


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


def markdown(rows: list[list[str]]) -> str:
    """``rows`` (the first is the header) as a Markdown table."""
    lines = ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join([lines[0], "| " + " | ".join("---" for _ in rows[0]) + " |", *lines[1:]])


def own_table(reports: dict) -> str:
    """mmdata's scorer: P / R / F1 per kind and set match, both parsers and the difference."""
    rows = [["kind", "mmdata P / R / F1", "sng_parser P / R / F1", "F1 difference"]]
    for kind in ("object", "attribute", "relation", "overall"):
        scores = [reports[k].scores[kind] for k in PARSERS]
        cells = [
            " / ".join(f"{100 * v:.1f}" for v in (s.precision, s.recall, s.f1)) for s in scores
        ]
        rows.append([kind, *cells, f"{100 * (scores[0].f1 - scores[1].f1):+.1f}"])
    rates = [100 * reports[k].set_match for k in PARSERS]
    rows.append(["set match", *(f"{r:.1f}%" for r in rates), f"{rates[0] - rates[1]:+.1f}"])
    return markdown(rows)


def factual_table(subsets: dict[str, dict]) -> str:
    """FACTUAL's SPICE / Set Match per subset, both parsers and the difference."""
    head = ["captions", "mmdata SPICE / Set Match", "sng_parser SPICE / Set Match", "difference"]
    rows = [head]
    for label, scores in subsets.items():
        ours, peer = (scores[k] for k in PARSERS)
        rows.append(
            [
                label,
                f"{ours.spice:.2f} / {ours.set_match:.2f}",
                f"{peer.spice:.2f} / {peer.set_match:.2f}",
                f"{ours.spice - peer.spice:+.2f} / {ours.set_match - peer.set_match:+.2f}",
            ]
        )
    return markdown(rows)


def print_targets(factual: dict[str, dict] | None, reports: dict, rates: dict) -> None:
    """Each target against its figure (issue 23's by FACTUAL's evaluator first)."""
    if factual is not None:
        ours, peer = factual[ALL]["mmdata"], factual[ALL]["sng_parser"]
        long_ours, long_peer = factual[LONG]["mmdata"], factual[LONG]["sng_parser"]
        print(verdict("FACTUAL SPICE, mmdata, all", ours.spice, 88.4, "{:.2f}"))
        print(verdict("FACTUAL Set Match, mmdata, all", ours.set_match, 70.0, "{:.2f}"))
        print(verdict(f"FACTUAL SPICE, mmdata, {LONG}", long_ours.spice, 80.0, "{:.2f}"))
        for label, a, b in (("all", ours, peer), (LONG, long_ours, long_peer)):
            lead = a.spice - b.spice
            print(verdict(f"FACTUAL SPICE lead over sng_parser, {label}", lead, 10.0, "{:+.2f}"))
    for kind in ("overall", "relation"):
        points = 100 * (reports["mmdata"].scores[kind].f1 - reports["sng_parser"].scores[kind].f1)
        label = f"mmdata's scorer, F1 {kind}, mmdata - sng_parser"
        print(verdict(label, points, TARGET_POINTS, "{:+.1f} points"))
    speedup = rates["mmdata"] / rates["sng_parser"]
    print(verdict("speed, mmdata / sng_parser", speedup, TARGET_SPEEDUP, "{:.1f}x"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gold", type=Path, default=DEFAULT_GOLD, help="FACTUAL CSV")
    parser.add_argument("--rows", help="only data rows START:END (0-based, END exclusive)")
    parser.add_argument("--model", help="spaCy model (default: en_core_web_sm or its re-upload)")
    parser.add_argument("--limit", type=int, help="only the first N captions (after --rows)")
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per parser (best)")
    args = parser.parse_args()
    one_core()
    from mmdata.models.scenegraph import evaluate as ev  # imports spaCy: after one_core()
    from mmdata.models.scenegraph import factual_eval as fe
    from mmdata.models.scenegraph.parser import load_model

    rows = ev.parse_rows(args.rows) if args.rows else None
    golds = ev.select(ev.load_factual(args.gold), rows, 0, args.limit)
    name = ev.resolve_model(args.model)
    timed = time_parsers([g.caption for g in golds], name, args.repeat)
    lemmatiser = ev.Lemmatiser(load_model(name))
    peer_graphs = [ev.sng_to_graph(r, lemmatiser) for r in timed["sng_parser"][1]]
    graphs = {"mmdata": timed["mmdata"][1], "sng_parser": peer_graphs}
    long = [i for i, g in enumerate(golds) if ev.words_in(g.caption) >= LONG_WORDS]
    subsets = {ALL: list(range(len(golds))), LONG: long}
    where = f"{args.gold.name}" + (f", data rows {args.rows}" if args.rows else "")
    print(
        f"{where}: {len(golds)} captions ({len(long)} of {LONG_WORDS}+ words), "
        f"spaCy model {name}, one core\n"
    )

    factual = None
    reason = fe.unavailable()
    if reason:
        print(f"FACTUAL's SPICE / Set Match: not scored: {reason}\n")
    else:
        factual = {
            label: {
                k: fe.factual_scores([g[i] for i in idx], [golds[i] for i in idx])
                for k, g in graphs.items()
            }
            for label, idx in subsets.items()
        }
        print(f"FACTUAL's evaluator {fe.version()} (lemmatize=True; SPICE with synonyms):\n")
        labelled = {f"{label} ({len(subsets[label]):,})": v for label, v in factual.items()}
        print(factual_table(labelled) + "\n")

    reports = {}
    for label, idx in subsets.items():
        sub_golds = [golds[i] for i in idx]
        reports[label] = {
            k: ev.evaluate([g[i] for i in idx], sub_golds, lemmatiser) for k, g in graphs.items()
        }
        print(f"mmdata's scorer (SPICE-style tuple micro F1), {label} ({len(idx):,}):\n")
        print(own_table(reports[label]) + "\n")

    rates = {k: rate for k, (rate, _) in timed.items()}
    speed = [["parser", f"captions/s (one core, best of {args.repeat})"]]
    speed += [[k, f"{rate:,.0f}"] for k, rate in rates.items()]
    speed.append(["mmdata / sng_parser", f"{rates['mmdata'] / rates['sng_parser']:.1f}x"])
    print(markdown(speed) + "\n")
    print_targets(factual, reports[ALL], rates)


if __name__ == "__main__":
    main()
