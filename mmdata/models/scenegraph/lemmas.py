"""Lower-cased lemmas of graph words, one rule for the parser and the evaluation."""

from __future__ import annotations

import re
from collections.abc import Callable

from spacy.language import Language
from spacy.tokens import Token

#: consonant, vowel, consonant at the end of a stem: "rid", "hop", "shin".
_CVC = re.compile(r"(?:^|[^aeiou])[aeiou][^aeiouwxy]$")


def lemma_rule(nlp: Language | None) -> Callable[[Token], str]:
    """A token's lower-cased lemma, with spaCy's verb lemmas fixed where its rules drop
    an "e": the English rule lemmatiser offers ["rid", "ride"] for "riding" and takes
    the first. English spelling settles it: a stem ending consonant-vowel-consonant
    doubles its last letter before -ing/-ed ("rid" -> "ridding"), so "riding", "hoped"
    and "shining" come from "ride", "hope" and "shine"; "swinging" stays "swing"."""
    pipe = nlp.get_pipe("lemmatizer") if nlp and "lemmatizer" in nlp.pipe_names else None
    rule = pipe.rule_lemmatize if getattr(pipe, "mode", None) == "rule" else None

    def lemma(token: Token) -> str:
        plain = token.lemma_.lower()
        if rule is None or token.pos_ not in ("VERB", "AUX") or not _CVC.search(plain):
            return plain
        forms = [f.lower() for f in rule(token)]
        return plain + "e" if plain + "e" in forms else plain

    return lemma


def plain_lemma(token: Token) -> str:
    """spaCy's own lemma, lower-cased."""
    return token.lemma_.lower()
