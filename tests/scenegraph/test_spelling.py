"""Respelling misspelt object and attribute words into the words gold graphs write."""

from __future__ import annotations

from mmdata.models.scenegraph.parser import CaptionParser
from mmdata.models.scenegraph.spelling import FLOOR, Speller, one_edit
from tests.scenegraph.spans import assert_spans_exact
from tests.scenegraph.test_parser import meanings

OBJECTS = {"ceiling": 40, "building": 90, "bike": 60, "hike": 12, "like": FLOOR - 1, "dock": 1}
ATTRIBUTES = {"brown": 200, "small": 150}


def test_one_edit_covers_each_kind_of_typo():
    edits = set(one_edit("cieling"))
    assert "ceiling" in edits  # two letters swapped
    assert {"bulding"} <= set(one_edit("building"))  # one dropped
    assert "bike" in set(one_edit("abike")) and "brown" in set(one_edit("browm"))
    assert "ceiling" not in set(one_edit("cilieng"))  # two edits away


def test_only_unknown_unwritten_words_are_respelt_into_words_written_often():
    speller = Speller({"dick", "hike"}, OBJECTS, ATTRIBUTES)
    assert speller.word("cieling", OBJECTS) == "ceiling"
    assert speller.word("bulding", OBJECTS) == "building"
    assert speller.word("hike", OBJECTS) == "hike"  # the model knows it
    assert speller.word("dock", OBJECTS) == "dock"  # the gold graphs write it
    assert speller.word("dick", OBJECTS) == "dick"  # known, though close to "dock"
    assert speller.word("bkie", OBJECTS) == "bike"  # bike (60) over hike (12)
    assert speller.word("lkie", OBJECTS) == "lkie"  # like is written too rarely
    assert speller.word("bke", OBJECTS) == "bke"  # too short to tell
    assert speller.phrase("white cieling", OBJECTS) == "white ceiling"
    assert speller.phrase("ceiling", OBJECTS) is None  # nothing respelt


def test_respelling_names_objects_and_attributes_and_keeps_a_rename():
    speller = Speller(set(), OBJECTS, ATTRIBUTES)
    graph = {
        "objects": [
            {"head": "bulding", "name": None, "attributes": [{"text": "browm"}]},
            {"head": "guy", "name": "person", "attributes": [{"text": "smal"}]},
            {"head": "bike", "name": None, "attributes": []},
        ]
    }
    speller.respell(graph)
    assert [o["name"] for o in graph["objects"]] == ["building", "person", None]
    assert [a["name"] for o in graph["objects"] for a in o["attributes"]] == ["brown", "small"]


def test_the_bundled_parser_respells_and_keeps_the_captions_words():
    text = "a square clock hanging from the cieling"
    graph = CaptionParser().parse(text)
    ceiling = next(o for o in graph["objects"] if o["head"] == "cieling")
    assert ceiling["name"] == "ceiling"
    assert text[ceiling["span"]["start"] : ceiling["span"]["end"]] == "the cieling"
    assert_spans_exact(text, graph)
    # without a table there is nothing to respell into
    plain = CaptionParser(conventions=None).parse(text)
    assert all(o.get("name") is None for o in plain["objects"])


def test_a_misspelt_caption_word_is_parsed_as_the_word_the_captions_say():
    captions = {"wearing": 900, "against": 300, "hanging": 200, "wear": 50}
    speller = Speller({"wearing"}, OBJECTS, ATTRIBUTES, {"leaning": 30}, captions)
    assert speller.parsed_word("wearng") == "wearing"
    assert speller.parsed_word("agianst") == "against"  # two letters swapped
    assert speller.parsed_word("wearing") is None  # known to the model
    assert speller.parsed_word("bulding") is None  # no caption word one edit away here
    assert speller.parsed_word("dock") is None  # the gold graphs write it
    assert speller.parsed_word("leanng") is None  # not said in captions often
    assert Speller(set(), OBJECTS, ATTRIBUTES).parsed_word("wearng") is None  # no captions


def test_the_bundled_parser_parses_a_misspelt_verb_as_meant():
    parser = CaptionParser()
    text = "a man wearng a shirt"
    graph = parser.parse(text)
    assert meanings(graph) == [("man", "wearng", "wear", "shirt")]
    assert_spans_exact(text, graph)  # the words stay the caption's
