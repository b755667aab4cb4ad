"""Counts a :class:`~mmdata.models.scenegraph.conventions.Conventions` table from gold graphs.

    python -m mmdata.models.scenegraph.train_conventions --gold train.csv --rows 0:33861 \\
        --out mmdata/models/scenegraph/conventions.json

The captions are parsed by the rules; each decision the rules leave to convention is then
read off the gold graph of the same caption:

- names: for each object, the longest run of words ending at its head that the gold graph
  names as one object; each word in front of the head is counted as kept (inside that run)
  or split (outside it), by itself and paired with the head's lemma;
- predicates: for each parsed relation whose subject and object the gold graph relates, the
  gold predicate is counted against the parser's predicate lemma, by itself and paired with
  the object's lemma;
- counts: the smallest count the gold graphs write, and which counts given in digits
  they write;
- renames: for each object the gold graph does not name by its words, the gold object it
  pairs with (the one left on each side, else the closest spelling), by its head words
  and their lemma;
- written: how often the gold graphs write each word of an object's name and of an
  attribute (what misspelt words are respelt into);
- possessives: whether a possessive is written where another relation links the pair.

Counting is deterministic: the same rows give the same table, byte for byte.
"""

from __future__ import annotations

import argparse
import difflib
import logging
import re
import time
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from pathlib import Path

from spacy.tokens import Doc

from mmdata.models.scenegraph.conventions import (
    DROP,
    FLIP,
    KEEP_NAME,
    LEMMA_KEY,
    NOUN_SHARE,
    PLURAL_TAGS,
    RELATED,
    SPLIT_ATTRIBUTE,
    Conventions,
    digits_key,
    split_keys,
)
from mmdata.models.scenegraph.evaluate import GoldCaption, load_factual
from mmdata.models.scenegraph.parser import CaptionParser
from mmdata.models.scenegraph.phrases import name_candidates, own_number, partitive_of
from mmdata.models.scenegraph.rules import GraphBuilder, attribute_extensions
from mmdata.models.scenegraph.spelling import FLOOR as SPELLING_FLOOR

log = logging.getLogger(__name__)


def parse_docs(parser: CaptionParser, captions: Iterable[str]) -> list[Doc]:
    """spaCy parses of ``captions``, prepared as :class:`CaptionParser` prepares them."""
    return list(parser.docs([parser._prepare(c)[0] or "" for c in captions]))


def written_name(obj: dict) -> str:
    """The name an object is written by (lower-cased): its rename, else its head."""
    return (obj.get("name") or obj["head"]).lower()


def most_written(labels_by_key: dict[str, Counter]) -> dict[str, list]:
    """``[label, its count, all counts]`` per key, the label counted most (ties by name,
    so the table does not depend on row order)."""
    table = {}
    for key, labels in labels_by_key.items():
        best, n = min(labels.items(), key=lambda kv: (-kv[1], kv[0]))
        table[key] = [best, n, sum(labels.values())]
    return table


def joined(name: str) -> str:
    """``name`` lower-cased without spaces or hyphens: "surf board", "surfboard" and
    "t-shirt", "t shirt" meet."""
    return "".join(ch for ch in name.lower() if ch not in " -")


def count_names(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[kept, split]`` per "modifier head" and "modifier *" key."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        # a name written as one word keeps its words together: "surf board" -> surfboard
        named = {o.lower() for o in gold.objects} | {joined(o) for o in gold.objects}
        for head_i in builder.index:
            head = builder.doc[head_i]
            candidates = name_candidates(head)
            if not candidates:
                continue
            suffixes = [joined(builder.doc[t.i : head.i + 1].text) for t in candidates]
            suffixes.append(joined(head.text))
            first = next((k for k, s in enumerate(suffixes) if s in named), None)
            if first is None:
                continue  # the gold graph names this thing some other way: no evidence
            for k, token in enumerate(candidates):
                kept = k >= first
                lemma = head.lemma_.lower()
                for key in (f"{token.lower_} {lemma}", f"{token.lower_} *", f"* {lemma}"):
                    counts[key][0 if kept else 1] += 1
    return dict(counts)


def count_splits(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[form, count, total]`` per "word head" and "word *": how the gold graph writes a
    compound noun that is not part of its head's name (see Conventions.splits)."""
    forms: dict[str, Counter] = defaultdict(Counter)
    for builder, gold in zip(builders, golds):
        named = {o.lower() for o in gold.objects}
        attrs = {(o.lower(), a.lower()) for o, a in gold.attributes}
        rels = {(s.lower(), o.lower()): p for s, p, o in gold.relations}
        for head_i in builder.index:
            head = builder.doc[head_i]
            candidates = name_candidates(head)
            suffixes = [builder.doc[t.i : head.i + 1].text.lower() for t in candidates]
            first = next((k for k, s in enumerate(suffixes) if s in named), len(candidates))
            name = builder.doc[head.i - (len(candidates) - first) : head.i + 1].text.lower()
            if name not in named:
                continue
            for token in candidates[:first]:
                if token.pos_ not in ("NOUN", "PROPN"):
                    continue
                word, lemma = token.lower_, token.lemma_.lower()
                # "an animals mouth": the gold graph names the owner by its lemma
                owner = word if (word, name) in rels or (name, word) in rels else lemma
                if (name, word) in attrs:
                    form = SPLIT_ATTRIBUTE
                elif (owner, name) in rels:
                    form = rels[owner, name]
                elif (name, owner) in rels:
                    form = FLIP + rels[name, owner]
                else:
                    form = DROP
                for key in split_keys(word, head.lemma_.lower(), token.tag_ in PLURAL_TAGS):
                    # the plural back-off chooses how to write the word, not whether: an
                    # attribute "animals" on "mouth" is never what a corpus means
                    if form != DROP or not key.startswith("<"):
                        forms[key][form] += 1
    return most_written(forms)


def count_predicates(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """Gold predicates per "predicate|object lemma" and "predicate" key of the parse."""
    written: dict[str, Counter] = defaultdict(Counter)
    own: Counter = Counter()
    for builder, gold in zip(builders, golds):
        by_pair: dict[tuple[str, str], set[str]] = defaultdict(set)
        for s, p, o in gold.relations:
            by_pair[s.lower(), o.lower()].add(p)
        heads = {index: head_i for head_i, index in builder.index.items()}
        named = {o.lower() for o in gold.objects}
        objects = builder.objects
        for rel in builder.relations:
            pair = (written_name(objects[rel["subject"]]), written_name(objects[rel["object"]]))
            lemma = rel["predicate_lemma"]
            obj_lemma = builder.doc[heads[rel["object"]]].lemma_.lower()
            keys = (f"{lemma}|{obj_lemma}", lemma)
            gold_predicates = by_pair.get(pair)
            if not gold_predicates:
                # written the other way round: object first ("fence , surround , field")
                gold_predicates = {FLIP + p for p in by_pair.get(pair[::-1], ())}
            if not gold_predicates:
                if pair[0] in named and pair[1] in named:
                    for key in keys:  # both named, not related
                        written[key][DROP] += 1
                continue
            if lemma in gold_predicates:
                label = lemma
            elif len(gold_predicates) == 1:
                label = next(iter(gold_predicates))
            else:
                continue  # two gold relations, neither ours: which one is ours is unknown
            for key in keys:
                written[key][label] += 1
                own[key] += label == lemma
    # [label, count, total, how often the parse's own predicate is the one written]
    return {key: entry + [own[key]] for key, entry in most_written(written).items()}


def count_attachments(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[low, high]`` per key of :func:`attachment_keys`: does the gold graph relate a
    preposition's object to the noun before the preposition, or to the verb's subject?"""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        pairs = {(s.lower(), o.lower()) for s, _, o in gold.relations}
        pairs |= {(o, s) for s, o in pairs}
        name = {i: written_name(builder.objects[k]) for i, k in builder.index.items()}
        for keys, low, high, target in builder.attachments:
            if target not in name:
                continue
            if (name[low], name[target]) in pairs:
                side = 0
            elif (name[high], name[target]) in pairs:
                side = 1
            else:
                continue
            for key in keys:
                counts[key][side] += 1
    return dict(counts)


def count_attributes(
    builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption], conventions: Conventions
) -> dict:
    """``[written, not written]`` per attribute text, over objects the gold graph names;
    written under its corpus name counts as written ("wood" as wooden)."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        named = {o.lower() for o in gold.objects}
        written = {(o.lower(), a.lower()) for o, a in gold.attributes}
        for obj in builder.objects:
            name = written_name(obj)
            if name not in named:
                continue  # the gold graph names this thing some other way: no evidence
            for attr in obj["attributes"]:
                text = attr["text"].lower()
                said = (name, conventions.rename_attribute(text) or text) in written
                counts[text][0 if said else 1] += 1
    return dict(counts)


def count_objects(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[written, not]`` per head lemma: does the gold graph use the head word anywhere
    (in an object's name or an attribute)?"""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        used = {w for o in gold.objects for w in o.lower().split()}
        used |= {w for _, a in gold.attributes for w in a.lower().split()}
        # a gold object the caption does not spell ("person" for "guy", "hot dog" for
        # "hotdog") may be ours renamed: such a caption says nothing of what is unwritten
        spelled = {t.lower_ for t in builder.doc}
        renamed = any(w not in spelled for o in gold.objects for w in o.lower().split())
        for head_i in builder.index:
            head = builder.doc[head_i]
            if head.lower_ in used:
                counts[head.lemma_.lower()][0] += 1
            elif not renamed:
                counts[head.lemma_.lower()][1] += 1
    return dict(counts)


def count_nouns(docs: Sequence[Doc], golds: Sequence[GoldCaption], floor: int) -> frozenset:
    """Words seen in at least ``floor`` captions that name a gold object (are a word of
    one) in at least NOUN_SHARE of them."""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for doc, gold in zip(docs, golds):
        named = {w for o in gold.objects for w in o.lower().split()}
        for word in {t.lower_ for t in doc if t.is_alpha}:
            counts[word][0 if word in named else 1] += 1
    return frozenset(
        w for w, (yes, no) in counts.items() if yes + no >= floor and yes >= NOUN_SHARE * (yes + no)
    )


def count_joins(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[joined, apart]`` per key of :func:`attribute_extensions`: does the gold graph
    write the attribute with the word next to it ("bright red") or alone ("red")?"""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        written = {(o.lower(), a.lower()) for o, a in gold.attributes}
        for obj in builder.objects:
            name = written_name(obj)
            for attr in obj["attributes"]:
                tokens = builder.doc.char_span(attr["span"]["start"], attr["span"]["end"])
                if tokens is None or len(tokens) != 1:
                    continue
                token = tokens[0]
                for word, key in attribute_extensions(token):
                    phrase = builder.doc[min(word.i, token.i) : max(word.i, token.i) + 1]
                    if (name, phrase.text.lower()) in written:
                        counts[key][0] += 1
                    elif (name, token.lower_) in written:
                        counts[key][1] += 1
    return dict(counts)


def count_counts(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> tuple:
    """Partitive forms (``[form, count, total]`` per lemma) and implied counts (``[written,
    not]`` per key of :meth:`Conventions.implied_count`), over objects the gold names."""
    forms: dict[str, Counter] = defaultdict(Counter)
    implied: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        named = {o.lower() for o in gold.objects}
        written = {(o.lower(), a.lower()) for o, a in gold.attributes}
        counts = builder.counts()
        for head_i, index in builder.index.items():
            head, obj = builder.doc[head_i], builder.objects[index]
            name = written_name(obj)
            if name not in named:
                continue
            whole = partitive_of(head)
            if whole is not None:
                lemma = whole.lemma_.lower()
                options = {"of": f"{whole.lower_} of", "lemma": lemma, "word": whole.lower_}
                form = next((f for f, a in options.items() if (name, a) in written), "")
                related = (
                    p.lower()
                    for s, p, o in gold.relations
                    if s.lower() == name and o.lower() in (lemma, whole.lower_)
                )
                forms[lemma][form or next((RELATED + p for p in related), "")] += 1
            number = own_number(head)
            if obj["count"] is not None and number is not None and number.text.isdigit():
                said = (name, str(obj["count"])) in written
                implied[digits_key(obj["count"])][0 if said else 1] += 1
            if obj["count"] is not None or head.tag_ not in ("NNS", "NNPS") or len(counts) > 1:
                continue
            lemma = head.lemma_.lower()
            said = (name, str(counts[0] if counts else 2)) in written
            for key in [f"carry|{lemma}", "carry"] if counts else [f"plural|{lemma}"]:
                implied[key][0 if said else 1] += 1
    return most_written(forms), dict(implied)


#: How alike two names must be (difflib's ratio) to pair as a respelling when more than one
#: object on each side is left unnamed ("skiier" and "skier": 0.91).
RESPELLING = 0.75


def count_renames(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[name, count, total]`` per object's head words (lower-cased) and per
    :data:`LEMMA_KEY` + their lemma, where gold graphs write the thing under another name
    most often: that name (:data:`KEEP_NAME`, the gold graph naming it by its words or
    their lemma, counts in ``total``)."""
    written: dict[str, Counter] = defaultdict(Counter)
    for builder, gold in zip(builders, golds):
        named = {o.lower() for o in gold.objects}
        ours = {o["head"].lower() for o in builder.objects} | {o["lemma"] for o in builder.objects}
        unpaired = named - ours
        left = []
        for obj in builder.objects:
            keys = {obj["head"].lower(), LEMMA_KEY + obj["lemma"]}
            if obj["head"].lower() in named or obj["lemma"] in named:
                for key in keys:
                    written[key][KEEP_NAME] += 1
            else:
                left.append((obj["head"].lower(), keys))
        # a gold name whose words the caption says elsewhere is another thing the parse
        # missed, not this one's name ("zebra" for "standing")
        said = {t.lower_ for t in builder.doc}
        for head, keys in left:
            ratio, best = max(
                ((difflib.SequenceMatcher(None, head, g).ratio(), g) for g in sorted(unpaired)),
                default=(0.0, ""),
            )
            # the one left on each side is a rename ("guy"); else only a respelling pairs
            alone = len(left) == 1 and len(unpaired) == 1 and not said.issuperset(best.split())
            if alone or ratio >= RESPELLING:
                for key in keys:
                    written[key][best] += 1
    # only renames are looked up: a head gold graphs name by its words needs no entry
    return {k: v for k, v in most_written(written).items() if v[0] != KEEP_NAME}


def count_attribute_renames(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[name, count, total]`` per attribute text (lower-cased) where gold graphs write
    it another way most often ("wood" -> wooden, "rusted" -> rusty): on an object the gold
    graph names, the one attribute of ours it does not write pairs with the one it
    writes that we lack, unless the caption says that one's words too."""
    written: dict[str, Counter] = defaultdict(Counter)
    for builder, gold in zip(builders, golds):
        theirs_by_name: dict[str, set[str]] = defaultdict(set)
        for name, attribute in gold.attributes:
            theirs_by_name[name.lower()].add(attribute.lower())
        named = {o.lower() for o in gold.objects}
        said = {t.lower_ for t in builder.doc}
        for obj in builder.objects:
            name = written_name(obj)
            if name not in named:
                continue
            ours = [a["text"].lower() for a in obj["attributes"]]
            theirs = theirs_by_name[name]
            for text in ours:
                if text in theirs:
                    written[text][KEEP_NAME] += 1
            left = [t for t in ours if t not in theirs]
            unpaired = [
                a for a in theirs - set(ours) if not a.isdigit() and not said.issuperset(a.split())
            ]
            if len(left) == 1 and len(unpaired) == 1:
                written[left[0]][unpaired[0]] += 1
    return {k: v for k, v in most_written(written).items() if v[0] != KEEP_NAME}


def count_possessives(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[written, not]`` per thing's lemma and "*": does the gold graph write a
    possessive's (owner, have, thing) where another relation links the two?"""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        have = {(joined(s), joined(o)) for s, p, o in gold.relations if p.lower() == "have"}
        objects = builder.objects
        for rel in builder.redundant_possessives():
            owner, thing = objects[rel["subject"]], objects[rel["object"]]
            said = (joined(written_name(owner)), joined(written_name(thing))) in have
            for key in (thing["lemma"], "*"):
                counts[key][0 if said else 1] += 1
    return dict(counts)


def count_denominals(builders: Sequence[GraphBuilder], golds: Sequence[GoldCaption]) -> dict:
    """``[written, not]`` per -ed word made from a noun ("haired"), over the objects it
    describes that the gold graph names: does the gold graph write (thing, have, part)?"""
    counts: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for builder, gold in zip(builders, golds):
        named = {o.lower() for o in gold.objects}
        had = {(s.lower(), o.lower().split()[-1]) for s, p, o in gold.relations if p == "have"}
        for word, index, base in builder.denominals:
            name = written_name(builder.objects[index])
            if name in named:
                said = (name, base) in had or (name, base + "s") in had
                counts[word][0 if said else 1] += 1
    return dict(counts)


def count_written(golds: Sequence[GoldCaption]) -> dict[str, dict[str, int]]:
    """How often the gold graphs write each word of an object's name ("objects"), of an
    attribute ("attributes") and of a predicate ("predicates"): a word they write at all
    is never respelt; and how often the captions say each word, those said at least
    spelling.FLOOR times ("captions"): what a misspelt caption word is parsed as."""
    objects = Counter(w for g in golds for o in g.objects for w in o.lower().split())
    attributes = Counter(w for g in golds for _, a in g.attributes for w in a.lower().split())
    predicates = Counter(w for g in golds for _, p, _ in g.relations for w in p.lower().split())
    said = Counter(w for g in golds for w in re.findall(r"[a-z]+", g.caption.lower()))
    captions = {w: n for w, n in said.items() if n >= SPELLING_FLOOR}
    return {
        kind: {w: n for w, n in counted.items() if w.isalpha()}
        for kind, counted in (
            ("objects", objects),
            ("attributes", attributes),
            ("predicates", predicates),
            ("captions", captions),
        )
    }


def train(docs: Sequence[Doc], golds: Sequence[GoldCaption], parser: CaptionParser) -> Conventions:
    """A table counted from ``docs`` (the parsed captions of ``golds``)."""
    if len(docs) != len(golds):
        raise ValueError(f"{len(docs)} parsed captions for {len(golds)} gold graphs")

    def build(conventions: Conventions | None) -> list[GraphBuilder]:
        builders = [GraphBuilder(doc, parser.lemma, conventions) for doc in docs]
        for builder in builders:
            builder.build()
        return builders

    counts = [int(a) for g in golds for _, a in g.attributes if a.isdigit()]
    conventions = Conventions(min_count=min(counts, default=0))
    conventions.nouns = count_nouns(docs, golds, conventions.min_word + 1)
    conventions.written = count_written(golds)
    # the parser parses again where the tagger misreads one of those nouns: so does this
    docs = parser.reparse_misread(list(docs), conventions.nouns, parser.speller_for(conventions))
    # names are read off the parse as the nouns retag it, the rest off graphs whose
    # objects are already named the learned way
    conventions.names = count_names(build(conventions), golds)
    conventions.splits = count_splits(build(conventions), golds)
    conventions.renames = count_renames(build(conventions), golds)
    named = build(conventions)
    conventions.predicates = count_predicates(named, golds)
    conventions.attachments = count_attachments(named, golds)
    conventions.attribute_renames = count_attribute_renames(named, golds)
    conventions.attributes = count_attributes(named, golds, conventions)
    conventions.partitives, conventions.implied = count_counts(named, golds)
    conventions.joins = count_joins(named, golds)
    conventions.objects = count_objects(named, golds)
    conventions.possessives = count_possessives(named, golds)
    conventions.denominals = count_denominals(named, golds)
    return conventions


def row_range(text: str) -> slice:
    start, _, stop = text.partition(":")
    return slice(int(start) if start else None, int(stop) if stop else None)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--gold", required=True, type=Path, help="FACTUAL CSV of captions + graphs")
    ap.add_argument("--rows", default=":", help="data rows to learn from, START:STOP (0-based)")
    ap.add_argument("--out", required=True, type=Path)
    ap.add_argument("--model", default=None, help="spaCy model (default: the parser's)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    started = time.perf_counter()
    golds = load_factual(args.gold)[row_range(args.rows)]
    parser = CaptionParser(model=args.model, conventions=None)
    docs = parse_docs(parser, [g.caption for g in golds])
    conventions = train(docs, golds, parser)
    conventions.meta = {
        "gold": args.gold.name,
        "rows": args.rows,
        "captions": len(golds),
        "spacy_model": parser.nlp.meta.get("name", ""),
    }
    conventions.save(args.out)
    log.info(
        "%d captions -> %s (%d name keys, %d predicate keys) in %.1f s",
        len(golds),
        args.out,
        len(conventions.names),
        len(conventions.predicates),
        time.perf_counter() - started,
    )


if __name__ == "__main__":
    main()
