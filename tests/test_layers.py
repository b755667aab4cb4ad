"""Layer runs: a recipe with ``layer_of`` adds columns to a corpus, one file per base
shard, row for row, without rewriting the base's shards."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mmdata.catalog.store import Catalog, CatalogError
from mmdata.commands.check import check
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from mmdata.report.summary import summarize
from mmdata.stream.stream import ShardStream
from tests.cli_process import run_cli
from tests.conftest import demo_recipe, write_recipe

PLUGINS = ["tests.plugin_stages"]
STAGES = [{"test_caption_chars": {}}, {"test_chars_total": {"error_suffix": "7"}}]


def layer_recipe(out: Path, name: str = "chars", **overrides) -> dict:
    recipe = {
        "name": name,
        "layer_of": "demo",
        "imports": PLUGINS,
        "stages": STAGES,
        "output": str(out / name),
        "catalog": str(out / "catalog.duckdb"),
    }
    recipe.update(overrides)
    return recipe


@pytest.fixture
def base(demo_data, tmp_path) -> Catalog:
    """The demo corpus (4 shards), run locally into ``tmp_path``."""
    recipe = recipes.load(write_recipe(tmp_path / "base.yaml", demo_recipe(demo_data, tmp_path)))
    run_recipe(recipe, "local", progress=False)
    return Catalog(recipe.catalog)


def run_layer(out: Path, executor: str = "local", **overrides):
    recipe = recipes.load(write_recipe(out / "layer.yaml", layer_recipe(out, **overrides)))
    return recipe, run_recipe(recipe, executor, progress=False)


def listed(catalog: Catalog, layer: str, kind: str = "data") -> list[tuple]:
    return catalog.query(
        "SELECT shard_index, path, rows, sha256 FROM shards WHERE layer = ? AND kind = ? "
        "ORDER BY shard_index",
        [layer, kind],
    )[1]


def test_a_layer_run_writes_one_file_per_base_shard_row_for_row(base, tmp_path):
    before = base.query("SELECT * FROM shards ORDER BY layer, kind, shard_index")[1]
    recipe, result = run_layer(tmp_path)
    assert (result.corpus, result.layer, result.shards_written) == ("demo", "chars", 4)
    base_shards, layer_shards = listed(base, "base"), listed(base, "chars")
    assert [s[0] for s in layer_shards] == [0, 1, 2, 3]
    errors = 0
    for (index, base_path, rows, _), (_, path, layer_rows, _) in zip(base_shards, layer_shards):
        assert path == str(tmp_path / "chars" / "data" / f"shard-{index:05d}.parquet")
        stored = pq.read_table(base_path, columns=["image_id", "captions"]).to_pylist()
        layer = pq.read_table(path)
        assert layer.schema.names == [
            "image_id",
            "caption_chars",
            "chars_total",
            "status",
            "reason",
        ]
        assert layer.schema.metadata[b"mmdata.schema_version"] == b"1"
        assert layer.num_rows == rows == layer_rows
        for row, got in zip(stored, layer.to_pylist()):
            assert got["image_id"] == row["image_id"]  # same order: zip by position
            if row["image_id"].endswith("7"):  # the error rows keep their place
                errors += 1
                assert (got["status"], got["reason"]) == ("error", "unlucky_id")
                assert got["caption_chars"] is None and got["chars_total"] is None
            else:
                chars = [len(c["text"]) for c in row["captions"]]
                assert got["caption_chars"] == chars and got["chars_total"] == sum(chars)
                assert (got["status"], got["reason"]) == ("ok", None)
    assert errors
    # the base's shards are untouched: same rows in `shards`, same files
    after = base.query("SELECT * FROM shards WHERE layer = 'base' ORDER BY kind, shard_index")[1]
    assert after == [r for r in before if r[1] == "base"]
    assert not (tmp_path / "chars" / "rejects").exists()
    # SQL: the layer's view joins the base by (corpus, image_id); base views unchanged
    _, joined = base.query(
        "SELECT count(*), count(*) FILTER (WHERE l.status = 'error'), "
        "bool_and(len(l.caption_chars) = len(i.captions)) FILTER (WHERE l.status = 'ok') "
        "FROM layer_chars l JOIN images i USING (corpus, image_id)"
    )
    images = base.query("SELECT count(*) FROM images")[1][0][0]
    assert joined == [(images, errors, True)]
    # per-layer stats, and a summary that names the layer
    _, steps = base.query(
        "SELECT stage, rows_in, rows_out FROM stage_summary WHERE layer = 'chars' "
        "ORDER BY step_index"
    )
    assert steps == [
        ("layer_of:demo", images, images),
        ("test_caption_chars", images, images),
        ("test_chars_total", images, images - errors),
    ]
    assert "corpus demo, layer chars: 4 shards (4 written now, 0 already done)" in summarize(result)
    assert check(base).problems == []
    # a re-run writes nothing
    again = run_recipe(recipe, "local", progress=False)
    assert (again.shards_written, again.shards_skipped) == (0, 4)
    assert listed(base, "chars") == layer_shards


def test_the_stream_zips_the_layer_values(base, tmp_path):
    run_layer(tmp_path)
    ds = ShardStream(base.path, "demo", columns=["image_id", "caption_chars"], layers=["chars"])
    got = list(ds)
    assert len(got) == base.query("SELECT count(*) FROM images")[1][0][0]
    _, rows = base.query("SELECT image_id, caption_chars FROM layer_chars")
    assert {s["image_id"]: s["caption_chars"] for s in got} == dict(rows)


def test_a_changed_layer_recipe_is_refused(base, tmp_path):
    run_layer(tmp_path)
    with pytest.raises(CatalogError, match="layer 'chars' of corpus 'demo' .* different recipe"):
        run_layer(tmp_path, stages=[{"test_caption_chars": {}}])


def test_a_layer_of_an_unknown_corpus_is_refused(base, tmp_path):
    with pytest.raises(CatalogError, match="no corpus 'nope' to add layer 'chars' to"):
        run_layer(tmp_path, layer_of="nope")


def test_a_layer_may_not_share_an_output(base, tmp_path):
    with pytest.raises(CatalogError, match="already the output of corpus demo"):
        run_layer(tmp_path, output=str(tmp_path / "corpus"))


def test_layer_recipes_are_checked_all_at_once(tmp_path):
    spec = layer_recipe(
        tmp_path,
        name="base",
        shard_rows=10,
        stages=[{"test_sleep": {}}, {"test_needs_phash": {}}, {"test_chars_total": {}}],
    )
    with pytest.raises(recipes.RecipeError) as err:
        recipes.load(write_recipe(tmp_path / "bad.yaml", spec))
    problems = "\n".join(err.value.problems)
    assert "name 'base' is the corpus' own layer" in problems
    assert "shard_rows is not allowed in a layer recipe" in problems
    assert "stages[0] test_sleep: declares no layer_fields" in problems
    assert "stages[2] test_chars_total reads ['caption_chars']" in problems
    both = {**layer_recipe(tmp_path), "source": {"coco": {}}}
    with pytest.raises(recipes.RecipeError, match="either 'source'"):
        recipes.load(write_recipe(tmp_path / "both.yaml", both))


def test_a_layer_stage_is_refused_in_a_corpus_recipe(demo_data, tmp_path):
    spec = demo_recipe(demo_data, tmp_path, imports=PLUGINS, stages=[{"test_caption_chars": {}}])
    with pytest.raises(recipes.RecipeError, match="adds layer fields .* only in a layer recipe"):
        recipes.load(write_recipe(tmp_path / "bad.yaml", spec))


def test_an_empty_base_shard_gets_an_empty_layer_file(demo_data, tmp_path):
    out = tmp_path / "first"
    first = recipes.load(write_recipe(out / "base.yaml", demo_recipe(demo_data, out)))
    run_recipe(first, "local", progress=False)
    shard1 = {  # every input row of shard 1, kept or rejected
        r[0]
        for kind in ("data", "rejects")
        for r in pq.read_table(
            out / "corpus" / kind / "shard-00001.parquet", columns=["image_id"]
        ).to_pylist()
        for r in [tuple(r.values())]
    }
    (tmp_path / "block.txt").write_text("\n".join(sorted(shard1)))
    spec = demo_recipe(
        demo_data,
        tmp_path,
        imports=PLUGINS,
        stages=[{"test_blocklist": {"ids_file": str(tmp_path / "block.txt")}}],
    )
    run_recipe(recipes.load(write_recipe(tmp_path / "base.yaml", spec)), "local", progress=False)
    _, result = run_layer(tmp_path)
    assert result.shards_written == 4
    empty = pq.read_table(tmp_path / "chars" / "data" / "shard-00001.parquet")
    assert empty.num_rows == 0 and empty.schema.names[1] == "caption_chars"
    rows = [r[2] for r in listed(Catalog(tmp_path / "catalog.duckdb"), "chars")]
    assert rows[1] == 0 and all(rows[i] > 0 for i in (0, 2, 3))


def _cli(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    return run_cli(*args, env_extra=env_extra, timeout=120)


@pytest.mark.parametrize("point", ["after_commit", "shard_placed"])
def test_a_crashed_layer_run_resumes_to_the_same_files(base, tmp_path, point):
    path = write_recipe(tmp_path / "layer.yaml", layer_recipe(tmp_path))
    fault = {"MMDATA_FAULT": f"{point}:2", "MMDATA_COMMIT_MAX_SHARDS": "1"}
    crashed = _cli("run", str(path), "--executor", "local", "-q", env_extra=fault)
    assert crashed.returncode == -9, crashed.stderr
    done = len(listed(base, "chars"))
    assert done < 4
    assert {p.kind for p in check(base).problems} <= {"orphan", "staging"}  # nothing half-listed
    resumed = _cli("run", str(path), "--executor", "local", "-q")
    assert resumed.returncode == 0, resumed.stderr
    assert f"({4 - done} written now, {done} already done)" in resumed.stdout
    assert check(base).problems == []
    _, whole = run_layer(tmp_path, name="chars2")  # the same layer, uninterrupted
    assert whole.shards_written == 4
    sums = [r[3] for r in listed(base, "chars")]
    assert sums == [r[3] for r in listed(base, "chars2")]
    runs = base.query("SELECT layer, status FROM runs WHERE layer = 'chars' ORDER BY run_id")[1]
    assert runs == [("chars", "interrupted"), ("chars", "finished")]


@pytest.mark.ray
def test_the_ray_executor_writes_the_same_layer_files(base, tmp_path, ray_session):
    run_layer(tmp_path)
    _, result = run_layer(tmp_path, executor="ray", name="chars_ray")
    assert result.shards_written == 4
    assert [r[3] for r in listed(base, "chars")] == [r[3] for r in listed(base, "chars_ray")]


def test_a_catalog_from_before_layers_is_migrated(demo_data, tmp_path, monkeypatch):
    from mmdata.catalog import store

    before = [m for m in store.migrations() if m[0] <= 3]
    monkeypatch.setattr(store, "migrations", lambda: before)
    spec = demo_recipe(demo_data, tmp_path)
    run_recipe(recipes.load(write_recipe(tmp_path / "base.yaml", spec)), "local", progress=False)
    catalog = Catalog(tmp_path / "catalog.duckdb")
    assert catalog.query("SELECT max(version) FROM schema_migrations")[1] == [(3,)]
    monkeypatch.undo()
    _, result = run_layer(tmp_path)  # its first write applies migration 4
    assert result.shards_written == 4
    assert catalog.query("SELECT max(version) FROM schema_migrations")[1] == [(4,)]
    assert catalog.query("SELECT layer FROM runs ORDER BY run_id")[1] == [("base",), ("chars",)]
    assert (
        catalog.query("SELECT count(*) FROM layer_chars")[1]
        == catalog.query("SELECT count(*) FROM images")[1]
    )
