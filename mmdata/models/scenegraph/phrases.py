"""What the scene-graph rules ask of single tokens of a spaCy dependency parse.

Is a token an object's head, which words name it and which modify it, who is a verb's
subject, where a multi-word preposition ends: read from the parse and the closed classes
of :mod:`mmdata.models.scenegraph.words`.
"""

from __future__ import annotations

from collections.abc import Iterable

from spacy.tokens import Doc, Token

from mmdata.models.scenegraph.words import (
    BACK_PRONOUNS,
    COLOURS,
    MATERIALS,
    NUMBER_WORDS,
    PARTITIVES,
    RELATIVE_PRONOUNS,
    SPATIAL_HEADS,
    SPATIAL_NOUNS,
)

NOUNS = frozenset({"NOUN", "PROPN"})
ATTRIBUTE_DEPS = frozenset({"amod", "nmod"})
DESCRIBING = frozenset({"ADJ", "VERB", "NOUN", "PROPN"})
#: Dependencies the small model gives a verb's real subject in headline-style captions.
STRAY_SUBJECT_DEPS = frozenset({"npadvmod", "compound", "dep", "advmod"})
#: Children that make a verb a relation rather than a description of its subject.
RELATION_DEPS = frozenset({"dobj", "attr", "oprd", "prep", "agent", "advmod", "acomp", "dative"})


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


def own_number(head: Token) -> Token | None:
    """The number word said of ``head``: its own ("two dogs"), else its partitive's ("two
    slices of cake": 2 of the cake)."""
    for token in (head, partitive_of(head)):
        if token is None:
            continue
        number = next(
            (c for c in token.children if c.dep_ == "nummod" and count_of(c) is not None), None
        )
        if number is not None:
            return number
    return None


def own_count(head: Token) -> int | None:
    """The count said of ``head`` (:func:`own_number`)."""
    number = own_number(head)
    return None if number is None else count_of(number)


def retag_headline_nouns(doc: Doc) -> None:
    """ "sign on a metal pole", "the side windows on the bus": region captions are noun
    phrases, but the small model reads a leading noun that can be a verb as the root
    verb. A root present-tense verb with no subject and no object that opens the caption
    or follows a determiner or adjective is a noun; it is re-tagged as one."""
    for token in doc:
        if token.dep_ != "ROOT" or token.tag_ not in ("VB", "VBZ", "VBP"):
            continue
        if any(c.dep_ in ("nsubj", "nsubjpass", "expl", "dobj") for c in token.children):
            continue
        before = doc[token.i - 1] if token.i else None
        if before is None or before.pos_ in ("DET", "ADJ"):
            token.pos_ = "NOUN"
            token.tag_ = "NNS" if token.tag_ == "VBZ" else "NN"


def pointing_back(token: Token, also: Iterable[Token] = ()) -> tuple[list[Token], str] | None:
    """``token``'s place relative to a noun before it, said by a preposition (on ``token``
    or among ``also``) whose object points back: "in it" -> ([in], "in"), "on top" -> ([on,
    top], "on top of"), "on its side" -> ([on, side], "on side of")."""
    own = list(token.children)
    for prep in [*own, *also]:
        if prep.dep_ != "prep":
            continue
        for obj in prep.children:
            if obj.dep_ == "pobj" and obj.lower_ in BACK_PRONOUNS:
                return [prep], prep.lower_
            # "on the side" after a verb ("has numbers on the side"); on the noun itself
            # the parse may make the side a thing of its own ("stickers on the front")
            spatial = bare_spatial(obj) or (prep not in own and owned_spatial(obj))
            if obj.dep_ == "pobj" and spatial:
                return [prep, obj], f"{prep.lower_} {obj.lower_} of"
    return None


def owned_spatial(token: Token) -> bool:
    """ "on the side", "on its side": a spatial noun with only a determiner or possessive
    pronoun, and no "of": the side of the noun before it."""
    children = list(token.children)
    return (
        token.lower_ in SPATIAL_NOUNS
        and token.dep_ == "pobj"
        and bool(children)
        and all(c.dep_ in ("det", "poss") and c.lower_ in ("the", "its", "their") for c in children)
    )


def bare_spatial(token: Token) -> bool:
    """ "on top", "in front": a spatial noun with no "of" and no determiner."""
    return token.lower_ in SPATIAL_NOUNS and token.dep_ == "pobj" and not list(token.children)


def adjacent(lead: list[Token], prep: Token) -> list[Token]:
    """``lead`` (the verb) when ``prep`` follows it directly, so the predicate's words
    are one span: "sitting on"; a later preposition stands alone."""
    return lead if lead and prep.i == lead[-1].i + 1 else []


def is_object_head(token: Token) -> bool:
    """A noun that names a thing: not the first half of a compound or a spatial noun."""
    if token.pos_ == "ADJ" and token.dep_ in ("dobj", "pobj") and token.text.isalpha():
        return True  # "slicing a croissant", "dressed in white": the tagger's adjective is a thing
    if token.pos_ not in NOUNS or not any(map(str.isalpha, token.text)):
        return False  # emoji and symbols get tagged as nouns too
    if token.dep_ == "compound" and token.head.pos_ in NOUNS:
        return False  # "fire" in "fire hydrant" is part of its head's name
    if describes_later_noun(token):
        return False  # "white sheep", "red and silver train": the tagger's noun modifies
    if token.lower_ in SPATIAL_NOUNS and token.dep_ == "pobj" and has_of(token):
        return False  # "in front of the car": front is part of the preposition
    if bare_spatial(token):
        return False  # "with a man on top": top is where, not a thing
    if token.lemma_.lower() in PARTITIVES and has_of(token):
        return False  # "bits of ice": ice is the object
    return True


def describes_later_noun(token: Token) -> bool:
    """``token`` (or the first of the conjuncts it ends) modifies a noun after it:
    "white" in "white sheep" tagged a proper noun, "silver" in "red and silver train"."""
    first = token
    while first.dep_ == "conj" and first.head.i < first.i:
        first = first.head
    if first.dep_ not in ("amod", "nmod") and not (first is not token and first.dep_ == "compound"):
        return False
    return first.head.pos_ in NOUNS and first.head.i > token.i


def resolve(token: Token) -> Token:
    """The object a token stands for: "bits of ice" -> ice."""
    while token.lemma_.lower() in PARTITIVES and (phrase := of_phrase(token)) is not None:
        token = phrase[1]
    return token


def of_phrase(token: Token) -> tuple[Token, Token] | None:
    """``token``'s "of" and that preposition's object ("bits of ice" -> of, ice)."""
    of = next((c for c in token.children if c.dep_ == "prep" and c.lower_ == "of"), None)
    inner = None if of is None else next((c for c in of.children if c.dep_ == "pobj"), None)
    return None if inner is None else (of, inner)


def has_of(token: Token) -> bool:
    return any(c.dep_ == "prep" and c.lower_ == "of" for c in token.children)


def merge_spatial(predicate: list[Token], target: Token) -> tuple[list[Token], Token]:
    """ "in front of X": the predicate grows to "in front of" and the object is X."""
    phrase = of_phrase(target) if target.lower_ in SPATIAL_NOUNS else None
    if phrase is not None:
        of, inner = phrase
        return [*predicate, *target.doc[predicate[-1].i + 1 : of.i + 1]], inner
    return predicate, target


def compound_tokens(head: Token) -> list[Token]:
    """The head noun with the nouns compounded onto it, contiguous: "fire hydrant"."""
    start = head.i
    doc = head.doc
    while (
        start > 0
        and doc[start - 1].dep_ == "compound"
        and doc[start - 1].lower_ not in COLOURS
        and doc[start - 1].lower_ not in MATERIALS
        and _attached(doc[start - 1], head)
    ):
        start -= 1
    return list(head.doc[start : head.i + 1])


#: Dependencies of the words in front of a head that may be part of its name.
NAME_DEPS = frozenset({"compound", "amod", "nmod"})


def name_candidates(head: Token) -> list[Token]:
    """The words right in front of ``head`` that may be part of its name, in order: its
    compound words and adjacent modifiers ("coffee table", "hot dog", "pine trees").
    Whether each is part of the name is a convention of the corpus (conventions.py)."""
    doc, start = head.doc, head.i
    while start > 0:
        token = doc[start - 1]
        if hyphenated(token):  # "t-shirt": one word the tokenizer cut at its hyphen
            start -= 2
            continue
        if token.dep_ not in NAME_DEPS or not token.text.isalpha():
            break
        if token.pos_ not in ("NOUN", "PROPN", "ADJ", "VERB"):
            break
        if not (_attached(token, head) or _modifies(token, head)):
            break
        start -= 1
    return list(doc[start : head.i])


def hyphenated(token: Token) -> bool:
    """``token`` is a hyphen joining the words either side of it, with no space."""
    doc = token.doc
    return (
        token.text == "-"
        and 0 < token.i < len(doc) - 1
        and not token.whitespace_
        and not doc[token.i - 1].whitespace_
        and doc[token.i - 1].text.isalpha()
    )


def in_hyphenated(token: Token) -> bool:
    """``token`` is a hyphen between words, or the word in front of one ("t" in "t-shirt")."""
    return hyphenated(token) or (token.i + 1 < len(token.doc) and hyphenated(token.nbor()))


def partitive_of(head: Token) -> Token | None:
    """The partitive whose "of" names ``head``: "group" in "a group of people"."""
    of = head.head
    if head.dep_ != "pobj" or of.lower_ != "of" or of.head.i == of.i:
        return None
    whole = of.head
    return whole if whole.lemma_.lower() in PARTITIVES else None


def default_in_name(token: Token) -> bool:
    """The rules' own call: a compound noun is part of the name, unless a colour or a
    material; an adjective or participle is not."""
    return (
        token.dep_ == "compound"
        and token.pos_ != "ADJ"
        and token.lower_ not in COLOURS
        and token.lower_ not in MATERIALS
    )


def _modifies(token: Token, head: Token) -> bool:
    """``token`` modifies ``head`` or one of its compound words."""
    target = token.head
    return target.i == head.i or (target.dep_ == "compound" and _attached(target, head))


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
    # every compound word, the colour and material ones too: in "red brick building"
    # red hangs on brick
    words_ = [head, *(t for t in head.doc[: head.i] if t.dep_ == "compound" and _attached(t, head))]
    children = [c for t in words_ for c in t.children if c.i != head.i]
    for child in children:
        if child.dep_ in ATTRIBUTE_DEPS and child.pos_ in ("ADJ", "VERB", "NUM", "PROPN", "NOUN"):
            if child.pos_ == "NUM" or child.lower_ in SPATIAL_HEADS:
                continue
            # "red and silver train": the conjuncts describe too, whatever their tag
            found.extend([child, *[c for c in conjuncts(child) if c.pos_ in DESCRIBING]])
        elif child.dep_ == "compound" and (
            child.pos_ == "ADJ" or child.lower_ in COLOURS or child.lower_ in MATERIALS
        ):
            found.append(child)
    return sorted(found, key=lambda t: t.i)


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
    if verb.dep_ in ("acl", "relcl", "advcl", "xcomp") and verb.head.pos_ in NOUNS:
        return [verb.head]
    # "woman holding kite", "dog laying on bed": the small model often hangs a caption's
    # first noun on its verb as npadvmod or compound; before the verb it is the subject
    stray = [c for c in verb.lefts if c.dep_ in STRAY_SUBJECT_DEPS and c.pos_ in NOUNS]
    if stray:
        return stray[:1]
    if verb.dep_ == "conj" and verb.head.pos_ in ("VERB", "AUX") and verb.head.i != verb.i:
        return subjects(verb.head)
    if verb.dep_ in ("xcomp", "advcl") and verb.head.i != verb.i:
        # "a person trying to adjust the time", "a boy sitting on a chair, playing a
        # game": the verb above says who; "the boy is about to eat": through "about"
        above = verb.head
        if above.pos_ == "ADJ" and above.dep_ == "acomp" and above.head.i != above.i:
            above = above.head
        if above.pos_ in ("VERB", "AUX"):
            return subjects(above)
    if verb.dep_ == "ROOT":  # "man riding horse" parsed with riding as root: no subject
        return []
    return []
