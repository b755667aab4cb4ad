"""OpenCLIP trains on the webdataset export with its own entry point, as docs/streaming.md
says; img2dataset's webdataset writer works beside it with the one webdataset version.

The training test runs the two commands of the docs' "Training OpenCLIP on the export"
section as written (the export, then ``python -m open_clip_train.main``), in a folder
holding ``mmdata-demo/catalog.duckdb`` built by the demo's recipe without its region stage
(the demo's images, filters and shard size, so the same 4 shards). One argument changes:
``--model`` names a tiny config (a ``local-dir:`` folder with ``open_clip_config.json``)
instead of ViT-B-32, so the epoch takes seconds on 2 CPU cores. No pretrained weights,
nothing downloaded."""

from __future__ import annotations

import importlib.util
import json
import math
import os
import re
import shlex
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, requires, version
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from mmdata.demo import data as demo
from mmdata.demo.command import demo_recipe_path
from mmdata.demo.webserver import FaultServer
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from mmdata.exports.interop import export_webdataset, webdataset_urls
from tests.conftest import ROOT, write_recipe
from tests.test_readme import BLOCK, _lines

DOC = ROOT / "docs" / "streaming.md"
SECTION = "## Training OpenCLIP on the export"
PROGRAMS = {
    ".venv/bin/mmdata": [sys.executable, "-m", "mmdata.commands.cli"],
    ".venv/bin/python": [sys.executable],
}
needs_openclip = pytest.mark.skipif(
    importlib.util.find_spec("open_clip_train") is None,
    reason="needs open_clip_torch 2.24+ (its open_clip_train module): pip install -e '.[dev]'",
)
#: Small enough for seconds of CPU training; the text tower keeps OpenCLIP's tokenizer
#: (49408 tokens, 77 positions), which its default SimpleTokenizer needs.
TINY_MODEL = {
    "model_cfg": {
        "embed_dim": 32,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 64, "patch_size": 8},
        "text_cfg": {
            "context_length": 77,
            "vocab_size": 49408,
            "width": 64,
            "heads": 2,
            "layers": 2,
        },
    },
    "preprocess_cfg": {},
}


def _documented() -> tuple[list[str], list[str]]:
    """The export and training command lines of the docs' OpenCLIP section, as tokens."""
    text = DOC.read_text(encoding="utf-8")
    assert SECTION in text, f"{DOC} lost its section {SECTION!r}"
    lang, body = BLOCK.findall(text.split(SECTION, 1)[1])[0]
    assert lang == "bash"
    export, train = (shlex.split(line) for line in _lines(body))
    assert export[:2] == [".venv/bin/mmdata", "export"], export
    assert train[:3] == [".venv/bin/python", "-m", "open_clip_train.main"], train
    return export, train


def _argv(tokens: list[str]) -> list[str]:
    return PROGRAMS[tokens[0]] + tokens[1:]


def _flag(tokens: list[str], name: str) -> str:
    return tokens[tokens.index(name) + 1]


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with ``mmdata-demo/catalog.duckdb``: corpus ``demo`` from the demo's data and
    recipe, less its region stage (slow, and the OpenCLIP export does not carry regions)."""
    work = tmp_path_factory.mktemp("openclip")
    out = work / "mmdata-demo"
    demo.generate(out / "data", num_images=64)  # what `mmdata demo` generates
    text = recipes.expand(demo_recipe_path().read_text(), {"DEMO_DIR": str(out)}, [])
    spec = yaml.safe_load(text)
    spec["stages"] = [stage for stage in spec["stages"] if "regions" not in stage]
    run_recipe(recipes.load(write_recipe(out / "demo.yaml", spec)), "local", progress=False)
    return work


@needs_openclip
def test_openclip_trains_on_the_export_with_the_documented_commands(work):
    export, train = _documented()
    done = subprocess.run(_argv(export), cwd=work, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    out = work / _flag(export, "--out")
    assert _flag(export, "--unit") == "caption"
    # the export prints the pattern the docs pass as --train-data
    train_data = _flag(train, "--train-data")
    assert f"--train-data '{train_data}'" in done.stdout, done.stdout
    assert "--train-num-samples" not in train  # the count comes from sizes.json
    sizes = json.loads((out / "sizes.json").read_text())
    total = sum(sizes.values())

    tiny = work / "tiny-clip"
    tiny.mkdir()
    (tiny / "open_clip_config.json").write_text(json.dumps(TINY_MODEL))
    argv = _argv(train)
    argv[argv.index("--model") + 1] = f"local-dir:{tiny}"  # the one change (see above)
    offline = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "WANDB_MODE": "disabled"}
    done = subprocess.run(
        argv, cwd=work, env={**os.environ, **offline}, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-4000:]}"

    logs = work / _flag(train, "--logs") / _flag(train, "--name")
    assert (logs / "checkpoints" / "epoch_1.pt").is_file()
    log = (logs / "out.log").read_text()
    assert "train_num_samples: None" in log  # not given: OpenCLIP counted sizes.json
    steps = re.findall(r"Train Epoch: 0 \[\s*(\d+)/(\d+) .*? Loss: ([\d.]+)", log)
    assert steps, log[-3000:]
    batch = int(_flag(train, "--batch-size"))
    seen, per_epoch, loss = steps[-1]
    # OpenCLIP rounds the epoch up to whole batches of sizes.json's total
    assert int(seen) == int(per_epoch) == math.ceil(total / batch) * batch
    assert all(math.isfinite(float(step[2])) for step in steps)
    assert total == _caption_count(work)


def _caption_count(work: Path) -> int:
    from mmdata.catalog import Catalog

    catalog = Catalog(work / "mmdata-demo" / "catalog.duckdb")
    return catalog.query("SELECT count(*) FROM captions WHERE corpus = 'demo'")[1][0][0]


@needs_openclip
def test_openclip_reads_the_sample_count_from_sizes_json(work, tmp_path):
    from open_clip_train.data import get_dataset_size

    for unit in ("image", "caption"):
        out = tmp_path / unit
        total = export_webdataset(
            str(work / "mmdata-demo" / "catalog.duckdb"), "demo", out, unit=unit
        )
        urls = webdataset_urls(out, "demo")
        assert urls == f"{out}/demo-{{00000..00003}}.tar"
        assert get_dataset_size(urls) == (total, 4)
        first_two = f"{out}/demo-{{00000..00001}}.tar"
        sizes = json.loads((out / "sizes.json").read_text())
        assert get_dataset_size(first_two) == (sizes["demo-00000.tar"] + sizes["demo-00001.tar"], 2)


def _webdataset_requirement(dist: str, extra: str = "") -> Requirement:
    for requirement in map(Requirement, requires(dist) or []):
        marker = requirement.marker
        if requirement.name == "webdataset" and (not marker or marker.evaluate({"extra": extra})):
            return requirement
    raise AssertionError(f"{dist}[{extra}] does not ask for webdataset")


def test_the_webdataset_pin_satisfies_img2dataset_and_openclip_training():
    """pyproject.toml's range lies inside what img2dataset and open_clip_torch[training] ask
    for, and the installed version is in it."""
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pin = next(r for r in map(Requirement, project["dependencies"]) if r.name == "webdataset")
    wanted = [_webdataset_requirement("img2dataset")]
    try:
        wanted.append(_webdataset_requirement("open_clip_torch", "training"))
    except PackageNotFoundError:
        pass  # without OpenCLIP only img2dataset's range matters here
    installed = version("webdataset")
    assert installed in pin.specifier, f"webdataset {installed}; mmdata asks for {pin}"
    for candidate in ("0.2.4", "0.2.5", "0.2.48", "0.2.86", "0.2.87", "0.2.111", "0.3.0", "1.0"):
        if candidate in pin.specifier:
            assert all(candidate in r.specifier for r in wanted), (candidate, wanted)
    assert any(c in pin.specifier for c in ("0.2.86", installed))


def test_img2dataset_writes_webdataset_tars_with_the_pinned_version(tmp_path):
    """img2dataset's own downloader, ``output_format="webdataset"`` (its TarWriter), against
    the local test server; webdataset reads the tar back."""
    import webdataset as wds
    from img2dataset import download

    urls = tmp_path / "urls.txt"
    with FaultServer() as server:
        urls.write_text("\n".join(server.url(f"/gen/{n}.jpg") for n in range(4)))
        download(
            url_list=str(urls),
            output_folder=str(tmp_path / "out"),
            output_format="webdataset",
            image_size=32,
            processes_count=1,
            thread_count=2,
            distributor="multiprocessing",
            enable_wandb=False,
        )
    samples = list(wds.WebDataset(str(tmp_path / "out" / "00000.tar"), shardshuffle=False))
    assert len(samples) == 4
    for sample in samples:
        assert sample["jpg"][:2] == b"\xff\xd8"
        assert json.loads(sample["json"])["status"] == "success"
