"""Download throughput: plain img2dataset against an mmdata web recipe on the same URLs.

    python bench/download.py [--images 2000] [--shards 4] [--threads 32] [--runs 2]
    python bench/download.py --executor local      # 1 process a side instead of 2

Serves ``--images`` distinct photo-like JPEGs (640x480, gradient + shapes + noise, about
the bytes of a web photo) from a FaultServer on 127.0.0.1 in its own process, all
generated before any timing. Both sides read one Parquet URL list (url, caption) and
resize the same way (keep_ratio 256, jpg, quality 95), with the same processes, threads
per process, timeout and retries, and write Parquet:

- img2dataset: ``download(output_format="parquet", distributor="multiprocessing")``;
  timed: the whole call, its pool and logger process start-up included.
- mmdata: url_list -> caption_filter -> download (robots.txt, network guard, opt-out
  headers, checks, sha256) -> image_size_filter -> exact_dedup -> shards + a DuckDB
  catalog, run by ``run_recipe``; timed: the whole call (planning, Ray Data pipeline,
  shard commits, catalog views). With ``--executor ray`` Ray is started before timing;
  the first run pays for Ray's worker processes and imports, later runs reuse them.

Each side runs in its own subprocess, ``--runs`` times with fresh outputs (run 1 cold,
later runs warm), and must produce ``--images`` images (status success rows in
img2dataset's Parquet; rows of the catalog's ``images`` view), or the benchmark fails.
Prints images, seconds and images/s per run, the ratio mmdata/img2dataset per run, and
mmdata's per-stage seconds (summed over tasks). Target: ratio >= 0.9.
"""

# Stdlib only at module level: img2dataset's pool and logger processes are spawned and
# re-import this file as their __main__, and must not pay for mmdata or Ray imports.
from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
TARGET = 0.9
IMAGE_SIZE = (640, 480)
RESULT = "RESULT "  # prefix of the child's result line (the rest of stdout is logs)
SEED = 1234

SUBJECTS = """a dog|two cats|an old man|a red bicycle|a small boat|the city skyline|a bowl of
soup|children|a wooden table|a mountain lake|a busy street|a vintage car|sunflowers|a
lighthouse|a plate of pasta|a black horse""".replace("\n", " ").split("|")
ACTIONS = """sitting on|standing next to|lying in|parked near|seen from|waiting by|painted
on|reflected in|in front of|under""".replace("\n", " ").split("|")
PLACES = """the beach|a green field|the kitchen counter|a snowy road|the harbour|a market
stall|the old bridge|a forest path|the living room|a garden""".replace("\n", " ").split("|")
EXTRAS = """|at sunset|in the rain|on a sunny day|at night|in autumn|stock photo|close
up|black and white photo""".replace("\n", " ").split("|")


# ---------------------------------------------------------------- the image server


def photo_jpeg(number: int, size: tuple[int, int] = IMAGE_SIZE) -> bytes:
    """A distinct photo-like JPEG: webserver's gradient and shapes, plus sensor-like noise."""
    import io

    import numpy as np
    from PIL import Image

    from mmdata.demo.webserver import generated_jpeg

    base = np.asarray(Image.open(io.BytesIO(generated_jpeg(number, size))), dtype=np.int16)
    noise = np.random.default_rng(number).normal(0, 12, base.shape).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=85)
    return out.getvalue()


def serve(images: int) -> None:
    """Server process: generate every image, print the port, serve until stdin closes."""
    from mmdata.demo.webserver import FaultServer

    class PhotoServer(FaultServer):
        def generated(self, number: int) -> bytes:
            if number not in self._generated:
                self._generated[number] = photo_jpeg(number)
            return self._generated[number]

    with PhotoServer() as server:
        size = sum(len(server.generated(n)) for n in range(images))
        print(json.dumps({"port": server.server_port, "bytes": size}), flush=True)
        sys.stdin.read()


# ---------------------------------------------------------------- the two sides


def url_list(folder: Path, port: int, images: int) -> Path:
    """The Parquet list both sides read: distinct /gen/<n>.jpg URLs, varied captions."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = random.Random(SEED)
    captions = [
        " ".join(
            [rng.choice(SUBJECTS), rng.choice(ACTIONS), rng.choice(PLACES), rng.choice(EXTRAS)]
        ).strip()
        for _ in range(images)
    ]
    urls = [f"http://127.0.0.1:{port}/gen/{n}.jpg" for n in range(images)]
    path = folder / "urls.parquet"
    pq.write_table(pa.table({"url": urls, "caption": captions}), path)
    return path


def run_img2dataset(urls: Path, out: Path, args: dict[str, Any]) -> dict[str, Any]:
    """One timed ``img2dataset.download`` call; its images are its status=success rows."""
    import pyarrow.parquet as pq
    from img2dataset import download

    started = time.perf_counter()
    download(
        url_list=str(urls),
        input_format="parquet",
        url_col="url",
        caption_col="caption",
        output_format="parquet",
        output_folder=str(out),
        processes_count=args["processes"],
        thread_count=args["threads"],
        image_size=256,
        resize_mode="keep_ratio",
        encode_format="jpg",
        number_sample_per_shard=args["shard_rows"],
        distributor="multiprocessing",
        timeout=args["timeout"],
        retries=args["retries"],
        enable_wandb=False,
    )
    seconds = time.perf_counter() - started
    statuses = [s for path in sorted(out.glob("*.parquet")) for s in pq.read_table(path)["status"]]
    ok = sum(s.as_py() == "success" for s in statuses)
    return {"images": ok, "rows": len(statuses), "seconds": seconds}


def mmdata_recipe(urls: Path, out: Path, args: dict[str, Any]) -> Any:
    from mmdata.engine import recipe as recipes

    text = {
        "name": "bench_download",
        "source": {"url_list": {"path": str(urls)}},
        "stages": [
            {"caption_filter": {"min_words": 3}},
            {
                "download": {
                    "timeout_s": args["timeout"],
                    "retries": args["retries"],
                    "resize_mode": "keep_ratio",
                    "image_size": 256,
                    "encode_format": "jpg",
                    "allow_private_networks": True,
                    "respect_robots_txt": True,
                    "threads": args["threads"],
                }
            },
            {"image_size_filter": {"min_side_px": 64, "max_aspect_ratio": 4.0}},
            {"exact_dedup": {}},
        ],
        "output": str(out / "corpus"),
        "catalog": str(out / "catalog.duckdb"),
        "shard_rows": args["shard_rows"],
    }
    return recipes.parse(json.dumps(text), "bench_download", out)


def run_mmdata(urls: Path, out: Path, args: dict[str, Any]) -> dict[str, Any]:
    """One timed ``run_recipe`` call; its images are the rows of the catalog's view."""
    from mmdata.catalog.store import Catalog
    from mmdata.engine.run import run_recipe

    recipe = mmdata_recipe(urls, out, args)
    started = time.perf_counter()
    result = run_recipe(recipe, args["executor"], progress=False)
    seconds = time.perf_counter() - started
    catalog = Catalog(result.catalog)
    images = catalog.query("SELECT count(*) FROM images")[1][0][0]
    _, steps = catalog.query(
        "SELECT stage, rows_in, rows_out, seconds FROM stage_summary ORDER BY step_index"
    )
    stages = {stage: {"in": i, "out": o, "seconds": s} for stage, i, o, s in steps}
    rows = stages.get("url_list", {}).get("out", 0)
    return {"images": images, "rows": rows, "seconds": seconds, "stages": stages}


def child(side: str, urls: str, workdir: str, args: dict[str, Any]) -> None:
    """Run one side ``args['runs']`` times in this process; print each run's figures."""
    if side == "mmdata" and args["executor"] == "ray":
        from mmdata.engine.executors.ray import init_ray

        init_ray()  # Ray start-up: not timed
    run = run_mmdata if side == "mmdata" else run_img2dataset
    for index in range(args["runs"]):
        figures = run(Path(urls), Path(workdir) / f"{side}-{index}", args)
        print(RESULT + json.dumps(figures), flush=True)


# ---------------------------------------------------------------- driver


COUNTED = (
    "timed: img2dataset = the whole download() call (pool + logger process start-up, URL "
    "list split, downloads, Parquet writes); mmdata = the whole run_recipe() call (plan, "
    "Ray Data pipeline, part writes, shard commits, DuckDB catalog). Not timed: image "
    "generation, the URL list, imports in the timing process, ray.init."
)


def _pythonpath() -> str:
    return os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)


def measure(side: str, urls: Path, workdir: Path, args: dict[str, Any]) -> list[dict]:
    """Run ``side`` in a fresh subprocess; the figures of each of its runs."""
    spec = json.dumps([side, str(urls), str(workdir), args])
    command = [sys.executable, str(Path(__file__).resolve()), "--child", spec]
    env = {**os.environ, "NO_ALBUMENTATIONS_UPDATE": "1", "PYTHONPATH": _pythonpath()}
    done = subprocess.run(command, capture_output=True, text=True, cwd=ROOT, env=env)
    lines = done.stdout.splitlines()
    results = [json.loads(line[len(RESULT) :]) for line in lines if line.startswith(RESULT)]
    if done.returncode != 0 or len(results) != args["runs"]:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise SystemExit(f"{side} failed (rc {done.returncode}):\n{tail}")
    for run, figures in enumerate(results, 1):
        if figures["images"] != args["images"]:
            raise SystemExit(
                f"{side} run {run}: {figures['images']} images, expected {args['images']} "
                f"({figures['rows']} rows)"
            )
        figures["images_s"] = figures["images"] / figures["seconds"]
    return results


def report(figures: dict[str, list[dict]], args: dict[str, Any]) -> None:
    print("| side | run | images | seconds | images/s |")
    print("| --- | --- | --- | --- | --- |")
    for side, runs in figures.items():
        for run, f in enumerate(runs, 1):
            kind = "cold" if run == 1 else "warm"
            print(f"| {side} | {run} ({kind}) | {f['images']} | {f['seconds']:.2f} "
                  f"| {f['images_s']:.0f} |")  # fmt: skip
    for run in range(args["runs"]):
        ratio = figures["mmdata"][run]["images_s"] / figures["img2dataset"][run]["images_s"]
        verdict = "met" if ratio >= TARGET else "MISSED"
        print(f"run {run + 1}: ratio mmdata/img2dataset {ratio:.2f} "
              f"(target >= {TARGET}: {verdict})")  # fmt: skip
    for run, f in enumerate(figures["mmdata"], 1):
        steps = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in f["stages"].items())
        print(f"mmdata run {run} stage seconds (summed over tasks): {steps}")


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=2000)
    parser.add_argument("--shards", type=int, default=4, help="shards (= tasks) per side")
    parser.add_argument("--threads", type=int, default=32, help="requests in flight a process")
    parser.add_argument("--executor", choices=("ray", "local"), default="ray",
                        help="ray: 2 processes a side; local: 1 process a side")  # fmt: skip
    parser.add_argument("--runs", type=int, default=2, help="runs per side (1 cold, rest warm)")
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--only", choices=("img2dataset", "mmdata"), help="run one side only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.serve is not None:
        serve(args.serve)
        return
    if args.child:
        child(*json.loads(args.child))
        return
    settings = {
        "images": args.images,
        "shard_rows": -(-args.images // args.shards),
        "threads": args.threads,
        "processes": 2 if args.executor == "ray" else 1,
        "executor": args.executor,
        "runs": args.runs,
        "timeout": args.timeout,
        "retries": args.retries,
    }
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(args.images)]
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    started = time.perf_counter()
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=env) as server:  # fmt: skip
        assert server.stdout is not None and server.stdin is not None
        info = json.loads(server.stdout.readline())
        print(f"server: {args.images} images of {IMAGE_SIZE[0]}x{IMAGE_SIZE[1]}, "
              f"{info['bytes'] / args.images / 1e3:.0f} kB each on average, generated in "
              f"{time.perf_counter() - started:.0f} s (not timed)")  # fmt: skip
        print(f"settings: {json.dumps(settings)}")
        print(COUNTED, flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            urls = url_list(Path(tmp), info["port"], args.images)
            figures = {}
            for side in ("img2dataset", "mmdata"):
                if args.only in (None, side):
                    figures[side] = measure(side, urls, Path(tmp), settings)
                    for run, f in enumerate(figures[side], 1):
                        print(f"{side} run {run}: {f['images']} images, {f['seconds']:.2f} s, "
                              f"{f['images_s']:.0f} images/s", flush=True)  # fmt: skip
        server.stdin.close()
    if len(figures) == 2:
        print()
        report(figures, settings)


if __name__ == "__main__":
    main()
