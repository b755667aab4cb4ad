"""``mmdata sql`` is read-only for the machine, not only for the catalog (issue 19, item 7):
it runs queries, reads the catalog and its listed shards' folders, and refuses in one line
COPY TO, reading other files, ATTACH, INSTALL/LOAD and SET."""

from __future__ import annotations

import pytest

from mmdata.catalog.store import Catalog
from mmdata.commands.cli import main
from mmdata.engine.sink import write_listed_shard
from tests.test_catalog_scale import _table


@pytest.fixture
def catalog(tmp_path) -> Catalog:
    catalog = Catalog(tmp_path / "catalog.duckdb")
    run_id, _ = catalog.begin_run("c", "t", "h", str(tmp_path / "c"), "local")
    catalog.commit_shards(
        "c", run_id, [write_listed_shard(str(tmp_path / "c"), i, _table(i)) for i in range(2)]
    )
    return catalog


def _sql(catalog: Catalog, query: str, capsys) -> tuple[int, str, str]:
    code = main(["sql", query, "--catalog", catalog.path, "--format", "csv"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err.strip()


def test_queries_over_the_views_and_the_listed_shards_run(catalog, capsys, tmp_path):
    assert _sql(catalog, "SELECT count(*) AS n FROM captions", capsys)[:2] == (0, "n\n12\n")
    assert _sql(catalog, "SELECT images FROM corpus_stats", capsys)[:2] == (0, "images\n6\n")
    shard = tmp_path / "c" / "data" / "shard-00001.parquet"
    code, out, _ = _sql(catalog, f"SELECT count(*) AS n FROM read_parquet('{shard}')", capsys)
    assert (code, out) == (0, "n\n3\n")
    assert _sql(catalog, "EXPLAIN SELECT * FROM images", capsys)[0] == 0


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("COPY (SELECT 42 AS x) TO '{tmp}/x.csv'", "refused a COPY statement"),
        ("SELECT * FROM read_csv('/etc/passwd')", 'Cannot access file "/etc/passwd"'),
        ("SELECT * FROM read_parquet('{tmp}/elsewhere.parquet')", "Cannot access file"),
        ("SELECT * FROM read_parquet('{tmp}/c/data/../../elsewhere.parquet')", "Cannot access"),
        ("ATTACH '{tmp}/other.duckdb' AS other", "refused a ATTACH statement"),
        ("INSTALL httpfs", "refused a LOAD statement"),
        ("LOAD httpfs", "refused a LOAD statement"),
        ("SET enable_external_access = true", "refused a SET statement"),
        ("SELECT 1; SET threads = 1", "refused a SET statement"),
        ("CREATE TEMP TABLE t AS SELECT 1", "refused a CREATE statement"),
    ],
)
def test_anything_but_a_query_over_the_catalog_is_refused_in_one_line(
    catalog, capsys, tmp_path, query, says
):
    (tmp_path / "elsewhere.parquet").write_bytes(
        (tmp_path / "c" / "data" / "shard-00000.parquet").read_bytes()
    )
    code, out, err = _sql(catalog, query.format(tmp=tmp_path), capsys)
    assert code != 0 and out == ""
    assert len(err.splitlines()) == 1 and says in err, err
    assert not (tmp_path / "x.csv").exists() and not (tmp_path / "other.duckdb").exists()


def test_the_configuration_cannot_be_unlocked_from_inside_a_query(catalog):
    with pytest.raises(Exception, match="Cannot access file"):
        catalog.user_query("SELECT * FROM read_text('/etc/hostname')")
    # the library's own queries (reports, streams) are not confined
    assert catalog.query("SELECT count(*) FROM images")[1] == [(6,)]
