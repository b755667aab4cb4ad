"""Every GPU figure in one script: region features, training MFU and the CLIP filter.

    python bench/gpu.py > gpu.json            # on a lent GPU: one JSON document on stdout
    python bench/gpu.py --device cpu          # the CPU smoke run (tiny sizes, < 1 minute)

Runs, in one process and within ``--budget-s`` seconds (default 420; a lent GPU gives
about 8 minutes, model builds and warm-ups included):

1. regions: bench/regions.py's measurement, butd-r101-c4-vg at 600/1000 with 36 boxes
   and 300 proposals on 64 JPEGs: the per-image fp32 reference loop, the fast path at
   batch sizes 1, 2, 4, 8 and 16, and the fp16-vs-fp32 feature gap on the same boxes;
2. training: bench/train.py's measurement, the BERT-base configuration with 36 regions
   at batch 256: samples/s fed by ShardStream and from a batch held in memory, and MFU
   against the device's dense bf16 peak (its name, or ``--peak-tflops``);
3. clip: bench/clip_filter.py's measurement, the clip_score_filter stage with ViT-B-32 (fp16)
   on 1024 JPEGs, and its model alone.

Each section gets a share of the time left (regions 35%, training 45%, clip the rest,
time a section leaves unused passing on); a section past its allowance stops its timed
loop, keeps what it measured and lists what it cut under ``cut``. A watchdog prints the
document as it stands and exits (status 3) if the whole run passes the budget by
``--grace-s`` (45 s).
A section that fails records its ``error`` and the others still run (exit status 1).
Without CUDA (or with ``--device cpu``) every size is tiny, torch runs one thread, and
the document says the GPU figures were not measured. Progress goes to stderr.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import TextIO

STARTED = time.perf_counter()  # the budget counts torch's and the benches' imports too

import torch  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))

import clip_filter  # noqa: E402 - bench/clip_filter.py
import regions  # noqa: E402 - bench/regions.py
import train  # noqa: E402 - bench/train.py

NOT_MEASURED = "not measured: no CUDA device"
SHARES = {"regions": 0.35, "training": 0.45, "clip": 0.20}
TARGET_GAP = 5e-2  # tests/regions/test_butd.py's fp16-vs-fp32 tolerance


def say(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def regions_argv(gpu: bool) -> list[str]:
    if gpu:  # the configuration; 8 decode threads keep batch 16 fed on a GPU host
        return ["--device", "cuda", "--images", "64", "--proposals", "300",
                "--batch-sizes", "1,2,4,8,16", "--min-size", "600", "--max-size", "1000",
                "--fixed-boxes", "36", "--workers", str(min(8, os.cpu_count() or 1))]  # fmt: skip
    return ["--device", "cpu", "--images", "2", "--proposals", "8", "--batch-sizes", "1,2",
            "--min-size", "96", "--max-size", "128", "--fixed-boxes", "4",
            "--workers", "2"]  # fmt: skip


def training_argv(gpu: bool, peak: float | None) -> list[str]:
    folder = str(Path(tempfile.gettempdir()) / f"mmdata-gpu-bench-train-{'gpu' if gpu else 'cpu'}")
    # 2,000 images x 5 captions: the 3 + 30 batches of 256 the mmdata side draws from
    # one epoch, with room; generated in about 10 s
    if gpu:
        workers = str(min(8, os.cpu_count() or 1))
        argv = ["--device", "cuda", "--size", "base", "--batch", "256", "--steps", "30",
                "--warmup", "3", "--workers", workers, "--images", "2000", "--captions", "5",
                "--boxes", "36", "--dir", folder]  # fmt: skip
    else:
        argv = ["--device", "cpu", "--size", "tiny", "--batch", "8", "--steps", "3",
                "--warmup", "1", "--workers", "1", "--images", "48", "--captions", "2",
                "--boxes", "10", "--dir", folder]  # fmt: skip
    return argv + (["--peak-tflops", str(peak)] if peak else [])


def clip_argv(gpu: bool) -> list[str]:
    if gpu:
        return ["--device", "cuda", "--images", "1024", "--batch", "256",
                "--micro-batch", "256", "--precision", "fp16"]  # fmt: skip
    return ["--device", "cpu", "--images", "16", "--batch", "8", "--micro-batch", "8",
            "--precision", "fp32"]  # fmt: skip


def target(
    value: float | None, goal: float, gpu: bool, record: dict, at_most: bool = False
) -> dict:
    """A target's value, goal and verdict: ``pass`` is true or false on a GPU, else a
    string saying why there is no verdict."""
    if not gpu:
        verdict: bool | str = "not measured: CPU run"
    elif value is not None:
        verdict = value <= goal if at_most else value >= goal
    elif "error" in record:
        verdict = "not measured: the section failed"
    elif record.get("cut"):
        verdict = "not measured: the section was cut short"
    elif "peak_flops" in record and record["peak_flops"] is None:
        verdict = "not measured: unknown GPU peak (pass --peak-tflops)"
    else:
        verdict = "not measured"
    return {"value": value, ("at_most" if at_most else "at_least"): goal, "pass": verdict}


def targets(sections: dict, gpu: bool) -> dict:
    r, t = sections.get("regions", {}), sections.get("training", {})
    return {
        "regions_images_per_s": target(r.get("best_images_per_s"), regions.TARGET_RATE, gpu, r),
        "regions_vs_reference": target(r.get("best_ratio"), regions.TARGET_RATIO, gpu, r),
        "regions_fp16_feature_gap": target(r.get("feature_gap"), TARGET_GAP, gpu, r, True),
        "training_mfu": target(t.get("mfu"), train.TARGET_MFU, gpu, t),
    }


class Run:
    """The document, filled section by section and written to ``out`` once: by the end of
    the run, or by the watchdog ``hard_limit`` seconds after ``started`` (a
    ``time.perf_counter`` value; now by default), which then calls
    ``stop`` (the section still running cannot be stopped from the watchdog's thread)."""

    def __init__(
        self,
        doc: dict,
        hard_limit: float,
        out: TextIO,
        stop: Callable[[], object],
        started: float | None = None,
    ) -> None:
        self.doc, self.out, self.stop = doc, out, stop
        self.lock, self.printed = threading.Lock(), False
        self.started = time.perf_counter() if started is None else started
        left = hard_limit - (time.perf_counter() - self.started)
        self.watchdog = threading.Timer(max(0.0, left), self.overrun)
        self.watchdog.daemon = True
        self.watchdog.start()

    def emit(self) -> bool:
        """Write the document unless it already was; whether this call wrote it."""
        with self.lock:
            if self.printed:
                return False
            self.printed = True
            self.watchdog.cancel()
            self.doc["wall_s"] = time.perf_counter() - self.started
            gpu = self.doc["measured_on"] == "cuda"
            for attempt in range(5):  # the watchdog may catch a section mid-update
                try:
                    self.doc["targets"] = targets(self.doc["sections"], gpu)
                    text = json.dumps(self.doc, indent=2, default=str)
                    break
                except RuntimeError:  # a dict changed size while read: try again
                    if attempt == 4:
                        raise
                    time.sleep(0.1)
            self.out.write(text + "\n")
            self.out.flush()
            return True

    def overrun(self) -> None:
        self.doc["overrun"] = "past the budget and its grace: stopped mid-section"
        say(f"gpu.py: {self.doc['overrun']}")
        if self.emit():
            self.stop()


def owned_stdout() -> TextIO:
    """The real stdout for the document alone; anything else printing there (a library, a
    DataLoader worker inheriting the descriptor) goes to stderr from now on."""
    sys.stdout.flush()
    out = os.fdopen(os.dup(1), "w")
    os.dup2(2, 1)
    return out


def section(
    run: Run, name: str, measure: Callable[..., dict], args: argparse.Namespace, end: float
) -> None:
    """Run one section within its share of the time left before ``end``."""
    left = list(SHARES)[list(SHARES).index(name) :]
    now = time.perf_counter()
    allowance = max(0.0, end - now) * SHARES[name] / sum(SHARES[s] for s in left)
    record: dict = {"allowance_s": round(allowance, 1)}
    run.doc["sections"][name] = record
    say(f"gpu.py: {name} (allowance {allowance:.0f} s)")
    try:
        measure(args, record, now + allowance, say)
    except Exception as exc:  # noqa: BLE001 - one failed section must not lose the others
        record["error"] = f"{type(exc).__name__}: {exc}"
        traceback.print_exc(file=sys.stderr)
    record["wall_s"] = time.perf_counter() - now
    record["cut_short"] = bool(record.get("cut"))
    gc.collect()  # the section's models go before the next section's arrive
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--budget-s", type=float, default=420.0, help="wall-clock budget")
    parser.add_argument("--peak-tflops", type=float, help="the GPU's dense bf16 peak")
    parser.add_argument(
        "--grace-s", type=float, default=45.0, help="the watchdog's margin over the budget"
    )
    opts = parser.parse_args()
    if opts.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda but CUDA is not available")
    gpu = opts.device == "cuda" or (opts.device == "auto" and torch.cuda.is_available())
    why_not = NOT_MEASURED if not torch.cuda.is_available() else "not measured: --device cpu"
    if not gpu:
        # A smoke run: one thread. Two OpenMP threads on a 2-core machine that something
        # else keeps busy spin against it: the run took 58 s there, 14 s with one thread.
        torch.set_num_threads(1)
    import open_clip

    doc = {
        "measured_on": "cuda" if gpu else "cpu",
        "device": torch.cuda.get_device_name() if gpu else f"CPU ({os.cpu_count()} cores)",
        "gpu_figures": "measured" if gpu else why_not,
        "budget_s": opts.budget_s,
        "versions": {
            "python": platform.python_version(),
            "torch": torch.__version__,
            "cuda": torch.version.cuda,
            "open_clip": open_clip.__version__,
            "cpu_threads": torch.get_num_threads(),
            "cpu_count": os.cpu_count(),
        },
        "sections": {},
    }
    hard_limit = opts.budget_s + opts.grace_s
    run = Run(doc, hard_limit, owned_stdout(), lambda: os._exit(3), STARTED)
    end = run.started + opts.budget_s
    section(run, "regions", regions.measure, regions.settings(regions_argv(gpu)), end)
    section(
        run, "training", train.measure, train.settings(training_argv(gpu, opts.peak_tflops)), end
    )
    section(run, "clip", clip_filter.measure, clip_filter.settings(clip_argv(gpu)), end)
    run.emit()
    failed = [name for name, record in doc["sections"].items() if "error" in record]
    say(f"gpu.py: done in {doc['wall_s']:.0f} s" + (f"; failed: {failed}" if failed else ""))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
