"""Every command in the README runs, as written, after the demo: a test for each bash line,
each runnable Python block, and each file the README tells the reader to create.

The two set-up commands of the first block are not run here (they install): the test
command is the one CI runs (.ci/run, checked below), and the demo command is what the
session's ``demo_out`` fixture runs (with its training cut to 8 steps;
tests/train/test_loop.py runs the full training proof). Placeholder data paths such as
``/data/coco`` are pointed at small real samples of each format."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATA, ROOT
from tests.test_recipes_shipped import _layout

README = ROOT / "README.md"
BLOCK = re.compile(r"^```(\w+)\n(.*?)^```", re.S | re.M)
PROGRAMS = {
    ".venv/bin/mmdata": [sys.executable, "-m", "mmdata.commands.cli"],
    ".venv/bin/python": [sys.executable],
}


def _blocks() -> list[tuple[str, str]]:
    return BLOCK.findall(README.read_text())


def _lines(body: str) -> list[str]:
    """Commands of a bash block: continuation lines joined, comments and blanks dropped."""
    joined = body.replace("\\\n", " ")
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def _argv(line: str, variables: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """The environment and argv of a README command line, placeholders resolved."""
    tokens = shlex.split(line, comments=True)
    env = {}
    while tokens and re.fullmatch(r"[A-Z_][A-Z0-9_]*=.*", tokens[0]):
        name, _, value = tokens.pop(0).partition("=")
        env[name] = variables.get(name, value)
    assert tokens and tokens[0] in PROGRAMS, f"README command the test cannot run: {line}"
    return env, PROGRAMS[tokens[0]] + tokens[1:]


def test_the_first_screen_gives_the_two_commands_and_ci_runs_the_second():
    lang, body = _blocks()[0]
    demo, tests = _lines(body)
    assert lang == "bash"
    setup = 'python3 -m venv .venv && .venv/bin/pip install -e ".[dev]"'
    assert demo == f"{setup} && .venv/bin/mmdata demo"
    # FACTUAL's evaluator (sg-eval's tests) and MosaicML Streaming (bench/stream.py's peer)
    # without their dependencies: they would replace the pinned torch, numpy, transformers.
    evaluator = ".venv/bin/pip install --no-deps factualscenegraph==0.7.3 mosaicml-streaming==0.13.0"
    assert tests == f"{setup} && {evaluator} && .venv/bin/python -m pytest"
    ci = (ROOT / ".ci" / "run").read_text().strip().splitlines()[-1]
    assert ci == tests
    assert README.read_text().index(tests) < 1500  # on the first screen


def _coco_with_instances(folder: Path) -> None:
    """The real captions excerpt and instances sample, the first captioned image renamed
    to the instances' image so the two files are of one split, as COCO's are."""
    captions = json.loads((DATA / "coco" / "coco_captions_val2017_excerpt.json").read_text())
    instances = DATA / "coco" / "coco_instances_val2017_1img_sample.json"
    image = json.loads(instances.read_text())["images"][0]
    first = captions["images"][0]
    for annotation in captions["annotations"]:
        if annotation["image_id"] == first["id"]:
            annotation["image_id"] = image["id"]
    first.update(id=image["id"], width=image["width"], height=image["height"])
    (folder / "captions_train2017.json").write_text(json.dumps(captions))
    (folder / "instances_train2017.json").write_bytes(instances.read_bytes())


@pytest.mark.ray
def test_every_readme_command_runs(demo_out, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "mmdata-demo").symlink_to(demo_out)
    (work / "recipes").symlink_to(ROOT / "recipes")
    variables = _layout(tmp_path / "data")
    _coco_with_instances(Path(variables["COCO_DIR"]) / "annotations")
    ran = []
    for lang, body in _blocks()[1:]:
        first = body.splitlines()[0] if body else ""
        named = re.fullmatch(r"# (\S+\.(py|yaml))(:.*)?", first)
        if named:  # a file the README tells the reader to write
            (work / named.group(1)).write_text(body)
            continue
        if lang == "python":
            commands = [({}, [sys.executable, "-c", body])]
        elif lang == "bash":
            commands = [_argv(line, variables) for line in _lines(body)]
        else:
            continue  # yaml fragments and text (the cluster commands, see the README)
        for env, argv in commands:
            done = subprocess.run(
                argv, cwd=work, env={**os.environ, **env}, capture_output=True, text=True,
                timeout=600,
            )  # fmt: skip
            assert done.returncode == 0, f"{argv}\n{done.stdout[-2000:]}\n{done.stderr[-3000:]}"
            ran.append((argv, done.stdout))
    assert len(ran) >= 20
    outputs = {" ".join(a[3:5]): out for a, out in ran if a[1:3] == ["-m", "mmdata.commands.cli"]}
    assert "0 written now, 4 already done" in outputs["run mmdata-demo/demo.yaml"]
    assert "max_captions: Drop images with more than" in outputs["stages --imports"]
    assert (demo_out / "report-demo.html").stat().st_size > 100_000
    assert (demo_out / "coco-13.html").exists()
    assert (demo_out / "train-tiny" / "summary.json").exists()
    stream = next(out for a, out in ran if a[1] == "-c")
    assert "(10, 2048)" in stream
    max2 = next(out for a, out in ran if "demo_max2" in " ".join(a))
    assert "too_many_captions" in max2
