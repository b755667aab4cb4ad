import json
import shutil

import pytest

from mmdata.commands.cli import main
from tests.conftest import demo_recipe, write_recipe


@pytest.mark.ray
def test_demo_writes_shards_catalog_and_its_recipe(demo_out, capsys):
    assert (demo_out / "catalog.duckdb").exists()
    assert sorted(p.name for p in (demo_out / "corpus" / "data").iterdir()) == [
        f"shard-{i:05d}.parquet" for i in range(4)
    ]
    for corpus in ("demo", "demo_web"):  # the demo ends with a report of each corpus
        assert "<h2>Filter funnel</h2>" in (demo_out / f"report-{corpus}.html").read_text()
    recipe = (demo_out / "demo.yaml").read_text()
    assert "${" not in recipe and f"output: {demo_out}/corpus" in recipe
    capsys.readouterr()
    assert main(["run", str(demo_out / "demo.yaml"), "-q"]) == 0  # done: adds nothing
    assert "(0 written now, 4 already done)" in capsys.readouterr().out


@pytest.mark.ray
def test_demo_trains_the_reference_model_on_its_oracle_corpus(demo_out, capsys):
    summary = json.loads((demo_out / "train" / "summary.json").read_text())
    assert summary["steps"] == 8 and summary["eval_images"] > 40
    assert 0.0 <= summary["itm_acc"] <= 1.0
    assert any(summary[f"loss_{name}"] is not None for name in ("mlm", "itm", "contrastive"))
    assert sorted(p.name for p in (demo_out / "oracle" / "data").iterdir()) == [
        f"shard-{i:05d}.parquet" for i in range(4)
    ]
    capsys.readouterr()
    query = "SELECT count(*) FROM images WHERE corpus = 'demo_oracle'"
    catalog = str(demo_out / "catalog.duckdb")
    assert main(["sql", query, "--catalog", catalog, "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == "240"


#: Every fault the demo's web part serves, and what became of it (step: reason).
WEB_REJECTS = {
    ("caption_filter", "no_caption_left"): 1,
    ("caption_filter", "caption_too_short"): 1,
    ("language_filter", "language"): 2,  # the row and its caption
    ("url_dedup", "duplicate_url"): 1,
    ("download", "http_404"): 1,
    ("download", "http_500"): 1,
    ("download", "truncated"): 1,
    ("download", "not_an_image"): 1,
    ("download", "opt_out"): 1,
    ("download", "robots_disallow"): 1,
    ("download", "decompression_bomb"): 1,
    ("download", "redirect_loop"): 1,
    ("exact_dedup", "duplicate_image"): 1,
    ("near_dedup", "near_duplicate"): 1,
}


@pytest.mark.ray
def test_demo_web_part_downloads_filters_and_dedups_on_ray(demo_out, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    query = (
        "SELECT stage, reason, count(*) AS n FROM rejects WHERE corpus = 'demo_web' GROUP BY ALL"
    )
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert {(r["stage"], r["reason"]): r["n"] for r in rows} == WEB_REJECTS
    query = (
        "SELECT count(*) AS n, count(DISTINCT sha256) AS d FROM images WHERE corpus = 'demo_web'"
    )
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    counts = json.loads(capsys.readouterr().out)
    assert counts == {"n": 14, "d": 14}  # 12 good + the 429 retried + the repaired caption
    query = "SELECT text FROM captions WHERE corpus = 'demo_web' AND text LIKE '%caf%'"
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["text"] == "the café sign glowing with round lights"


@pytest.mark.ray
def test_sql_formats(demo_out, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    query = "SELECT image_id, width_px FROM images ORDER BY image_id LIMIT 2"
    assert main(["sql", query, "--catalog", catalog]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["image_id", "width_px"] and table[-1] == "(2 rows)"
    assert main(["sql", query, "--catalog", catalog, "--format", "csv"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == "image_id,width_px" and lines[1].startswith("coco:1,")
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["image_id"] == "coco:1" and isinstance(rows[0]["width_px"], int)


@pytest.mark.ray
def test_sql_refuses_writes_and_bad_queries(demo_out, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    assert main(["sql", "DELETE FROM shards", "--catalog", catalog]) == 2
    assert "read-only" in capsys.readouterr().err
    assert main(["sql", "SELECT nope FROM images", "--catalog", catalog]) == 2
    assert "query failed" in capsys.readouterr().err


def test_validate_reports_ok_and_errors(demo_data, tmp_path, capsys):
    good = write_recipe(tmp_path / "good.yaml", demo_recipe(demo_data, tmp_path))
    assert main(["validate", str(good)]) == 0
    assert "ok: corpus 'demo': coco -> read_images" in capsys.readouterr().out
    recipe = demo_recipe(demo_data, tmp_path)
    recipe["stages"] = [{"caption_filterr": {}}]
    bad = write_recipe(tmp_path / "bad.yaml", recipe)
    assert main(["validate", str(bad)]) == 1
    err = capsys.readouterr().err
    assert "bad.yaml: 1 problem(s)" in err and "unknown stage 'caption_filterr'" in err
    assert main(["run", str(bad), "--executor", "local"]) == 2
    assert "mmdata run: error:" in capsys.readouterr().err


def test_run_on_a_json_that_is_not_coco(demo_data, tmp_path, capsys):
    other = tmp_path / "other.json"
    other.write_text('{"hello": 1}')
    recipe = demo_recipe(demo_data, tmp_path)
    recipe["source"]["coco"]["captions"] = str(other)
    path = write_recipe(tmp_path / "r.yaml", recipe)
    assert main(["run", str(path), "--executor", "local", "-q"]) == 2
    assert "other.json: top level lacks key(s) ['images', 'annotations']" in capsys.readouterr().err


def test_stages_lists_sources_stages_and_arguments(capsys):
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    for text in (
        "sources:",
        "  coco:",
        "captions: InputPath",
        "stages:",
        "  image_size_filter:",
        "min_side_px: int = 0",
        "reads:  width_px, height_px",
    ):
        assert text in out


@pytest.mark.ray
def test_demo_fills_the_scene_graph_views(demo_out, capsys):
    catalog = str(demo_out / "catalog.duckdb")
    query = "SELECT predicate, count(*) AS n FROM scene_graph_relations GROUP BY 1 ORDER BY 2 DESC"
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    predicates = {json.loads(line)["predicate"] for line in capsys.readouterr().out.splitlines()}
    assert {"to the left of", "to the right of", "above", "below"} <= predicates
    query = (
        "SELECT c.text, o.head, o.span_start, o.span_end FROM scene_graph_objects o "
        "JOIN captions c USING (caption_id) WHERE o.corpus = 'demo' LIMIT 20"
    )
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    for line in capsys.readouterr().out.splitlines():
        row = json.loads(line)
        assert row["text"][row["span_start"] : row["span_end"]].endswith(row["head"])
    query = "SELECT count(*) AS n FROM scene_graph_attributes WHERE corpus = 'demo'"
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] > 50
    # the corpus' names live in the struct (docs/sql.md's query): none on the demo's
    # correctly spelt captions, every object has the field
    query = (
        "SELECT count(*) AS objects, count(o.name) AS named FROM (SELECT "
        "unnest(scene_graph.objects) AS o FROM captions WHERE corpus = 'demo')"
    )
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["objects"] > 50 and 0 <= row["named"] < row["objects"]


@pytest.mark.ray
def test_demo_fills_the_region_views_and_exports(demo_out, capsys, tmp_path):
    catalog = str(demo_out / "catalog.duckdb")
    query = (
        "SELECT count(*) AS images, min(num_boxes) AS lo, max(num_boxes) AS hi "
        "FROM regions WHERE corpus = 'demo'"
    )
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    row = json.loads(capsys.readouterr().out)
    kept = "SELECT count(*) AS n FROM images WHERE corpus = 'demo'"
    assert main(["sql", kept, "--catalog", catalog, "--format", "json"]) == 0
    assert row == {"images": json.loads(capsys.readouterr().out)["n"], "lo": 10, "hi": 10}
    query = (
        "SELECT count(*) AS n FROM region_boxes "
        "WHERE corpus = 'demo' AND cls_name IS NOT NULL AND x2 > x1"
    )
    assert main(["sql", query, "--catalog", catalog, "--format", "json"]) == 0
    assert json.loads(capsys.readouterr().out)["n"] == row["images"] * 10
    out = tmp_path / "demo.tsv"
    tsv = ["export", "--format", "lxmert-tsv", "--out", str(out), "--corpus", "demo"]
    capsys.readouterr()
    assert main([*tsv, "--catalog", catalog, "--json"]) == 0
    assert len(out.read_text().splitlines()) == row["images"]
    captured = capsys.readouterr()  # progress for scripts: JSON lines, then one summary
    assert json.loads(captured.out) == {
        "event": "summary", "format": "lxmert-tsv", "out": str(out), "images": row["images"]
    }  # fmt: skip
    last = json.loads(captured.err.strip().splitlines()[-1])
    assert (last["unit"], last["done"], last["total"]) == ("image", row["images"], None)
    npz = ["export", "--format", "uniter-npz", "--out", str(tmp_path / "npz"), "--corpus", "demo"]
    assert main([*npz, "--catalog", catalog]) == 0  # the demo stores soft labels for UNITER
    assert len(list((tmp_path / "npz").glob("*.npz"))) == row["images"]


def test_run_progress_for_people_and_for_scripts(demo_data, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.yaml", demo_recipe(demo_data, tmp_path))
    assert main(["run", str(path), "--executor", "local", "--json"]) == 0
    captured = capsys.readouterr()
    events = [json.loads(line) for line in captured.err.strip().splitlines()]
    assert events and all(e["event"] == "progress" and e["unit"] == "shard" for e in events)
    last = events[-1]
    assert (last["done"], last["total"], last["rows"], last["eta_s"]) == (4, 4, 64, 0.0)
    assert last["rows_per_s"] > 0
    summary = json.loads(captured.out)  # stdout is one JSON document
    assert summary["event"] == "summary" and summary["shards_written"] == 4
    assert [s["stage"] for s in summary["steps"]] == [
        "coco", "read_images", "image_size_filter", "caption_filter"
    ]  # fmt: skip
    assert summary["steps"][0]["rows_in"] == 64
    assert {"unit": "image", "reason": "too_small", "rows": 1} in summary["steps"][2]["drops"]
    assert summary["files"]["data"]["files"] == 4

    (tmp_path / "catalog.duckdb").unlink()
    shutil.rmtree(tmp_path / "corpus")
    assert main(["run", str(path), "--executor", "local"]) == 0  # people: a bar, a table
    captured = capsys.readouterr()
    assert "4/4" in captured.err and "rows=64" in captured.err  # tqdm's bar and rows
    assert "corpus demo: 4 shards (4 written now, 0 already done)" in captured.out
    assert main(["run", str(path), "--executor", "local", "-q"]) == 0
    captured = capsys.readouterr()
    assert captured.err == "" and "(0 written now, 4 already done)" in captured.out


def test_sigpipe_is_the_console_scripts_business_not_a_library_callers(tmp_path):
    """`mmdata stages | head -1` ends quietly, but main([...]) called in-process (tests,
    notebooks) must not make the whole process die on the next broken pipe."""
    import signal
    import subprocess
    import sys

    before = signal.getsignal(signal.SIGPIPE)
    assert main(["stages"]) == 0
    assert signal.getsignal(signal.SIGPIPE) == before
    done = subprocess.run(
        f"{sys.executable} -m mmdata.commands.cli stages | head -1",
        shell=True, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        done.stdout.strip() and "BrokenPipe" not in done.stderr and "Traceback" not in done.stderr
    )
