"""Soak: a Ray recipe over 50,000 rows on the test machine's cores, with the memory of
the driver and of every Ray worker sampled as each shard is finished: it must not grow
with the rows processed."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest

from mmdata.catalog.store import Catalog
from mmdata.commands.check import check
from mmdata.engine import recipe as recipes
from mmdata.engine.run import run_recipe
from mmdata.engine.sink import ShardAssembler
from tests.conftest import write_recipe
from tests.soak.memory import ray_workers_mb, rss_mb

ROWS, SHARD_ROWS = 50_000, 1_000
WORDS = "a dog cat red blue runs sits on the grass near under small big old man woman".split()


def _url_list(path: Path) -> None:
    with path.open("w", newline="") as f:
        out = csv.writer(f)
        out.writerow(["url", "caption"])
        for i in range(ROWS):
            words = " ".join(WORDS[(i * 7 + k) % len(WORDS)] for k in range(i % 9))
            out.writerow([f"http://images.example.com/{i}.jpg", words])  # 0-8 words


@pytest.mark.ray
def test_a_ray_recipe_over_50k_rows_in_flat_memory(tmp_path, ray_session, monkeypatch):
    _url_list(tmp_path / "urls.csv")
    spec = {
        "name": "soak",
        "source": {"url_list": {"path": str(tmp_path / "urls.csv")}},
        "stages": [{"caption_filter": {"min_words": 3, "max_words": 40}}],
        "output": str(tmp_path / "corpus"),
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": SHARD_ROWS,
    }
    samples: list[tuple[float, float]] = []
    placed = ShardAssembler.add

    def measured(self, part):  # sampled as each shard is finished on the driver
        shard = placed(self, part)
        if shard is not None:
            samples.append((rss_mb(), ray_workers_mb()))
        return shard

    monkeypatch.setattr(ShardAssembler, "add", measured)
    recipe = recipes.load(write_recipe(tmp_path / "r.yaml", spec))
    result = run_recipe(recipe, "ray", progress=False)
    assert result.shards_written == result.shards_total >= ROWS // SHARD_ROWS

    catalog = Catalog(recipe.catalog)
    kept = catalog.query("SELECT count(*) FROM images")[1][0][0]
    rejected = catalog.query("SELECT count(*) FROM rejects WHERE item_kind IS NULL")[1][0][0]
    assert kept + rejected == ROWS
    assert rejected == sum(1 for i in range(ROWS) if i % 9 < 3)  # captions of 0-2 words
    assert check(catalog, hashes=False).problems == []

    tenth = len(samples) // 5
    early, late = samples[tenth : 2 * tenth], samples[-tenth:]
    for name, index, limit in [("driver", 0, 64), ("Ray workers", 1, 128)]:
        before = sum(s[index] for s in early) / len(early)
        after = sum(s[index] for s in late) / len(late)
        print(f"{name}: {before:.0f} MB after 20-40% of rows, {after:.0f} MB at 80-100%")
        assert after - before < limit, f"{name} memory grew: {[round(s[index]) for s in samples]}"
