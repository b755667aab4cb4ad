"""The catalog as it grows: commits, counts, lookups and scans at 1,000 to 100,000 shards.

    python bench/catalog.py [--sizes 1000,10000,100000] [--probes 100] [--dir DIR]

Writes (once, cached in --dir/pool) small data shards in mmdata's image schema (2 rows and
2 captions each, zero-padded ids so id ranges do not overlap) with mmdata's own writer,
then grows one catalog through each size in turn, each shard hard-linked into the corpus
folder just before it is listed (as a run places it), so the folder holds what is listed:

- fill: the shards up to the size go through ``mmdata.engine.committer.ShardCommitter``, as
  ``mmdata run`` lists them (batched transactions off the driver loop): its busy time is
  the whole run's commit time;
- commit: ``--probes`` more shards, each listed alone by ``Catalog.commit_shards`` (one
  transaction each, a fresh connection each, as the committer does): p50/p99. The
  per-shard cost of the fill is printed beside it;
- count per corpus from ``corpus_stats`` (statistics), beside ``count(*)`` over the
  ``images`` view (which opens every shard's footer);
- lookup by image_id: ``Catalog.images_holding`` (only the shards whose id range holds it);
- full scan: ``sum(length(image_id))`` over the ``images`` view against DuckDB reading the
  same files with a ``read_parquet`` glob, rows/s and their ratio;
- the catalog file's size.

Every query runs as ``mmdata sql`` does: a fresh read-only connection. The targets at
100,000 shards (issue 18): commit p50 <= 20 ms and within 1.5x of 1,000; count <= 0.5 s;
lookup <= 1 s; scan >= 0.8x the glob.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
ROWS = 2
SCAN = "SELECT count(*), sum(length(image_id)) FROM {}"
CHUNK = 2000


def _write_chunk(args: tuple[str, int, int]) -> list[dict]:
    """Write shards [start, stop) of ``output``; their FinishedShard fields as dicts."""
    import pyarrow as pa

    from mmdata.core.schema import IMAGE_SCHEMA
    from mmdata.engine.sink import write_listed_shard

    output, start, stop = args
    described = []
    for index in range(start, stop):
        rows = [
            {
                "image_id": f"bench:{index * ROWS + r:012d}",
                "source": "bench",
                "width_px": 640,
                "height_px": 480,
                "status": "ok",
                "captions": [
                    {"caption_id": f"{index * ROWS + r}-{c}", "text": f"caption {c} of {index}"}
                    for c in range(2)
                ],
            }
            for r in range(ROWS)
        ]
        shard = write_listed_shard(output, index, pa.Table.from_pylist(rows, schema=IMAGE_SCHEMA))
        described.append(
            {"index": shard.index, "input_rows": shard.input_rows, "files": shard.files}
        )
    return described


def shard_files(folder: Path, count: int) -> list[dict]:
    """Descriptions of shards 0..count-1 in ``folder``/pool, written where missing."""
    cache = folder / "shards.json"
    known: list[dict] = json.loads(cache.read_text()) if cache.exists() else []
    if len(known) >= count:
        return known[:count]
    output = str(folder / "pool")
    chunks = [(output, s, min(s + CHUNK, count)) for s in range(len(known), count, CHUNK)]
    started, before = time.perf_counter(), len(known)
    with ProcessPoolExecutor(os.cpu_count()) as pool:
        for done in pool.map(_write_chunk, chunks):
            known.extend(done)
    print(
        f"wrote {len(known) - before} shard files in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    cache.write_text(json.dumps(known))
    return known


def timed(action):  # noqa: ANN001, ANN201 - a bench helper
    started = time.perf_counter()
    result = action()
    return time.perf_counter() - started, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--probes", type=int, default=100)
    parser.add_argument("--dir", default="/tmp/mmdata-bench-catalog")
    parser.add_argument("--json", help="also write the figures here")
    parser.add_argument("--write-only", action="store_true", help="only write the shard files")
    args = parser.parse_args()

    from mmdata.catalog.store import Catalog
    from mmdata.core.shards import FinishedShard
    from mmdata.engine.committer import ShardCommitter

    sizes = [int(s) for s in args.sizes.split(",")]
    folder = Path(args.dir)
    folder.mkdir(parents=True, exist_ok=True)
    described = shard_files(folder, sizes[-1] + args.probes * len(sizes))
    if args.write_only:
        return
    pool, corpus = str(folder / "pool"), str(folder / "corpus")
    shards = [
        FinishedShard(
            d["index"],
            d["input_rows"],
            [{**f, "path": f["path"].replace(pool, corpus, 1)} for f in d["files"]],
            [],
        )
        for d in described
    ]
    path = folder / "catalog.duckdb"
    for leftover in (path, Path(f"{path}.wal")):
        leftover.unlink(missing_ok=True)
    subprocess.run(["rm", "-rf", corpus], check=True)
    (folder / "corpus" / "data").mkdir(parents=True)

    def place(batch: list[FinishedShard]) -> list[FinishedShard]:
        for shard in batch:  # a hard link: the file moved into place, as a run does
            os.link(shard.files[0]["path"].replace(corpus, pool, 1), shard.files[0]["path"])
        return batch

    catalog = Catalog(path)
    run_id, _ = catalog.begin_run("bench", "bench", "bench", str(folder / "corpus"), "bench")
    glob = str(folder / "corpus" / "data" / "shard-*.parquet")

    listed, results = 0, []
    for size in sizes:
        fill = place(shards[listed : size - args.probes] if size > args.probes else [])
        committer = ShardCommitter(catalog, "bench", run_id)
        started = time.perf_counter()
        for shard in fill:
            committer.submit(shard)
        committer.close()
        fill_wall = time.perf_counter() - started
        listed += len(fill)
        probe_s = []
        for shard in place(shards[listed : listed + args.probes]):
            probe_s.append(timed(lambda s=shard: catalog.commit_shards("bench", run_id, [s]))[0])
        listed += len(probe_s)
        probe_s.sort()

        count_s, (_, count) = timed(
            lambda: catalog.query(
                "SELECT images, captions FROM corpus_stats WHERE corpus = 'bench'"
            )
        )
        assert count == [(listed * ROWS, listed * ROWS * 2)], count
        view_count_s, (_, view_count) = timed(
            lambda: catalog.query("SELECT count(*) FROM images WHERE corpus = 'bench'")
        )
        assert view_count == [(listed * ROWS,)], view_count
        wanted = f"bench:{(listed // 2) * ROWS + 1:012d}"

        def lookup(wanted: str = wanted) -> list:
            source = catalog.images_holding([wanted], "bench")
            return catalog.query(f"SELECT image_id FROM {source} WHERE image_id = ?", [wanted])[1]

        lookup_s, found = timed(lookup)
        assert found == [(wanted,)], found
        opened = sum(len(p) for p in catalog.shards_holding([wanted], "bench").values())
        # interleaved three times, the fastest of each counted: opening 100,000 small
        # files is bound by the disk, whose speed drifts by tens of percent from one
        # minute to the next here, and the first read of a file may come from disk
        view_runs, glob_runs = [], []
        for _ in range(3):
            view_runs.append(timed(lambda: catalog.query(SCAN.format("images"))))
            glob_runs.append(
                timed(lambda: catalog.query(SCAN.format(f"read_parquet('{glob}')")))  # noqa: B023
            )
        scan_s, (_, scanned) = min(view_runs)
        glob_s, (_, globbed) = min(glob_runs)
        assert scanned[0][0] == globbed[0][0] == listed * ROWS, (scanned, globbed)
        figures = {
            "shards": listed,
            "commit_p50_ms": 1e3 * statistics.median(probe_s),
            "commit_p99_ms": 1e3 * probe_s[min(len(probe_s) - 1, int(0.99 * len(probe_s)))],
            "fill_shards": len(fill),
            "fill_commit_s": committer.busy_s,
            "fill_transactions": committer.commits,
            "fill_ms_per_shard": 1e3 * committer.busy_s / max(len(fill), 1),
            "fill_wall_s": fill_wall,
            "count_stats_s": count_s,
            "count_view_s": view_count_s,
            "lookup_s": lookup_s,
            "lookup_shards_opened": opened,
            "scan_rows_per_s": listed * ROWS / scan_s,
            "glob_rows_per_s": globbed[0][0] / glob_s,
            "scan_vs_glob": glob_s / scan_s,
            "catalog_mb": (path.stat().st_size + _size(Path(f"{path}.wal"))) / 1e6,
        }
        results.append(figures)
        print(
            json.dumps({k: round(v, 4) if isinstance(v, float) else v for k, v in figures.items()})
        )
        sys.stdout.flush()

    first, last = results[0], results[-1]
    print(
        f"\nat {last['shards']:,} shards: commit p50 {last['commit_p50_ms']:.1f} ms "
        f"(x{last['commit_p50_ms'] / first['commit_p50_ms']:.2f} of {first['shards']:,}), "
        f"p99 {last['commit_p99_ms']:.1f} ms; as a run lists them "
        f"{last['fill_ms_per_shard']:.2f} ms a shard; count {last['count_stats_s']:.3f} s "
        f"(view count(*) {last['count_view_s']:.2f} s); lookup {last['lookup_s']:.3f} s "
        f"({last['lookup_shards_opened']} shard opened); scan x{last['scan_vs_glob']:.2f} "
        f"of the glob; catalog {last['catalog_mb']:.1f} MB"
    )
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0


if __name__ == "__main__":
    main()
