"""``mmdata retry`` against the local fault server: a URL that fails twice and then
succeeds moves from rejects to images exactly once; the funnel stays exact; a crash in
the middle of a retry loses nothing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mmdata.catalog.store import Catalog
from mmdata.commands.check import check
from mmdata.commands.cli import main
from mmdata.demo.webserver import FaultServer
from mmdata.engine import recipe as recipes
from mmdata.engine.retry import RetryError, reason_matcher, retry_corpus
from mmdata.engine.run import run_recipe
from mmdata.engine.runlock import CorpusBusyError, corpus_lock
from tests.conftest import write_recipe
from tests.test_run import _cli

INPUT_ROWS = 7


@pytest.fixture(scope="module")
def server():
    with FaultServer(slow_s=1.0) as srv:
        yield srv


def url_rows(tag: str) -> list[tuple[str, str]]:
    """(path, caption) per input row; image ids are url_list:<row>, 3 rows a shard.
    ``tag`` makes the failing paths this test's own (the server counts hits per path)."""
    return [
        ("/gen/1.jpg", "a picture that downloads at once"),  # 0
        (f"/fail-twice/5.jpg?t={tag}", "a picture behind a server that fails twice"),  # 1
        ("/status/404", "a picture that was deleted long ago"),  # 2
        ("/gen/2.jpg", "another picture that downloads at once"),  # 3
        # the bytes of /gen/1.jpg once it succeeds: exact_dedup must catch it then
        (f"/fail-twice/1.jpg?t={tag}", "picture one again behind a failing server"),  # 4
        ("/status/500", "a picture on a server that keeps failing"),  # 5
        ("/gen/3.jpg", "a third picture that downloads at once"),  # 6
    ]


def web_corpus(server: FaultServer, out: Path, tag: str, relative: bool = False) -> Path:
    """Write the URL list and the recipe (the download stage's own retries: 0); returns
    the recipe's path."""
    out.mkdir(parents=True, exist_ok=True)
    base = f"http://127.0.0.1:{server.server_port}"
    lines = [json.dumps({"url": base + p, "caption": c}) for p, c in url_rows(tag)]
    (out / "urls.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    root = "" if relative else f"{out}/"
    spec = {
        "name": "web",
        "imports": ["tests.plugin_stages"],
        "source": {"url_list": {"path": f"{root}urls.jsonl"}},
        "stages": [
            {"url_dedup": {}},
            {"test_note_items": {}},  # an item reject on every row, retried ones included
            {
                "download": {
                    "timeout_s": 2,
                    "retries": 0,
                    "backoff_s": 0.01,
                    "allowed_networks": ["127.0.0.1/32"],
                }
            },
            {"exact_dedup": {}},
        ],
        "output": f"{root}corpus",
        "catalog": f"{root}catalog.duckdb",
        "on_error": "record",
        "shard_rows": 3,
    }
    return write_recipe(out / "web.yaml", spec)


def build(server: FaultServer, out: Path, tag: str) -> Catalog:
    recipe = recipes.load(web_corpus(server, out, tag))
    run_recipe(recipe, "local", progress=False)
    return Catalog(recipe.catalog)


def image_rejects(catalog: Catalog) -> dict[str, tuple[str, str]]:
    rows = catalog.query(
        "SELECT image_id, stage, reason FROM rejects WHERE item_kind IS NULL ORDER BY image_id"
    )[1]
    return {image_id: (stage, reason) for image_id, stage, reason in rows}


def kept(catalog: Catalog) -> list[str]:
    return [r[0] for r in catalog.query("SELECT image_id FROM images ORDER BY image_id")[1]]


def retry(catalog: Catalog, capsys, *flags: str) -> dict:
    """``mmdata retry web --json`` in this process; its summary."""
    capsys.readouterr()
    assert main(["retry", "web", "--catalog", catalog.path, "--json", *flags]) == 0
    return json.loads(capsys.readouterr().out)


def assert_funnel_matches_the_rows(catalog: Catalog) -> None:
    """stage_summary and drops_summary say exactly what images and rejects hold."""
    steps = catalog.query(
        "SELECT step_index, rows_in, rows_out FROM stage_summary WHERE corpus = 'web' "
        "ORDER BY step_index"
    )[1]
    assert steps[0][1] == INPUT_ROWS
    assert all(a[2] == b[1] for a, b in zip(steps, steps[1:]))  # out of one = into the next
    assert steps[-1][2] == len(kept(catalog))
    drops = catalog.query(
        "SELECT stage, unit, reason, rows FROM drops_summary WHERE corpus = 'web' ORDER BY ALL"
    )[1]
    actual = catalog.query(
        "SELECT stage, coalesce(item_kind, 'image'), reason, count(*) FROM rejects "
        "WHERE corpus = 'web' GROUP BY ALL ORDER BY ALL"
    )[1]
    assert drops == actual
    image_drops = dict(
        catalog.query(
            "SELECT step_index, sum(rows) FROM drops_summary WHERE corpus = 'web' AND "
            "unit = 'image' GROUP BY ALL"
        )[1]
    )
    assert all(rows_in - rows_out == image_drops.get(i, 0) for i, rows_in, rows_out in steps)
    assert check(catalog).problems == []


def test_a_url_that_fails_twice_moves_from_rejects_to_images_exactly_once(server, tmp_path, capsys):
    catalog = build(server, tmp_path, "once")
    first = {
        "url_list:1": ("download", "http_503"),
        "url_list:2": ("download", "http_404"),
        "url_list:4": ("download", "http_503"),
        "url_list:5": ("download", "http_500"),
    }
    assert image_rejects(catalog) == first
    assert kept(catalog) == ["url_list:0", "url_list:3", "url_list:6"]
    flaky, flaky_dup = "/fail-twice/5.jpg?t=once", "/fail-twice/1.jpg?t=once"
    assert server.hits(flaky) == 1
    gone_404 = server.hits("/status/404")

    # --reasons filters: no timeout here, so nothing is tried
    nothing = retry(catalog, capsys, "--reasons", "timeout")
    assert (nothing["tried"], nothing["recovered"], nothing["shards"]) == (0, 0, 0)
    assert server.hits(flaky) == 1 and image_rejects(catalog) == first

    # the default reasons: the two 503s and the 500, not the 404; all fail again
    capsys.readouterr()
    assert main(["retry", "web", "--catalog", catalog.path, "-q"]) == 0
    screen = capsys.readouterr().out
    assert "retried 3 rejected rows (timeout, http_429, http_5xx, connection_error)" in screen
    assert "recovered: 0" in screen and "failed again: 3" in screen
    assert "http_503  2" in screen and "http_500  1" in screen
    assert server.hits(flaky) == 2 and server.hits("/status/404") == gone_404
    assert image_rejects(catalog) == first  # a row that fails again stays a reject
    assert_funnel_matches_the_rows(catalog)

    # the third attempt at the two 503 URLs succeeds: one is new, the other a copy
    third = retry(catalog, capsys)
    assert (third["tried"], third["recovered"]) == (3, 1)
    assert third["failed_again"] == {"duplicate_image": 1, "http_500": 1}
    assert kept(catalog) == ["url_list:0", "url_list:1", "url_list:3", "url_list:6"]
    assert image_rejects(catalog) == {
        "url_list:2": ("download", "http_404"),
        "url_list:4": ("exact_dedup", "duplicate_image"),
        "url_list:5": ("download", "http_500"),
    }
    # each retried image's old item reject was replaced, not doubled
    notes = catalog.query(
        "SELECT image_id, count(*) FROM rejects WHERE item_kind = 'note' GROUP BY ALL"
    )
    assert dict(notes[1]) == {f"url_list:{i}": 1 for i in range(INPUT_ROWS)}
    assert_funnel_matches_the_rows(catalog)
    assert catalog.query(
        "SELECT stage, reason, rows FROM drops_summary WHERE corpus = 'web' AND unit = 'image' "
        "ORDER BY ALL"
    )[1] == [
        ("download", "http_404", 1),
        ("download", "http_500", 1),
        ("exact_dedup", "duplicate_image", 1),
    ]
    # the rewritten shards (0 and 1) have new names; shard 2 (no rejects) kept its own
    paths = catalog.query("SELECT shard_index, kind, path FROM shards ORDER BY ALL")[1]
    names = {(i, kind): Path(p).name for i, kind, p in paths}
    assert names[(0, "data")] == f"shard-00000.retry-{third['run_id']}.parquet"
    assert names[(0, "rejects")] == f"shard-00000.retry-{third['run_id']}.parquet"
    assert names[(2, "data")] == "shard-00002.parquet"

    # exactly once: the recovered row is never tried again; only the 500 is left
    again = retry(catalog, capsys)
    assert (again["tried"], again["recovered"]) == (1, 0)
    assert server.hits(flaky) == 3 and server.hits(flaky_dup) == 3
    assert kept(catalog).count("url_list:1") == 1
    # --reasons names any reason: the 404, once
    asked = retry(catalog, capsys, "--reasons", "http_404")
    assert (asked["tried"], asked["failed_again"]) == (1, {"http_404": 1})
    assert server.hits("/status/404") == gone_404 + 1
    assert_funnel_matches_the_rows(catalog)

    attempts = catalog.query(
        "SELECT r.reasons, r.status, r.shards, r.rows_tried, r.rows_recovered, "
        "r.rows_failed_again, u.executor, u.status FROM retries r JOIN runs u USING (run_id) "
        "ORDER BY run_id"
    )[1]
    default = "timeout,http_429,http_5xx,connection_error"
    assert attempts == [
        ("timeout", "finished", 0, 0, 0, 0, "retry", "finished"),
        (default, "finished", 2, 3, 0, 3, "retry", "finished"),
        (default, "finished", 2, 3, 1, 2, "retry", "finished"),
        (default, "finished", 1, 1, 0, 1, "retry", "finished"),
        ("http_404", "finished", 1, 1, 0, 1, "retry", "finished"),
    ]
    tried = catalog.query(
        "SELECT image_id, old_reason, status, stage, reason FROM retry_rows WHERE run_id = ? "
        "ORDER BY image_id",
        [third["run_id"]],
    )[1]
    assert tried == [
        ("url_list:1", "http_503", "ok", None, None),
        ("url_list:4", "http_503", "rejected", "exact_dedup", "duplicate_image"),
        ("url_list:5", "http_500", "rejected", "download", "http_500"),
    ]
    # a run of the recipe afterwards finds every shard done (its dedup stages resume
    # from the shards as listed, under their new names)
    recipe = recipes.load(tmp_path / "web.yaml")
    assert run_recipe(recipe, "local", progress=False).shards_written == 0


def test_http_5xx_means_every_5xx_status_the_download_stage_gives():
    matches = reason_matcher(["http_5xx", "timeout"])
    assert all(matches(f"http_{s}") for s in (500, 502, 503, 504, 520, 599))
    assert not any(matches(r) for r in ("http_404", "http_429", "connection_error", "http_5xx"))
    assert matches("timeout")
    assert reason_matcher(["http_4xx"])("http_429")
    with pytest.raises(RetryError, match="not a reject reason"):
        reason_matcher(["http 500"])
    with pytest.raises(RetryError, match="no reason"):
        reason_matcher([" ", ""])


@pytest.mark.parametrize("point", ["retry_written", "retry_committed"])
def test_a_retry_killed_midway_loses_nothing_and_the_next_one_completes(
    server, tmp_path, capsys, point
):
    tag = f"crash-{point}"
    catalog = build(server, tmp_path, tag)
    retry(catalog, capsys)  # the second failure
    # the third attempt succeeds, and the process is killed before or after the switch
    crashed = _cli(
        "retry", "web", "--catalog", catalog.path, "-q", env_extra={"MMDATA_FAULT": f"{point}:1"}
    )
    assert crashed.returncode == -9, crashed.stderr
    damage = {p.kind for p in check(catalog).problems}
    assert damage == {"orphan"}  # unlisted files only: the listed pair is consistent
    switched = point == "retry_committed"
    assert ("url_list:1" in kept(catalog)) == switched
    assert_every_row_once(catalog)

    final = retry(catalog, capsys)
    assert final["leftovers_removed"] >= 1
    # exactly once: a row the killed retry already moved is not tried again
    assert final["tried"] == (1 if switched else 3)
    assert kept(catalog).count("url_list:1") == 1
    assert image_rejects(catalog)["url_list:4"] == ("exact_dedup", "duplicate_image")
    assert_every_row_once(catalog)
    assert_funnel_matches_the_rows(catalog)
    statuses = catalog.query("SELECT status FROM retries ORDER BY run_id")[1]
    assert statuses == [("finished",), ("finished" if switched else "interrupted",), ("finished",)]


def assert_every_row_once(catalog: Catalog) -> None:
    ids = sorted(kept(catalog) + list(image_rejects(catalog)))
    assert ids == sorted(f"url_list:{i}" for i in range(INPUT_ROWS))


def test_a_retry_waits_for_no_run_and_needs_a_recipe_that_rebuilds_the_corpus(
    server, tmp_path, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    recipe = recipes.load(web_corpus(server, tmp_path / "here", "lock", relative=True))
    run_recipe(recipe, "local", progress=False)
    catalog, path = recipe.catalog, tmp_path / "here" / "web.yaml"
    # the stored text names relative paths: from another folder they mean other files
    with pytest.raises(RetryError, match="--recipe"):
        retry_corpus(catalog, "web", progress=False)
    with corpus_lock(recipe.output, "web"), pytest.raises(CorpusBusyError):
        retry_corpus(catalog, "web", recipe_path=path, progress=False)
    assert Catalog(catalog).query("SELECT count(*) FROM retries")[1] == [(0,)]
    # a layer aligned with a shard's rows (features written later) would be misaligned
    with Catalog(catalog).write() as con:
        con.execute(
            "INSERT INTO shards (corpus, layer, kind, shard_index, path, rows, bytes, sha256, "
            "input_rows, run_id) SELECT corpus, 'features', kind, shard_index, path || '.f', "
            "rows, bytes, sha256, input_rows, run_id FROM shards WHERE shard_index = 1"
        )
    with pytest.raises(RetryError, match="layer 'features'"):
        retry_corpus(catalog, "web", recipe_path=path, progress=False)
    with Catalog(catalog).write() as con:
        con.execute("DELETE FROM shards WHERE layer = 'features'")
    assert retry_corpus(catalog, "web", recipe_path=path, progress=False).tried == 3
    with pytest.raises(RetryError, match="no corpus 'nope'"):
        retry_corpus(catalog, "nope", progress=False)
