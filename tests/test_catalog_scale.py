"""The catalog's costs do not grow with the shards it lists (issue 18): commits leave the
views alone, counts come from statistics, lookups open only the shards that may hold an
id, unlisted files stay invisible, and catalogs made before the statistics migrate."""

from __future__ import annotations

import threading
import time

import duckdb
import pyarrow as pa
import pytest

from mmdata.catalog import store as catalog_module
from mmdata.catalog.store import Catalog, migrations
from mmdata.core.schema import IMAGE_SCHEMA
from mmdata.core.shards import FinishedShard
from mmdata.engine.committer import ShardCommitter
from mmdata.engine.sink import write_listed_shard


def _table(index: int, rows: int = 3, captions: int = 2) -> pa.Table:
    return pa.Table.from_pylist(
        [
            {
                "image_id": f"t:{index * rows + r:08d}",
                "source": "t",
                "status": "ok",
                "captions": [
                    {"caption_id": f"{index}-{r}-{c}", "text": f"caption {c}"}
                    for c in range(captions)
                ],
            }
            for r in range(rows)
        ],
        schema=IMAGE_SCHEMA,
    )


def _corpus(tmp_path, shards: int, name: str = "c") -> tuple[Catalog, int, list[FinishedShard]]:
    catalog = Catalog(tmp_path / "catalog.duckdb")
    run_id, _ = catalog.begin_run(name, "t", "h", str(tmp_path / name), "local")
    written = [write_listed_shard(str(tmp_path / name), i, _table(i)) for i in range(shards)]
    return catalog, run_id, written


def _view_sql(catalog: Catalog) -> list[tuple]:
    return catalog.query(
        "SELECT view_name, sql FROM duckdb_views() WHERE NOT internal ORDER BY view_name"
    )[1]


def test_commits_leave_the_views_alone_and_counts_come_from_statistics(tmp_path):
    catalog, run_id, shards = _corpus(tmp_path, 6)
    catalog.commit_shards("c", run_id, shards[:1])
    views = _view_sql(catalog)
    for shard in shards[1:]:
        catalog.commit_shards("c", run_id, [shard])
    assert _view_sql(catalog) == views  # no shard path is written into any view
    assert "shard-00000" not in str(views)
    stats = catalog.query("SELECT shards, images, captions, rejects FROM corpus_stats")[1]
    assert stats == [(6, 18, 36, 0)]
    assert catalog.query("SELECT count(*) FROM images")[1] == [(18,)]
    assert catalog.query("SELECT count(*) FROM captions")[1] == [(36,)]
    min_max = catalog.query(
        "SELECT min_image_id, max_image_id, captions FROM shards WHERE shard_index = 2"
    )[1]
    assert min_max == [("t:00000006", "t:00000008", 6)]


def test_files_in_the_folder_that_are_not_listed_stay_invisible(tmp_path):
    catalog, run_id, shards = _corpus(tmp_path, 3)
    catalog.commit_shards("c", run_id, shards[:2])  # shard 2 placed, never listed
    assert catalog.query("SELECT count(*) FROM images")[1] == [(6,)]
    catalog.commit_shards("c", run_id, shards[2:])
    assert catalog.query("SELECT count(*) FROM images")[1] == [(9,)]


def test_a_lookup_opens_only_the_shards_whose_id_range_holds_it(tmp_path):
    catalog, run_id, shards = _corpus(tmp_path, 5)
    catalog.commit_shards("c", run_id, shards)
    holding = catalog.shards_holding(["t:00000007"])
    assert holding == {"c": [shards[2].files[0]["path"]]}
    assert catalog.shards_holding(["t:99999999"]) == {}
    source = catalog.images_holding(["t:00000007", "t:00000013"], "c")
    rows = catalog.query(f"SELECT corpus, image_id FROM {source} ORDER BY image_id")[1]
    assert [r[1] for r in rows] == [f"t:{i:08d}" for i in range(6, 9)] + [
        f"t:{i:08d}" for i in range(12, 15)
    ]
    empty = catalog.images_holding(["nope"])
    assert catalog.query(f"SELECT count(*) FROM {empty}")[1] == [(0,)]


def test_two_corpora_and_a_folder_with_glob_characters(tmp_path):
    catalog, run_id, shards = _corpus(tmp_path, 2)
    catalog.commit_shards("c", run_id, shards)
    odd = tmp_path / "odd[1]"
    other_run, _ = catalog.begin_run("odd", "t", "h2", str(odd), "local")
    catalog.commit_shards(
        "odd", other_run, [write_listed_shard(str(odd), i, _table(i + 10)) for i in range(2)]
    )
    counts = catalog.query("SELECT corpus, count(*) FROM images GROUP BY ALL ORDER BY 1")[1]
    assert counts == [("c", 6), ("odd", 6)]
    modes = catalog.query("SELECT corpus, mode FROM view_sources ORDER BY 1")[1]
    assert modes == [("c", "glob"), ("odd", "list")]


def test_a_catalog_listed_before_the_statistics_is_migrated_and_backfilled(tmp_path, monkeypatch):
    first = [m for m in migrations() if m[0] == 1]
    monkeypatch.setattr(catalog_module, "migrations", lambda: first)
    catalog, run_id, shards = _corpus(tmp_path, 3)
    with catalog.write() as con:  # listed as the code before migration 2 listed them
        for shard in shards:
            f = shard.files[0]
            con.execute(
                "INSERT INTO shards (corpus, kind, shard_index, path, rows, bytes, sha256, "
                "input_rows, run_id) VALUES ('c', 'data', ?, ?, ?, ?, ?, ?, ?)",
                [shard.index, f["path"], f["rows"], f["bytes"], f["sha256"], 3, run_id],
            )
    monkeypatch.undo()
    con = duckdb.connect(str(tmp_path / "catalog.duckdb"), read_only=True)
    assert con.execute("SELECT max(version) FROM schema_migrations").fetchall() == [(1,)]
    con.close()
    fresh = Catalog(tmp_path / "catalog.duckdb")
    fresh.end_run(run_id, "finished")  # any write applies the pending migrations
    assert fresh.query("SELECT shards, images, captions FROM corpus_stats")[1] == [(3, 9, 18)]
    assert fresh.shards_holding(["t:00000004"]) == {"c": [shards[1].files[0]["path"]]}
    assert fresh.query("SELECT count(*) FROM captions")[1] == [(18,)]


def test_the_committer_batches_lists_everything_and_reports_errors(tmp_path):
    catalog, run_id, shards = _corpus(tmp_path, 20)
    seen: list[int] = []
    committer = ShardCommitter(
        catalog, "c", run_id, on_commit=lambda b: seen.append(len(b)), interval_s=0.3
    )
    for shard in shards:
        committer.submit(shard)
    assert committer.close() == 20
    assert sum(seen) == 20 and len(seen) < 20  # batched: fewer transactions than shards
    assert catalog.query("SELECT count(*) FROM shards")[1] == [(20,)]

    broken = ShardCommitter(Catalog(tmp_path / "missing" / "x" / "c.duckdb"), "c", 99)
    broken.catalog.path = str(tmp_path)  # a folder: DuckDB cannot open it
    broken.submit(shards[0])
    with pytest.raises(Exception, match="catalog"):
        broken.close()


def test_the_committer_never_blocks_the_caller(tmp_path):
    catalog, run_id, shards = _corpus(tmp_path, 5)
    gate = threading.Event()
    commit = catalog.commit_shards

    def slow_commit(*args, **kwargs):
        gate.wait(5)
        commit(*args, **kwargs)

    catalog.commit_shards = slow_commit  # type: ignore[method-assign]
    committer = ShardCommitter(catalog, "c", run_id, interval_s=0)
    started = time.perf_counter()
    for shard in shards:
        committer.submit(shard)
    assert time.perf_counter() - started < 1.0  # the transaction is still waiting
    gate.set()
    assert committer.close() == 5


def test_a_catalog_deleted_and_made_again_in_one_process_is_migrated_again(tmp_path):
    path = tmp_path / "catalog.duckdb"
    for _ in range(3):  # a new file may reuse the old one's inode: no per-file memo
        Catalog(path).begin_run("c", "t", "h", str(tmp_path / "out"), "local")
        assert Catalog(path).query("SELECT count(*) FROM corpus_stats")[1] == [(1,)]
        path.unlink()
