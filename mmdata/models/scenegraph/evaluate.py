"""Scene-graph quality against FACTUAL gold graphs: SPICE-style tuple precision/recall/F1.

A graph becomes a set of tuples: objects ``(obj,)``, attributes ``(obj, attr)`` (a count
is the attribute ``str(count)``, as FACTUAL writes ``( women , is , 2 )``) and relations
``(subj, pred, obj)``. Every word on both sides goes through one :class:`Lemmatiser`, so
"dogs" meets "dog" and "sitting on" meets FACTUAL's "sit on". Scores are micro-averaged
over all tuples, as SPICE aggregates. :func:`sng_graphs` runs the peer parser
(``sng_parser``) and converts its output to the same graph dicts, so both are scored by
the same rule.
"""

from __future__ import annotations

import csv
import functools
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from spacy.language import Language

from mmdata.core.errors import InputFormatError, MmdataError
from mmdata.models.scenegraph.lemmas import lemma_rule

FACTUAL_HEADER = ["image_id", "region_id", "caption", "scene_graph"]
KINDS = ("object", "attribute", "relation")
_KIND_OF_SIZE = {1: "object", 2: "attribute", 3: "relation"}
_ITEM = re.compile(r"\(([^()]*)\)")
#: FACTUAL writes an attribute as a relation with this predicate.
ATTRIBUTE_PREDICATE = "is"

Tuple = tuple[str, ...]


@dataclass(frozen=True)
class GoldCaption:
    """One FACTUAL row: the caption and its gold graph, words as FACTUAL writes them."""

    image_id: int
    region_id: int
    caption: str
    objects: tuple[str, ...]  # every object named anywhere in the graph, first seen first
    attributes: tuple[tuple[str, str], ...]
    relations: tuple[tuple[str, str, str], ...]
    line: int = 0

    def words(self) -> Iterator[str]:
        """Every phrase the scorer lemmatises."""
        yield from self.objects
        yield from (attr for _, attr in self.attributes)
        yield from (pred for _, pred, _ in self.relations)


def parse_scene_graph(text: str) -> list[Tuple]:
    """FACTUAL's ``( a , b , c ) , ( d )`` as tuples of stripped words.

    Raises:
        ValueError: text outside the items, or an item with other than 1 or 3 parts.
    """
    items: list[Tuple] = []
    end = 0
    for match in _ITEM.finditer(text):
        gap = text[end : match.start()].strip()
        if gap != ("," if items else ""):
            raise ValueError(f"unexpected {gap!r} before item {match.group()!r}")
        parts = tuple(" ".join(p.split()) for p in match.group(1).split(","))
        if len(parts) not in (1, 3) or not all(parts):
            raise ValueError(f"item {match.group()!r} is not ( obj ) or ( subj , pred , obj )")
        items.append(parts)
        end = match.end()
    if text[end:].strip() or not items:
        raise ValueError(f"scene graph {text!r} is not a ' , '-separated list of ( ... ) items")
    return items


def gold_caption(row: Sequence[str], line: int = 0) -> GoldCaption:
    """A FACTUAL CSV row as a :class:`GoldCaption`; ValueError when malformed."""
    if len(row) != len(FACTUAL_HEADER):
        raise ValueError(f"{len(row)} fields, expected {len(FACTUAL_HEADER)}")
    image_id, region_id, caption, graph = row
    objects: dict[str, None] = {}  # an ordered set
    attributes, relations = [], []
    for item in parse_scene_graph(graph):
        if len(item) == 3 and item[1] == ATTRIBUTE_PREDICATE:
            attributes.append((item[0], item[2]))
            objects[item[0]] = None
        else:  # a relation's subject and object, or a lone object
            relations += [item] if len(item) == 3 else []
            objects.update(dict.fromkeys(item[::2]))
    return GoldCaption(
        int(image_id),
        int(region_id),
        caption,
        tuple(objects),
        tuple(attributes),
        tuple(relations),
        line,
    )


def load_factual(path: str | Path) -> list[GoldCaption]:
    """The rows of a FACTUAL CSV (``image_id,region_id,caption,scene_graph``).

    Raises:
        InputFormatError: a wrong header or a malformed row, naming the file and line.
    """
    path = Path(path)
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header != FACTUAL_HEADER:
            raise InputFormatError(f"{path}, line 1: header {header} is not {FACTUAL_HEADER}")
        golds = []
        for row in reader:
            try:
                golds.append(gold_caption(row, reader.line_num))
            except ValueError as exc:
                raise InputFormatError(f"{path}, line {reader.line_num}: {exc}") from None
    return golds


class Lemmatiser:
    """Lower-cased spaCy lemmas of short phrases, word by word, cached.

    Gold words and both parsers' words all go through this one rule: the score then
    measures which words a parser picks, not how it spells their lemmas. A lemma is
    lemmatised again until it stays put ("buildings" -> "building" -> "build"), so a
    parser's lemma and the gold word it came from meet at the same key.
    """

    #: Rounds of re-lemmatising; real chains are at most two long.
    DEPTH = 3

    def __init__(self, nlp: Language) -> None:
        self.nlp = nlp
        self.cache: dict[str, str] = {}  # phrase -> its lemmas after one round
        # tags decide the lemma; the dependency parse and entities do not: skip them
        self.skip = [n for n in ("parser", "ner") if n in nlp.pipe_names]
        self.lemma = lemma_rule(nlp)  # the parser's own rule ("riding" -> "ride")

    def prime(self, phrases: Iterable[str]) -> None:
        """Lemmatise ``phrases`` in batches (one ``nlp.pipe`` beats many ``nlp`` calls)."""
        todo = {_key(p) for p in phrases}
        for _ in range(self.DEPTH):
            batch = sorted(todo - self.cache.keys())
            for key, doc in zip(batch, self.nlp.pipe(batch, disable=self.skip)):
                self.cache[key] = " ".join(self.lemma(t) for t in doc)
            todo = {self.cache[k] for k in batch}

    def __call__(self, phrase: str) -> str:
        key = _key(phrase)
        for _ in range(self.DEPTH):
            if key not in self.cache:
                self.prime([key])
            if self.cache[key] == key:
                break
            key = self.cache[key]
        return key


def _key(phrase: str) -> str:
    return " ".join(phrase.lower().split())


def gold_tuples(gold: GoldCaption, lemma: Lemmatiser) -> set[Tuple]:
    """The gold graph's object, attribute and relation tuples, lemmatised."""
    out: set[Tuple] = {(lemma(o),) for o in gold.objects}
    out |= {(lemma(o), lemma(a)) for o, a in gold.attributes}
    return out | {(lemma(s), lemma(p), lemma(o)) for s, p, o in gold.relations}


def graph_tuples(graph: Mapping[str, Any], lemma: Lemmatiser) -> set[Tuple]:
    """A parsed graph's tuples: objects by ``name`` where given (the corpus' name), else
    ``lemma``; counts as attributes; lemmatised."""
    names = [lemma(_matched(o)) for o in graph["objects"]]
    out: set[Tuple] = {(n,) for n in names}
    for obj, name in zip(graph["objects"], names):
        out |= {(name, lemma(_matched(a))) for a in obj.get("attributes") or []}
        if obj.get("count") is not None:
            out.add((name, str(obj["count"])))
    for rel in graph["relations"]:
        out.add((names[rel["subject"]], lemma(rel["predicate_lemma"]), names[rel["object"]]))
    return out


def _matched(item: Mapping[str, Any]) -> str:
    """What an object or attribute is matched by: its ``name`` where set, else ``lemma``."""
    return item.get("name") or item["lemma"]


def _graph_words(graph: Mapping[str, Any]) -> Iterator[str]:
    for obj in graph["objects"]:
        yield _matched(obj)
        yield from (_matched(a) for a in obj.get("attributes") or [])
    yield from (r["predicate_lemma"] for r in graph["relations"])


@dataclass(frozen=True)
class Score:
    """Tuple counts of one kind: matched, predicted, gold."""

    matched: int = 0
    predicted: int = 0
    gold: int = 0

    def __add__(self, other: Score) -> Score:
        return Score(
            self.matched + other.matched, self.predicted + other.predicted, self.gold + other.gold
        )

    @property
    def precision(self) -> float:
        """Matched / predicted; 1.0 when nothing was predicted and nothing was to find."""
        return self.matched / self.predicted if self.predicted else float(not self.gold)

    @property
    def recall(self) -> float:
        """Matched / gold; 1.0 when there was nothing to find."""
        return self.matched / self.gold if self.gold else 1.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0


@dataclass(frozen=True)
class Report:
    """Scores per kind (``object``, ``attribute``, ``relation``, ``overall``) and set matches."""

    captions: int
    set_matches: int
    scores: dict[str, Score] = field(default_factory=dict)

    @property
    def set_match(self) -> float:
        """Fraction of captions whose whole tuple set equals the gold set."""
        return self.set_matches / self.captions if self.captions else 0.0


def _by_kind(tuples: set[Tuple]) -> dict[str, set[Tuple]]:
    kinds: dict[str, set[Tuple]] = {k: set() for k in KINDS}
    for t in tuples:
        kinds[_KIND_OF_SIZE[len(t)]].add(t)
    return kinds


def evaluate(
    graphs: Sequence[Mapping[str, Any]],
    golds: Sequence[GoldCaption],
    lemmatiser: Lemmatiser | None = None,
) -> Report:
    """Scores ``graphs[i]`` against ``golds[i]`` (default lemmatiser: the default model)."""
    if len(graphs) != len(golds):
        raise ValueError(f"{len(graphs)} graphs for {len(golds)} gold captions")
    if lemmatiser is None:
        from mmdata.models.scenegraph.parser import load_model

        lemmatiser = Lemmatiser(load_model(None))
    lemmatiser.prime(w for g in golds for w in g.words())
    lemmatiser.prime(w for g in graphs for w in _graph_words(g))
    totals = {k: Score() for k in KINDS}
    set_matches = 0
    for graph, gold in zip(graphs, golds):
        predicted, expected = graph_tuples(graph, lemmatiser), gold_tuples(gold, lemmatiser)
        set_matches += predicted == expected
        pred_kinds, gold_kinds = _by_kind(predicted), _by_kind(expected)
        for k in KINDS:
            p, g = pred_kinds[k], gold_kinds[k]
            totals[k] += Score(len(p & g), len(p), len(g))
    totals["overall"] = sum(totals.values(), Score())
    return Report(len(golds), set_matches, totals)


def format_report(reports: Mapping[str, Report]) -> str:
    """A table of P / R / F1 (in %) per kind for each parser; for two, F1 first - second."""
    names = list(reports)
    diff = len(names) == 2
    rows = [["", *(f"{n} (P / R / F1)" for n in names)] + (["F1 diff (points)"] if diff else [])]
    for kind in (*KINDS, "overall"):
        scores = [reports[n].scores[kind] for n in names]
        cells = [f"{_pct(s.precision)} / {_pct(s.recall)} / {_pct(s.f1)}" for s in scores]
        delta = [f"{100 * (scores[0].f1 - scores[1].f1):+.1f}"] if diff else []
        rows.append([kind, *cells, *delta])
    rates = [reports[n].set_match for n in names]
    rows.append(["set match", *(f"{_pct(r)}%" for r in rates)])
    rows[-1] += [f"{100 * (rates[0] - rates[1]):+.1f}"] if diff else []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([*lines, f"({reports[names[0]].captions} captions)"])


def _pct(fraction: float) -> str:
    return f"{100 * fraction:.1f}"


def resolve_model(name: str | None) -> str:
    """The spaCy model ``CaptionParser(model=name)`` loads, so the peer can load the same."""
    import spacy

    from mmdata.models.scenegraph.parser import DEFAULT_MODEL, FALLBACK_MODEL

    if name:
        return name
    return DEFAULT_MODEL if spacy.util.is_package(DEFAULT_MODEL) else FALLBACK_MODEL


@functools.lru_cache(maxsize=2)
def sng_parser_for(model_name: str) -> Any:
    """The peer parser, ``sng_parser.Parser('spacy', model=model_name)``, loaded once."""
    try:
        import sng_parser
    except ImportError:
        raise MmdataError(
            "the peer parser is not installed: pip install scenegraphparser==0.1.0 "
            "(mmdata's dev extra)"
        ) from None
    return sng_parser.Parser("spacy", model=model_name)


def _count(word: str) -> int | None:
    from mmdata.models.scenegraph.words import NUMBER_WORDS  # one count rule for both parsers

    return int(word) if word.isdigit() else NUMBER_WORDS.get(word.lower())


def _sng_object(entity: Mapping[str, Any]) -> dict:
    modifiers = entity["modifiers"]
    counts = [_count(m["span"]) for m in modifiers if m["dep"] == "nummod"]
    attributes = [
        {"text": m["span"], "lemma": m["lemma_span"], "span": None}
        for m in modifiers
        if m["dep"] == "amod"
    ]
    return {
        "head": entity["head"],
        "lemma": entity["lemma_head"],
        "text": entity["span"],
        "span": None,
        "count": next((c for c in counts if c is not None), None),
        "attributes": attributes,
    }


def sng_to_graph(raw: Mapping[str, Any], lemmatiser: Lemmatiser) -> dict:
    """One ``sng_parser`` result as a graph dict of :mod:`mmdata.models.scenegraph.parser`'s shape.

    Entity heads (with their compounds) are the objects, ``amod`` modifiers their
    attributes, a ``nummod`` number their count. The predicate lemma is the relation's
    text through ``lemmatiser``: sng_parser's own ``lemma_relation`` takes spaCy's token
    lemmas, which can be odd ("rid" for "riding").
    """
    objects = [_sng_object(e) for e in raw["entities"]]
    relations = [
        {
            "subject": r["subject"],
            "predicate": r["relation"],
            "predicate_lemma": lemmatiser(r["relation"]),
            "object": r["object"],
            "span": None,
        }
        for r in raw["relations"]
    ]
    return {"objects": objects, "relations": relations, "note": None if objects else "no object"}


def sng_graphs(
    texts: Sequence[str], model_name: str, lemmatiser: Lemmatiser | None = None
) -> list[dict]:
    """``texts`` parsed one at a time by sng_parser (as its users call it), as graph dicts."""
    parser = sng_parser_for(model_name)
    if lemmatiser is None:
        lemmatiser = Lemmatiser(parser.unwrapped.nlp)
    return [sng_to_graph(parser.parse(t), lemmatiser) for t in texts]


def parse_rows(text: str) -> slice:
    """``START:END`` (0-based data rows, END exclusive; either may be left out) as a slice.

    Raises:
        ValueError: not two non-negative integers around a colon, or END before START.
    """
    start, colon, end = text.partition(":")
    try:
        bounds = [int(b) if b.strip() else None for b in (start, end)]
    except ValueError:
        bounds = []
    if not colon or len(bounds) != 2 or any(b is not None and b < 0 for b in bounds):
        raise ValueError(f"rows {text!r} is not START:END (0-based data rows, END exclusive)")
    if None not in bounds and bounds[1] < bounds[0]:
        raise ValueError(f"rows {text!r}: END is before START")
    return slice(*bounds)


def words_in(caption: str) -> int:
    """A caption's length in words, as the long-caption subset counts it (whitespace split)."""
    return len(caption.split())


def select(
    golds: Sequence[GoldCaption],
    rows: slice | None = None,
    min_words: int = 0,
    limit: int | None = None,
) -> list[GoldCaption]:
    """The data rows ``rows``, then those of at least ``min_words`` words, then the first
    ``limit`` of them."""
    chosen = [g for g in golds[rows or slice(None)] if words_in(g.caption) >= min_words]
    return chosen[:limit]


def parse_graphs(
    golds: Sequence[GoldCaption], model: str | None, peer: bool
) -> tuple[dict[str, list[dict]], Lemmatiser]:
    """Graphs of the gold captions by mmdata's parser and, with ``peer``, by sng_parser on
    the same spaCy model (converted by :func:`sng_to_graph`), and the lemmatiser they share."""
    from mmdata.models.scenegraph.parser import CaptionParser

    name = resolve_model(model)
    parser = CaptionParser(model=name)
    lemmatiser = Lemmatiser(parser.nlp)
    captions = [g.caption for g in golds]
    graphs = {"mmdata": parser.parse_many(captions)}
    if peer:
        graphs["sng_parser"] = sng_graphs(captions, name, lemmatiser)
    return graphs, lemmatiser


def compare(golds: Sequence[GoldCaption], model: str | None, peer: bool) -> dict[str, Report]:
    """Reports for mmdata's parser and, with ``peer``, sng_parser on the same spaCy model."""
    graphs, lemmatiser = parse_graphs(golds, model, peer)
    return {name: evaluate(g, golds, lemmatiser) for name, g in graphs.items()}
