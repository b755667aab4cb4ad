"""A web recipe end to end: download + run-wide dedup, crash, resume, same corpus."""

from __future__ import annotations

import pytest

from mmdata.catalog.store import Catalog
from mmdata.demo import web as demo_web
from mmdata.demo.webserver import FaultServer
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from tests.conftest import write_recipe
from tests.test_run import _cli

#: The demo's rows whose fate depends on a row in an earlier shard (shard_rows 6).
CROSS_SHARD = {
    "url_list:12": "duplicate_url",  # /gen/2.jpg again; the first is in shard 0
    "url_list:13": "duplicate_image",  # same bytes as /gen/3.jpg
    "url_list:14": "near_duplicate",  # /gen/4.jpg re-encoded at quality 30
}


@pytest.fixture(scope="module")
def server():
    with FaultServer(slow_s=1.0) as srv:
        yield srv


def web_recipe(server: FaultServer, out) -> dict:
    urls = demo_web.write_url_list(out, f"http://127.0.0.1:{server.server_port}")
    return {
        "name": "web",
        "source": {"url_list": {"path": str(urls)}},
        "stages": [
            {"url_dedup": {}},
            {
                "download": {
                    "timeout_s": 2,
                    "retries": 1,
                    "backoff_s": 0.05,
                    "allowed_networks": ["127.0.0.1/32"],
                    "resize_mode": "keep_ratio",
                    "image_size": 128,
                }
            },
            {"exact_dedup": {}},
            {"near_dedup": {}},
        ],
        "output": str(out / "corpus"),
        "catalog": str(out / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 6,
    }


def outcome(catalog: Catalog) -> tuple[list, list]:
    kept = catalog.query("SELECT image_id, sha256 FROM images ORDER BY image_id")[1]
    rejected = catalog.query(
        "SELECT image_id, stage, reason FROM rejects WHERE item_kind IS NULL ORDER BY image_id"
    )[1]
    return kept, rejected


def test_web_recipe_rejects_every_fault_and_dedups_across_shards(server, tmp_path):
    recipe = recipes.load(write_recipe(tmp_path / "web.yaml", web_recipe(server, tmp_path)))
    run_recipe(recipe, "local", progress=False)
    kept, rejected = outcome(Catalog(recipe.catalog))
    reasons = {image_id: reason for image_id, _, reason in rejected}
    assert {k: reasons.get(k) for k in CROSS_SHARD} == CROSS_SHARD
    assert len(kept) + len(rejected) == len(demo_web.rows())
    assert len({sha for _, sha in kept}) == len(kept)


def test_crash_then_resume_keeps_dedup_across_committed_shards(server, tmp_path):
    reference_dir, crash_dir = tmp_path / "reference", tmp_path / "crash"
    reference_dir.mkdir()
    crash_dir.mkdir()
    reference = recipes.load(
        write_recipe(reference_dir / "web.yaml", web_recipe(server, reference_dir))
    )
    run_recipe(reference, "local", progress=False)
    path = write_recipe(crash_dir / "web.yaml", web_recipe(server, crash_dir))
    crashed = _cli(
        "run",
        str(path),
        "--executor",
        "local",
        "-q",
        env_extra={"MMDATA_FAULT": "after_commit:2", "MMDATA_COMMIT_MAX_SHARDS": "1"},
    )
    assert crashed.returncode == -9, crashed.stderr
    resumed = _cli("run", str(path), "--executor", "local", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert "(3 written now, 2 already done)" in resumed.stdout
    assert outcome(Catalog(crash_dir / "catalog.duckdb")) == outcome(Catalog(reference.catalog))


def test_run_wide_stage_refuses_concurrency_above_one(server, tmp_path):
    recipe = web_recipe(server, tmp_path)
    recipe["stages"][2] = {"exact_dedup": {"resources": {"concurrency": 4}}}
    with pytest.raises(recipes.RecipeError, match="concurrency must be 1"):
        recipes.load(write_recipe(tmp_path / "web.yaml", recipe))
