"""The scene-graph parser: rules, spans into the caption, bad input, the stage."""

from __future__ import annotations

import pytest

from mmdata.models.scenegraph.parser import CaptionParser, blank_tags, stand_ins
from mmdata.stages.scene_graph import SceneGraph
from tests.scenegraph.spans import assert_spans_exact
from tests.stages.helpers import caption, work_batch


@pytest.fixture(scope="module")
def parser() -> CaptionParser:
    return CaptionParser(max_tokens=40)


def triples(graph: dict) -> list[tuple[str, str, str]]:
    objects = graph["objects"]
    return [
        (objects[r["subject"]]["head"], r["predicate"], objects[r["object"]]["head"])
        for r in graph["relations"]
    ]


def attributes(graph: dict) -> list[tuple[str, str]]:
    return [(o["head"], a["text"]) for o in graph["objects"] for a in o["attributes"]]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a man riding a horse", [("man", "riding", "horse")]),
        ("a dog sitting on a couch", [("dog", "sitting on", "couch")]),
        ("the cat is on the mat", [("cat", "on", "mat")]),
        ("a car parked in front of a house", [("car", "parked in front of", "house")]),
        ("a man who is holding a bat", [("man", "holding", "bat")]),
        # the bundled table writes a passive's doer first (the rules alone: surface order)
        ("a horse ridden by a man", [("man", "ridden", "horse")]),
        (
            "trees and bushes growing on green lawn",
            [("trees", "growing on", "lawn"), ("bushes", "growing on", "lawn")],
        ),
        ("bits of ice left on the ground", [("ice", "left on", "ground")]),
    ],
)
def test_relations(parser, text, expected):
    assert triples(parser.parse(text)) == expected


def meanings(graph: dict) -> list[tuple[str, str, str, str]]:
    objects = graph["objects"]
    return [
        (
            objects[r["subject"]]["head"],
            r["predicate"],
            r["predicate_lemma"],
            objects[r["object"]]["head"],
        )
        for r in graph["relations"]
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a man riding a horse", ("man", "riding", "ride", "horse")),  # not spaCy's "rid"
        ("the horse 's tail", ("horse", "'s", "have", "tail")),
        ("the tail of the horse", ("horse", "of", "have", "tail")),
        ("a cat and its paw", ("cat", "its", "have", "paw")),
        ("two boys and their bikes", ("boys", "their", "have", "bikes")),
        ("a glass of wine", ("wine", "of", "in", "glass")),
        ("a plate of food", ("food", "of", "on", "plate")),
        ("a picture of a dog", ("dog", "of", "in", "picture")),
        ("a bowl with flowers in it", ("flowers", "in", "in", "bowl")),
        ("a truck with a plant on top", ("plant", "on top", "on top of", "truck")),
        ("plants growing out of the water", ("plants", "growing out of", "grow out of", "water")),
        ("the bird has beak", ("bird", "has", "have", "beak")),
        ("woman holding kite", ("woman", "holding", "hold", "kite")),
        ("sign on a metal pole", ("sign", "on", "on", "pole")),
    ],
)
def test_predicates_are_the_captions_words_and_lemmas_say_what_they_mean(parser, text, expected):
    graph = parser.parse(text)
    assert expected in meanings(graph)
    assert_spans_exact(text, graph)


def test_materials_and_colours_describe_not_name(parser):
    graph = parser.parse("a red brick building behind a metal railing")
    assert [o["head"] for o in graph["objects"]] == ["building", "railing"]
    assert attributes(graph) == [("building", "red"), ("building", "brick"), ("railing", "metal")]


def test_objects_attributes_counts_and_spans(parser):
    text = "three red apples on a wooden table next to a fire hydrant"
    graph = parser.parse(text)
    apples = graph["objects"][0]
    assert (apples["head"], apples["lemma"], apples["count"]) == ("apples", "apple", 3)
    assert attributes(graph) == [("apples", "red"), ("table", "wooden")]
    assert_spans_exact(text, graph)


def test_predicative_adjectives_go_to_the_subject(parser):
    assert attributes(parser.parse("the sky is blue and cloudy")) == [
        ("sky", "blue"),
        ("sky", "cloudy"),
    ]


@pytest.mark.parametrize(
    ("text", "note"),
    [
        ("", "empty caption"),
        ("   \n", "empty caption"),
        ("<br/>", "no words outside HTML tags"),
        ("🙂🙂🙂", "no object found"),
    ],
)
def test_bad_input_gives_an_empty_graph_with_a_note(parser, text, note):
    graph = parser.parse(text)
    assert graph["objects"] == [] and graph["relations"] == [] and graph["note"] == note


def test_html_tags_are_blanked_and_spans_still_index_the_caption(parser):
    text = "<b>a red car</b>"
    assert len(blank_tags(text)) == len(text)
    graph = parser.parse(text)
    car = graph["objects"][0]
    assert text[car["span"]["start"] : car["span"]["end"]] == "a red car"


def test_long_captions_are_truncated_and_say_so(parser):
    graph = parser.parse("a dog on a mat " * 100)
    assert graph["note"] == "truncated at 40 tokens" and graph["objects"]


def test_mixed_scripts_and_other_languages_never_crash(parser):
    graphs = parser.parse_many(
        ["un chien sur le canapé", "猫 on a mat", None, "a cat 🐈 on a sofa"]
    )
    assert len(graphs) == 4 and graphs[2]["note"] == "empty caption"


def test_stage_fills_every_caption_and_keeps_rows(parser):
    batch = work_batch(
        captions=[[caption("1", "a man riding a horse"), caption("2", "")], [caption("3", "a cat")]]
    )
    stage = SceneGraph(max_tokens=40)
    stage._parser = parser  # the module's parser: one model load for the file
    out = stage.process(batch)
    assert out.num_rows == 2 and out.column("status").to_pylist() == ["ok", "ok"]
    first = out.column("captions")[0].as_py()
    assert triples(first[0]["scene_graph"]) == [("man", "riding", "horse")]
    assert first[1]["scene_graph"]["note"] == "empty caption"
    assert out.column("captions")[1].as_py()[0]["scene_graph"]["objects"][0]["head"] == "cat"


def test_unknown_model_names_the_choices():
    with pytest.raises(ValueError, match="not installed"):
        CaptionParser(model="xx_no_such_model")


def test_misread_words_are_parsed_again_with_a_plain_stand_in():
    """A word the corpus names things with, tagged otherwise, and a colour read as a noun
    before a noun get a stand-in; the second parse is copied onto the caption's words."""
    plain_parser = CaptionParser(conventions=None)  # its docs are not parsed again
    nouns = frozenset({"doggy", "bookshelf"})
    docs = list(plain_parser.docs(["doggy laying on the bed", "grey concrete under bench"]))
    assert [stand_ins(doc, nouns) for doc in docs] == [{0: "dog"}, {0: "red"}]
    again = plain_parser.reparse_misread(docs, nouns)
    for before, after in zip(docs, again):
        assert [t.text for t in after] == [t.text for t in before]
        assert after.text == before.text
    doggy, laying = again[0][0], again[0][1]
    assert doggy.pos_ == "NOUN" and doggy.lemma_ == "doggy"
    assert laying.head.i == doggy.i  # "dog laying on the bed": the participle is the dog's
    assert again[1][0].pos_ != "NOUN" and again[1][0].head.text == "concrete"
    # nothing misread: the same Doc back
    plain = list(plain_parser.docs(["a dog on a bed"]))
    assert plain_parser.reparse_misread(plain, nouns)[0] is plain[0]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("wooden bookshelf hanging on a wall", [("bookshelf", "hanging on", "wall")]),
        (
            "cow grazing in snow covered field",
            [("cow", "grazing in", "field"), ("snow", "covered", "field")],
        ),
        ("two zebras nuzzling each other", [("zebras", "nuzzling", "zebras")]),
        ("the boy is about to eat the pizza", [("boy", "eat", "pizza")]),
        (
            "woman 's face as she sits at the table",
            [("woman", "'s", "face"), ("woman", "sits at", "table")],
        ),
    ],
)
def test_relations_of_issue_23_second_round(text, expected):
    graph = CaptionParser().parse(text)
    assert sorted(triples(graph)) == sorted(expected)
    assert_spans_exact(text, graph)


@pytest.mark.parametrize(
    ("text", "expected", "names"),
    [
        # a subject pronoun with no noun before it is the thing; the corpus calls it "man"
        ("he is riding a motorcycle", [("he", "riding", "motorcycle")], {"he": "man"}),
        ("she is holding a rope", [("she", "holding", "rope")], {"she": "woman"}),
        ("someone holding a donut", [("someone", "holding", "donut")], {"someone": "person"}),
        # a noun before it: the pronoun stands for it and is no object of its own
        ("woman 's face as she sits at the table", [("woman", "sits at", "table")], {}),
        # after a copula the noun is the thing
        ("he is a customer at this shop", [("customer", "at", "shop")], {}),
        # the corpus' names for words it respells or writes as one
        (
            "a man riding a surf board",
            [("man", "riding", "surf board")],
            {"surf board": "surfboard"},
        ),
    ],
)
def test_pronoun_objects_and_corpus_names(text, expected, names):
    graph = CaptionParser().parse(text)
    assert set(expected) <= set(triples(graph))
    assert {o["head"]: o["name"] for o in graph["objects"] if o["name"]} == names
    assert_spans_exact(text, graph)  # "he" is the caption's word; "man" is only its name
