"""Importers under the Ray executor: partitions read by Ray tasks give the local result."""

import dataclasses

import pytest

from mmdata.catalog.store import Catalog
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from tests.conftest import ROOT
from tests.test_recipes_shipped import _layout

QUERIES = [
    "SELECT * EXCLUDE (image_bytes) FROM images ORDER BY image_id",
    "SELECT * FROM rejects ORDER BY image_id, item_kind, item_id",
    "SELECT stage, rows_in, rows_out FROM stage_summary",
    "SELECT * FROM gold_relations ORDER BY image_id, relation_id",
]


@pytest.mark.ray
@pytest.mark.parametrize("name", ["vg", "cc3m", "url_list"])
def test_ray_import_matches_local(name, tmp_path, ray_session):
    results = []
    variables = _layout(tmp_path / "in")
    for executor in ("local", "ray"):
        path = ROOT / "recipes" / f"{name}.yaml"
        recipe = recipes.parse(path.read_text(), str(path), path.parent, variables)
        recipe = dataclasses.replace(
            recipe,
            stages=[],  # the import alone
            shard_rows=2 if name != "url_list" else 250,
            output=str(tmp_path / "out"),
            catalog=str(tmp_path / executor / "catalog.duckdb"),
        )
        result = run_recipe(recipe, executor, progress=False)
        assert result.shards_written == result.shards_total > 1
        catalog = Catalog(recipe.catalog)
        results.append([catalog.query(q)[1] for q in QUERIES])
        (tmp_path / "out").rename(tmp_path / f"out_{executor}")
    assert results[0] == results[1]
    assert results[0][0]  # something was imported
