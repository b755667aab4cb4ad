"""The reference loop: it learns (held-out ITM and R@1 far above chance, every loss falls)
on a corpus whose regions carry signal, a re-run resumes exactly from the last checkpoint,
the CLI's contract, config errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from mmdata.cli import main
from mmdata.train import loop
from mmdata.train.config import ConfigError, load_config
from tests.train import corpus

OBJECTIVES = ["mlm", "itm", "mrfr", "mrc", "mrc_kl", "sgp", "tags", "tag_contrast", "contrastive"]
# sampling ratios of the proof run: the retrieval objectives get more of the batches
PROOF_RATIOS = {**{name: 1.0 for name in OBJECTIVES}, "itm": 2.0, "contrastive": 3.0}


def _config(tmp_path: Path, objectives: dict[str, float] | None = None, **optim) -> Path:
    spec = {
        "model": {"hidden": 64, "layers": 2, "heads": 4, "intermediate": 128,
                  "max_text_tokens": 24, "max_regions": 8, "num_classes": corpus.CLASSES,
                  "contrastive_dim": 32, "dropout": 0.0},
        "optim": {"lr": 0.002, "warmup_steps": 10, "steps": 240, "batch_size": 24, **optim},
        "eval": {"fraction": 0.25, "itm_rerank": 3},
        "objectives": objectives or {name: 1.0 for name in OBJECTIVES},
        "vocab_size": 200,
        "shuffle_buffer": 200,
        "checkpoint_every": 60,
    }  # fmt: skip
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


@pytest.fixture(scope="module")
def shapes(tmp_path_factory) -> Path:
    return corpus.build(tmp_path_factory.mktemp("shapes"), images=240)


def _run(capsys, config: Path, catalog: Path, out: Path) -> dict:
    assert main(["train", str(config), "--catalog", str(catalog), "--corpus", "shapes",
                 "--out", str(out)]) == 0  # fmt: skip
    return json.loads(capsys.readouterr().out.strip().splitlines()[-1])


@pytest.mark.slow
def test_it_learns_every_objective_and_keeps_the_summary_contract(shapes, tmp_path, capsys):
    """The issue's proof: 1,600 tiny CPU steps (about 90 s on 2 cores) over all nine
    objectives; held-out ITM accuracy and R@1 far above chance, every loss falls."""
    out = tmp_path / "run"
    config = _config(tmp_path, PROOF_RATIOS, steps=1600)
    spec = yaml.safe_load(config.read_text())
    spec["checkpoint_every"] = 500
    config.write_text(yaml.safe_dump(spec))
    summary = _run(capsys, config, shapes, out)
    for key in ("itm_acc", "r1_i2t", "r1_t2i", "eval_pairs", "steps"):
        assert summary[key] is not None, key
    assert summary["steps"] == 1600 and summary["eval_pairs"] > 150
    chance_r1 = 1 / summary["eval_images"]  # about 0.015: 66 held-out images
    # measured (seeds 0, 1, 2): ITM 0.85 / 0.80 / 0.71, R@1 t2i 0.27 / 0.35 / 0.51 and
    # i2t 0.27 / 0.53 / 0.58; without gradient normalisation ITM stays at 0.5-0.55
    assert summary["itm_acc"] >= 0.65, summary
    assert summary["r1_t2i"] >= 12 * chance_r1 and summary["r1_i2t"] >= 12 * chance_r1, summary
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows] == list(range(1, 1601))
    for name in OBJECTIVES:
        values = [r[f"loss_{name}"] for r in rows if r["task"] == name]
        fifth = len(values) // 5
        first, last = sum(values[:fifth]) / fifth, sum(values[-fifth:]) / fifth
        assert last < 0.9 * first, (name, first, last)  # measured: 0.20-0.84 of the first
        assert summary[f"loss_{name}"] is not None
    assert summary["loss_wra"] is not None
    assert sorted(p.name for p in (out / "checkpoints").glob("step-*.pt")) == [
        "step-0001500.pt",
        "step-0001600.pt",
    ]
    assert (Path(shapes).parent / "corpus" / "tokenizer" / "vocab.txt").exists()


def test_a_rerun_resumes_exactly(shapes, tmp_path, capsys, monkeypatch):
    config = _config(tmp_path, steps=60)
    whole = tmp_path / "whole"
    _run(capsys, config, shapes, whole)
    split = tmp_path / "split"
    save = loop._save

    def crash_after_first_checkpoint(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        save(*args, **kwargs)
        raise KeyboardInterrupt  # the process dies right after checkpoint 60/2

    monkeypatch.setattr(loop, "_save", crash_after_first_checkpoint)
    spec = yaml.safe_load(config.read_text())
    spec["checkpoint_every"] = 30
    config.write_text(yaml.safe_dump(spec))
    with pytest.raises(KeyboardInterrupt):
        _run(capsys, config, shapes, split)
    monkeypatch.setattr(loop, "_save", save)
    summary = _run(capsys, config, shapes, split)  # the same command again: resumes at 30
    assert summary["steps"] == 60
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
