"""Rules from a spaCy dependency parse to a scene graph with character spans.

Objects are nouns that are not the modifier of another noun (a ``compound`` child joins
its head: "tennis racket"); attributes are their adjectival and participial modifiers and
predicative adjectives; relations come from verbs (subject, object, prepositions, the
passive agent) and from prepositions on nouns, with multi-word prepositions ("next to",
"in front of", "on top of") merged. The only word lists are closed classes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from spacy.tokens import Doc, Token

NOUNS = frozenset({"NOUN", "PROPN"})
RELATIVE_PRONOUNS = frozenset({"who", "that", "which", "whom", "whose"})
#: "in front of", "on top of": a preposition whose object is one of these, then "of".
SPATIAL_NOUNS = frozenset(
    {"front", "top", "middle", "back", "side", "edge", "bottom", "center", "centre", "end"}
    | {"left", "right", "rear"}
)
#: "bits of ice", "a group of people": the thing is what follows "of".
PARTITIVES = frozenset(
    {"bit", "piece", "group", "pair", "bunch", "lot", "couple", "number", "herd", "flock"}
    | {"set", "pile", "stack", "row", "line", "slice", "variety", "assortment", "crowd"}
)
#: "next to", "close to": an adverb or adjective that carries the preposition.
SPATIAL_HEADS = frozenset({"next", "close", "adjacent", "near", "closer", "due"})
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
ATTRIBUTE_DEPS = frozenset({"amod", "nmod"})
#: Children that make a verb a relation rather than a description of its subject.
RELATION_DEPS = frozenset({"dobj", "attr", "oprd", "prep", "agent", "advmod", "acomp", "dative"})
#: Basic colour terms, a closed class: the tagger often calls "silver lamp" or "black
#: leather" a noun compound, but a colour in front of a noun describes it.
COLOURS = frozenset(
    "black white red green blue yellow orange purple pink brown grey gray silver gold"
    " golden beige tan navy maroon".split()
)


def span(tokens: list[Token]) -> dict[str, int]:
    """The half-open character span covering ``tokens``."""
    first, last = min(t.i for t in tokens), max(t.i for t in tokens)
    doc = tokens[0].doc
    return {"start": doc[first].idx, "end": doc[last].idx + len(doc[last])}


def words(tokens: list[Token]) -> str:
    """The caption's text from the first to the last of ``tokens``, as written."""
    doc = tokens[0].doc
    first, last = min(t.i for t in tokens), max(t.i for t in tokens)
    return doc[first : last + 1].text


def count_of(token: Token) -> int | None:
    """The number a ``nummod`` token says: digits or a number word."""
    text = token.lower_
    if text.isdigit():
        return int(text)
    return NUMBER_WORDS.get(text)


@dataclass
class GraphBuilder:
    """Collects the objects and relations of one parsed caption."""

    doc: Doc
    objects: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    index: dict[int, int] = field(default_factory=dict)  # head token index -> object index
    seen: set[tuple[int, str, int]] = field(default_factory=set)

    def build(self) -> dict:
        for token in self.doc:
            if is_object_head(token):
                self.add_object(token)
        for token in self.doc:
            self.add_predicative(token)
            self.add_relations(token)
        return {"objects": self.objects, "relations": self.relations, "note": None}

    def add_object(self, head: Token) -> None:
        compounds = compound_tokens(head)
        phrase = [t for t in head.subtree if t.i <= head.i and t.i >= phrase_start(head)]
        count = next((count_of(c) for c in head.children if c.dep_ == "nummod"), None)
        self.index[head.i] = len(self.objects)
        self.objects.append(
            {
                "head": words(compounds),
                "lemma": " ".join(t.lemma_.lower() for t in compounds),
                "text": words(phrase),
                "span": span(phrase),
                "count": count,
                "attributes": [attribute(t) for t in modifiers(head)],
            }
        )

    def add_predicative(self, token: Token) -> None:
        """ "the car is red", "the sky is blue and cloudy": the subject gets the adjective."""
        if token.dep_ != "acomp" or token.pos_ != "ADJ" or token.lower_ in SPATIAL_HEADS:
            return
        for subject in map(resolve, subjects(token.head)):
            if subject.i in self.index:
                attrs = self.objects[self.index[subject.i]]["attributes"]
                for adjective in [token, *conjuncts(token)]:
                    attrs.append(attribute(adjective))

    def add_relations(self, token: Token) -> None:
        if token.pos_ in ("VERB", "AUX"):
            self.verb_relations(token)
        elif token.i in self.index:
            self.possessive(token)
            for prep in token.children:
                if prep.dep_ == "prep":
                    self.prep_relations([token], [prep])
                elif prep.lower_ in SPATIAL_HEADS and prep.dep_ in ("advmod", "amod"):
                    for inner in prep.children:
                        if inner.dep_ == "prep":
                            self.prep_relations([token], [prep, inner])

    def possessive(self, owned: Token) -> None:
        """ "the man 's hat": (man, 's, hat), whose lemma is "have" (a possessive says
        the owner has the thing, and matching needs the verb, not the clitic)."""
        for owner in owned.children:
            marker = next((c for c in owner.children if c.dep_ == "case"), None)
            if owner.dep_ == "poss" and owner.i in self.index and marker is not None:
                self.add_relation(owner, [marker], owned, lemma="have")

    def verb_relations(self, verb: Token) -> None:
        subs = [s for s in map(resolve, subjects(verb)) if s.i in self.index]
        if not subs:
            return
        copula = verb.lemma_ == "be"
        passive = any(c.dep_ in ("nsubjpass", "auxpass") for c in verb.children) or (
            verb.tag_ == "VBN" and verb.dep_ == "acl"
        )
        # "sitting on a couch": the verb joins its preposition; "riding a wave on a
        # board", "is on the mat": the preposition alone says where the subject is.
        transitive = any(c.dep_ in ("dobj", "attr", "oprd") for c in verb.children)
        lead = [] if copula or transitive else [verb]
        if (
            verb.pos_ == "VERB"
            and verb.dep_ == "acl"
            and not any(c.dep_ in RELATION_DEPS for c in verb.children)
        ):
            # "a man walking": a participle with nothing to relate to describes its noun.
            for subject in subs:
                for sub in [subject, *subject.conjuncts]:
                    if sub.i in self.index:
                        self.objects[self.index[sub.i]]["attributes"].append(attribute(verb))
            return
        for child in verb.children:
            if child.dep_ == "dobj" and child.lower_ in RELATIVE_PRONOUNS and verb.dep_ == "relcl":
                self.link(subs, [verb], verb.head)  # "the ball that the boy kicked"
            elif child.dep_ in ("dobj", "attr", "oprd") and not copula:
                self.link(subs, [verb], child)
            elif child.dep_ == "agent" and passive:
                self.prep_relations(subs, [verb, child])
            elif child.dep_ == "prep":
                self.prep_relations(subs, [*adjacent(lead, child), child])
            elif child.dep_ in ("advmod", "acomp") and child.lower_ in SPATIAL_HEADS:
                for inner in child.children:
                    if inner.dep_ == "prep":
                        self.prep_relations(subs, [*adjacent(lead, child), child, inner])

    def prep_relations(self, subs: list[Token], predicate: list[Token]) -> None:
        """Relations from ``subs`` through ``predicate`` (ending in a preposition)."""
        prep = predicate[-1]
        for target in prep.children:
            if target.dep_ != "pobj":
                continue
            words_, target = merge_spatial(predicate, target)
            self.link(subs, words_, target)

    def link(self, subs: list[Token], predicate: list[Token], target: Token) -> None:
        for obj in map(resolve, [target, *conjuncts(target)]):
            if obj.i not in self.index:
                continue
            for subject in subs:
                # "a man and a woman sitting on a bench": the participle hangs on the
                # last conjunct but says something of every one.
                for sub in map(resolve, [subject, *subject.conjuncts]):
                    self.add_relation(sub, predicate, obj)

    def add_relation(
        self, subject: Token, predicate: list[Token], obj: Token, lemma: str | None = None
    ) -> None:
        if subject.i not in self.index or subject.i == obj.i:
            return
        text = " ".join(t.text for t in sorted(predicate, key=lambda t: t.i))
        key = (self.index[subject.i], text.lower(), self.index[obj.i])
        if key in self.seen:
            return
        self.seen.add(key)
        self.relations.append(
            {
                "subject": key[0],
                "predicate": text,
                # "on the side of" matches "on side of": determiners carry no relation
                "predicate_lemma": lemma
                or " ".join(t.lemma_.lower() for t in sorted(predicate) if t.dep_ != "det"),
                "object": key[2],
                "span": span(predicate),
            }
        )


def adjacent(lead: list[Token], prep: Token) -> list[Token]:
    """``lead`` (the verb) when ``prep`` follows it directly, so the predicate's words
    are one span: "sitting on"; a later preposition stands alone."""
    return lead if lead and prep.i == lead[-1].i + 1 else []


def is_object_head(token: Token) -> bool:
    """A noun that names a thing: not the first half of a compound or a spatial noun."""
    if token.pos_ not in NOUNS or token.dep_ == "compound" or not any(map(str.isalpha, token.text)):
        return False  # emoji and symbols get tagged as nouns too
    if token.lower_ in SPATIAL_NOUNS and token.dep_ == "pobj" and has_of(token):
        return False  # "in front of the car": front is part of the preposition
    if token.lemma_.lower() in PARTITIVES and has_of(token):
        return False  # "bits of ice": ice is the object
    return True


def resolve(token: Token) -> Token:
    """The object a token stands for: "bits of ice" -> ice."""
    while token.lemma_.lower() in PARTITIVES and has_of(token):
        of = next(c for c in token.children if c.dep_ == "prep" and c.lower_ == "of")
        inner = next((c for c in of.children if c.dep_ == "pobj"), None)
        if inner is None:
            break
        token = inner
    return token


def has_of(token: Token) -> bool:
    return any(c.dep_ == "prep" and c.lower_ == "of" for c in token.children)


def merge_spatial(predicate: list[Token], target: Token) -> tuple[list[Token], Token]:
    """ "in front of X": the predicate grows to "in front of" and the object is X."""
    if target.lower_ in SPATIAL_NOUNS and has_of(target):
        of = next(c for c in target.children if c.dep_ == "prep" and c.lower_ == "of")
        inner = next((c for c in of.children if c.dep_ == "pobj"), None)
        if inner is not None:
            return [*predicate, *[t for t in target.doc[predicate[-1].i + 1 : of.i + 1]]], inner
    return predicate, target


def compound_tokens(head: Token) -> list[Token]:
    """The head noun with the nouns compounded onto it, contiguous: "fire hydrant"."""
    start = head.i
    doc = head.doc
    while (
        start > 0
        and doc[start - 1].dep_ == "compound"
        and doc[start - 1].lower_ not in COLOURS
        and _attached(doc[start - 1], head)
    ):
        start -= 1
    return list(head.doc[start : head.i + 1])


def _attached(token: Token, head: Token) -> bool:
    while token.dep_ == "compound" and token.head.i != token.i:
        if token.head.i == head.i:
            return True
        token = token.head
    return False


def phrase_start(head: Token) -> int:
    """First token of the noun phrase before the head (determiners, modifiers, counts)."""
    start = head.i
    for child in head.lefts:
        if child.dep_ in ("det", "amod", "compound", "nummod", "poss", "nmod", "quantmod"):
            start = min(start, child.left_edge.i)
    return start


def modifiers(head: Token) -> list[Token]:
    """Adjectival and participial modifiers of ``head`` (and of its compound words: in
    "a red fire hydrant" red may hang on fire), with their conjuncts."""
    found = []
    children = [c for t in compound_tokens(head) for c in t.children if c.i != head.i]
    for child in children:
        if child.dep_ in ATTRIBUTE_DEPS and child.pos_ in ("ADJ", "VERB", "NUM", "PROPN", "NOUN"):
            if child.pos_ == "NUM" or child.lower_ in SPATIAL_HEADS:
                continue
            found.extend([child, *[c for c in conjuncts(child) if c.pos_ == child.pos_]])
        elif child.dep_ == "compound" and (child.pos_ == "ADJ" or child.lower_ in COLOURS):
            found.append(child)
    return sorted(found, key=lambda t: t.i)


def attribute(token: Token) -> dict:
    return {"text": token.text, "lemma": token.lemma_.lower(), "span": span([token])}


def conjuncts(token: Token) -> list[Token]:
    """Tokens joined to ``token`` by "and"/"or" (transitively, in order)."""
    return [t for t in token.conjuncts if t.i > token.i]


def subjects(verb: Token) -> list[Token]:
    """Who does ``verb``: its subject, the noun a participle or relative clause modifies,
    or the subject of the verb it is coordinated with."""
    for child in verb.children:
        if child.dep_ in ("nsubj", "nsubjpass"):
            if child.lower_ in RELATIVE_PRONOUNS and verb.dep_ == "relcl":
                return [verb.head]
            if child.pos_ in NOUNS:
                return [child]
            return []
    if verb.dep_ in ("acl", "relcl") and verb.head.pos_ in NOUNS:
        return [verb.head]
    if verb.dep_ == "conj" and verb.head.pos_ in ("VERB", "AUX") and verb.head.i != verb.i:
        return subjects(verb.head)
    if verb.dep_ == "ROOT":  # "man riding horse" parsed with riding as root: no subject
        return []
    return []


def build_graph(doc: Doc) -> dict:
    """The scene graph of a parsed caption (objects, relations, spans into its text)."""
    return GraphBuilder(doc).build()
