import subprocess
import sys
import textwrap
import time

import duckdb
import pytest

from mmdata.catalog.store import Catalog, CatalogError, sql_literal


def test_a_new_catalog_has_tables_and_empty_views(tmp_path):
    catalog = Catalog(tmp_path / "c.duckdb")
    run_id, done = catalog.begin_run("c1", "name: c1", "h1", str(tmp_path / "out"), "local")
    assert (run_id, done) == (1, set())
    for view in ("images", "captions", "rejects", "stage_summary", "drops_summary"):
        assert catalog.query(f"SELECT count(*) FROM {view}")[1] == [(0,)]
    columns, _ = catalog.query("SELECT * FROM images LIMIT 0")
    assert columns[:3] == ["corpus", "image_id", "source"] and "image_bytes" in columns


def test_recipe_change_is_refused_and_stale_runs_are_marked(tmp_path):
    catalog = Catalog(tmp_path / "c.duckdb")
    catalog.begin_run("c1", "text", "h1", "out", "local")
    catalog.begin_run("c1", "text", "h1", "out", "ray")
    assert catalog.query("SELECT status FROM runs ORDER BY run_id")[1] == [
        ("interrupted",),
        ("running",),
    ]
    with pytest.raises(CatalogError, match="different recipe"):
        catalog.begin_run("c1", "text", "h2", "out", "local")


def test_reads_are_read_only(tmp_path):
    catalog = Catalog(tmp_path / "c.duckdb")
    catalog.begin_run("c1", "t", "h", "o", "local")
    with pytest.raises(CatalogError, match="read-only"):
        catalog.query("DROP TABLE shards")
    assert catalog.query("SELECT count(*) FROM shards")[1] == [(0,)]


def test_missing_catalog_is_a_clear_error(tmp_path):
    with pytest.raises(CatalogError, match="no catalog here"):
        Catalog(tmp_path / "none.duckdb").query("SELECT 1")


def test_a_held_lock_times_out_with_a_clear_error(tmp_path):
    path = tmp_path / "c.duckdb"
    Catalog(path).begin_run("c1", "t", "h", "o", "local")
    # DuckDB shares a file between connections of one process: hold it from another.
    script = textwrap.dedent(f"""
        import duckdb, time, sys
        con = duckdb.connect({str(path)!r})
        print("locked", flush=True)
        time.sleep(20)
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        with pytest.raises(CatalogError, match="cannot open the catalog"):
            Catalog(path, lock_timeout_s=0.5).begin_run("c1", "t", "h", "o", "local")
    finally:
        proc.kill()
        proc.wait()


def test_sql_literal_quotes():
    con = duckdb.connect()
    nasty = "x'; DROP TABLE shards; --"
    assert con.execute(f"SELECT {sql_literal(nasty)}").fetchall() == [(nasty,)]


def test_sql_during_a_commit_in_another_process_waits_and_sees_only_committed_rows(tmp_path):
    from mmdata.demo import oracle as demo_oracle

    catalog = demo_oracle.build(tmp_path / "catalog.duckdb", tmp_path / "corpus", images=120)
    holder = textwrap.dedent(f"""
        import sys, time
        from mmdata.catalog.store import Catalog
        with Catalog({catalog!r}).write() as con:  # a commit in progress
            con.execute("DELETE FROM shards WHERE shard_index = 0")
            print("holding", flush=True)
            time.sleep(2.0)
        print("committed", flush=True)
    """)
    proc = subprocess.Popen([sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "holding"
        started = time.monotonic()
        _, rows = Catalog(catalog).query("SELECT count(*) FROM shards")
        waited = time.monotonic() - started
    finally:
        proc.wait(timeout=60)
    assert rows == [(1,)] and waited > 0.5  # the commit landed first: never half of it
