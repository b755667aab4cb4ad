"""A million rows end to end: a text-only URL list through caption_filter, language_filter
and url_dedup on the embedded Ray, with throughput, memory and the commit share.

    python bench/scale.py [--rows 1000000] [--shard-rows 100] [--executor ray]

Writes (once, cached in --dir) a LAION-style Parquet URL list (URL, TEXT) of ``--rows``
rows: captions of 0-12 words, one in 20 in German or French, one URL in 50 a repeat of
an earlier one. Nothing is downloaded. Then ``mmdata run`` (in a child process, as a
user runs it) into an empty catalog, with ``--json``, while this process samples the
resident memory of the driver and of every Ray worker each second.

Prints rows/s, shards, the committer's time in catalog transactions as a share of the
run's wall time (target <= 5% for a 10,000-shard run, issue 18), the peak and the last
RSS of the driver and of the Ray workers, and the kept/rejected counts checked against
the input. With ``--peer`` it also runs the same list through a plain pyarrow + Python
loop applying the same three filters (the floor a hand-written script sets).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.soak.memory import ray_workers_mb, rss_mb  # noqa: E402

WORDS = "a dog cat red blue runs sits on the grass near under small big old man woman".split()
FOREIGN = [
    "ein Hund sitzt auf dem grünen Rasen neben dem alten Haus",
    "un chat noir dort sur le canapé rouge près de la fenêtre",
]


def url_list(path: Path, rows: int) -> None:
    """The URL list (kept if it already has ``rows`` rows)."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    if path.exists() and pq.ParquetFile(path).metadata.num_rows == rows:
        return
    writer = None
    chunk = 100_000
    for start in range(0, rows, chunk):
        ids = range(start, min(start + chunk, rows))
        urls = [
            f"http://img{i % 997}.example.com/{(i - 1) if i % 50 == 49 else i}.jpg" for i in ids
        ]
        texts = [
            FOREIGN[i % 2]
            if i % 20 == 7
            else " ".join(WORDS[(i * 7 + k) % 16] for k in range(i % 13))
            for i in ids
        ]
        table = pa.table({"URL": urls, "TEXT": texts})
        writer = writer or pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def watch(pid: int, stop: threading.Event, out: list[tuple[float, float]]) -> None:
    """(driver MB, Ray workers MB) every second until ``stop``."""
    while not stop.wait(1.0):
        try:
            out.append((rss_mb(pid), ray_workers_mb()))
        except (OSError, IndexError):
            return


def recipe_text(urls: Path, out: Path, shard_rows: int) -> str:
    return json.dumps(
        {
            "name": "scale",
            "source": {"url_list": {"path": str(urls), "url_col": "URL", "caption_col": "TEXT"}},
            "stages": [
                {"caption_filter": {"min_words": 3, "min_chars": 6}},
                # one actor: lingua's parallel call already uses every core, and each
                # actor would hold its own copy of the models
                {"language_filter": {"languages": ["en"], "resources": {"concurrency": 1}}},
                {"url_dedup": {}},
            ],
            "output": str(out / "corpus"),
            "catalog": str(out / "catalog.duckdb"),
            "on_error": "record",
            "shard_rows": shard_rows,
        }
    )  # JSON is YAML


def peer(urls: Path) -> tuple[int, float]:
    """The same three filters in a plain loop over pyarrow batches, with lingua called as
    mmdata calls it (all languages, the parallel batch call, English kept at confidence
    >= 0.1): (kept, seconds)."""
    import pyarrow.parquet as pq
    from lingua import Language, LanguageDetectorBuilder

    from mmdata.stages.url_dedup import normalise_url

    detector = LanguageDetectorBuilder.from_all_languages().build()
    seen: set[str] = set()
    kept, started = 0, time.perf_counter()
    for batch in pq.ParquetFile(urls).iter_batches(10_000):
        pairs = [
            (url, text)
            for url, text in zip(batch.column("URL").to_pylist(), batch.column("TEXT").to_pylist())
            if len(text.split()) >= 3 and len(text.strip()) >= 6
        ]
        confidences = detector.compute_language_confidence_values_in_parallel(
            [text for _, text in pairs]
        )
        for (url, _), values in zip(pairs, confidences):
            english = next((v.value for v in values if v.language == Language.ENGLISH), 0.0)
            if english < 0.1:
                continue
            key = normalise_url(url)
            if key in seen:
                continue
            seen.add(key)
            kept += 1
    return kept, time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--shard-rows", type=int, default=100)
    parser.add_argument("--executor", default="ray")
    parser.add_argument("--dir", default="/tmp/mmdata-bench-scale")
    parser.add_argument("--peer", action="store_true")
    parser.add_argument("--json", help="also write the figures here")
    args = parser.parse_args()

    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    urls = folder / f"urls-{args.rows}.parquet"
    url_list(urls, args.rows)
    out = folder / f"run-{args.rows}-{args.shard_rows}-{args.executor}"
    subprocess.run(["rm", "-rf", str(out)], check=True)
    out.mkdir(parents=True)
    recipe = out / "recipe.yaml"
    recipe.write_text(recipe_text(urls, out, args.shard_rows))

    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1"}
    command = [sys.executable, "-m", "mmdata.commands.cli", "run", str(recipe), "--executor"]
    command += [args.executor, "--json"]
    started = time.perf_counter()
    proc = subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=env
    )
    memory: list[tuple[float, float]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch, args=(proc.pid, stop, memory), daemon=True)
    watcher.start()
    stdout, _ = proc.communicate()
    wall = time.perf_counter() - started
    stop.set()
    watcher.join()
    if proc.returncode != 0:
        raise SystemExit(f"mmdata run failed ({proc.returncode}): {stdout[-2000:]}")
    summary = json.loads(stdout.strip().splitlines()[-1])

    sys.path.insert(0, str(ROOT))
    from mmdata.catalog.store import Catalog

    catalog = Catalog(out / "catalog.duckdb")
    _, [(images, rejects, input_rows)] = catalog.query(
        "SELECT images, rejects, input_rows FROM corpus_stats WHERE corpus = 'scale'"
    )
    image_rejects = catalog.query(
        "SELECT count(*) FROM rejects WHERE item_kind IS NULL AND corpus = 'scale'"
    )[1][0][0]
    assert input_rows == args.rows and images + image_rejects == args.rows, (images, rejects)
    figures = {
        "rows": args.rows,
        "shards": summary["shards_written"],
        "executor": args.executor,
        "wall_s": wall,
        "run_s": summary["seconds"],
        "rows_per_s": args.rows / summary["seconds"],
        "kept": images,
        "rejected": image_rejects,
        "commit_s": summary["commit_seconds"],
        "commits": summary["commits"],
        "commit_share": summary["commit_seconds"] / summary["seconds"],
        "driver_mb_peak": max((m[0] for m in memory), default=0.0),
        "driver_mb_last": memory[-1][0] if memory else 0.0,
        "workers_mb_peak": max((m[1] for m in memory), default=0.0),
        "workers_mb_last": memory[-1][1] if memory else 0.0,
        "catalog_mb": (out / "catalog.duckdb").stat().st_size / 1e6,
    }
    print(json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()}))
    print(
        f"\n{args.rows:,} rows in {summary['seconds']:.0f} s ({figures['rows_per_s']:,.0f} rows/s) "
        f"as {figures['shards']:,} shards; committing {figures['commit_s']:.1f} s in "
        f"{figures['commits']} transactions = {100 * figures['commit_share']:.1f}% of the run; "
        f"driver RSS peak {figures['driver_mb_peak']:.0f} MB, Ray workers "
        f"{figures['workers_mb_peak']:.0f} MB; kept {images:,}, rejected {image_rejects:,}"
    )
    if args.peer:
        kept, seconds = peer(urls)
        figures.update(peer_kept=kept, peer_s=seconds, peer_rows_per_s=args.rows / seconds)
        print(
            f"peer (one Python loop, same filters): {args.rows / seconds:,.0f} rows/s, kept "
            f"{kept:,}; mmdata / peer = {figures['rows_per_s'] / figures['peer_rows_per_s']:.2f}"
        )
    if args.json:
        Path(args.json).write_text(json.dumps(figures, indent=1))


if __name__ == "__main__":
    main()
