"""Annotation conventions learned from gold scene graphs: which words name an object, which
predicate a relation is written with, which counts are written.

English leaves these choices to the annotator: FACTUAL keeps "tree trunk" and "stop sign" as
one object but splits "pine trees" into trees + pine; it writes "a man in a red shirt" as
(man, wear, shirt). The rules (:mod:`mmdata.models.scenegraph.rules`) find the words and
their syntax; a :class:`Conventions` table, counted from gold graphs by
:mod:`mmdata.models.scenegraph.train_conventions`, says how a corpus writes them down. Each
decision backs off from the most specific key seen often enough to the rules' own default,
so an unseen word is parsed as before.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from mmdata.core.errors import InputFormatError

#: The table shipped with the package (trained on the FACTUAL train rows; docs/scenegraph_model.md).
BUNDLED = "conventions.json"
FORMAT = "mmdata-scenegraph-conventions/1"
#: Marks a written predicate that swaps subject and object.
FLIP = "^"
#: How a compound word left out of its head's name is written: as an attribute.
SPLIT_ATTRIBUTE = "is"
#: Marks a partitive form that is a relation from the thing to the partitive, with this
#: predicate: "a line of trees" -> (trees, in, line) is "@in".
RELATED = "@"
#: Share of a word's captions whose gold graph names an object with it, for ``nouns``.
NOUN_SHARE = 0.8
#: The written predicate of a relation gold graphs do not write.
DROP = ""
#: The ``renames`` label of an object gold graphs name by its own words.
KEEP_NAME = ""
#: Marks a ``renames`` key that is a lemma ("=skiier"), the back-off of a head as written.
LEMMA_KEY = "="


def attachment_keys(prep: str, target: str, verb: str | None = None) -> tuple[str, ...]:
    """Keys of ``attachments`` for the preposition ``prep`` (as written, lower-cased) before
    an object with lemma ``target``, after the verb with lemma ``verb`` where given, most
    specific first: "prep|target", "verb+prep", "prep"."""
    return (f"{prep}|{target}",) + ((f"{verb}+{prep}",) if verb else ()) + (prep,)


def digits_key(count: int) -> str:
    """The ``implied`` key of a count given in digits: "digits|7", "digits|>10"."""
    return f"digits|{count}" if count <= 10 else "digits|>10"


def first_vote(counts: Mapping[str, Sequence[int]], keys: Iterable[tuple[str, int]]) -> bool | None:
    """Does the first of a ``[yes, no]`` count win, at the first of ``keys`` (most specific
    first, each with the evidence it needs) seen that often with a winner? None when no
    key decides: the caller's default."""
    for key, floor in keys:
        yes, no = counts.get(key, (0, 0))
        if yes + no >= floor and yes != no:
            return yes > no
    return None


#: Tags of a plural noun.
PLURAL_TAGS = ("NNS", "NNPS")


def split_keys(word: str, head: str, plural: bool) -> tuple[str, ...]:
    """Keys of ``splits`` for the compound noun ``word`` before ``head`` (lemma), most
    specific first; a plural word left out of the name ("an animals mouth", "the buildings
    windows") backs off to "<plural> *": a possessive missing its apostrophe."""
    return (f"{word} {head}", f"{word} *") + (("<plural> *",) if plural else ())


@dataclass
class Conventions:
    """Counted decisions. ``names`` maps ``"modifier head"``, ``"modifier *"`` and
    ``"* head"`` to ``[kept, split]`` counts (is the modifier part of the object's name?);
    ``predicates`` maps ``"predicate|object"`` and ``"predicate"`` to ``[written, count,
    total, own]`` (the gold predicate written most often, its count, all counts, the count
    of the parser's own predicate: a majority decides, or, where the corpus never writes
    the parser's predicate ("full of"), the predicate it writes most; a written
    predicate starting with :data:`FLIP` relates object to subject: "a field surrounded by a
    fence" is written (fence, surround, field)); ``attributes`` maps an attribute's words to
    ``[written, not written]`` ("several people": FACTUAL writes no "several");
    ``partitives`` maps a partitive's lemma to ``[form, count, total]``, the form its gold
    attribute takes ("of": "group of", "lemma": "piece", "word": as written, "": none), or
    a relation to it (:data:`RELATED` + its predicate: "a line of trees" (trees, in, line));
    ``implied`` maps "carry|lemma", "carry" and "plural|lemma" to ``[written, not]``: does a
    plural object with no number take the caption's one count ("two men wearing jeans")
    or, in a caption with none, 2 ("hands")? and "digits|n": is a count given in digits
    written ("7 chairs": FACTUAL mostly writes none above 4)? ``joins`` maps "word *" (a
    modifier before an attribute) and "* word" (a particle after one) to ``[joined,
    apart]``: is "bright red" one attribute, or "red" alone? ``objects`` maps a noun's
    lemma to ``[written, not]``: does the gold graph name the thing at all ("on the
    right": no)? ``nouns``: words that
    name a gold object in at least :data:`NOUN_SHARE` of the captions that have them.
    ``splits`` maps "word head" and "word *" to ``[form, count, total]``: how a compound
    noun left out of its head's name is written: an attribute (:data:`SPLIT_ATTRIBUTE`),
    a relation from it to the head ("have": "bus wheel"), or the other way (FLIP + "in":
    "bathroom sink" -> (sink, in, bathroom)), or not at all (:data:`DROP`). ``renames``
    maps an object's head words as written (lower-cased; "=" + their lemma, the back-off)
    to ``[name, count, total]``: the name gold graphs write for it most often, where that
    is not its words (:data:`KEEP_NAME`, counted in ``total``): a respelling ("skiier" ->
    "skier"), a compound written as one word or two, or another word ("guy" -> "person").
    ``written`` maps "objects" and "attributes" to how often gold graphs write each word
    of an object's name and of an attribute: a word they write is never respelt, and a
    misspelt word is respelt into one they write often (spelling.py).
    ``possessives`` maps a thing's lemma and "*" to ``[written, not]``: is a possessive's
    (owner, have, thing) written where another relation links the two ("a man holding
    his hat": FACTUAL writes only (man, hold, hat))? ``attribute_renames`` maps an
    attribute's words to ``[name, count, total]``, as ``renames`` does objects' ("wood" ->
    wooden). ``denominals`` maps an -ed word made from a noun ("haired") to ``[written,
    not]``: is the part it names written as a thing of its own ("dark haired man": (man,
    have, hair), (hair, is, dark))?"""

    names: dict[str, list[int]] = field(default_factory=dict)
    predicates: dict[str, list] = field(default_factory=dict)
    attributes: dict[str, list[int]] = field(default_factory=dict)
    partitives: dict[str, list] = field(default_factory=dict)
    implied: dict[str, list[int]] = field(default_factory=dict)
    joins: dict[str, list[int]] = field(default_factory=dict)
    objects: dict[str, list[int]] = field(default_factory=dict)
    nouns: frozenset[str] = frozenset()
    splits: dict[str, list] = field(default_factory=dict)
    attachments: dict[str, list[int]] = field(default_factory=dict)
    renames: dict[str, list] = field(default_factory=dict)
    written: dict[str, dict[str, int]] = field(default_factory=dict)
    possessives: dict[str, list[int]] = field(default_factory=dict)
    attribute_renames: dict[str, list] = field(default_factory=dict)
    denominals: dict[str, list[int]] = field(default_factory=dict)
    min_count: int = 0  # counts below this are not written ("one plane": FACTUAL writes none)
    meta: dict = field(default_factory=dict)
    #: Evidence a key needs before it overrides the default (pairs are specific: less).
    min_pair: int = 1
    min_word: int = 2

    def keep_in_name(self, modifier: str, head: str, default: bool) -> bool:
        """Is ``modifier`` (lower-cased, as written) part of the name of ``head`` (its lemma)?"""
        keys = (
            (f"{modifier} {head}", self.min_pair),
            (f"{modifier} *", self.min_word),
            (f"* {head}", self.min_word),
        )
        kept = first_vote(self.names, keys)
        return default if kept is None else kept

    def predicate(self, lemma: str, obj: str) -> str:
        """The predicate gold graphs write for the parser's ``lemma`` before object ``obj``
        (the object's head lemma): "in" before "shirt" is written "wear"."""
        for key, floor in ((f"{lemma}|{obj}", self.min_pair), (lemma, self.min_word)):
            entry = self.predicates.get(key)
            if not entry or entry[2] < floor:
                continue
            # a majority, or, where the corpus never writes the parse's own predicate
            # ("full of": have 25 times in 67), the predicate it writes most
            never = len(entry) > 3 and entry[3] == 0 and entry[1] >= self.min_word
            if 2 * entry[1] <= entry[2] and not never:
                continue
            if (entry[0] == DROP or entry[0].startswith(FLIP)) and entry[1] < self.min_word:
                continue  # swapping or dropping wants more than one sighting
            return entry[0]
        return lemma

    def attach_low(self, keys: tuple[str, ...]) -> bool:
        """Does the preposition of ``keys`` (:func:`attachment_keys`), said after a verb's
        object, relate its object to that noun rather than to the verb's subject?"""
        return first_vote(self.attachments, [(key, self.min_word) for key in keys]) is True

    def attach_high(self, keys: tuple[str, ...]) -> bool:
        """Does the corpus relate what ``keys`` say (attachment keys of a phrase hanging on
        a noun inside another noun's phrase) to the outer noun?"""
        return first_vote(self.attachments, [(key, self.min_word) for key in keys]) is False

    def keep_attribute(self, text: str) -> bool:
        """Do gold graphs write the attribute ``text`` (lower-cased, as written)?"""
        written, dropped = self.attributes.get(text, (0, 0))
        return written + dropped < self.min_word or written >= dropped

    def split_form(self, word: str, head: str, plural: bool = False) -> str:
        """How the compound noun ``word`` (``plural``: tagged plural) left out of ``head``'s
        name is written."""
        keys = split_keys(word, head, plural)
        for key, floor in zip(keys, (self.min_pair, self.min_word, self.min_word)):
            entry = self.splits.get(key)
            if entry and entry[2] >= floor and 2 * entry[1] > entry[2]:
                # a relation in place of an attribute wants more than one sighting
                return entry[0] if entry[1] >= self.min_word else SPLIT_ATTRIBUTE
        return SPLIT_ATTRIBUTE

    def keep_object(self, lemma: str) -> bool:
        """Do gold graphs name things whose head has ``lemma``? No only on clear evidence."""
        written, not_written = self.objects.get(lemma, (0, 0))
        return written + not_written < 2 * self.min_word or not_written <= 2 * written

    def join_attribute(self, key: str) -> bool:
        """Is the word of ``key`` ("bright *", "* up") written as part of the attribute?"""
        joined, apart = self.joins.get(key, (0, 0))
        return joined + apart >= self.min_word and joined > apart

    def partitive_form(self, lemma: str) -> str:
        """How gold graphs write the partitive ``lemma`` as an attribute (see the class)."""
        entry = self.partitives.get(lemma)
        if entry and entry[2] >= self.min_word and 2 * entry[1] > entry[2]:
            return entry[0]
        return ""

    def implied_count(self, lemma: str, counts: list[int]) -> int | None:
        """The count gold graphs write for a plural ``lemma`` with no number of its own, in a
        caption whose counts are ``counts``."""
        if len(counts) > 1:
            return None
        keys = [f"carry|{lemma}", "carry"] if counts else [f"plural|{lemma}"]
        for key in keys:
            written, not_written = self.implied.get(key, (0, 0))
            if written + not_written >= self.min_word:
                if written > not_written:
                    return counts[0] if counts else 2
                return None
        return None

    def rename(self, head: str, lemma: str = "") -> str | None:
        """The name gold graphs write for an object whose head words are ``head``
        (lower-cased, as written), else whose head words' ``lemma`` is, where they write
        another than its words (seen at least ``min_word`` times, more often than its
        words); else None."""
        for key in (head, LEMMA_KEY + lemma) if lemma else (head,):
            entry = self.renames.get(key)
            if entry and entry[0] != KEEP_NAME and entry[1] >= self.min_word:
                return entry[0]
        return None

    def rename_attribute(self, text: str) -> str | None:
        """The way gold graphs write the attribute ``text`` (lower-cased, as written),
        where that is not its words (seen at least ``min_word`` times, more often than
        its words): "wood" -> wooden; else None."""
        entry = self.attribute_renames.get(text)
        if entry and entry[1] >= self.min_word and 2 * entry[1] > entry[2]:
            return entry[0]
        return None

    def write_denominal(self, word: str) -> bool:
        """Do gold graphs write the part the -ed ``word`` names as a thing the described
        one has ("dark haired man": (man, have, hair), (hair, is, dark))?"""
        return first_vote(self.denominals, [(word, self.min_word)]) is True

    def keep_possessive(self, lemma: str) -> bool:
        """Do gold graphs write a possessive's (owner, have, thing), for a thing with
        ``lemma``, where another relation links the two ("a man holding his hat")?"""
        keys = [(lemma, self.min_word), ("*", self.min_word)]
        return first_vote(self.possessives, keys) is not False

    def digits_written(self, count: int) -> bool:
        """Do gold graphs write ``count`` as a count where the caption gives it in digits
        ("7 chairs")? Yes unless the ``implied`` key :func:`digits_key` says no."""
        written, not_written = self.implied.get(digits_key(count), (0, 0))
        return written + not_written < self.min_word or written >= not_written

    def to_json(self) -> dict:
        return {
            "format": FORMAT,
            "meta": self.meta,
            "min_count": self.min_count,
            "names": dict(sorted(self.names.items())),
            "predicates": dict(sorted(self.predicates.items())),
            "attributes": dict(sorted(self.attributes.items())),
            "partitives": dict(sorted(self.partitives.items())),
            "implied": dict(sorted(self.implied.items())),
            "joins": dict(sorted(self.joins.items())),
            "objects": dict(sorted(self.objects.items())),
            "nouns": sorted(self.nouns),
            "splits": dict(sorted(self.splits.items())),
            "attachments": dict(sorted(self.attachments.items())),
            "renames": dict(sorted(self.renames.items())),
            "written": {kind: dict(sorted(w.items())) for kind, w in sorted(self.written.items())},
            "possessives": dict(sorted(self.possessives.items())),
            "attribute_renames": dict(sorted(self.attribute_renames.items())),
            "denominals": dict(sorted(self.denominals.items())),
        }

    @classmethod
    def from_json(cls, data: dict, source: str = "<dict>") -> Conventions:
        if data.get("format") != FORMAT:
            raise InputFormatError(f"{source}: format {data.get('format')!r} is not {FORMAT}")
        return cls(
            data["names"],
            data["predicates"],
            data["attributes"],
            data["partitives"],
            data["implied"],
            data["joins"],
            data["objects"],
            frozenset(data["nouns"]),
            data["splits"],
            data.get("attachments", {}),
            data.get("renames", {}),
            data.get("written", {}),
            data.get("possessives", {}),
            data.get("attribute_renames", {}),
            data.get("denominals", {}),
            data["min_count"],
            data.get("meta", {}),
        )

    def save(self, path: str | Path) -> None:
        Path(path).write_text(json.dumps(self.to_json(), separators=(",", ":")) + "\n")

    @classmethod
    def load(cls, path: str | Path | None = None) -> Conventions:
        """The table at ``path``, or the bundled one."""
        if path is None:
            text = resources.files(__package__).joinpath(BUNDLED).read_text()
            return cls.from_json(json.loads(text), BUNDLED)
        try:
            return cls.from_json(json.loads(Path(path).read_text()), str(path))
        except (json.JSONDecodeError, KeyError) as exc:
            raise InputFormatError(f"{path}: not a conventions table ({exc})") from None
