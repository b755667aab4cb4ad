"""Region captions framed as sentences for the parser, and the parse moved back onto the caption.

The small spaCy model was trained on sentences; region captions are bare noun phrases
("tree next to sidewalk", "building in the mountains"), and it often reads their first noun
as a verb or their last as one. Framed with a determiner in front and a full stop behind
("the tree next to sidewalk .") the same words parse as the noun phrase they are. The
parse of the framed text is then copied onto a Doc of the caption's own words, so every
character span still indexes the caption as stored.
"""

from __future__ import annotations

from spacy.tokens import Doc

#: First words that already open a noun phrase: no determiner goes in front of them.
OPENERS = frozenset(
    "a an the this that these those some any each every many several few both all another"
    " other no one two three four five six seven eight nine ten his her its their my your our"
    " there it he she they i we you".split()
)
LEAD = "the "
TAIL = " ."
_ENDS = (".", "!", "?")


def frame(text: str) -> tuple[str, int, int]:
    """``(framed text, tokens added in front, tokens added behind)``; the text unchanged
    where framing could move its tokens (space at either end) or it needs none."""
    if not text or text != text.strip():
        return text, 0, 0
    words = text.split(maxsplit=1)
    first = words[0].lower()
    lead = 0 if first in OPENERS or first[0].isdigit() or not first[0].isalpha() else 1
    tail = 0 if text.endswith(_ENDS) else 1
    return (LEAD if lead else "") + text + (TAIL if tail else ""), lead, tail


def unframe(doc: Doc, lead: int, tail: int) -> Doc:
    """The parse of a framed text as a Doc of the caption's own tokens. A token whose head
    was an added token heads itself (a root)."""
    if not lead and not tail:
        return doc
    tokens = doc[lead : len(doc) - tail]
    n = len(tokens)
    heads, deps = [], []
    for i, token in enumerate(tokens):
        head = token.head.i - lead
        if 0 <= head < n:
            heads.append(head)
            deps.append(token.dep_)
        else:
            heads.append(i)
            deps.append("ROOT")
    spaces = [bool(t.whitespace_) for t in tokens]
    if tail:
        spaces[-1] = False  # the space was the frame's, before its full stop
    return Doc(
        doc.vocab,
        words=[t.text for t in tokens],
        spaces=spaces,
        tags=[t.tag_ for t in tokens],
        pos=[t.pos_ for t in tokens],
        lemmas=[t.lemma_ for t in tokens],
        heads=heads,
        deps=deps,
    )
