"""The spans contract, checked one way by every scene-graph test."""

from __future__ import annotations


def assert_spans_exact(text: str, graph: dict) -> None:
    """Every object, attribute and relation span is the caption's text at that span."""
    for obj in graph["objects"]:
        assert text[obj["span"]["start"] : obj["span"]["end"]] == obj["text"]
        for attr in obj["attributes"]:
            assert text[attr["span"]["start"] : attr["span"]["end"]] == attr["text"]
    for rel in graph["relations"]:
        assert text[rel["span"]["start"] : rel["span"]["end"]] == rel["predicate"]
