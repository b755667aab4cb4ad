"""The DuckDB catalog: the only code that opens it read-write.

DuckDB allows one read-write process per file, so every write opens, runs one
transaction, and closes; queries open read-only. Waiting for the lock is retried with
backoff. Values always go in as parameters; the only SQL built from strings is the view
definitions, whose patterns and paths are quoted with ``sql_literal``.

Costs stay flat as a corpus grows (issue 18, docs/scale.md): a commit inserts its shards'
rows and statistics and leaves the views alone, because each corpus' part of the
``images``/``rejects`` views is one glob over its shard folder joined to the listed paths
(unlisted files in the folder are never seen); counts come from ``corpus_stats`` and a
lookup by image id opens only the shards whose recorded id range holds it.
"""

from __future__ import annotations

import contextlib
import importlib.resources
import logging
import posixpath
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pyarrow as pa
import pyarrow.dataset as pads

from mmdata.core import io
from mmdata.core.errors import MmdataError
from mmdata.core.schema import IMAGE_SCHEMA, REJECT_SCHEMA, SCHEMA_VERSION
from mmdata.core.shards import FinishedShard, file_stats

log = logging.getLogger(__name__)
LOCK_TIMEOUT_S = 120.0


class CatalogError(MmdataError, RuntimeError):
    """The catalog cannot do what was asked (locked, recipe changed, bad query)."""


def sql_literal(value: str) -> str:
    """A single-quoted SQL string literal."""
    return "'" + value.replace("'", "''") + "'"


def migrations() -> list[tuple[int, str]]:
    """(version, SQL) of every file in the ``catalog`` package, in order."""
    files = importlib.resources.files("mmdata.catalog.sql")
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
            _attach_store_shards(con)
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
            base_runs = "coalesce(layer, 'base') = 'base'" if _has_layers(con) else "true"
            con.execute(
                "UPDATE runs SET status = 'interrupted' WHERE corpus = ? AND status = 'running' "
                f"AND {base_runs}",
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

    def begin_layer_run(
        self,
        corpus: str,
        layer: str,
        recipe_text: str,
        recipe_hash: str,
        output: str,
        executor: str,
        layer_schema: str,
    ) -> tuple[int, set[int]]:
        """Register a run of layer ``layer`` of ``corpus``; returns (run id, the shard
        indices the layer already lists). ``layer_schema`` (its files' columns as text)
        must match any layer of that name on another corpus, so ``layer_<name>`` is one
        table.

        Raises:
            CatalogError: no such corpus; the layer exists with a different recipe hash;
                the output is the corpus' or another layer's; a same-named layer of
                another corpus has other columns.
        """
        with self.write() as con:
            names = [n for (n,) in con.execute("SELECT name FROM corpora ORDER BY name").fetchall()]
            if corpus not in names:
                raise CatalogError(
                    f"{self.path}: no corpus {corpus!r} to add layer {layer!r} to "
                    f"(corpora: {', '.join(names) or 'none'}); run its recipe first"
                )
            row = con.execute(
                "SELECT recipe_hash FROM layers WHERE corpus = ? AND layer = ?", [corpus, layer]
            ).fetchall()
            if row and row[0][0] != recipe_hash:
                raise CatalogError(
                    f"layer {layer!r} of corpus {corpus!r} in {self.path} was built by a "
                    f"different recipe (hash {row[0][0]}, this one {recipe_hash}); give the "
                    "new layer recipe a new name, or delete the layer's output and its rows "
                    "in the catalog to rebuild it"
                )
            taken = con.execute(
                "SELECT 'corpus ' || name FROM corpora WHERE output = ? UNION ALL "
                "SELECT 'layer ' || layer || ' of ' || corpus FROM layers "
                "WHERE output = ? AND NOT (corpus = ? AND layer = ?)",
                [output, output, corpus, layer],
            ).fetchall()
            if taken:
                raise CatalogError(
                    f"layer {layer!r}: output {output} is already the output of "
                    f"{taken[0][0]}; a layer writes to a folder of its own"
                )
            other = con.execute(
                "SELECT corpus, layer_schema FROM layers WHERE layer = ? AND corpus != ? "
                "AND layer_schema != ? ORDER BY corpus LIMIT 1",
                [layer, corpus, layer_schema],
            ).fetchall()
            if other:
                raise CatalogError(
                    f"layer {layer!r} of corpus {other[0][0]!r} has the columns "
                    f"({other[0][1]}), this one ({layer_schema}); the view layer_{layer} "
                    "holds one set of columns: give this layer another name"
                )
            if not row:
                con.execute(
                    "INSERT INTO layers (corpus, layer, recipe_text, recipe_hash, output, "
                    "schema_version, layer_schema) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    [corpus, layer, recipe_text, recipe_hash, output, SCHEMA_VERSION,
                     layer_schema],
                )  # fmt: skip
            con.execute(
                "UPDATE runs SET status = 'interrupted' WHERE corpus = ? AND layer = ? "
                "AND status = 'running'",
                [corpus, layer],
            )
            run_id = con.execute(
                "INSERT INTO runs (corpus, layer, recipe_hash, executor, status) "
                "VALUES (?, ?, ?, ?, 'running') RETURNING run_id",
                [corpus, layer, recipe_hash, executor],
            ).fetchall()[0][0]
            done = con.execute(
                "SELECT shard_index FROM shards WHERE corpus = ? AND layer = ? AND kind = 'data'",
                [corpus, layer],
            ).fetchall()
        return run_id, {r[0] for r in done}

    def commit_shards(
        self, corpus: str, run_id: int, shards: list[FinishedShard], layer: str = "base"
    ) -> None:
        """List finished shards (of ``layer``: the corpus' own, or a layer's) and their
        stats, in one transaction."""
        if not shards:
            return
        with self.write() as con:
            _insert_shards(con, corpus, run_id, shards, layer)
            con.execute(
                "UPDATE runs SET shards_written = shards_written + ? WHERE run_id = ?",
                [len(shards), run_id],
            )
            files = [(f["kind"], f["path"]) for s in shards for f in s.files]
            if _note_view_sources(con, corpus, files, layer):
                refresh_views(con)

    def end_run(self, run_id: int, status: str, error: str | None = None) -> None:
        with self.write() as con:
            con.execute(
                "UPDATE runs SET status = ?, finished_at = current_timestamp, "
                "error = ? WHERE run_id = ?",
                [status, error, run_id],
            )

    def shards_holding(
        self, image_ids: Iterable[str], corpus: str | None = None
    ) -> dict[str, list[str]]:
        """Data shard paths, by corpus, whose recorded image-id range holds one of
        ``image_ids`` (shards without statistics always qualify): what a lookup opens."""
        ids = sorted(set(image_ids))
        if not ids:
            return {}
        with self.read() as con:
            con.execute("CREATE TEMP TABLE _wanted (image_id VARCHAR)")
            con.executemany("INSERT INTO _wanted VALUES (?)", [[i] for i in ids])
            rows = con.execute(
                "SELECT DISTINCT s.corpus, s.path, s.shard_index FROM shards s, _wanted w "
                "WHERE s.layer = 'base' AND s.kind = 'data' AND (? IS NULL OR s.corpus = ?) "
                "AND (s.min_image_id IS NULL OR w.image_id BETWEEN s.min_image_id "
                "AND s.max_image_id) ORDER BY s.corpus, s.shard_index",
                [corpus, corpus],
            ).fetchall()
        found: dict[str, list[str]] = {}
        for name, path, _ in rows:
            found.setdefault(name, []).append(path)
        return found

    def images_holding(self, image_ids: Iterable[str], corpus: str | None = None) -> str:
        """A SQL table expression with the ``images`` view's columns over only the shards
        that may hold ``image_ids`` (``SELECT ... FROM {this} WHERE image_id = ?``)."""
        shards = self.shards_holding(image_ids, corpus)
        selects = [
            f"SELECT {sql_literal(name)} AS corpus, * FROM read_parquet("
            f"[{', '.join(sql_literal(p) for p in paths)}])"
            for name, paths in shards.items()
            if all(_is_local(p) for p in paths)
        ]
        stored = [name for name, paths in shards.items() if not all(_is_local(p) for p in paths)]
        if stored:  # the store's shards are read through pyarrow, registered per connection
            selects.append(
                "SELECT * FROM images WHERE corpus IN ("
                + ", ".join(sql_literal(n) for n in stored)
                + ")"
            )
        body = " UNION ALL ".join(selects) or "SELECT * FROM images WHERE false"
        return f"({body})"

    def user_query(self, sql: str) -> tuple[list[str], list[tuple]]:
        """What ``mmdata sql`` runs: queries only (SELECT, EXPLAIN), on a connection that
        can read the catalog and the folders of its listed shards and nothing else, with
        its configuration locked. Anything else is refused as one CatalogError line."""
        try:
            statements = duckdb.extract_statements(sql)
        except duckdb.Error as exc:
            raise CatalogError(f"query failed: {exc}") from exc
        for statement in statements:
            kind = statement.type.name
            if kind not in USER_STATEMENTS:
                raise CatalogError(
                    "mmdata sql is read-only: it runs queries "
                    f"({', '.join(sorted(USER_STATEMENTS))}) and refused a {kind} statement"
                )
        with self.read() as con:
            _confine(con)
            try:
                cursor = con.execute(sql)
                rows = cursor.fetchall()
            except duckdb.Error as exc:  # its first line; the rest points into the query
                raise CatalogError(f"query failed: {str(exc).splitlines()[0]}") from exc
            columns = [d[0] for d in cursor.description or []]
        return columns, rows

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


def _insert_shards(
    con: duckdb.DuckDBPyConnection,
    corpus: str,
    run_id: int,
    shards: list[FinishedShard],
    layer: str = "base",
) -> None:
    """List ``shards`` (replacing an earlier listing of the same indices, as a retry
    does) with a constant number of statements: the rows go in as Arrow tables."""
    indices = pa.table({"shard_index": pa.array([s.index for s in shards], pa.int32())})
    con.register("_committed", indices)
    for table in ("shards", "stage_stats", "stage_drops"):
        con.execute(
            f"DELETE FROM {table} WHERE corpus = ? AND layer = ? "
            "AND shard_index IN (SELECT shard_index FROM _committed)",
            [corpus, layer],
        )
    con.unregister("_committed")
    files = [
        {
            "corpus": corpus,
            "layer": layer,
            "kind": f["kind"],
            "shard_index": s.index,
            "path": f["path"],
            "rows": f["rows"],
            "bytes": f["bytes"],
            "sha256": f["sha256"],
            "input_rows": s.input_rows,
            "run_id": run_id,
            "captions": f.get("captions"),
            "min_image_id": f.get("min_image_id"),
            "max_image_id": f.get("max_image_id"),
        }
        for s in shards
        for f in s.files
    ]
    stats = [
        {
            "corpus": corpus,
            "layer": layer,
            "shard_index": s.index,
            "step_index": step["index"],
            "stage": step["name"],
            "rows_in": step["rows_in"],
            "rows_out": step["rows_out"],
            "seconds": float(step["seconds"]),
            "run_id": run_id,
        }
        for s in shards
        for step in s.stats
    ]
    drops = [
        {
            "corpus": corpus,
            "layer": layer,
            "shard_index": s.index,
            "step_index": step["index"],
            "stage": step["name"],
            "unit": unit,
            "reason": reason,
            "rows": rows,
            "run_id": run_id,
        }
        for s in shards
        for step in s.stats
        for unit, reasons in step["drops"].items()
        for reason, rows in reasons.items()
    ]
    for table, rows in (("shards", files), ("stage_stats", stats), ("stage_drops", drops)):
        if rows:  # the table's own column types apply on insert
            con.register("_rows", pa.Table.from_pylist(rows))
            columns = ", ".join(rows[0])
            con.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM _rows")
            con.unregister("_rows")


def _is_current(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether every migration is applied: one cheap query instead of ``_migrate``'s."""
    try:
        applied = con.execute("SELECT max(version) FROM schema_migrations").fetchall()[0][0]
    except duckdb.CatalogException:  # a new file
        return False
    return applied == migrations()[-1][0]


def _migrate(con: duckdb.DuckDBPyConnection) -> None:
    if _is_current(con):  # every write: one query
        return
    con.execute(
        "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, "
        "applied_at TIMESTAMP DEFAULT current_timestamp)"
    )
    applied = {r[0] for r in con.execute("SELECT version FROM schema_migrations").fetchall()}
    pending = [(version, sql) for version, sql in migrations() if version not in applied]
    if not pending:
        return
    con.execute("BEGIN TRANSACTION")
    for version, sql in pending:
        con.execute(sql)
        if version == 1:
            _create_empty_tables(con)
        if version == 2:
            _backfill_stats(con)
        con.execute("INSERT INTO schema_migrations (version) VALUES (?)", [version])
    refresh_views(con)
    con.execute("COMMIT")


def _create_empty_tables(con: duckdb.DuckDBPyConnection) -> None:
    """Zero-row tables with the shard schemas, so views exist before any shard does."""
    for name, schema in (("_empty_images", IMAGE_SCHEMA), ("_empty_rejects", REJECT_SCHEMA)):
        empty = schema.empty_table()  # noqa: F841 - read by DuckDB's replacement scan
        con.execute(f"CREATE TABLE {name} AS SELECT * FROM empty")


GLOB_CHARS = set("*?[]{}")


def _is_local(path: str) -> bool:
    return "://" not in path or path.startswith("file://")


def view_source(path: str) -> tuple[str, str]:
    """(mode, pattern) by which the views reach a listed file (see 002_shard_stats.sql)."""
    folder, name = posixpath.split(path)
    if not _is_local(path):
        return "store", folder
    if name.startswith("shard-") and name.endswith(".parquet") and not GLOB_CHARS & set(folder):
        return "glob", posixpath.join(folder, "shard-*.parquet")
    return "list", folder


def _note_view_sources(
    con: duckdb.DuckDBPyConnection, corpus: str, files: list[tuple[str, str]], layer: str = "base"
) -> bool:
    """Record how the views reach ``files`` ((kind, path) pairs of ``layer``); True when
    the views must be rebuilt (a new folder, or a folder whose paths the views write out)."""
    known = {
        (kind, mode, pattern)
        for kind, mode, pattern in con.execute(
            "SELECT kind, mode, pattern FROM view_sources WHERE corpus = ?", [corpus]
        ).fetchall()
    }
    rebuild = False
    for kind, path in files:
        mode, pattern = view_source(path)
        if (kind, mode, pattern) not in known:
            if layer == "base":  # also while migrating from before the layer column
                con.execute(
                    "INSERT OR IGNORE INTO view_sources (corpus, kind, mode, pattern) "
                    "VALUES (?, ?, ?, ?)",
                    [corpus, kind, mode, pattern],
                )
            else:
                con.execute(
                    "INSERT OR IGNORE INTO view_sources (corpus, kind, mode, pattern, layer) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [corpus, kind, mode, pattern, layer],
                )
            known.add((kind, mode, pattern))
            rebuild = True
        rebuild = rebuild or mode == "list"
    return rebuild


def _has_layers(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether migration 4 (layers) is applied: runs and view_sources have their layer
    column (a catalog is always migrated before a write; tests pin older migrations)."""
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_columns() WHERE table_name = 'view_sources' "
            "AND column_name = 'layer' AND database_name = current_database()"
        ).fetchall()[0][0]
    )


def _corpus_selects(con: duckdb.DuckDBPyConnection, kind: str, layer: str = "base") -> list[str]:
    """One SELECT per corpus with local shards of ``kind`` in ``layer``: a glob over its
    folders whose matches are kept only when listed (``filename`` is dropped), or the
    written-out list."""
    if not _has_view_sources(con):  # only while migrating from before migration 2
        return []
    in_layer = "coalesce(layer, 'base') = ?" if _has_layers(con) else "? = 'base'"
    sources = con.execute(
        "SELECT corpus, mode, pattern FROM view_sources WHERE kind = ? AND mode != 'store' "
        f"AND {in_layer} ORDER BY corpus, pattern",
        [kind, layer],
    ).fetchall()
    by_corpus: dict[str, list[tuple[str, str]]] = {}
    for corpus, mode, pattern in sources:
        by_corpus.setdefault(corpus, []).append((mode, pattern))
    selects = []
    for corpus, found in by_corpus.items():
        listed = (
            f"SELECT path FROM shards WHERE corpus = {sql_literal(corpus)} "
            f"AND layer = {sql_literal(layer)} AND kind = {sql_literal(kind)}"
        )
        if all(mode == "glob" for mode, _ in found):
            globs = ", ".join(sql_literal(p) for _, p in found)
            selects.append(
                f"SELECT {sql_literal(corpus)} AS corpus, * EXCLUDE (filename) FROM "
                f"read_parquet([{globs}], filename = true) WHERE filename IN ({listed})"
            )
            continue
        paths = [
            r[0]
            for r in con.execute(listed + " ORDER BY shard_index").fetchall()
            if _is_local(r[0])
        ]
        if paths:
            selects.append(
                f"SELECT {sql_literal(corpus)} AS corpus, * FROM read_parquet("
                f"[{', '.join(sql_literal(p) for p in paths)}])"
            )
    return selects


def layer_view(layer: str) -> str:
    """The name of a layer's view, quoted: ``"layer_<name>"`` (``layer_voken`` unquoted
    for a plain name; names with '.' or '-' need the quotes in SQL)."""
    return '"layer_' + layer.replace('"', '""') + '"'


def _layer_views(con: duckdb.DuckDBPyConnection) -> None:
    """One view per layer name: its listed files on every corpus that has it."""
    if not _has_view_sources(con) or not _has_layers(con):
        return
    names = con.execute(
        "SELECT DISTINCT layer FROM view_sources WHERE coalesce(layer, 'base') != 'base' "
        "ORDER BY layer"
    ).fetchall()
    for (layer,) in names:
        selects = _corpus_selects(con, "data", layer)
        if selects:
            con.execute(
                f"CREATE OR REPLACE VIEW {layer_view(layer)} AS {' UNION ALL '.join(selects)}"
            )


def _union_view(
    con: duckdb.DuckDBPyConnection,
    view: str,
    kind: str,
    empty: str,
    extra: list[str] = (),  # type: ignore[assignment]
    temp: bool = False,
) -> None:
    body = " UNION ALL ".join([*_corpus_selects(con, kind), *extra])
    body = body or f"SELECT NULL::VARCHAR AS corpus, * FROM {empty}"
    con.execute(f"CREATE OR REPLACE {'TEMP ' if temp else ''}VIEW {view} AS {body}")


def _attach_store_shards(con: duckdb.DuckDBPyConnection) -> None:
    """Make object-store shards queryable on this (read-only) connection: DuckDB 2.x has
    no httpfs offline, so each corpus' listed files become a pyarrow dataset registered
    on the connection, and temporary images/rejects views (and the views derived from
    them) union them with the local shards. The file's own views cover local shards."""
    if (
        not _has_view_sources(con)
        or not con.execute(
            "SELECT count(*) FROM view_sources WHERE mode = 'store'"  # a few rows: cheap
        ).fetchall()[0][0]
    ):
        return
    stored = con.execute(
        "SELECT s.corpus, s.kind, list(s.path ORDER BY s.shard_index) FROM shards s "
        "WHERE s.layer = 'base' AND (s.corpus, s.kind) IN "
        "(SELECT corpus, kind FROM view_sources WHERE mode = 'store') "
        "AND s.path LIKE '%://%' GROUP BY s.corpus, s.kind ORDER BY s.corpus, s.kind"
    ).fetchall()
    extra: dict[str, list[str]] = {"data": [], "rejects": []}
    for number, (corpus, kind, paths) in enumerate(stored):
        schema = IMAGE_SCHEMA if kind == "data" else REJECT_SCHEMA
        filesystem = io.resolve(paths[0])[0]
        dataset = pads.dataset(
            [io.resolve(p)[1] for p in paths],
            schema=schema,
            format="parquet",
            filesystem=filesystem,
        )
        name = f"_store_{kind}_{number}"
        con.register(name, dataset)
        extra[kind].append(f"SELECT {sql_literal(corpus)} AS corpus, * FROM {name}")
    _union_view(con, "images", "data", "_empty_images", extra["data"], temp=True)
    _union_view(con, "rejects", "rejects", "_empty_rejects", extra["rejects"], temp=True)
    for statement in _derived_views():
        con.execute(statement.replace("CREATE OR REPLACE VIEW", "CREATE OR REPLACE TEMP VIEW"))


#: statement types ``mmdata sql`` runs (COPY, ATTACH, INSTALL/LOAD, SET, CREATE... are not)
USER_STATEMENTS = {"SELECT", "EXPLAIN"}


def _confine(con: duckdb.DuckDBPyConnection) -> None:
    """Let ``con`` touch no file but the shard folders the views read (DuckDB's
    ``allowed_directories`` with external access off), and lock its configuration."""
    folders = (
        [
            (pattern if mode == "list" else posixpath.dirname(pattern)).rstrip("/") + "/"
            for mode, pattern in con.execute(
                "SELECT DISTINCT mode, pattern FROM view_sources WHERE mode != 'store'"
            ).fetchall()
        ]
        if _has_view_sources(con)
        else []
    )
    con.execute(f"SET allowed_directories = [{', '.join(sql_literal(f) for f in folders)}]")
    con.execute("SET enable_external_access = false")
    con.execute("SET lock_configuration = true")


def _has_view_sources(con: duckdb.DuckDBPyConnection) -> bool:
    return bool(
        con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'view_sources' "
            "AND database_name = current_database()"
        ).fetchall()[0][0]
    )


def _derived_views() -> list[str]:
    text = importlib.resources.files("mmdata.catalog.sql").joinpath("views.sql").read_text("utf-8")
    code = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("--"))
    return [statement for statement in code.split(";") if statement.strip()]


def _backfill_stats(con: duckdb.DuckDBPyConnection) -> None:
    """Statistics of shards listed before migration 2, read from their files once."""
    listed = con.execute("SELECT path, kind FROM shards WHERE layer = 'base'").fetchall()
    for path, kind in listed:
        try:
            columns = ["image_id", "captions"] if kind == "data" else ["image_id"]
            stats = file_stats(io.read_parquet(path, columns))
        except (OSError, pa.ArrowException) as exc:
            log.warning("%s: cannot read it to record its statistics: %s", path, exc)
            continue
        con.execute(
            "UPDATE shards SET captions = ?, min_image_id = ?, max_image_id = ? WHERE path = ?",
            [stats["captions"], stats["min_image_id"], stats["max_image_id"], path],
        )
    for (corpus,) in con.execute("SELECT DISTINCT corpus FROM shards").fetchall():
        files = con.execute("SELECT kind, path FROM shards WHERE corpus = ?", [corpus]).fetchall()
        _note_view_sources(con, corpus, files)


def refresh_views(con: duckdb.DuckDBPyConnection) -> None:
    """Rebuild the views (inside a migration, or a commit that adds a shard folder)."""
    _union_view(con, "images", "data", "_empty_images")
    _union_view(con, "rejects", "rejects", "_empty_rejects")
    for statement in _derived_views():
        con.execute(statement)
    _layer_views(con)
    _voken_views(con)


def _layers_with(con: duckdb.DuckDBPyConnection, field: str) -> list[str]:
    """Layers whose files have the column ``field`` (by the schema text the catalog keeps),
    that have a view (a listed folder)."""
    if not _has_layers(con):
        return []
    rows = con.execute(
        "SELECT DISTINCT layer FROM layers WHERE ', ' || layer_schema || ',' LIKE ? ORDER BY layer",
        [f"%, {field} %"],
    ).fetchall()
    views = {r[0] for r in con.execute("SELECT view_name FROM duckdb_views()").fetchall()}
    return [r[0] for r in rows if f"layer_{r[0]}" in views]


def _voken_views(con: duckdb.DuckDBPyConnection) -> None:
    """The vokenization views over the layers that hold voken keys (``voken_set``: voken
    id -> image, per keys layer and vokenizer, ids in (corpus, image_id) order as the
    vokenize stage numbers them) and vokens (``vokens``: one row per token;
    ``voken_stats``: the original's diversity measures). Empty when no such layer exists."""
    keys = [
        f"SELECT {sql_literal(layer)} AS layer, corpus, image_id, "
        f"voken_key.vokenizer_id AS vokenizer_id FROM {layer_view(layer)} "
        "WHERE voken_key IS NOT NULL"
        for layer in _layers_with(con, "voken_key")
    ]
    body = " UNION ALL ".join(keys) or (
        "SELECT NULL::VARCHAR AS layer, NULL::VARCHAR AS corpus, NULL::VARCHAR AS image_id, "
        "NULL::VARCHAR AS vokenizer_id WHERE false"
    )
    con.execute(
        "CREATE OR REPLACE VIEW voken_set AS SELECT layer, vokenizer_id, "
        "(row_number() OVER (PARTITION BY layer, vokenizer_id ORDER BY corpus, image_id) - 1)"
        f"::INTEGER AS voken_id, corpus, image_id FROM ({body})"
    )
    tokens = [
        f"SELECT {sql_literal(layer)} AS layer, corpus, image_id, unnest(vokens) AS v "
        f"FROM {layer_view(layer)} WHERE vokens IS NOT NULL"
        for layer in _layers_with(con, "vokens")
    ]
    captions = " UNION ALL ".join(tokens)
    if captions:
        body = (
            "SELECT layer, corpus, image_id, v.caption_id AS caption_id, v.vokenizer_id AS "
            "vokenizer_id, v.keys_layer AS keys_layer, i AS token_index, v.tokens[i + 1] AS "
            "token, v.starts[i + 1] AS span_start, v.ends[i + 1] AS span_end, "
            "v.voken_ids[i + 1] AS voken_id, v.scores[i + 1] AS score FROM (SELECT *, "
            f"unnest(range(len(v.tokens))) AS i FROM ({captions}))"
        )
    else:
        body = (
            "SELECT NULL::VARCHAR AS layer, NULL::VARCHAR AS corpus, NULL::VARCHAR AS "
            "image_id, NULL::VARCHAR AS caption_id, NULL::VARCHAR AS vokenizer_id, "
            "NULL::VARCHAR AS keys_layer, NULL::BIGINT AS token_index, NULL::VARCHAR AS token, "
            "NULL::INTEGER AS span_start, NULL::INTEGER AS span_end, NULL::INTEGER AS voken_id, "
            "NULL::FLOAT AS score WHERE false"
        )
    con.execute(f"CREATE OR REPLACE VIEW vokens AS {body}")
    con.execute(
        "CREATE OR REPLACE VIEW voken_stats AS "
        "WITH per_type AS (SELECT layer, vokenizer_id, keys_layer, token, "
        "count(DISTINCT voken_id) AS vokens FROM vokens GROUP BY ALL), "
        "sizes AS (SELECT layer AS keys_layer, vokenizer_id, count(*) AS voken_set_size "
        "FROM voken_set GROUP BY ALL), "
        "diversity AS (SELECT layer, vokenizer_id, keys_layer, avg(vokens) AS "
        "vokens_per_token_type FROM per_type GROUP BY ALL) "
        "SELECT t.layer, t.vokenizer_id, t.keys_layer, count(*) AS tokens, "
        "count(DISTINCT t.token) AS token_types, count(DISTINCT t.voken_id) AS vokens_used, "
        "any_value(s.voken_set_size) AS voken_set_size, "
        "count(DISTINCT t.voken_id) / any_value(s.voken_set_size) AS coverage, "
        "any_value(d.vokens_per_token_type) AS vokens_per_token_type, "
        "avg(t.score) AS mean_score, histogram(round(t.score, 1)) AS score_histogram "
        "FROM vokens t LEFT JOIN sizes s USING (keys_layer, vokenizer_id) "
        "LEFT JOIN diversity d USING (layer, vokenizer_id, keys_layer) "
        "GROUP BY t.layer, t.vokenizer_id, t.keys_layer"
    )


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
