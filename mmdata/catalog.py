"""The DuckDB catalog: the only code that opens it read-write.

DuckDB allows one read-write process per file, so every write opens, runs one
transaction, and closes; queries open read-only. Waiting for the lock is retried with
backoff. Values always go in as parameters; the only SQL built from strings is the view
definitions, whose file lists are quoted with ``sql_literal``.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.resources
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa

from mmdata.errors import MmdataError
from mmdata.schema import IMAGE_SCHEMA, REJECT_SCHEMA, SCHEMA_VERSION
from mmdata.sink import FinishedShard

log = logging.getLogger(__name__)
LOCK_TIMEOUT_S = 120.0


class CatalogError(MmdataError, RuntimeError):
    """The catalog cannot do what was asked (locked, recipe changed, bad query)."""


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every file in the ``catalog`` package, in order."""
    files = importlib.resources.files("catalog")
    found = []
    for entry in files.iterdir():
        if entry.name.endswith(".sql") and entry.name[0].isdigit():
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text(encoding="utf-8")))
    return sorted(found)


class Catalog:
    """A catalog file. Cheap to construct: nothing is opened until used."""

    def __init__(self, path: str | Path, lock_timeout_s: float = LOCK_TIMEOUT_S) -> None:
        self.path = str(path)
        self.lock_timeout_s = lock_timeout_s

    @contextlib.contextmanager
    def write(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """One read-write transaction; migrations are applied first."""
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        con = self._connect(read_only=False)
        try:
            _migrate(con)
            con.execute("BEGIN TRANSACTION")
            yield con
            con.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(duckdb.Error):
                con.execute("ROLLBACK")
            raise
        finally:
            con.close()

    @contextlib.contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A read-only connection (writes through it fail)."""
        if not Path(self.path).exists():
            raise CatalogError(f"{self.path}: no catalog here (run a recipe first)")
        con = self._connect(read_only=True)
        try:
            yield con
        finally:
            con.close()

    def _connect(self, read_only: bool) -> duckdb.DuckDBPyConnection:
        deadline = time.monotonic() + self.lock_timeout_s
        delay = 0.05
        while True:
            try:
                return duckdb.connect(self.path, read_only=read_only)
            except duckdb.IOException as exc:
                if "lock" not in str(exc).lower() or time.monotonic() > deadline:
                    raise CatalogError(f"{self.path}: cannot open the catalog: {exc}") from exc
                time.sleep(delay)
                delay = min(delay * 2, 1.0)

    # ---- runs -------------------------------------------------------------------------

    def begin_run(
        self, name: str, recipe_text: str, recipe_hash: str, output: str, executor: str
    ) -> tuple[int, set[int]]:
        """Register a run of corpus ``name``; returns (run id, shard indices done).

        Raises:
            CatalogError: the corpus exists with a different recipe hash.
        """
        with self.write() as con:
            row = con.execute(
                "SELECT recipe_hash, output FROM corpora WHERE name = ?", [name]
            ).fetchall()
            if row and row[0][0] != recipe_hash:
                raise CatalogError(
                    f"corpus {name!r} in {self.path} was built by a different recipe "
                    f"(hash {row[0][0]}, this one {recipe_hash}); give the new recipe a new "
                    "name, or delete the corpus' output and catalog to rebuild it"
                )
            if not row:
                con.execute(
                    "INSERT INTO corpora (name, recipe_text, recipe_hash, output, "
                    "schema_version) VALUES (?, ?, ?, ?, ?)",
                    [name, recipe_text, recipe_hash, output, SCHEMA_VERSION],
                )
            # Runs left 'running' died without ending (crash, kill -9).
            con.execute(
                "UPDATE runs SET status = 'interrupted' WHERE corpus = ? AND status = 'running'",
                [name],
            )
            run_id = con.execute(
                "INSERT INTO runs (corpus, recipe_hash, executor, status) "
                "VALUES (?, ?, ?, 'running') RETURNING run_id",
                [name, recipe_hash, executor],
            ).fetchall()[0][0]
            done = con.execute(
                "SELECT shard_index FROM shards WHERE corpus = ? AND "
                "layer = 'base' AND kind = 'data'",
                [name],
            ).fetchall()
        return run_id, {r[0] for r in done}

    def commit_shards(self, corpus: str, run_id: int, shards: list[FinishedShard]) -> None:
        """List finished shards and their stats, in one transaction."""
        with self.write() as con:
            for shard in shards:
                _insert_shard(con, corpus, run_id, shard)
            con.execute(
                "UPDATE runs SET shards_written = shards_written + ? WHERE run_id = ?",
                [len(shards), run_id],
            )
            refresh_views(con)

    def end_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.write() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished_at = current_timestamp, "
                "error = ? WHERE run_id = ?",
                [status, error, run_id],
            )
            refresh_views(con)

    def query(self, sql: str, params: list[Any] | None = None) -> tuple[list[str], list[tuple]]:
        """Run ``sql`` read-only; returns (column names, rows)."""
        with self.read() as con:
            try:
                cursor = con.execute(sql, params or [])
                rows = cursor.fetchall()
            except duckdb.Error as exc:
                raise CatalogError(f"query failed: {exc}") from exc
            columns = [d[0] for d in cursor.description or []]
        return columns, rows


def _insert_shard(
    con: duckdb.DuckDBPyConnection, corpus: str, run_id: int, shard: FinishedShard
) -> None:
    # A crash between rename and commit can leave stats of an uncommitted attempt;
    # the shard rows are the marker, so replace whatever an earlier attempt left.
    for table in ("shards", "stage_stats", "stage_drops"):
        con.execute(
            f"DELETE FROM {table} WHERE corpus = ? AND layer = 'base' AND shard_index = ?",
            [corpus, shard.index],
        )
    for f in shard.files:
        con.execute(
            "INSERT INTO shards (corpus, kind, shard_index, path, rows, bytes, sha256, "
            "input_rows, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            [
                corpus,
                f["kind"],
                shard.index,
                f["path"],
                f["rows"],
                f["bytes"],
                f["sha256"],
                shard.input_rows,
                run_id,
            ],
        )
    for s in shard.stats:
        con.execute(
            "INSERT INTO stage_stats (corpus, shard_index, step_index, stage, rows_in, "
            "rows_out, seconds, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            [
                corpus,
                shard.index,
                s["index"],
                s["name"],
                s["rows_in"],
                s["rows_out"],
                s["seconds"],
                run_id,
            ],
        )
        for unit, drops in s["drops"].items():
            for reason, rows in drops.items():
                con.execute(
                    "INSERT INTO stage_drops (corpus, shard_index, step_index, stage, "
                    "unit, reason, rows, run_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    [corpus, shard.index, s["index"], s["name"], unit, reason, rows, run_id],
                )


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    applied = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    for version, sql in migrations():
        if version in applied:
            continue
        con.execute("BEGIN TRANSACTION")
        con.execute(sql)
        if version == 1:
            _create_empty_tables(con)
        con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
        con.execute("COMMIT")
        refresh_views(con)


def _create_empty_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Zero-row tables with the shard schemas, so views exist before any shard does."""
    for name, schema in (("_empty_images", IMAGE_SCHEMA), ("_empty_rejects", REJECT_SCHEMA)):
        empty = schema.empty_table()  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM empty")


def _union_view(con: duckdb.DuckDBPyConnection, view: str, kind: str, empty: str) -> None:
    files = con.execute(
        "SELECT corpus, path FROM shards WHERE layer = 'base' AND kind = ? "
        "ORDER BY corpus, shard_index",
        [kind],
    ).fetchall()
    by_corpus: dict[str, list[str]] = {}
    for corpus, path in files:
        by_corpus.setdefault(corpus, []).append(path)
    for corpus in [c for c, paths in by_corpus.items() if not _sql_can_read(paths)]:
        # the shards stay listed (ShardStream reads them through pyarrow); only SQL over
        # them waits for DuckDB's httpfs extension
        first = by_corpus.pop(corpus)[0]
        if (corpus, view) in _WARNED:
            continue
        _WARNED.add((corpus, view))
        log.warning(
            "corpus %r: its shards are on an object store (%s) and DuckDB's httpfs "
            "extension cannot be loaded here, so the %s view leaves them out; install it "
            "(INSTALL httpfs) and re-run to query them with SQL",
            corpus,
            first,
            view,
        )
    selects = [
        f"SELECT {sql_literal(c)} AS corpus, * FROM read_parquet("
        f"[{', '.join(sql_literal(p) for p in paths)}])"
        for c, paths in by_corpus.items()
    ]
    body = " UNION ALL ".join(selects) or f"SELECT NULL::VARCHAR AS corpus, * FROM {empty}"
    con.execute(f"CREATE OR REPLACE VIEW {view} AS {body}")


_WARNED: set[tuple[str, str]] = set()


def _sql_can_read(paths: list[str]) -> bool:
    """Whether DuckDB can read these shard paths: local ones always, URIs through the
    httpfs extension (which may be missing offline)."""
    if not any("://" in p and not p.startswith("file://") for p in paths):
        return True
    return _httpfs_loads()


@functools.lru_cache(maxsize=1)
def _httpfs_loads() -> bool:
    # probed on a scratch connection: a failed LOAD would abort the commit's transaction
    try:
        duckdb.connect().execute("LOAD httpfs")
        return True
    except duckdb.Error:
        return False


def refresh_views(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the views over the committed shards (called inside the commit)."""
    _union_view(con, "images", "data", "_empty_images")
    _union_view(con, "rejects", "rejects", "_empty_rejects")
    text = importlib.resources.files("catalog").joinpath("views.sql").read_text("utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    for statement in code.split(";"):
        if statement.strip():
            con.execute(statement)


def where_mask(table: pa.Table, where: str, source: str = "") -> np.ndarray:
    """Which rows of ``table`` satisfy the SQL boolean expression ``where`` (DuckDB).

    An in-memory, single-threaded connection over the Arrow table: rows come back in
    order, and nothing touches a catalog file. NULL counts as false.
    """
    con = duckdb.connect()
    try:
        con.execute("SET threads = 1")
        con.register("samples", table)
        result = con.execute(f"SELECT coalesce(({where}), false) AS keep FROM samples")
        keep = result.fetchnumpy()["keep"]
    except duckdb.Error as exc:
        where_from = f" ({source})" if source else ""
        raise CatalogError(f"where clause {where!r}{where_from}: {exc}") from exc
    finally:
        con.close()
    return np.asarray(keep, dtype=bool)
