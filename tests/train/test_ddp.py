"""DDP under torchrun (CPU, gloo): two ranks train on their own halves of the stream,
rank 0 alone evaluates and prints the summary, checkpoints hold both ranks' stream
states, and the same command with more steps resumes from them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from mmdata.demo import oracle as demo_oracle
from tests.train.test_loop import ORACLE

ROOT = Path(__file__).parent.parent.parent


def _torchrun(catalog: str, out: Path, steps: int) -> tuple[list[str], str]:
    """`mmdata train` under torchrun with 2 CPU ranks; (JSON stdout lines, stderr)."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2",
           "--standalone", "-m", "mmdata.commands.cli", "train", str(ORACLE), "--catalog", catalog,
           "--corpus", demo_oracle.CORPUS, "--out", str(out), "--steps", str(steps)]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
    return lines, done.stderr


@pytest.mark.skipif(not torch.distributed.is_gloo_available(), reason="no gloo backend")
def test_two_ranks_train_checkpoint_and_resume(tmp_path):
    catalog = demo_oracle.build(tmp_path / "catalog.duckdb", tmp_path / "oracle", images=120)
    out = tmp_path / "run"
    lines, _ = _torchrun(catalog, out, 20)
    assert len(lines) == 1  # rank 0's summary only
    summary = json.loads(lines[0])
    assert summary["steps"] == 20 and summary["eval_pairs"] > 0
    state = torch.load(out / "checkpoints" / "step-0000020.pt", weights_only=False)
    assert [r["world_size"] for r in state["stream"]] == [2, 2]  # one state per rank
    before = (out / "metrics.jsonl").read_text().splitlines()
    lines, _ = _torchrun(catalog, out, 30)  # the same command, more steps: resumes at 20
    assert json.loads(lines[0])["steps"] == 30
    rows = (out / "metrics.jsonl").read_text().splitlines()
    assert rows[:20] == before and [json.loads(r)["step"] for r in rows] == list(range(1, 31))
