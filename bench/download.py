"""Download throughput: img2dataset, an mmdata web recipe and Daft on the same URLs.

    python bench/download.py [--case mix|small] [--images N] [--shards 4] [--threads 32]
    python bench/download.py --case small        # 2,000 images of 640x480
    python bench/download.py --only mmdata       # one side (and its stage figures)

Serves ``--images`` distinct photo-like JPEGs (gradient + shapes + sensor-like noise)
from a FaultServer on 127.0.0.1 in its own process, all generated before any timing and
cached under /tmp/mmdata-bench-download (reruns are cheap). ``--case mix`` (default,
1,000 images) has the sizes the web serves: 40% about 640x480, 40% about 1280x960, 20%
with a long side of 2000-4000 px, aspect ratios from 2:1 to 1:2. ``--case small`` (2,000
images) is 640x480 only. All sides read one Parquet URL list (url, caption) and resize
the same way (keep_ratio 256, jpg), with the same threads (requests in flight) per
process, timeout and retries, and write Parquet:

- img2dataset: ``download(output_format="parquet", distributor="multiprocessing")``,
  2 processes; timed: the whole call, its pool and logger process start-up included.
- mmdata: url_list -> caption_filter -> download (robots.txt, network guard, opt-out
  headers, checks, sha256) -> image_size_filter -> exact_dedup -> shards + a DuckDB
  catalog, run by ``run_recipe`` on Ray (2 CPUs); timed: the whole call (planning, Ray
  Data pipeline, shard commits, catalog views). Ray is started before timing; the first
  run pays for Ray's worker processes and imports, later runs reuse them.
- Daft (native runner, one process, its threads): ``read_parquet`` -> ``download()`` ->
  ``decode_image()`` -> keep_ratio resize -> ``encode_image("JPEG")`` ->
  ``write_parquet``. Daft's ``resize(w, h)`` takes one fixed size per call, so a UDF
  computes each row's keep_ratio size (albumentations' formula, from the decoded
  width/height) and calls Daft's own Series ``image.resize`` per row. Daft's JPEG encoder
  has no quality setting (its default), and Daft computes no sha256.

Each side runs in its own subprocess, ``--runs`` times with fresh outputs (run 1 cold,
later runs warm), and must produce ``--images`` images, or the benchmark fails. Prints
images, seconds and images/s per run, the ratios mmdata/img2dataset and mmdata/Daft per
run, and (``--stage-images`` of the case, in one process, one thread) CPU milliseconds
per image for fetch, decode, resize, encode and sha256 on each side, the floor (a
reduced-size decode alone), and the PSNR of mmdata's resized pixels against a full-size
decode + resize. Targets: mix >= 1.5x img2dataset and >= 1.0x Daft; small >= 1.0x
img2dataset.
"""

# Stdlib only at module level: img2dataset's pool and logger processes are spawned and
# re-import this file as their __main__, and must not pay for mmdata or Ray imports.
from __future__ import annotations

import argparse
import functools
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
CACHE = Path("/tmp/mmdata-bench-download")
TARGETS = {"mix": {"img2dataset": 1.5, "daft": 1.0}, "small": {"img2dataset": 1.0}}
DEFAULT_IMAGES = {"mix": 1000, "small": 2000}
SIDES = ("img2dataset", "mmdata", "daft")
IMAGE_SIZE = 256
SCALES = (1, 2, 4, 8)
RESULT = "RESULT "  # prefix of the child's result line (the rest of stdout is logs)
SEED = 1234
GENERATOR = "v2"  # bump when the generated images change: the cache is keyed by it

SUBJECTS = """a dog|two cats|an old man|a red bicycle|a small boat|the city skyline|a bowl of
soup|children|a wooden table|a mountain lake|a busy street|a vintage car|sunflowers|a
lighthouse|a plate of pasta|a black horse""".replace("\n", " ").split("|")
ACTIONS = """sitting on|standing next to|lying in|parked near|seen from|waiting by|painted
on|reflected in|in front of|under""".replace("\n", " ").split("|")
PLACES = """the beach|a green field|the kitchen counter|a snowy road|the harbour|a market
stall|the old bridge|a forest path|the living room|a garden""".replace("\n", " ").split("|")
EXTRAS = """|at sunset|in the rain|on a sunny day|at night|in autumn|stock photo|close
up|black and white photo""".replace("\n", " ").split("|")
ASPECTS = (4 / 3, 4 / 3, 3 / 2, 16 / 9, 1.0, 5 / 4, 2.0)


# ---------------------------------------------------------------- the images


def image_size(case: str, number: int) -> tuple[int, int]:
    """(width, height) of image ``number``: 640x480 (small), or the web-like mix."""
    if case == "small":
        return 640, 480
    rng = random.Random(SEED * 7 + number)
    bucket = rng.random()
    if bucket < 0.4:
        longest = round(640 * rng.uniform(0.9, 1.1))
    elif bucket < 0.8:
        longest = round(1280 * rng.uniform(0.9, 1.1))
    else:
        longest = rng.randint(2000, 4000)
    shortest = max(1, round(longest / rng.choice(ASPECTS)))
    return (longest, shortest) if rng.random() < 0.7 else (shortest, longest)


def small_jpeg(number: int) -> bytes:
    """The small case's 640x480 image: webserver's gradient and shapes plus Gaussian noise
    (the images of the earlier figures in docs/benchmarks.md)."""
    import io

    import numpy as np
    from PIL import Image

    from mmdata.demo.webserver import generated_jpeg

    base = np.asarray(Image.open(io.BytesIO(generated_jpeg(number, (640, 480)))), np.int16)
    noise = np.random.default_rng(number).normal(0, 12, base.shape).astype(np.int16)
    out = io.BytesIO()
    Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8)).save(out, "JPEG", quality=85)
    return out.getvalue()


def photo_jpeg(number: int, size: tuple[int, int]) -> bytes:
    """A distinct photo-like JPEG of any size: gradient and shapes, sensor-like noise."""
    import io

    import numpy as np
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.linear_gradient("L").resize(size).convert("RGB")
    draw = ImageDraw.Draw(image)
    radius = max(min(size) // 10, 4)
    for k in range(6):
        seed = number * 7919 + k * 104729
        x, y = seed % width, (seed // 7) % height
        color = ((seed * 3) % 256, (seed * 5) % 256, (seed * 11) % 256)
        draw.ellipse([x - radius, y - radius, x + radius, y + radius], fill=color)
    # Noise from one seeded 512x512 tile at a per-image offset: fast at 4000 px too.
    tile = np.random.default_rng(SEED).normal(0, 10, (512, 512, 3)).astype(np.int16)
    tile = np.roll(tile, (number * 31 % 512, number * 17 % 512), axis=(0, 1))
    noise = np.tile(tile, (-(-height // 512), -(-width // 512), 1))[:height, :width]
    pixels = np.clip(np.asarray(image, dtype=np.int16) + noise, 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels).save(out, "JPEG", quality=85)
    return out.getvalue()


def _generate(job: tuple[str, int, str]) -> None:
    case, number, path = job
    data = small_jpeg(number) if case == "small" else photo_jpeg(number, image_size(case, number))
    Path(path + ".tmp").write_bytes(data)
    os.replace(path + ".tmp", path)  # a killed run leaves no half file behind


def cached_images(case: str, images: int) -> Path:
    """The folder of the case's images, generating the missing ones (2 processes)."""
    import multiprocessing

    folder = CACHE / f"{case}-{GENERATOR}"
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(case, n, str(folder / f"{n}.jpg")) for n in range(images)]
    missing = [job for job in jobs if not Path(job[2]).exists()]
    if missing:
        with multiprocessing.get_context("spawn").Pool(2) as pool:
            pool.map(_generate, missing, chunksize=8)
    return folder


def serve(folder: str, images: int) -> None:
    """Server process: serve the cached images, print the port, serve until stdin closes."""
    from mmdata.demo.webserver import FaultServer

    class PhotoServer(FaultServer):
        def generated(self, number: int) -> bytes:
            return (Path(folder) / f"{number}.jpg").read_bytes()  # page cache: no copy kept

    with PhotoServer() as server:
        size = sum((Path(folder) / f"{n}.jpg").stat().st_size for n in range(images))
        print(json.dumps({"port": server.server_port, "bytes": size}), flush=True)
        sys.stdin.read()


# ---------------------------------------------------------------- the three sides


def url_list(folder: Path, port: int, images: int) -> Path:
    """The Parquet list every side reads: distinct /gen/<n>.jpg URLs, varied captions."""
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


def keep_ratio_size(width: int, height: int) -> tuple[int, int]:
    """img2dataset's keep_ratio target (albumentations' SmallestMaxSize): (width, height)."""
    factor = IMAGE_SIZE / min(width, height)
    return max(1, round(width * factor)), max(1, round(height * factor))


def daft_keep_ratio() -> Any:
    """A Daft UDF: each row resized by Daft's own ``image.resize`` to its keep_ratio size.

    Daft's resize takes one fixed (w, h) per call; keep_ratio needs a size per row.
    """
    import daft
    from daft import DataType, Series

    @daft.udf(return_dtype=DataType.image("RGB"))
    def keep_ratio(images: Series, widths: Series, heights: Series) -> Series:
        rows = []
        for i, (width, height) in enumerate(zip(widths.to_pylist(), heights.to_pylist())):
            row = images.slice(i, i + 1)
            if width is not None:  # a null image (failed download or decode) stays null
                row = row.image.resize(*keep_ratio_size(width, height))
            rows.append(row.cast(DataType.image("RGB")))
        return Series.concat(rows)

    return keep_ratio


def run_daft(urls: Path, out: Path, args: dict[str, Any]) -> dict[str, Any]:
    """One timed Daft pipeline, read_parquet to write_parquet; its images: non-null rows."""
    import daft
    import pyarrow.parquet as pq
    from daft import col

    keep_ratio = daft_keep_ratio()
    started = time.perf_counter()
    frame = daft.read_parquet(str(urls))
    frame = frame.with_column(
        "bytes", col("url").download(max_connections=args["threads"], on_error="null")
    )
    frame = frame.with_column("image", col("bytes").decode_image(on_error="null"))
    frame = frame.with_column("width", col("image").image_width())
    frame = frame.with_column("height", col("image").image_height())
    frame = frame.with_column(
        "jpg", keep_ratio(col("image"), col("width"), col("height")).encode_image("JPEG")
    )
    frame.select("url", "caption", "jpg", "width", "height").write_parquet(str(out))
    seconds = time.perf_counter() - started
    column = [v for path in sorted(out.rglob("*.parquet")) for v in pq.read_table(path)["jpg"]]
    ok = sum(v.as_py() is not None for v in column)
    return {"images": ok, "rows": len(column), "seconds": seconds}


RUNNERS = {"img2dataset": run_img2dataset, "mmdata": run_mmdata, "daft": run_daft}


def child(side: str, urls: str, workdir: str, args: dict[str, Any]) -> None:
    """Run one side ``args['runs']`` times in this process; print each run's figures."""
    if side == "stages":
        print(RESULT + json.dumps(stage_costs(urls, args)), flush=True)
        return
    if side == "mmdata":
        from mmdata.engine.executors.ray import init_ray

        init_ray()  # Ray start-up: not timed
    for index in range(args["runs"]):
        figures = RUNNERS[side](Path(urls), Path(workdir) / f"{side}-{index}", args)
        print(RESULT + json.dumps(figures), flush=True)


# ---------------------------------------------------------------- per-stage CPU costs


def _cpu_ms(function: Any, items: list, repeat: int = 1) -> tuple[float, list]:
    """CPU milliseconds per item of ``function`` over ``items`` (all threads of this
    process: Daft's work runs on its own threads), and the results."""
    results = [function(item) for item in items]  # warm-up: imports, first-call set-up
    started = time.process_time()
    for _ in range(repeat):
        results = [function(item) for item in items]
    return (time.process_time() - started) * 1e3 / (len(items) * repeat), results


def _psnr(a: Any, b: Any) -> float:
    import numpy as np

    error = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float("inf") if error == 0 else float(10 * np.log10(255**2 / error))


def _full_decode(data: bytes) -> Any:
    import cv2
    import numpy as np

    return cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)


def _encode(image: Any) -> bytes:
    import cv2

    return cv2.imencode(".jpg", image, params=[int(cv2.IMWRITE_JPEG_QUALITY), 95])[1].tobytes()


def _sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def stage_costs(urls_path: str, args: dict[str, Any]) -> dict[str, Any]:
    """Per-image CPU ms of each side's stages on the same bodies, one thread, in-process."""
    import albumentations as A
    import cv2
    import numpy as np
    import pyarrow.parquet as pq
    from img2dataset.downloader import download_image

    from mmdata.core.imagefile import open_capped

    cv2.setNumThreads(1)
    every = max(1, args["images"] // args["stage_images"])
    urls = pq.read_table(urls_path)["url"].to_pylist()[::every][: args["stage_images"]]
    download = mmdata_recipe(Path(urls_path), Path(urls_path).parent, args).build_stage(1)
    download.setup()
    jpeg = download.encoder.jpeg
    costs: dict[str, dict[str, float]] = {side: {} for side in SIDES}

    # fetch: the same URLs, one at a time, each side's own client
    costs["mmdata"]["fetch"], bodies = _cpu_ms(download.fetch_body, urls)
    costs["img2dataset"]["fetch"], _ = _cpu_ms(
        functools.partial(_img2dataset_fetch, download_image, args["timeout"]), urls
    )
    indices = list(range(len(bodies)))

    # img2dataset: full decode, albumentations' SmallestMaxSize, imencode, sha256
    shrink = A.SmallestMaxSize(max_size=IMAGE_SIZE, interpolation=cv2.INTER_AREA, p=1.0)
    theirs = costs["img2dataset"]
    theirs["decode"], decoded = _cpu_ms(_full_decode, bodies)
    theirs["resize"], reference = _cpu_ms(lambda image: shrink(image=image)["image"], decoded)
    theirs["encode"], encoded = _cpu_ms(_encode, reference)
    theirs["sha256"], _ = _cpu_ms(_sha256, encoded)

    # mmdata: header (pixel cap, mode), reduced decode, resize at the full-size geometry
    ours = costs["mmdata"]
    headers = [open_capped(body, download.encoder.max_pixels) for body in bodies]
    plans = [jpeg.plan(h.width, h.height) for h in headers]
    ours["header"], _ = _cpu_ms(lambda body: open_capped(body, 10**9).size, bodies)
    ours["decode"], small = _cpu_ms(lambda i: jpeg.decode(bodies[i], plans[i], False), indices)
    ours["resize"], resized = _cpu_ms(lambda i: jpeg.resize(small[i], plans[i]), indices)
    ours["encode"], encoded = _cpu_ms(_encode, resized)
    ours["sha256"], _ = _cpu_ms(_sha256, encoded)
    floor, _ = _cpu_ms(lambda i: jpeg.decode(bodies[i], plans[i], False), indices, 3)
    psnr = [_psnr(a, b) for a, b in zip(resized, reference)]

    costs["daft"] = daft_stage_costs(urls, bodies, args["threads"])
    return {
        "costs": costs,
        "floor": floor,
        "images": len(bodies),
        "scales": {str(s): sum(p is not None and p.scale == s for p in plans) for s in SCALES},
        "psnr": _psnr_summary(psnr, [p is not None and p.scale > 1 for p in plans]),
        "bytes": float(np.mean([len(b) for b in bodies])),
    }


def _psnr_summary(psnr: list[float], reduced: list[bool]) -> dict[str, Any]:
    """PSNR over the images decoded at reduced size (the others are bit-identical)."""
    values = [p for p, r in zip(psnr, reduced) if r]
    identical = sum(p == float("inf") for p, r in zip(psnr, reduced) if not r)
    return {
        "reduced": len(values),
        "identical": identical,
        "mean": sum(values) / len(values) if values else None,
        "min": min(values) if values else None,
    }


def _img2dataset_fetch(download_image: Any, timeout: int, url: str) -> Any:
    return download_image((0, url), timeout, None, None)


def daft_stage_costs(urls: list[str], bodies: list[bytes], threads: int) -> dict[str, float]:
    """Daft's download, decode, per-row resize and encode, each run alone on a batch."""
    import daft
    from daft import DataType, Series, col

    def per_image(started: float) -> float:
        return (time.process_time() - started) * 1e3 / len(bodies)

    costs = {}
    frame = daft.from_pydict({"url": urls})
    frame.with_column("bytes", col("url").download(max_connections=threads)).collect()  # warm
    started = time.process_time()
    frame.with_column("bytes", col("url").download(max_connections=threads)).collect()
    costs["fetch"] = per_image(started)
    series = Series.from_pylist(bodies, dtype=DataType.binary())
    started = time.process_time()
    images = series.image.decode(mode="RGB")
    costs["decode"] = per_image(started)
    sizes = [keep_ratio_size(*header_size(body)) for body in bodies]
    started = time.process_time()
    rows = [images.slice(i, i + 1).image.resize(*sizes[i]) for i in range(len(bodies))]
    resized = Series.concat([row.cast(DataType.image("RGB")) for row in rows])
    costs["resize"] = per_image(started)
    started = time.process_time()
    resized.image.encode("JPEG")
    costs["encode"] = per_image(started)
    return costs


def header_size(body: bytes) -> tuple[int, int]:
    import io

    from PIL import Image

    return Image.open(io.BytesIO(body)).size


# ---------------------------------------------------------------- driver


COUNTED = (
    "timed: img2dataset = the whole download() call (pool + logger process start-up, URL "
    "list split, downloads, Parquet writes); mmdata = the whole run_recipe() call (plan, "
    "Ray Data pipeline, part writes, shard commits, DuckDB catalog); Daft = read_parquet "
    "to write_parquet. Not timed: image generation, the URL list, imports in the timing "
    "process, ray.init."
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
    expected = 1 if side == "stages" else args["runs"]
    if done.returncode != 0 or len(results) != expected:
        tail = "\n".join((done.stdout + done.stderr).strip().splitlines()[-30:])
        raise SystemExit(f"{side} failed (rc {done.returncode}):\n{tail}")
    if side == "stages":
        return results
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
    if "mmdata" not in figures:
        return
    for peer, target in TARGETS[args["case"]].items():
        if peer not in figures:
            continue
        for run in range(args["runs"]):
            ratio = figures["mmdata"][run]["images_s"] / figures[peer][run]["images_s"]
            verdict = "met" if ratio >= target else "MISSED"
            print(f"run {run + 1}: ratio mmdata/{peer} {ratio:.2f} "
                  f"(target >= {target}: {verdict})")  # fmt: skip
    for run, f in enumerate(figures["mmdata"], 1):
        steps = ", ".join(f"{k} {v['seconds']:.1f}" for k, v in f["stages"].items())
        print(f"mmdata run {run} stage seconds (summed over tasks): {steps}")


def report_stages(stages: dict[str, Any]) -> None:
    columns = ("fetch", "header", "decode", "resize", "encode", "sha256")
    print(f"\nCPU ms per image, one thread, {stages['images']} of the case's images "
          f"({stages['bytes'] / 1e3:.0f} kB on average; mmdata's decode scales "
          f"1/1,1/2,1/4,1/8: {list(stages['scales'].values())}):")  # fmt: skip
    print("| side | " + " | ".join(columns) + " | total |")
    print("| --- " * (len(columns) + 2) + "|")
    for side, cost in stages["costs"].items():
        cells = [f"{cost[c]:.2f}" if c in cost else "-" for c in columns]
        print(f"| {side} | " + " | ".join(cells) + f" | {sum(cost.values()):.2f} |")
    print(f"floor (mmdata's reduced-size decode alone): {stages['floor']:.2f} ms/image")
    psnr = stages["psnr"]
    others = stages["images"] - psnr["reduced"]
    print(f"mmdata's resized pixels vs a full-size decode + resize: {psnr['identical']} of "
          f"{others} full-size decodes bit-identical", end="")  # fmt: skip
    if psnr["reduced"]:
        print(f"; {psnr['reduced']} reduced decodes: PSNR mean {psnr['mean']:.1f} dB, "
              f"min {psnr['min']:.1f} dB", end="")  # fmt: skip
    print()


def _arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--case", choices=("mix", "small"), default="mix")
    parser.add_argument("--images", type=int, help="default: 1000 (mix), 2000 (small)")
    parser.add_argument("--shards", type=int, default=4, help="shards (= tasks) per side")
    parser.add_argument("--threads", type=int, default=32, help="requests in flight a process")
    parser.add_argument("--runs", type=int, default=2, help="runs per side (1 cold, rest warm)")
    parser.add_argument("--timeout", type=int, default=10)
    parser.add_argument("--retries", type=int, default=1)
    parser.add_argument("--stage-images", type=int, default=100,
                        help="images for the per-stage CPU figures (0: skip them)")  # fmt: skip
    parser.add_argument("--only", choices=SIDES, action="append", help="run these sides only")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    parser.add_argument("--serve", nargs=2, help=argparse.SUPPRESS)
    return parser.parse_args()


def main() -> None:
    args = _arguments()
    if args.serve is not None:
        serve(args.serve[0], int(args.serve[1]))
        return
    if args.child:
        child(*json.loads(args.child))
        return
    images = args.images or DEFAULT_IMAGES[args.case]
    settings = {
        "case": args.case,
        "images": images,
        "shard_rows": -(-images // args.shards),
        "threads": args.threads,
        "processes": 2,
        "executor": "ray",
        "runs": args.runs,
        "timeout": args.timeout,
        "retries": args.retries,
        "stage_images": min(args.stage_images, images),
    }
    started = time.perf_counter()
    folder = cached_images(args.case, images)
    generated = time.perf_counter() - started
    command = [sys.executable, str(Path(__file__).resolve()), "--serve", str(folder), str(images)]
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    with subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                          env=env) as server:  # fmt: skip
        assert server.stdout is not None and server.stdin is not None
        info = json.loads(server.stdout.readline())
        print(f"server: {images} images ({args.case}), {info['bytes'] / images / 1e3:.0f} kB "
              f"each on average, {folder} (generated or found in {generated:.0f} s, not "
              f"timed)")  # fmt: skip
        print(f"settings: {json.dumps(settings)}")
        print(COUNTED, flush=True)
        with tempfile.TemporaryDirectory(prefix="mmdata-bench-download-") as tmp:
            urls = url_list(Path(tmp), info["port"], images)
            figures = {}
            for side in SIDES:
                if args.only is None or side in args.only:
                    figures[side] = measure(side, urls, Path(tmp), settings)
                    for run, f in enumerate(figures[side], 1):
                        print(f"{side} run {run}: {f['images']} images, {f['seconds']:.2f} s, "
                              f"{f['images_s']:.0f} images/s", flush=True)  # fmt: skip
            stages = measure("stages", urls, Path(tmp), settings) if args.stage_images else None
        server.stdin.close()
    print()
    report(figures, settings)
    if stages:
        report_stages(stages[0])


if __name__ == "__main__":
    main()
