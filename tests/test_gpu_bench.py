"""bench/gpu.py: its CPU mode end to end (one JSON document, every section, no GPU claim),
and the time budget: sections' shares, loops stopping at their deadline, the watchdog."""

from __future__ import annotations

import io
import json
import math
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"


def number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def test_cpu_mode_prints_one_document_with_every_section(tmp_path):
    env = {**os.environ, "CUDA_VISIBLE_DEVICES": "", "TMPDIR": str(tmp_path)}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, str(BENCH / "gpu.py")], env=env, capture_output=True, text=True,
        timeout=300, check=False,
    )  # fmt: skip
    took = time.perf_counter() - started
    assert done.returncode == 0, done.stderr[-3000:]
    doc = json.loads(done.stdout)  # stdout holds the document and nothing else
    assert doc["measured_on"] == "cpu"
    assert doc["gpu_figures"] == "not measured: no CUDA device"
    assert "overrun" not in doc and doc["wall_s"] < took < doc["budget_s"]
    sections = doc["sections"]
    assert list(sections) == ["regions", "training", "clip"]
    for record in sections.values():
        assert "error" not in record and record["cut_short"] is False and record["cut"] == []
        assert number(record["wall_s"]) and number(record["allowance_s"])

    regions = sections["regions"]
    assert number(regions["reference_images_per_s"]) and regions["reference_images"] == 2
    assert list(regions["batches"]) == ["1", "2"]
    assert all(number(rate) and rate > 0 for rate in regions["batches"].values())
    assert regions["best_images_per_s"] == max(regions["batches"].values())
    assert number(regions["best_ratio"]) and regions["fast_precision"] == "fp32"
    assert number(regions["feature_gap"]) and regions["feature_gap"] < 5e-2

    training = sections["training"]
    assert training["size"] == "tiny" and number(training["flops_per_step"])
    for side in ("mmdata", "ceiling"):
        assert number(training[side]["samples_per_s"]) and training[side]["steps"] == 3
        assert training[side]["mfu"] is None  # no peak to divide by on a CPU
    assert number(training["mmdata_over_ceiling"]) and training["mfu"] is None

    clip = sections["clip"]
    assert clip["stage_images"] == clip["images"] == 16
    for key in ("stage_images_per_s", "model_images_per_s", "outside_image_pass_share"):
        assert number(clip[key])

    assert set(doc["targets"]) == {
        "regions_images_per_s", "regions_vs_reference", "regions_fp16_feature_gap",
        "training_mfu",
    }  # fmt: skip
    for name, entry in doc["targets"].items():
        assert entry["pass"] == "not measured: CPU run"
        assert name == "training_mfu" or number(entry["value"])


@pytest.fixture(scope="module")
def gpu_module():
    """bench/gpu.py imported (with bench/regions.py and bench/train.py beside it)."""
    sys.path.insert(0, str(BENCH))
    try:
        import gpu

        yield gpu
    finally:
        sys.path.remove(str(BENCH))


def document() -> dict:
    return {"measured_on": "cpu", "gpu_figures": "not measured", "sections": {}}


def test_sections_share_the_time_left_and_a_failure_loses_nothing_else(gpu_module):
    out = io.StringIO()
    run = gpu_module.Run(document(), 60.0, out, lambda: None)
    deadlines = {}

    def measure(name):
        def inner(args, record, deadline, say):
            deadlines[name] = deadline
            record["cut"] = ["something"] if name == "regions" else []
            if name == "training":
                raise ValueError("no catalog")
            record["best_images_per_s"] = 7.0

        return inner

    end = time.perf_counter() + 100.0
    for name in ("regions", "training", "clip"):
        before = time.perf_counter()
        gpu_module.section(run, name, measure(name), None, end)
        share = gpu_module.SHARES[name] / sum(
            gpu_module.SHARES[s]
            for s in list(gpu_module.SHARES)[list(gpu_module.SHARES).index(name) :]
        )
        assert deadlines[name] - before == pytest.approx((end - before) * share, abs=0.5)
    assert deadlines["clip"] == pytest.approx(end, abs=0.5)  # the last takes what is left
    assert run.emit() and not run.emit()  # written once
    doc = json.loads(out.getvalue())
    sections = doc["sections"]
    assert sections["regions"]["cut_short"] is True and sections["clip"]["cut_short"] is False
    assert sections["training"]["error"] == "ValueError: no catalog"
    assert doc["targets"]["regions_images_per_s"]["value"] == 7.0
    assert doc["targets"]["training_mfu"] == {
        "value": None,
        "at_least": 0.35,
        "pass": "not measured: CPU run",
    }


def test_the_watchdog_writes_what_was_measured_and_stops(gpu_module):
    out, stopped = io.StringIO(), threading.Event()
    doc = document()
    doc["sections"]["regions"] = {"reference_images_per_s": 3.0}
    run = gpu_module.Run(doc, 0.05, out, stopped.set)
    assert stopped.wait(5.0)
    written = json.loads(out.getvalue())
    assert written["overrun"].startswith("past the budget")
    assert written["sections"]["regions"]["reference_images_per_s"] == 3.0
    assert not run.emit()  # the end of the run writes nothing more


class Recorder:
    """Stands in for a model: counts the calls the timed loops make."""

    def __init__(self) -> None:
        self.calls = 0
        self.device = __import__("torch").device("cpu")

    def extract(self, images, boxes=None):
        self.calls += 1
        return [None] * len(images)

    def task(self, step):
        return "mlm"

    def forward_backward(self, task, batch, step):
        self.calls += 1
        return {"mlm": __import__("torch").tensor(1.0)}

    def optimizer_step(self):
        pass


def test_timed_loops_stop_at_their_deadline(gpu_module):
    regions, train = gpu_module.regions, gpu_module.train
    args = regions.settings(["--device", "cpu", "--min-size", "32", "--max-size", "48"])
    jpegs = [regions.photo(160, 120, seed=i) for i in range(10)]
    past = time.perf_counter() - 1.0
    model = Recorder()
    assert regions.reference(model, jpegs, args, past)[1] == 1  # the image that crossed it
    assert regions.reference(model, jpegs, args)[1] == 10
    assert regions.fast(model, jpegs, args, 2, past)[1] == 8  # one window of 4 batches
    assert regions.fast(model, jpegs, args, 2)[1] == 10
    run = Recorder()
    seconds, steps = train.timed(run, iter(range(100)), 2, 20, past)
    assert steps == 1 and run.calls == 3  # the warm-up is never cut
    assert train.timed(Recorder(), iter(range(5)), 2, 20)[1] == 3  # a dry source


def test_targets_pass_or_fail_on_a_gpu_and_say_why_not(gpu_module):
    sections = {
        "regions": {"best_images_per_s": 120.0, "best_ratio": 4.0, "feature_gap": 0.01},
        "training": {"peak_flops": None, "mfu": None, "cut": []},
    }
    verdicts = {k: v["pass"] for k, v in gpu_module.targets(sections, gpu=True).items()}
    assert verdicts == {
        "regions_images_per_s": True,
        "regions_vs_reference": False,
        "regions_fp16_feature_gap": True,
        "training_mfu": "not measured: unknown GPU peak (pass --peak-tflops)",
    }
    sections["training"] = {"error": "RuntimeError: CUDA out of memory"}
    assert gpu_module.targets(sections, gpu=True)["training_mfu"]["pass"] == (
        "not measured: the section failed"
    )
