"""The spine end to end: demo recipe on both executors, resume, on_error policies."""

from __future__ import annotations

import ctypes
import errno
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import ray.data

from mmdata.catalog.store import Catalog
from mmdata.commands.check import check
from mmdata.commands.cli import main
from mmdata.core import io as mmdata_io
from mmdata.engine import recipe as recipes
from mmdata.engine.executors.base import StageError
from mmdata.engine.run import run_recipe
from mmdata.engine.runlock import corpus_lock
from mmdata.engine.sink import ShardAssembler
from tests.cli_process import CLI_MODULE, run_cli
from tests.conftest import demo_recipe, write_recipe

INPUT_ROWS = 64
KEPT_ROWS = 59  # 6 broken rows, one of which only loses a caption


def _run(demo_data, out: Path, executor: str = "local", **overrides):
    path = write_recipe(out / "recipe.yaml", demo_recipe(demo_data, out, **overrides))
    recipe = recipes.load(path)
    return recipe, run_recipe(recipe, executor, progress=False)


def catalog_contents(catalog: Catalog) -> dict:
    """Everything a user can see through SQL, minus run-specific ids and times."""
    queries = {
        "images": "SELECT image_id, split, path, width_px, height_px, format, sha256, "
        "len(captions), gold FROM images ORDER BY image_id",
        "captions": "SELECT image_id, caption_id, text FROM captions ORDER BY caption_id",
        "rejects": "SELECT * FROM rejects ORDER BY image_id, item_id",
        "shards": "SELECT kind, shard_index, path, rows, bytes, sha256, input_rows FROM shards "
        "ORDER BY kind, shard_index",
        "stats": "SELECT step_index, stage, rows_in, rows_out FROM stage_summary",
        "drops": "SELECT step_index, unit, reason, rows FROM drops_summary ORDER BY ALL",
    }
    return {name: catalog.query(q)[1] for name, q in queries.items()}


def assert_every_row_once(catalog: Catalog) -> None:
    kept = catalog.query("SELECT image_id FROM images")[1]
    rejected = catalog.query("SELECT image_id FROM rejects WHERE item_kind IS NULL")[1]
    ids = sorted(r[0] for r in kept + rejected)
    assert ids == sorted(f"coco:{i}" for i in range(1, INPUT_ROWS + 1))


def test_local_run_counts_and_rejects(demo_data, tmp_path):
    recipe, result = _run(demo_data, tmp_path)
    assert (result.shards_total, result.shards_written) == (4, 4)
    catalog = Catalog(recipe.catalog)
    assert_every_row_once(catalog)
    assert catalog.query("SELECT count(*) FROM images")[1] == [(KEPT_ROWS,)]
    reasons = dict(catalog.query("SELECT reason, count(*) FROM rejects GROUP BY reason")[1])
    assert reasons == {
        "image_decode_error": 1,
        "file_not_found": 1,
        "too_small": 1,
        "bad_aspect": 1,
        "no_caption_left": 1,
        "caption_too_short": 2,
        "empty_caption": 2,
    }
    stats = catalog.query("SELECT stage, rows_in, rows_out FROM stage_summary")[1]
    assert stats == [
        ("coco", 64, 64),
        ("read_images", 64, 62),
        ("image_size_filter", 62, 60),
        ("caption_filter", 60, 59),
    ]
    assert not (Path(recipe.output) / "_staging").exists()
    # blank captions are dropped by the source itself, and attributed to it
    blank = catalog.query("SELECT DISTINCT stage FROM rejects WHERE reason = 'empty_caption'")
    assert blank[1] == [("coco",)]
    # captions view: one row per kept caption; gold boxes came along
    n_captions = catalog.query("SELECT sum(len(captions)) FROM images")[1][0][0]
    assert catalog.query("SELECT count(*) FROM captions")[1] == [(n_captions,)]
    assert catalog.query("SELECT count(*) FROM images WHERE len(gold.objects) = 0")[1] == [(0,)]


def test_rerun_of_a_finished_recipe_writes_nothing(demo_data, tmp_path):
    recipe, _ = _run(demo_data, tmp_path)
    before = catalog_contents(Catalog(recipe.catalog))
    _, again = _run(demo_data, tmp_path)
    assert (again.shards_skipped, again.shards_written) == (4, 0)
    assert catalog_contents(Catalog(recipe.catalog)) == before


def test_on_error_raise_names_the_file(demo_data, tmp_path):
    with pytest.raises(
        StageError,
        match=r"read_images: image coco:7 \(.*000000000007.jpg\): "
        r"image_decode_error",
    ):
        _run(demo_data, tmp_path, on_error="raise")
    runs = Catalog(tmp_path / "catalog.duckdb").query("SELECT status, error FROM runs")[1]
    assert runs[0][0] == "failed" and "coco:7" in runs[0][1]


def test_a_stage_exception_becomes_rejects_with_record(demo_data, tmp_path):
    recipe, _ = _run(
        demo_data, tmp_path, imports=["tests.plugin_stages"], stages=[{"test_explode": {}}]
    )
    catalog = Catalog(recipe.catalog)
    assert catalog.query("SELECT count(*) FROM images")[1] == [(0,)]
    rows = catalog.query(
        "SELECT DISTINCT stage, reason, detail FROM rejects WHERE item_kind IS NULL"
    )[1]
    assert rows == [("test_explode", "stage_exception", "RuntimeError: boom")]


@pytest.mark.ray
def test_ray_and_local_give_the_same_catalog(demo_data, tmp_path, ray_session):
    # Same input files and output paths, two catalogs: everything must match.
    local_recipe, _ = _run(demo_data, tmp_path / "a")
    local = catalog_contents(Catalog(local_recipe.catalog))
    os.rename(tmp_path / "a", tmp_path / "a_local")
    ray_recipe, result = _run(demo_data, tmp_path / "a", executor="ray")
    assert result.shards_written == 4
    assert catalog_contents(Catalog(ray_recipe.catalog)) == local


@pytest.mark.ray
def test_ray_with_small_batches_reassembles_shards(demo_data, tmp_path, ray_session, monkeypatch):
    stages = demo_recipe(demo_data, tmp_path)["stages"]
    stages[0]["read_images"]["resources"] = {"batch_size": 5}
    local_recipe, _ = _run(demo_data, tmp_path / "a", stages=stages)
    local = catalog_contents(Catalog(local_recipe.catalog))
    os.rename(tmp_path / "a", tmp_path / "a_local")
    # Ray fuses the stages and coalesces batches into blocks; 2 KB blocks make it hand the
    # driver each shard in many parts, which the assembler must merge in input order.
    monkeypatch.setattr(ray.data.DataContext.get_current(), "target_max_block_size", 2048)
    parts = []
    finish = ShardAssembler._finish
    monkeypatch.setattr(
        ShardAssembler, "_finish", lambda self, i, p: parts.append(len(p)) or finish(self, i, p)
    )
    ray_recipe, _ = _run(demo_data, tmp_path / "a", executor="ray", stages=stages)
    assert min(parts) > 1
    assert catalog_contents(Catalog(ray_recipe.catalog)) == local


@pytest.mark.ray
def test_stateful_stage_runs_in_an_actor_pool(demo_data, tmp_path, ray_session):
    ids = tmp_path / "blocked.txt"
    ids.write_text("coco:2\ncoco:33\n")
    stages = [{"test_blocklist": {"ids_file": str(ids), "resources": {"concurrency": 1}}}]
    recipes_by_executor = {}
    for executor in ("local", "ray"):
        recipe, _ = _run(
            demo_data,
            tmp_path / executor,
            executor=executor,
            stages=stages,
            imports=["tests.plugin_stages"],
        )
        recipes_by_executor[executor] = recipe
    for recipe in recipes_by_executor.values():
        rows = Catalog(recipe.catalog).query(
            "SELECT image_id, stage, reason FROM rejects WHERE item_kind IS NULL ORDER BY image_id"
        )[1]
        assert rows == [
            ("coco:2", "test_blocklist", "blocklisted"),
            ("coco:33", "test_blocklist", "blocklisted"),
        ]


def test_custom_resources_reach_ray_for_tasks_and_actor_pools(demo_data, tmp_path):
    from mmdata.engine.executors.ray import StageActor, _stage_map_args, stage_batch

    ids = tmp_path / "blocked.txt"
    ids.write_text("coco:2\n")
    pinned = {"custom": {"nodeB": 1}}
    stages = [
        {"image_size_filter": {"min_side_px": 64, "resources": pinned}},
        {"test_blocklist": {"ids_file": str(ids), "resources": pinned}},
        {"caption_filter": {}},
    ]
    path = write_recipe(
        tmp_path / "r.yaml",
        demo_recipe(demo_data, tmp_path, stages=stages, imports=["tests.plugin_stages"]),
    )
    recipe = recipes.load(path)
    task, actors, plain = (_stage_map_args(recipe, i, ()) for i in range(3))
    assert (task["fn"], task["resources"]) == (stage_batch, {"nodeB": 1})
    assert (actors["fn"], actors["resources"]) == (StageActor, {"nodeB": 1})
    assert "resources" not in plain
    # the local executor ignores them: the run is the same as without
    result = run_recipe(recipe, "local", progress=False)
    assert result.shards_written == 4


def test_file_uri_output(demo_data, tmp_path):
    recipe, _ = _run(demo_data, tmp_path, output=f"file://{tmp_path}/corpus")
    assert recipe.output == f"{tmp_path}/corpus"
    assert Catalog(recipe.catalog).query("SELECT count(*) FROM images")[1] == [(KEPT_ROWS,)]


# A driver whose Ray Data cuts blocks at 2 KB, so each shard arrives in many parts and the
# driver merges them (at full scale that happens when a shard outgrows Ray's block size).
SMALL_BLOCKS = (
    "import sys, ray.data; from mmdata.commands.cli import main; "
    "ray.data.DataContext.get_current().target_max_block_size = 2048; "
    "sys.exit(main(sys.argv[1:]))"
)


def _cli(
    *args: str, env_extra: dict | None = None, small_blocks: bool = False
) -> subprocess.CompletedProcess:
    """The CLI in its own process group (tests.cli_process), with Ray Data's small
    blocks when ``small_blocks``."""
    entry = ("-c", SMALL_BLOCKS) if small_blocks else CLI_MODULE
    return run_cli(*args, env_extra=env_extra, entry=entry, timeout=300)


@pytest.mark.parametrize("point", ["after_commit", "before_commit", "shard_placed"])
def test_crash_then_resume_does_only_what_is_left(demo_data, tmp_path, point):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    crashed = _cli(
        "run",
        str(path),
        "--executor",
        "local",
        "-q",
        env_extra={"MMDATA_FAULT": f"{point}:2", "MMDATA_COMMIT_MAX_SHARDS": "2"},
    )
    assert crashed.returncode == -9, crashed.stderr  # SIGKILL, like an OOM kill
    catalog = Catalog(tmp_path / "catalog.duckdb")
    # The committer lists whatever shards are queued in one transaction (mmdata.engine.committer),
    # so the count listed depends on timing; the fault points count transactions.
    committed = catalog.query("SELECT count(*) FROM shards WHERE kind = 'data'")[1][0][0]
    damage = {(Path(p.path).name, p.kind) for p in check(catalog).problems}
    if point == "after_commit":  # two transactions, each of one shard or more
        assert 2 <= committed <= 4
    elif point == "before_commit":  # one transaction; the next one's shards are placed
        assert 1 <= committed < 4
        assert any(kind == "orphan" for _, kind in damage)
    else:  # shard 1's data was renamed into place but never listed
        assert committed <= 1
        assert (tmp_path / "corpus" / "data" / "shard-00001.parquet").exists()
        assert ("shard-00001.parquet", "orphan") in damage
    assert {kind for _, kind in damage} <= {"orphan", "staging"}  # listed shards intact
    resumed = _cli("run", str(path), "--executor", "local", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({4 - committed} written now, {committed} already done)" in resumed.stdout
    assert_every_row_once(catalog)
    assert check(catalog).problems == []  # the re-run listed or replaced what was left
    assert catalog.query("SELECT sum(rows_in) FROM stage_stats WHERE step_index = -1")[1] == [
        (INPUT_ROWS,)
    ]
    runs = catalog.query("SELECT status FROM runs ORDER BY run_id")[1]
    assert runs == [("interrupted",), ("finished",)]


@pytest.mark.ray
def test_a_driver_killed_while_merging_parts_then_resume(demo_data, tmp_path, ray_session):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    fault = {"MMDATA_FAULT": "parts_merged:2"}
    crashed = _cli("run", str(path), "--executor", "ray", "-q", env_extra=fault, small_blocks=True)
    assert crashed.returncode == -9, crashed.stderr  # merged file written, parts still there
    catalog = Catalog(tmp_path / "catalog.duckdb")
    damage = {kind for p in check(catalog).problems for kind in [p.kind]}
    assert damage == {"orphan", "staging"}
    listed = catalog.query("SELECT count(*) FROM shards WHERE kind = 'data'")[1][0][0]
    resumed = _cli("run", str(path), "--executor", "ray", "-q", small_blocks=True)
    assert resumed.returncode == 0, resumed.stderr
    assert f"({4 - listed} written now, {listed} already done)" in resumed.stdout
    assert_every_row_once(catalog)
    assert check(catalog).problems == []


@pytest.mark.ray
def test_crash_of_the_ray_driver_then_resume(demo_data, tmp_path, ray_session):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    crashed = _cli(
        "run",
        str(path),
        "--executor",
        "ray",
        "-q",
        env_extra={"MMDATA_FAULT": "after_commit:2", "MMDATA_COMMIT_MAX_SHARDS": "2"},
    )
    assert crashed.returncode == -9, crashed.stderr
    listed = Catalog(tmp_path / "catalog.duckdb").query(
        "SELECT count(*) FROM shards WHERE kind = 'data'"
    )[1][0][0]
    assert 2 <= listed <= 4  # two transactions of one shard or more
    resumed = _cli("run", str(path), "--executor", "ray", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({4 - listed} written now, {listed} already done)" in resumed.stdout
    assert_every_row_once(Catalog(tmp_path / "catalog.duckdb"))
    assert check(Catalog(tmp_path / "catalog.duckdb")).problems == []


def test_a_second_run_into_a_busy_corpus_fails_clearly_and_touches_nothing(
    demo_data, tmp_path, capsys
):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    with corpus_lock(str(tmp_path / "corpus"), "demo"):  # as a live run holds it
        assert main(["run", str(path), "--executor", "local", "-q"]) != 0
        err = capsys.readouterr().err
        assert f"pid {os.getpid()}" in err and "is running a recipe into" in err
        catalog = Catalog(tmp_path / "catalog.duckdb")
        assert not (tmp_path / "corpus" / "data").exists()
    assert main(["run", str(path), "--executor", "local", "-q"]) == 0  # released
    assert catalog.query("SELECT status FROM runs")[1] == [("finished",)]
    assert check(catalog).problems == []


def test_disk_full_during_a_shard_write_fails_clearly_and_the_next_run_completes(
    demo_data, tmp_path, capsys, monkeypatch
):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    write_bytes = mmdata_io.write_bytes

    def full_disk(uri: str, data: bytes) -> None:
        if "/_staging/00001-" in uri:  # shard 1's part: half of it lands, then ENOSPC
            Path(uri).write_bytes(data[: len(data) // 2])
            raise OSError(errno.ENOSPC, "No space left on device", uri)
        write_bytes(uri, data)

    monkeypatch.setattr(mmdata_io, "write_bytes", full_disk)
    assert main(["run", str(path), "--executor", "local", "-q"]) != 0
    err = capsys.readouterr().err
    assert "No space left on device" in err and "/_staging/00001-" in err
    catalog = Catalog(tmp_path / "catalog.duckdb")
    assert catalog.query("SELECT shard_index FROM shards WHERE kind = 'data'")[1] == [(0,)]
    damage = {(Path(p.path).name, p.kind) for p in check(catalog).problems}
    assert {kind for _, kind in damage} == {"staging"}  # the half part: reported, unlisted
    assert catalog.query("SELECT status FROM runs")[1] == [("failed",)]
    monkeypatch.setattr(mmdata_io, "write_bytes", write_bytes)  # space freed
    assert main(["run", str(path), "--executor", "local", "-q"]) == 0
    assert "(3 written now, 1 already done)" in capsys.readouterr().out
    assert_every_row_once(catalog)
    assert check(catalog).problems == []  # the run removed the staged half and redid it


@pytest.mark.ray
def test_a_ray_worker_killed_while_writing_parts_loses_nothing(demo_data, tmp_path, ray_session):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    once = tmp_path / "a-worker-died"
    env = {"MMDATA_FAULT": "worker_write:1", "MMDATA_FAULT_ONCE": str(once)}
    first = _cli("run", str(path), "--executor", "ray", "-q", env_extra=env)
    assert once.exists()  # a worker was SIGKILLed between the two files of a part
    catalog = Catalog(tmp_path / "catalog.duckdb")
    # Ray re-runs the killed task in another worker; the dead worker's half-written part
    # (data file, no rejects file) stays unlisted and goes with the staging folder
    assert first.returncode == 0, first.stderr[-3000:]
    assert "4 written now, 0 already done" in first.stdout
    assert_every_row_once(catalog)
    assert check(catalog).problems == []


def _without_root_overrides() -> None:
    """In the child, before exec: drop the capabilities that let root write anywhere
    (CAP_DAC_OVERRIDE, CAP_DAC_READ_SEARCH, CAP_FOWNER) from the bounding set, so a
    folder with mode 0555 is as shut to the run as to any user's process."""
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in (1, 2, 3):
        if libc.prctl(24, cap, 0, 0, 0) != 0:  # PR_CAPBSET_DROP
            raise OSError(ctypes.get_errno(), "prctl(PR_CAPBSET_DROP)")


UNPRIVILEGED = _without_root_overrides if os.geteuid() == 0 else None  # as any user is


def _run_unprivileged(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "mmdata.commands.cli", *args],
        capture_output=True,
        text=True,
        timeout=300,
        preexec_fn=UNPRIVILEGED,
    )


def test_permission_denied_while_placing_shards_fails_clearly_and_the_next_run_completes(
    demo_data, tmp_path
):
    shut = tmp_path / "corpus" / "data"  # where finished shards are moved to
    shut.mkdir(parents=True)
    shut.chmod(0o555)
    probe = subprocess.run(
        [sys.executable, "-c", f"open({str(shut / 'probe')!r}, 'w')"],
        capture_output=True,
        preexec_fn=UNPRIVILEGED,
    )
    if probe.returncode == 0:
        pytest.skip("this process may write into a 0555 folder (root that cannot drop caps)")
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    denied = _run_unprivileged("run", str(path), "--executor", "local", "-q")
    assert denied.returncode != 0, denied.stderr
    err = denied.stderr.strip()
    assert len(err.splitlines()) == 1 and "Permission denied" in err, err
    assert str(shut) in err
    catalog = Catalog(tmp_path / "catalog.duckdb")
    assert catalog.query("SELECT count(*) FROM shards")[1] == [(0,)]  # nothing listed
    assert catalog.query("SELECT status FROM runs")[1] == [("failed",)]
    assert {p.kind for p in check(catalog).problems} == {"staging"}  # parts kept, unlisted

    shut.chmod(0o755)  # the operator fixes the permissions
    resumed = _run_unprivileged("run", str(path), "--executor", "local", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "(4 written now, 0 already done)" in resumed.stdout
    assert_every_row_once(catalog)
    assert check(catalog).problems == []


def test_an_unreachable_ray_cluster_is_one_clear_line(monkeypatch):
    # A GCS port that accepts connections but a Ray that refuses (as a wrong version
    # would): Ray takes minutes to give up, so its refusal is simulated; what is tested is
    # that it reaches the user as one line
    import ray

    from mmdata.engine.executors import ray as ray_executor

    def refuse(**kwargs):
        raise ConnectionError(f"Failed to connect to Ray cluster at {kwargs['address']}")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", refuse)
    with socket.create_server(("127.0.0.1", 0)) as listening:
        address = f"127.0.0.1:{listening.getsockname()[1]}"
        with pytest.raises(ray_executor.ClusterError) as info:
            ray_executor.init_ray(address)
    assert str(info.value).startswith(f"cannot reach the Ray cluster at {address}: Failed")


def _dead_port() -> int:
    """A port that nothing listens on: bound once, then closed."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_address_where_nothing_listens_fails_within_seconds(monkeypatch):
    import ray

    from mmdata.engine.executors import ray as ray_executor

    def must_not_run(**kwargs):
        raise AssertionError("ray.init retries a dead address for minutes; it must not run")

    monkeypatch.setattr(ray, "is_initialized", lambda: False)
    monkeypatch.setattr(ray, "init", must_not_run)
    port = _dead_port()
    for address in (f"127.0.0.1:{port}", f"ray://127.0.0.1:{port}"):
        start = time.monotonic()
        with pytest.raises(ray_executor.ClusterError) as info:
            ray_executor.init_ray(address)
        assert time.monotonic() - start < 5
        assert str(info.value).startswith(
            f"cannot reach the Ray cluster at {address}: Connection refused"
        )
    monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")  # the variable is checked too
    with pytest.raises(ray_executor.ClusterError, match="Connection refused"):
        ray_executor.init_ray(None)


@pytest.mark.parametrize(
    ("address", "endpoint"),
    [
        ("10.1.2.3:6379", ("10.1.2.3", 6379)),
        ("head.example:6380", ("head.example", 6380)),
        ("[::1]:6379", ("::1", 6379)),
        ("ray://10.1.2.3:10001", ("10.1.2.3", 10001)),
        ("auto", None),  # Ray resolves these itself
        ("local", None),
        ("10.1.2.3", None),  # no port: left to Ray
        ("10.1.2.3:99999", None),
    ],
)
def test_gcs_endpoint_of_an_address(address, endpoint):
    from mmdata.engine.executors.ray import gcs_endpoint

    assert gcs_endpoint(address) == endpoint


def test_run_with_a_dead_address_is_one_line_within_seconds(demo_data, tmp_path):
    path = write_recipe(tmp_path / "recipe.yaml", demo_recipe(demo_data, tmp_path))
    address = f"127.0.0.1:{_dead_port()}"
    start = time.monotonic()
    failed = _cli("run", str(path), "--executor", "ray", "--address", address, "-q")
    elapsed = time.monotonic() - start
    assert failed.returncode != 0
    (line,) = failed.stderr.strip().splitlines()  # one line, no traceback
    assert line.startswith(f"mmdata run: error: cannot reach the Ray cluster at {address}: ")
    assert "Connection refused" in line
    # a CLI process (imports included) that gives up in seconds, not Ray's minutes
    assert elapsed < 30, elapsed
    runs = Catalog(tmp_path / "catalog.duckdb").query("SELECT status, error FROM runs")[1]
    assert [status for status, _ in runs] == ["failed"]
    assert address in runs[0][1]
