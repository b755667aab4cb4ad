"""The corpus' spelling of a misspelt object or attribute word: "bulding" -> building;
and the word a misspelt caption word is parsed as: "wearng" -> wearing.

Captions are typed by people, and scene-graph corpora write the word that was meant
(FACTUAL writes (clock, hang from, ceiling) for "hanging from the cieling"). A word is
respelt only when the spaCy model has never seen it (its string store as loaded, before
it parses anything: parsing adds every word it meets) and the gold graphs never wrote
it, and then only into a word one edit away (a letter dropped, added, changed, or two
swapped) that the gold graphs write at least :data:`FLOOR` times; the most written one
wins. The graph keeps the caption's words and spans; the respelling goes in the object's
or attribute's ``name``. Any misspelt word of a caption (verbs and prepositions too) is
parsed as the word one edit away that the train captions say most (:meth:`parsed_word`),
its parse copied onto the caption's own words (parser.py).
"""

from __future__ import annotations

import string
from collections.abc import Collection, Iterator, Mapping

#: How often the gold graphs must write a word before a misspelling is respelt into it.
FLOOR = 10
#: Words this short are too close to too many others to respell.
MIN_LENGTH = 4


def one_edit(word: str) -> Iterator[str]:
    """Every string one edit from ``word``: a letter deleted, swapped with the next,
    replaced, or inserted (Damerau-Levenshtein distance 1, lower-case letters)."""
    splits = [(word[:i], word[i:]) for i in range(len(word) + 1)]
    for left, right in splits:
        if right:
            yield left + right[1:]
            for ch in string.ascii_lowercase:
                yield left + ch + right[1:]
        if len(right) > 1:
            yield left + right[1] + right[0] + right[2:]
        for ch in string.ascii_lowercase:
            yield left + ch + right


class Speller:
    """Respells object and attribute words into the words gold graphs write."""

    def __init__(
        self,
        known: Collection[str],
        objects: Mapping[str, int],
        attributes: Mapping[str, int],
        predicates: Mapping[str, int] | None = None,
        captions: Mapping[str, int] | None = None,
    ) -> None:
        """``known``: words never respelt (the spaCy model's strings); ``objects``,
        ``attributes`` and ``predicates``: how often gold graphs write each word of an
        object's name, of an attribute and of a predicate; ``captions``: how often the
        train captions say each word (those said often)."""
        self.known = known
        self.objects, self.attributes = objects, attributes
        self.predicates, self.captions = predicates or {}, captions or {}

    def parsed_word(self, word: str) -> str | None:
        """The word a caption's misspelt ``word`` (lower-case) stands for, to parse it as
        that ("a man wearng a shirt": wearing): one edit from it, written at least
        :data:`FLOOR` times in the train captions (``captions``); None where the word is
        known, written by the gold graphs, or has no such neighbour."""
        if not self.captions or word in self.known:
            return None  # the known first: this is asked of every word of every caption
        if any(word in counts for counts in (self.objects, self.attributes, self.predicates)):
            return None
        respelt = self.word(word, self.captions)
        return None if respelt == word else respelt

    def word(self, word: str, written: Mapping[str, int]) -> str:
        """``word`` (lower-case), or the word ``written`` most often one edit from it."""
        if len(word) < MIN_LENGTH or not word.isalpha() or word in self.known or word in written:
            return word
        counted = {c: written.get(c, 0) for c in set(one_edit(word))}
        best = min(counted, key=lambda c: (-counted[c], c))  # ties by spelling: deterministic
        return best if counted[best] >= FLOOR else word

    def phrase(self, text: str, written: Mapping[str, int]) -> str | None:
        """``text`` with its misspelt words respelt, lower-cased; None if none is."""
        words = text.lower().split()
        respelt = [self.word(w, written) for w in words]
        return " ".join(respelt) if respelt != words else None

    def respell(self, graph: dict) -> dict:
        """``graph`` with a ``name`` for each object (without one) and attribute whose
        words are misspelt."""
        for obj in graph["objects"]:
            if not obj.get("name"):
                obj["name"] = self.phrase(obj["head"], self.objects)
            for attribute in obj.get("attributes") or []:
                if not attribute.get("name"):
                    attribute["name"] = self.phrase(attribute["text"], self.attributes)
        return graph
