"""FACTUAL loader, SPICE-style tuple scorer, sng_parser adapter and ``mmdata sg-eval``."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from mmdata.commands.cli import main
from mmdata.core.errors import InputFormatError
from mmdata.models.scenegraph.evaluate import (
    GoldCaption,
    Lemmatiser,
    Score,
    evaluate,
    gold_caption,
    graph_tuples,
    load_factual,
    resolve_model,
    sng_graphs,
)
from mmdata.models.scenegraph.parser import load_model

FACTUAL = Path(__file__).parents[1] / "data" / "factual" / "factual_random_dev.csv"
needs_factual = pytest.mark.skipif(not FACTUAL.exists(), reason=f"{FACTUAL} not present")
HEADER = "image_id,region_id,caption,scene_graph\n"


@pytest.fixture(scope="module")
def lemmatiser() -> Lemmatiser:
    return Lemmatiser(load_model(None))


@pytest.fixture(scope="module")
def factual() -> list[GoldCaption]:
    return load_factual(FACTUAL)


@needs_factual
def test_factual_loads_every_row(factual):
    assert len(factual) == 1000
    assert len({(g.image_id, g.region_id) for g in factual}) == 1000
    assert factual[0] == GoldCaption(
        2325192,
        4329398,
        "white stove in a kitchen",
        ("stove", "kitchen"),
        (("stove", "white"),),
        (("stove", "in", "kitchen"),),
        line=2,
    )


@needs_factual
def test_factual_counts_lone_objects_and_quoted_captions(factual):
    rows = {(g.image_id, g.region_id): g for g in factual}
    boats = rows[2357390, 2792919]
    assert boats.attributes == (("boats", "5"),)
    assert boats.relations == (("boats", "tie to", "dock"),)
    pole = rows[909, 4974255]  # written without CSV quotes: "( pole )"
    assert (pole.objects, pole.attributes, pole.relations, pole.line) == (("pole",), (), (), 12)
    shelves = rows[2391949, 1142566]
    assert shelves.caption == "silver , metal shelves on the wall"
    assert shelves.objects == ("shelves", "wall")
    assert shelves.attributes == (("shelves", "silver"), ("shelves", "metal"))
    sky = rows[2367480, 2310704]
    assert ("sky", "partly cloudy") in sky.attributes


@pytest.mark.parametrize(
    ("body", "line", "says"),
    [
        # a quoted caption over two lines: the bad row after it is on line 4
        ('1,2,"a dog\non a couch","( dog , on , couch )"\n3,4,x,"( dog , on )"\n', 4, "on )"),
        ("1,2,a dog\n", 2, "3 fields"),
        ('1,2,a dog,"( dog ) ( cat )"\n', 2, "unexpected ''"),
        ('1,2,a dog,"( dog ) , junk"\n', 2, "is not a ' , '-separated"),
        ("x,2,a dog,( dog )\n", 2, "invalid literal"),
        ("1,2,a dog,\n", 2, "is not a ' , '-separated"),
    ],
)
def test_malformed_factual_rows_name_file_and_line(tmp_path, body, line, says):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + body)
    with pytest.raises(InputFormatError, match=rf"bad\.csv, line {line}: .*{re.escape(says)}"):
        load_factual(path)


def test_wrong_header_is_an_error(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("id,caption\n")
    with pytest.raises(InputFormatError, match=r"bad\.csv, line 1: header"):
        load_factual(path)


DOGS = gold_caption(
    [
        "1",
        "1",
        "two dogs sitting on a red couch",
        "( dogs , sit on , couch ) , ( dogs , is , 2 ) , ( couch , is , red )",
    ]
)


def _graph(objects: list[tuple[str, int | None, list[str]]], relations: list[tuple]) -> dict:
    """A graph dict from (lemma, count, attribute lemmas) and (subject, predicate, object)."""
    return {
        "objects": [
            {"lemma": n, "count": c, "attributes": [{"lemma": a} for a in attrs]}
            for n, c, attrs in objects
        ],
        "relations": [{"subject": s, "predicate_lemma": p, "object": o} for s, p, o in relations],
        "note": None,
    }


#: "dogs" against "dog", "sitting on" against "sit on": lemmas on both sides.
PERFECT = _graph([("dog", 2, []), ("couch", None, ["red"])], [(0, "sitting on", 1)])
#: dog (no count), couch, an extra window; a wrong attribute; a wrong relation.
PARTIAL = _graph(
    [("dogs", None, []), ("couch", None, ["big"]), ("window", None, [])], [(0, "sit on", 2)]
)


def test_a_perfect_graph_scores_one(lemmatiser):
    assert graph_tuples(PERFECT, lemmatiser) == {
        ("dog",),
        ("couch",),
        ("dog", "2"),
        ("couch", "red"),
        ("dog", "sit on", "couch"),
    }
    report = evaluate([PERFECT], [DOGS], lemmatiser)
    assert report.set_match == 1.0
    assert {k: s.f1 for k, s in report.scores.items()} == {
        "object": 1.0,
        "attribute": 1.0,
        "relation": 1.0,
        "overall": 1.0,
    }


def test_partial_graphs_are_micro_averaged(lemmatiser):
    report = evaluate([PERFECT, PARTIAL], [DOGS, DOGS], lemmatiser)
    scores = report.scores
    # objects: 2 + 2 of 2 + 3 predicted, 2 + 2 gold; attributes 2 + 0 of 2 + 1; relations 1 + 0
    assert scores["object"] == Score(matched=4, predicted=5, gold=4)
    assert scores["attribute"] == Score(matched=2, predicted=3, gold=4)
    assert scores["relation"] == Score(matched=1, predicted=2, gold=2)
    assert scores["overall"] == Score(matched=7, predicted=10, gold=10)
    assert scores["object"].f1 == pytest.approx(2 * 0.8 * 1.0 / 1.8)
    assert scores["attribute"].precision == pytest.approx(2 / 3)
    assert scores["attribute"].recall == pytest.approx(0.5)
    assert scores["overall"].f1 == pytest.approx(0.7)
    assert report.set_match == 0.5


def test_empty_kinds_and_mismatched_lengths():
    assert (Score().precision, Score().recall, Score().f1) == (1.0, 1.0, 1.0)
    assert (Score(0, 0, 3).precision, Score(0, 2, 0).recall, Score(0, 2, 0).f1) == (0, 1, 0)
    with pytest.raises(ValueError, match="1 graphs for 2 gold captions"):
        evaluate([PERFECT], [DOGS, DOGS])


def test_lemmatiser_gives_every_form_one_key(lemmatiser):
    assert lemmatiser("Buildings") == lemmatiser("building") == lemmatiser("build")
    assert lemmatiser("riding on") == lemmatiser("ride on") == "ride on"  # not spaCy's "rid"
    assert lemmatiser("dogs") == "dog" and lemmatiser("2") == "2"


def test_sng_adapter(lemmatiser):
    dogs, horse = sng_graphs(
        ["two tall dogs sitting on a couch", "a man riding a horse"], resolve_model(None)
    )
    assert dogs["objects"][0] == {
        "head": "dogs",
        "lemma": "dog",
        "text": "two tall dogs",
        "span": None,
        "count": 2,
        "attributes": [{"text": "tall", "lemma": "tall", "span": None}],
    }
    assert [o["head"] for o in dogs["objects"]] == ["dogs", "couch"]
    assert dogs["relations"] == [
        {
            "subject": 0,
            "predicate": "sitting on",
            "predicate_lemma": "sit on",
            "object": 1,
            "span": None,
        }
    ]
    assert graph_tuples(horse, lemmatiser) == {("man",), ("horse",), ("man", "ride", "horse")}


@needs_factual
def test_sg_eval_cli_on_a_slice(tmp_path, capsys):
    lines = FACTUAL.read_text().splitlines(keepends=True)
    path = tmp_path / "slice.csv"
    path.write_text("".join(lines[:21]))
    assert main(["sg-eval", "--gold", str(path), "--peer"]) == 0
    out = capsys.readouterr().out
    assert "mmdata (P / R / F1)" in out and "sng_parser (P / R / F1)" in out
    assert "F1 diff (points)" in out and "\n(20 captions)\n" in out
    table = {line.split()[0]: line.split() for line in out.splitlines()[2:6]}
    assert list(table) == ["object", "attribute", "relation", "overall"]
    assert all(len(cells) == 12 for cells in table.values())  # kind, 2 x "P / R / F1", diff
    assert main(["sg-eval", "--gold", str(path), "--limit", "5"]) == 0
    out = capsys.readouterr().out
    assert "sng_parser" not in out and "\n(5 captions)\n" in out


def test_sg_eval_cli_names_a_bad_line(tmp_path, capsys):
    path = tmp_path / "bad.csv"
    path.write_text(HEADER + "1,2,a dog,( dog )\n1,2,a cat,( cat , on )\n")
    assert main(["sg-eval", "--gold", str(path)]) == 2
    assert f"{path}, line 3:" in capsys.readouterr().err
