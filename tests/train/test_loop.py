"""The reference loop: it learns (held-out ITM and R@1 far above chance, every loss falls)
on a corpus whose regions carry signal, a re-run resumes exactly from the last checkpoint,
the CLI's contract, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

import recipes
from mmdata.commands.cli import main
from mmdata.demo import oracle as demo_oracle
from mmdata.train import loop
from mmdata.train.config import ConfigError, load_config

OBJECTIVES = ["mlm", "itm", "mrfr", "mrc", "mrc_kl", "sgp", "tags", "tag_contrast", "contrastive"]
ORACLE = Path(recipes.__file__).parent / "train_oracle.yaml"


def _config(tmp_path: Path, **changes) -> Path:
    """recipes/train_oracle.yaml with ``changes`` (dotted keys: ``optim.steps``)."""
    spec = yaml.safe_load(ORACLE.read_text())
    for key, value in changes.items():
        *parents, last = key.split(".")
        node = spec
        for parent in parents:
            node = node[parent]
        node[last] = value
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def oracle(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("oracle")
    return Path(demo_oracle.build(folder / "catalog.duckdb", folder / "corpus", images=240))


PROGRESS: list[dict] = []  # the progress events of the last _run with --json


def _run(capsys, config: Path, catalog: Path, out: Path, *extra: str) -> dict:
    assert main(["train", str(config), "--catalog", str(catalog), "--corpus", "demo_oracle",
                 "--out", str(out), *extra]) == 0  # fmt: skip
    captured = capsys.readouterr()
    summary = json.loads(captured.out.strip().splitlines()[-1])
    assert json.loads((out / "summary.json").read_text()) == summary
    if "--json" in extra:
        PROGRESS[:] = [json.loads(line) for line in captured.err.splitlines() if line[:1] == "{"]
    return summary


@pytest.mark.slow
def test_it_learns_every_objective_and_keeps_the_summary_contract(oracle, tmp_path, capsys):
    """The issue's proof, with the shipped recipes/train_oracle.yaml: 1,600 tiny CPU steps
    (about 90 s on 2 cores) over all nine objectives; held-out ITM accuracy and R@1 far
    above chance, every objective's loss falls."""
    out = tmp_path / "run"
    summary = _run(capsys, ORACLE, oracle, out)
    for key in ("itm_acc", "r1_i2t", "r1_t2i", "eval_pairs", "steps"):
        assert summary[key] is not None, key
    assert summary["steps"] == 1600 and summary["eval_pairs"] > 150
    chance_r1 = 1 / summary["eval_images"]  # 0.016: 62 held-out images
    # Measured (docs/benchmarks.md): ITM 0.80-0.89, R@1 0.19-0.39, R@5 0.68-0.80. The
    # outcome swings with the last bits of the first step's floats (other CPUs, thread
    # counts), so the bounds keep a margin; without gradient normalisation ITM stays at 0.5.
    assert summary["itm_acc"] >= 0.65, summary
    assert summary["r1_t2i"] >= 6 * chance_r1 and summary["r1_i2t"] >= 6 * chance_r1, summary
    assert summary["r5_t2i"] >= 0.4 and summary["r5_i2t"] >= 0.4, summary  # chance 0.08
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 1601))
    for name in OBJECTIVES:
        values = [r[f"loss_{name}"] for r in rows if r["task"] == name]
        fifth = len(values) // 5
        first, last = sum(values[:fifth]) / fifth, sum(values[-fifth:]) / fifth
        assert last < 0.9 * first, (name, first, last)
        assert summary[f"loss_{name}"] is not None
    assert summary["loss_wra"] is not None
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == [
        "step-0001500.pt",
        "step-0001600.pt",
    ]
    assert (oracle.parent / "corpus" / "tokenizer" / "vocab.txt").exists()


def test_a_rerun_resumes_exactly(oracle, tmp_path, capsys, monkeypatch):
    config = _config(tmp_path, checkpoint_every=30)
    whole = tmp_path / "whole"
    _run(capsys, config, oracle, whole, "--steps", "60")
    split = tmp_path / "split"
    save = loop._save

    def crash_after_first_checkpoint(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        save(*args, **kwargs)
        raise KeyboardInterrupt  # the process dies right after checkpoint 30

    monkeypatch.setattr(loop, "_save", crash_after_first_checkpoint)
    with pytest.raises(KeyboardInterrupt):
        _run(capsys, config, oracle, split, "--steps", "60")
    monkeypatch.setattr(loop, "_save", save)
    # the same command again: resumes at 30 (with progress for scripts: JSON on stderr)
    summary = _run(capsys, config, oracle, split, "--steps", "60", "--json")
    assert summary["steps"] == 60
    assert PROGRESS and all(p["unit"] == "step" and p["total"] == 60 for p in PROGRESS)
    assert 30 < PROGRESS[0]["done"] and PROGRESS[-1]["done"] == 60
    assert PROGRESS[-1]["eta_s"] == 0.0 and PROGRESS[-1]["rows"] == 30 * 24  # 30 steps of 24
    a = (whole / "metrics.jsonl").read_text().splitlines()
    b = (split / "metrics.jsonl").read_text().splitlines()
    assert len(a) == len(b) == 60
    for x, y in zip(a, b):
        x, y = json.loads(x), json.loads(y)
        assert x["task"] == y["task"] and x["step"] == y["step"]
        assert x[f"loss_{x['task']}"] == pytest.approx(y[f"loss_{y['task']}"], rel=1e-4)


def test_config_errors_name_the_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("optim: {lr: fast}\n")
    with pytest.raises(ConfigError, match="optim.lr must be float"):
        load_config(path)
    path.write_text("objectives: {mlm: 1, vqa: 1}\n")
    with pytest.raises(ConfigError, match="unknown objective.*vqa"):
        load_config(path)
    path.write_text("modle: {}\n")
    with pytest.raises(ConfigError, match="unknown key.*modle"):
        load_config(path)
