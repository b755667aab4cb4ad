"""Inside the namespaces: a 2-node Ray cluster on loopback, then the commands of a plan.

Run by run_in_cluster.sh (PID 1 of fresh network, PID and mount namespaces)::

    python -m tests.cluster.session PLAN.json

The plan (JSON) names ``out`` (results.json and the commands' output go there), ``scratch``
(a short path: HOME with the cluster's token, Ray's temporary files and sockets) and
``steps``, each ``{"name", "argv", "timeout"}`` with ``{address}`` in argv replaced by the
head's address. A step may also hold ``kill_node_b: {"log_dir": ...}``: as soon as a
``test_where`` stage logs in ``log_dir`` that a batch began on node B, node B's raylet and
every process under it (its workers and agents) are SIGKILLed, as if the machine died.

The head has 1 CPU and the custom resource ``head``; node B has 1 CPU and ``nodeB``.
results.json: the node ids, and for each step its exit status, seconds, output tails and
what the kill saw.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

GCS_PORT = 6380
NODE_B_RAYLET_PORT = 46123  # fixed, so node B's raylet is found by its command line
ADDRESS = f"127.0.0.1:{GCS_PORT}"
OBJECT_STORE_BYTES = 200 * 1024 * 1024


def main(plan_path: str) -> int:
    plan = json.loads(Path(plan_path).read_text())
    out = Path(plan["out"])
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"address": ADDRESS, "steps": {}}
    try:
        env = _cluster_env(Path(plan["scratch"]))
        results["start_s"] = _start_cluster(env, out)
        import ray

        ray.init(address=ADDRESS, configure_logging=False, log_to_driver=False)
        results["nodes"] = _wait_for_nodes(ray, 2, timeout=90)
        for step in plan["steps"]:
            results["steps"][step["name"]] = _run_step(ray, step, env, out, results["nodes"])
            _save(out, results)
        results["nodes_at_end"] = _alive(ray)
    except Exception as exc:  # noqa: BLE001 - the test reads what went wrong from the file
        results["error"] = f"{type(exc).__name__}: {exc}"
    _save(out, results)
    return 0


def _save(out: Path, results: dict) -> None:
    (out / "results.tmp").write_text(json.dumps(results, indent=1))
    (out / "results.tmp").rename(out / "results.json")


def _cluster_env(scratch: Path) -> dict[str, str]:
    """Every process of the cluster and every driver: token auth, a private HOME for the
    token, Ray's files under ``scratch`` (never the machine's /tmp/ray)."""
    (scratch / "home").mkdir(parents=True, exist_ok=True)
    (scratch / "tmp").mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "HOME": str(scratch / "home"),
        "RAY_AUTH_MODE": "token",
        "RAY_TMPDIR": str(scratch / "tmp"),
        "RAY_USAGE_STATS_ENABLED": "0",
        "RAY_ADDRESS": ADDRESS,
    }
    os.environ.update(env)  # this process is a driver too (it asks for the nodes)
    return env


def _ray_cli() -> str:
    beside = Path(sys.executable).parent / "ray"
    return str(beside) if beside.exists() else "ray"


def _start_cluster(env: dict[str, str], out: Path) -> float:
    start = time.monotonic()
    ray = _ray_cli()
    common = [
        "--num-cpus=1",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--disable-usage-stats",
    ]
    commands = [
        [ray, "get-auth-token", "--generate"],
        [ray, "start", "--head", f"--port={GCS_PORT}", "--include-dashboard=false",
         "--resources=" + json.dumps({"head": 1}), *common],
        [ray, "start", f"--address={ADDRESS}", f"--node-manager-port={NODE_B_RAYLET_PORT}",
         "--resources=" + json.dumps({"nodeB": 1}), *common],
    ]  # fmt: skip
    with (out / "cluster-start.log").open("w") as log:
        for argv in commands:
            log.write(f"$ {' '.join(argv)}\n")
            log.flush()
            done = subprocess.run(argv, env=env, stdout=log, stderr=log, timeout=120)
            if done.returncode != 0:
                raise RuntimeError(f"{' '.join(argv[:3])} exited {done.returncode}")
    return round(time.monotonic() - start, 1)


def _alive(ray: Any) -> list[dict]:
    return [
        {
            "id": n["NodeID"],
            "ip": n["NodeManagerAddress"],
            "raylet_port": n["NodeManagerPort"],
            "resources": n["Resources"],
        }
        for n in ray.nodes()
        if n["Alive"]
    ]


def _wait_for_nodes(ray: Any, count: int, timeout: float) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        alive = _alive(ray)
        if len(alive) >= count:
            break
        if time.monotonic() > deadline:
            raise RuntimeError(f"{len(alive)} of {count} nodes alive after {timeout} s")
        time.sleep(0.5)
    by_resource = {name: n for n in alive for name in ("head", "nodeB") if name in n["resources"]}
    return {"head": by_resource["head"]["id"], "b": by_resource["nodeB"]["id"], "alive": alive}


def _run_step(ray: Any, step: dict, env: dict, out: Path, nodes: dict) -> dict:
    argv = [a.replace("{address}", ADDRESS) for a in step["argv"]]
    name = step["name"]
    stdout, stderr = out / f"{name}.stdout", out / f"{name}.stderr"
    kill = step.get("kill_node_b")
    result: dict[str, Any] = {"argv": argv}
    start = time.monotonic()
    with stdout.open("w") as so, stderr.open("w") as se:
        proc = subprocess.Popen(argv, env=env, stdout=so, stderr=se, start_new_session=True)
        deadline = start + step.get("timeout", 120)
        while proc.poll() is None and time.monotonic() < deadline:
            if kill and "kill" not in result:
                began = where_events(Path(kill["log_dir"]), "begin")
                if any(e["node"] == nodes["b"] for e in began):
                    result["kill"] = _kill_node_b(ray, nodes["b"], kill["log_dir"], start)
            if kill and "kill" in result and "node_b_dead_after_s" not in result["kill"]:
                if nodes["b"] not in {n["id"] for n in _alive(ray)}:
                    result["kill"]["node_b_dead_after_s"] = round(
                        time.monotonic() - start - result["kill"]["at_s"], 1
                    )
            time.sleep(0.2)
        result["timed_out"] = proc.poll() is None
        if result["timed_out"]:
            os.killpg(proc.pid, signal.SIGKILL)
        result["returncode"] = proc.wait()
    result["seconds"] = round(time.monotonic() - start, 1)
    result["stdout"] = stdout.read_text()[-4000:]
    result["stderr"] = stderr.read_text()[-6000:]
    return result


def where_events(log_dir: Path, event: str) -> list[dict]:
    """The ``begin`` or ``end`` records of the ``test_where`` stages that logged in
    ``log_dir`` (tests/plugin_stages.py)."""
    events = []
    for path in sorted(log_dir.glob("where-*.jsonl")):
        for line in path.read_text().splitlines():
            if line.endswith("}"):  # a line being written is not read yet
                record = json.loads(line)
                if record["event"] == event:
                    events.append(record)
    return events


def _kill_node_b(ray: Any, node_b: str, log_dir: str, start: float) -> dict:
    """SIGKILL node B's raylet and every process under it, as if its machine died."""
    raylet = _raylet_pid(NODE_B_RAYLET_PORT)
    victims = [raylet, *_descendants(raylet)]
    for pid in victims:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return {
        "at_s": round(time.monotonic() - start, 1),
        "at_time": time.time(),
        "raylet_pid": raylet,
        "processes_killed": len(victims),
        "batches_begun_on_b": sum(
            e["node"] == node_b for e in where_events(Path(log_dir), "begin")
        ),
        "batches_ended": len(where_events(Path(log_dir), "end")),
    }


def _processes() -> dict[int, tuple[int, list[str]]]:
    """pid -> (parent pid, command line), from this PID namespace's /proc."""
    table = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue  # ended meanwhile
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        table[int(entry.name)] = (ppid, [c.decode(errors="replace") for c in cmdline if c])
    return table


def _raylet_pid(port: int) -> int:
    for pid, (_, cmdline) in _processes().items():
        if cmdline and cmdline[0].endswith("raylet") and f"--node_manager_port={port}" in cmdline:
            return pid
    raise RuntimeError(f"no raylet with --node_manager_port={port} in this namespace")


def _descendants(root: int) -> list[int]:
    table = _processes()
    found, frontier = [], [root]
    while frontier:
        parent = frontier.pop()
        children = [pid for pid, (ppid, _) in table.items() if ppid == parent]
        found += children
        frontier += children
    return found


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
