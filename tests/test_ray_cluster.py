"""A real 2-node Ray cluster: the recipes run with ``--address`` as on a multi-node cluster.

Both nodes run on this machine, inside fresh network, PID and mount namespaces
(``unshare``), where only loopback exists: Ray's cluster mode connects to the nodes'
own address, which these test machines block outside a namespace. tests/cluster/ starts
the head (1 CPU, custom resource ``head``) and node B (1 CPU, ``nodeB``), runs the steps
below through the ``mmdata`` CLI, and writes what it saw; the PID namespace ends every
process of the cluster when it exits. One cluster serves every test here (a start costs
seconds): the demo recipe against the local executor's catalog, a stage pinned to a
custom resource, and node B killed in the middle of a run, then the re-run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from mmdata.catalog.store import Catalog
from mmdata.commands.check import check
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from tests.cluster.session import where_events
from tests.conftest import ROOT, demo_recipe, write_recipe
from tests.test_run import assert_every_row_once, catalog_contents

pytestmark = pytest.mark.ray

SCRIPT = Path(__file__).parent / "cluster" / "run_in_cluster.sh"
NAMESPACES = ["unshare", "--net", "--pid", "--fork", "--kill-child", "--mount-proc"]
SESSION_LIMIT_S = 420  # the whole cluster session; a hung cluster cannot hang the suite
PLUGINS = ["tests.plugin_stages"]


def _namespaces_problem() -> str | None:
    """Why the namespaces cannot be made here, or None when they can."""
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return "needs unshare (util-linux) and ip (iproute2)"
    try:
        probe = subprocess.run(
            [*NAMESPACES, "ip", "link", "set", "lo", "up"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except subprocess.TimeoutExpired:
        return "unshare did not answer in 30 s"
    if probe.returncode != 0:
        return f"cannot create network and PID namespaces: {probe.stderr.strip()}"
    return None


def _cli(*args: str) -> list[str]:
    return [sys.executable, "-m", "mmdata.commands.cli", *args]


def _demo(demo_data: dict, out: Path) -> Path:
    """The tests' demo recipe with the scene-graph stage (an actor pool on Ray). The
    shipped recipes/demo.yaml also runs the regions detector, which on 2 shared cores takes
    minutes per run, too long to run twice in the default suite."""
    spec = demo_recipe(demo_data, out)
    spec["stages"].append({"scene_graph": {}})
    return write_recipe(out / "demo.yaml", spec)


def _pinned(demo_data: dict, out: Path) -> Path:
    """Two stages that log where each batch ran: one pinned to node B, one to the head."""
    stages = [
        {
            "test_where": {
                "log_dir": str(out / f"where-{node}"),
                "resources": {"custom": {node: 1}, "batch_size": 8},
            }
        }
        for node in ("nodeB", "head")
    ]
    spec = demo_recipe(demo_data, out, stages=stages, imports=PLUGINS)
    return write_recipe(out / "pinned.yaml", spec)


def _slow(demo_data: dict, out: Path) -> Path:
    """The demo recipe with a stage that sleeps 1 s per batch of 4 rows: 16 batches, 8 shards,
    spread over both nodes, so node B can be killed while it holds a batch."""
    spec = demo_recipe(demo_data, out, shard_rows=8, imports=PLUGINS)
    spec["stages"].append(
        {
            "test_where": {
                "log_dir": str(out / "where"),
                "seconds": 1.0,
                "resources": {"batch_size": 4},
            }
        }
    )
    return write_recipe(out / "slow.yaml", spec)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, demo_data) -> dict:
    """One cluster session for the module: runs every step, returns what it saw."""
    problem = _namespaces_problem()
    if problem:
        pytest.skip(f"no real Ray cluster: {problem}")
    base = tmp_path_factory.mktemp("cluster")
    # the same recipe, run by the local executor into the same paths first
    demo = _demo(demo_data, base / "demo")
    run_recipe(recipes.load(demo), "local", progress=False)
    local = catalog_contents(Catalog(base / "demo" / "catalog.duckdb"))
    os.rename(base / "demo", base / "demo-local")
    demo = _demo(demo_data, base / "demo")

    pinned, slow = _pinned(demo_data, base / "pinned"), _slow(demo_data, base / "slow")
    on_cluster = ["--executor", "ray", "--address", "{address}", "-q"]
    steps = [
        {"name": "pinned", "argv": _cli("run", str(pinned), *on_cluster), "timeout": 120},
        {"name": "demo", "argv": _cli("run", str(demo), *on_cluster), "timeout": 180},
        {
            "name": "killed",
            "argv": _cli("run", str(slow), *on_cluster),
            "timeout": 150,
            "kill_node_b": {"log_dir": str(base / "slow" / "where")},
        },
        {"name": "rerun", "argv": _cli("run", str(slow), *on_cluster), "timeout": 120},
    ]
    # Ray's sockets live under the scratch folder: keep its path short (108-byte limit)
    scratch = Path(tempfile.mkdtemp(prefix="mmrc-"))
    plan = {"out": str(base / "session"), "scratch": str(scratch), "steps": steps}
    (base / "plan.json").write_text(json.dumps(plan))
    env = {**os.environ, "MMDATA_CLUSTER_PYTHON": sys.executable}
    command = ["timeout", "--kill-after=10", str(SESSION_LIMIT_S), *NAMESPACES]
    try:
        done = subprocess.run(
            [*command, "bash", str(SCRIPT), str(base / "plan.json")],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=SESSION_LIMIT_S + 30,
        )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results_file = base / "session" / "results.json"
    assert results_file.exists(), f"exit {done.returncode}: {done.stderr[-3000:]}"
    results = json.loads(results_file.read_text())
    assert "error" not in results, (results["error"], done.stderr[-3000:])
    results["base"], results["local"] = base, local
    return results


def _step(cluster: dict, name: str) -> dict:
    assert name in cluster["steps"], f"step {name!r} did not run (the session's time ran out?)"
    return cluster["steps"][name]


def _ok(step: dict) -> None:
    assert not step["timed_out"], step["stderr"][-3000:]
    assert step["returncode"] == 0, step["stderr"][-3000:]


def test_the_cluster_has_two_nodes_on_loopback(cluster):
    nodes = cluster["nodes"]
    assert nodes["head"] != nodes["b"]
    assert [n["ip"] for n in nodes["alive"]] == ["127.0.0.1", "127.0.0.1"]
    assert {n["resources"]["CPU"] for n in nodes["alive"]} == {1.0}


def test_the_demo_recipe_on_the_cluster_gives_the_local_catalog(cluster):
    step = _step(cluster, "demo")
    _ok(step)
    assert "4 written now, 0 already done" in step["stdout"]
    catalog = Catalog(cluster["base"] / "demo" / "catalog.duckdb")
    # images, captions, rejects by reason, shard files (sha256) and stats: all the same
    assert catalog_contents(catalog) == cluster["local"]
    assert_every_row_once(catalog)
    assert check(catalog).problems == []
    runs = catalog.query("SELECT executor, status FROM runs")[1]
    assert runs == [("ray", "finished")]


def test_a_stage_pinned_to_a_custom_resource_runs_only_on_that_node(cluster):
    _ok(_step(cluster, "pinned"))
    base, nodes = cluster["base"] / "pinned", cluster["nodes"]
    catalog = Catalog(base / "catalog.duckdb")
    assert_every_row_once(catalog)
    kept = sorted(row[0] for row in catalog.query("SELECT image_id FROM images")[1])
    on_b, on_head = (
        where_events(base / "where-nodeB", "begin"),
        where_events(base / "where-head", "begin"),
    )
    # every kept row went through each pinned stage once, each batch on its own node only
    for batches in (on_b, on_head):
        assert sorted(i for b in batches for i in b["ids"]) == kept
    assert {b["node"] for b in on_b} == {nodes["b"]}
    assert {b["node"] for b in on_head} == {nodes["head"]}


def test_a_worker_node_killed_mid_run_then_the_rerun_has_every_row_once(cluster):
    killed, rerun = _step(cluster, "killed"), _step(cluster, "rerun")
    nodes, base = cluster["nodes"], cluster["base"] / "slow"
    kill = killed.get("kill")
    assert kill, f"node B never began a batch: {killed['stderr'][-2000:]}"
    assert kill["processes_killed"] >= 2  # the raylet and at least the worker under it
    assert kill["batches_ended"] < 16, kill  # killed in the middle of the run
    began, ended = where_events(base / "where", "begin"), where_events(base / "where", "end")
    ended_on_b = {i for e in ended if e["node"] == nodes["b"] for i in e["ids"]}
    lost = {i for e in began if e["node"] == nodes["b"] for i in e["ids"]} - ended_on_b
    assert lost, "node B was killed while it held no batch"
    assert not killed["timed_out"], killed["stderr"][-3000:]
    catalog = Catalog(base / "catalog.duckdb")
    runs = catalog.query("SELECT status, error FROM runs ORDER BY run_id")[1]
    if killed["returncode"] == 0:
        # Ray ran the batch that died with node B again, on the head, and the run finished
        assert "8 written now, 0 already done" in killed["stdout"]
        redone = {
            i
            for e in ended
            if e["node"] == nodes["head"] and e["time"] > kill["at_time"]
            for i in e["ids"]
        }
        assert lost <= redone
        assert "0 written now, 8 already done" in rerun["stdout"]
    else:  # a clean failure: an error line, no traceback, the run marked failed
        assert "Traceback" not in killed["stderr"]
        assert killed["stderr"].strip().splitlines()[-1].startswith("mmdata run: error: ")
        assert runs[0][0] == "failed"
    _ok(rerun)
    first = "finished" if killed["returncode"] == 0 else "failed"
    assert [status for status, _ in runs] == [first, "finished"]
    assert_every_row_once(catalog)
    assert check(catalog).problems == []


@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"), reason="needs root")
def test_without_the_privilege_to_make_namespaces_the_cluster_tests_skip_and_say_why(
    monkeypatch,
):
    # the probe as an unprivileged user runs it: unshare is refused
    nobody = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
    monkeypatch.setattr(sys.modules[__name__], "NAMESPACES", [*nobody, *NAMESPACES])
    problem = _namespaces_problem()
    assert problem is not None
    assert problem.startswith("cannot create network and PID namespaces: unshare")
    assert "Operation not permitted" in problem
