"""Streaming throughput and memory: mmdata.stream into a DataLoader against MosaicML
Streaming and webdataset (and a raw pyarrow scan, and a no-read ceiling).

    python bench/stream.py [--images 10000] [--captions 20] [--boxes 36] [--workers 2]
                           [--repeat 3] [--sides raw,mmdata,mds,wds,ceiling]

Generates (once, cached in --dir, default /tmp/stream-peers-bench) a corpus of ``images x
captions`` caption samples (default 200,000) whose images carry bottom-up-attention-sized
region features (``--boxes`` x 2048 float16, random), in mmdata's shard schema (1,000
images a shard) listed in a DuckDB catalog; then writes the same images as MDS shards
(MDSWriter) and as webdataset tars (ShardWriter), each by its own library (see
bench/stream_peers.py: one record per image, expanded to caption samples when read).
Prints each format's write time (seconds inside its writer) and size on disk. Then, each
side in its own process, every sample of one epoch into training batches of ``--batch``
samples (torch's ``default_collate``), the regions as ``region_tensors(boxes, float16)``
gives them:

- raw: ``ParquetFile.iter_batches`` shard after shard, in order, in this one process: the
  region hook once per image on ``to_pylist`` values, no shuffle;
- mmdata: ``ShardStream(unit="caption", shuffle_buffer=...)`` through a torch DataLoader
  with ``--workers`` workers (the hook decodes a row group at a time from Arrow);
- mds: ``StreamingDataset(local=..., shuffle=True)`` (its default py1e shuffle), records
  expanded to captions and shuffled in a buffer of ``shuffle_buffer / workers`` per worker;
- wds: ``WebDataset(tars, shardshuffle=True)``, decoded, expanded, ``.shuffle(shuffle_buffer
  / workers)``; both peers through the same DataLoader settings as mmdata;
- ceiling: the same DataLoader over a dataset that reads nothing (it yields ready-made
  samples of the same shapes): what moving the batches between processes alone allows.

Prints samples/s, peak RSS of each process tree (main process + workers, sampled every
50 ms), CPU time per sample (all processes) and the time to the first batch; the ratio of
mmdata to the faster peer (target >= 1.0) and to the others, per run and as medians.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import threading
import time
from pathlib import Path

from stream_peers import MDSCaptions, folder_bytes, make_peer, wds_dataset
from torch.utils.data import IterableDataset

ROOT = Path(__file__).resolve().parent.parent
COLUMNS = ["caption_id", "text", "regions"]
TARGET = 1.0  # mmdata against the faster of MosaicML Streaming and webdataset


def generate(folder: Path, images: int, captions: int, boxes: int, words: int = 0) -> Path:
    """The corpus ``bench`` in ``folder``/catalog.duckdb (kept if already there).
    Captions are ``words`` random words from a small vocabulary, or with 0 a short
    "caption C of image I"."""
    import numpy as np
    import pyarrow as pa

    from mmdata.catalog.store import Catalog
    from mmdata.core.schema import IMAGE_SCHEMA, conform
    from mmdata.engine.run import write_listed_corpus
    from mmdata.models.regions.rows import region_row

    catalog = folder / "catalog.duckdb"
    marker = folder / "done.json"
    spec = {"images": images, "captions": captions, "boxes": boxes, "words": words}
    if marker.exists() and json.loads(marker.read_text()).get("spec") == spec:
        return catalog
    folder.mkdir(parents=True, exist_ok=True)
    for old in [*folder.glob("*"), *folder.glob("data/*")]:
        if old.is_file():
            old.unlink()
    rng = np.random.default_rng(0)
    per_shard = 1000

    def shard(index: int) -> pa.Table:  # called in index order: one rng stream
        first = index * per_shard
        rows = []
        for i in range(first, min(first + per_shard, images)):
            xy = rng.uniform(0, 300, (boxes, 2)).astype(np.float32)
            box = np.concatenate([xy, xy + rng.uniform(10, 300, (boxes, 2))], 1).clip(0, 640)
            rows.append(
                {
                    "image_id": f"bench:{i}",
                    "source": "bench",
                    "width_px": 640,
                    "height_px": 640,
                    "status": "ok",
                    "captions": [
                        {
                            "caption_id": f"{i}-{c}",
                            "text": _caption(rng, words) or f"caption {c} of image {i}",
                            "scene_graph": None,
                        }
                        for c in range(captions)
                    ],
                    "regions": region_row(
                        extractor_id="bench@random",
                        width=640,
                        height=640,
                        boxes=box,
                        features=rng.standard_normal((boxes, 2048)).astype(np.float16),
                        object_ids=rng.integers(1, 1601, boxes),
                        object_conf=rng.uniform(0, 1, boxes),
                        object_names=["thing"] * boxes,
                    ),
                }
            )
        return conform(pa.Table.from_pylist(rows, schema=IMAGE_SCHEMA), IMAGE_SCHEMA)

    made = [0.0]  # seconds making the random tables, not writing them

    def timed_shard(index: int) -> pa.Table:
        started = time.perf_counter()
        table = shard(index)
        made[0] += time.perf_counter() - started
        return table

    shards = -(-images // per_shard)
    started = time.perf_counter()
    write_listed_corpus(Catalog(catalog), "bench", str(folder), spec, shards, timed_shard, "bench")
    write_s = time.perf_counter() - started - made[0]
    done = {"spec": spec, "write_s": write_s, "bytes": folder_bytes(folder)}
    marker.write_text(json.dumps(done))
    return catalog


VOCABULARY = (
    "a the man woman dog cat red blue green small large sitting standing on in of next to "
    "with table street car tree grass water holding white black two people group near"
).split()


def _caption(rng, words: int) -> str:  # noqa: ANN001
    return " ".join(rng.choice(VOCABULARY, words)) if words else ""


def peak_rss(pid: int, stop: threading.Event, out: list[int]) -> None:
    """Max RSS (bytes) of process ``pid`` and its children, sampled until ``stop``."""

    def tree_rss() -> int:
        total = 0
        pids = [pid]
        try:
            children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
            pids += [int(c) for c in children]
        except OSError:
            pass
        for p in pids:
            try:
                for line in Path(f"/proc/{p}/status").read_text().splitlines():
                    if line.startswith("VmRSS:"):
                        total += int(line.split()[1]) * 1024
            except OSError:
                pass
        return total

    best = 0
    while not stop.is_set():
        best = max(best, tree_rss())
        time.sleep(0.05)
    out.append(best)


class Premade(IterableDataset):
    """An IterableDataset of ``total`` ready-made caption samples (``captions`` per image
    share one region tensor dict), split over dataloader workers; reads nothing."""

    def __init__(self, hook, total: int, captions: int) -> None:
        super().__init__()
        self.hook, self.total, self.captions = hook, total, captions

    def __iter__(self):
        import numpy as np
        from torch.utils.data import get_worker_info

        from mmdata.models.regions.rows import region_row

        info = get_worker_info()
        worker, workers = (info.id, info.num_workers) if info else (0, 1)
        rng = np.random.default_rng(worker)
        box = np.tile(np.array([[10, 10, 100, 100]], np.float32), (36, 1))
        images = [
            self.hook(
                region_row(
                    extractor_id="bench@random",
                    width=640,
                    height=640,
                    boxes=box,
                    features=rng.standard_normal((36, 2048)).astype(np.float16),
                    object_ids=np.ones(36, np.int64),
                    object_conf=np.ones(36),
                    object_names=["thing"] * 36,
                )
            )
            for _ in range(16)
        ]
        for i in range(worker, self.total, workers):
            regions = images[(i // self.captions) % len(images)]
            yield {"caption_id": f"{i}", "text": f"caption {i} of an image", "regions": regions}


SIDES = ("raw", "mmdata", "mds", "wds", "ceiling")
PEERS = ("mds", "wds")


def side(name: str, folder: Path, args: argparse.Namespace) -> None:
    """Runs in a child process: stream every sample once, print RESULT json."""
    import pyarrow.parquet as pq
    import torch
    from torch.utils.data import DataLoader, default_collate

    from mmdata.catalog.store import Catalog
    from mmdata.stream.decode import region_tensors

    catalog = str(folder / "mmdata" / "catalog.duckdb")
    hook = region_tensors(args.boxes, dtype=torch.float16)
    count, first = 0, None
    started = time.perf_counter()
    if name == "raw":
        _, rows = Catalog(catalog).query(
            "SELECT path FROM shards WHERE corpus = 'bench' AND kind = 'data' ORDER BY shard_index"
        )
        pending: list[dict] = []
        for (path,) in rows:
            scan = pq.ParquetFile(path).iter_batches(
                batch_size=256, columns=["captions", "regions"]
            )
            for batch in scan:
                regions = batch.column("regions").to_pylist()
                for caps, reg in zip(batch.column("captions").to_pylist(), regions):
                    tensors = hook(reg)  # once per image, shared by its captions
                    for cap in caps:
                        pending.append(
                            {
                                "caption_id": cap["caption_id"],
                                "text": cap["text"],
                                "regions": tensors,
                            }
                        )
                        if len(pending) == args.batch:
                            count += len(default_collate(pending)["caption_id"])
                            first = first or time.perf_counter() - started
                            pending = []
        if pending:
            count += len(default_collate(pending)["caption_id"])
    else:
        loader = DataLoader(
            dataset(name, folder, args, hook), batch_size=args.batch, num_workers=args.workers
        )
        for batch in loader:
            count += len(batch["caption_id"])
            first = first or time.perf_counter() - started
        del loader  # its workers exit and are reaped: their CPU time counts below
    seconds = time.perf_counter() - started
    cpu = sum(
        getattr(resource.getrusage(who), f)
        for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN)
        for f in ("ru_utime", "ru_stime")
    )
    result = {"samples": count, "seconds": seconds, "cpu": cpu, "first": first or seconds}
    print("RESULT " + json.dumps(result), flush=True)


def dataset(name: str, folder: Path, args: argparse.Namespace, hook) -> IterableDataset:  # noqa: ANN001
    """The IterableDataset side ``name`` puts behind the DataLoader."""
    per_worker = args.shuffle_buffer // max(args.workers, 1)  # the peers' buffers: per worker
    if name == "ceiling":
        return Premade(hook, args.images * args.captions, args.captions)
    if name == "mds":
        # MDS partitions by batches of records: an image record is ``captions`` samples
        return MDSCaptions(folder / "mds", per_worker, max(1, args.batch // args.captions))
    if name == "wds":
        return wds_dataset(folder / "wds", per_worker)
    from mmdata.stream import ShardStream

    return ShardStream(
        str(folder / "mmdata" / "catalog.duckdb"),
        "bench",
        columns=COLUMNS,
        unit="caption",
        shuffle_buffer=args.shuffle_buffer,
        decode={"regions": hook},
        streams=args.streams,
    )


def run_side(name: str, argv: list[str]) -> dict:
    """Side ``name`` in a child process, its peak process-tree RSS sampled alongside."""
    cmd = [sys.executable, __file__, "--side", name, *argv]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "bench")])}
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, env=env)
    stop, peak = threading.Event(), []
    watcher = threading.Thread(target=peak_rss, args=(proc.pid, stop, peak))
    watcher.start()
    out, _ = proc.communicate()
    stop.set()
    watcher.join()
    if proc.returncode:
        raise SystemExit(f"{name} failed ({proc.returncode})")
    result = json.loads(next(x for x in out.splitlines() if x.startswith("RESULT "))[7:])
    return {**result, "rate": result["samples"] / result["seconds"], "rss": peak[0]}


def make_corpora(args: argparse.Namespace) -> dict[str, dict]:
    """mmdata's corpus and, written from it, each peer's; write seconds and bytes each."""
    catalog = generate(args.dir / "mmdata", args.images, args.captions, args.boxes)
    made = {"mmdata": json.loads((args.dir / "mmdata" / "done.json").read_text())}
    for peer in PEERS:
        made[peer] = make_peer(peer, args.dir / peer, str(catalog), "bench", args.boxes)
    return made


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=10_000)
    parser.add_argument("--captions", type=int, default=20)
    parser.add_argument("--boxes", type=int, default=36)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--batch", type=int, default=256, help="samples per training batch")
    parser.add_argument("--streams", type=int, default=48)
    parser.add_argument("--shuffle-buffer", type=int, default=2000, help="samples, per rank")
    parser.add_argument("--repeat", type=int, default=1, help="runs of every side")
    parser.add_argument("--sides", default=",".join(SIDES), help="comma-separated")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/stream-peers-bench"))
    parser.add_argument("--side", choices=SIDES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.side:
        side(args.side, args.dir, args)
        return
    argv = sys.argv[1:]
    started = time.perf_counter()
    made = make_corpora(args)
    print(
        f"corpus: {args.images * args.captions:,} caption samples, {args.boxes} x 2048 fp16 "
        f"features per image ({time.perf_counter() - started:.0f} s to make or find)"
    )
    for name, done in made.items():
        print(
            f"  {name:6s} written in {done['write_s']:.1f} s (time in its writer), "
            f"{done['bytes'] / 2**30:.2f} GiB on disk"
        )
    sides = [s for s in args.sides.split(",") if s]
    runs: dict[str, list[dict]] = {s: [] for s in sides}
    for rep in range(args.repeat if sides else 0):
        for name in sides:
            result = run_side(name, argv)
            runs[name].append(result)
            print(
                f"run {rep + 1} {name:7s} {result['samples']:,} samples in "
                f"{result['seconds']:.1f} s: {result['rate']:,.0f} samples/s, "
                f"peak RSS {result['rss'] / 2**20:,.0f} MiB, CPU "
                f"{result['cpu'] / result['samples'] * 1e6:.0f} us/sample, first batch at "
                f"{result['first']:.1f} s",
                flush=True,
            )
        report(runs, rep + 1)


def report(runs: dict[str, list[dict]], rep: int) -> None:
    """Ratios of run ``rep`` and, over the runs so far, their medians."""
    import statistics

    def ratios(index: int) -> dict[str, float]:
        rate = {name: results[index]["rate"] for name, results in runs.items()}
        out = {}
        peers = [rate[p] for p in PEERS if p in rate]
        if "mmdata" in rate and peers:
            out["mmdata / faster peer"] = rate["mmdata"] / max(peers)
        for other in ("mds", "wds", "raw", "ceiling"):
            if "mmdata" in rate and other in rate:
                out[f"mmdata / {other}"] = rate["mmdata"] / rate[other]
        return out

    latest = ratios(rep - 1)
    print("  " + ", ".join(f"{k}: {v:.2f}x" for k, v in latest.items()))
    if rep > 1:
        every = [ratios(i) for i in range(rep)]
        median = {k: statistics.median(r[k] for r in every) for k in latest}
        rates = {n: statistics.median(r["rate"] for r in res) for n, res in runs.items()}
        print(
            f"medians of {rep} runs: "
            + ", ".join(f"{n} {v:,.0f}/s" for n, v in rates.items())
            + "; "
            + ", ".join(f"{k}: {v:.2f}x" for k, v in median.items())
        )
    if "mmdata / faster peer" in latest:
        value = latest["mmdata / faster peer"]
        verdict = "ok" if value >= TARGET else "MISSED"
        print(f"  mmdata / faster peer (target >= {TARGET}): {verdict} in run {rep}")


if __name__ == "__main__":
    main()
