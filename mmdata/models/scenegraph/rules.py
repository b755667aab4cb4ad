"""Rules from a spaCy dependency parse to a scene graph with character spans.

Objects are nouns that are not the modifier of another noun (a ``compound`` child joins
its head: "tennis racket"); attributes are their adjectival and participial modifiers and
predicative adjectives; relations come from verbs (subject, object, prepositions, the
passive agent) and from prepositions on nouns, with multi-word prepositions ("next to",
"in front of", "on top of") merged. The only word lists are closed classes
(:mod:`mmdata.models.scenegraph.words`).

Relations are normalised where English says one thing two ways; the predicate keeps the
caption's words and span, ``predicate_lemma`` says what they mean:

- ownership: "the horse 's tail", "the tail of the horse" and "a horse ... its tail" are
  all (horse, 's / of / its, tail) with lemma "have"; after a container or a picture,
  "of" means in or on ("a bowl of fruit" -> (fruit, of, bowl), lemma "in");
- a thing placed relative to its holder: "a bowl with flowers in it" -> (flowers, in,
  bowl), "a truck with a plant on top" -> (plant, on top, truck), lemma "on top of".
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from spacy.tokens import Doc, Token

from mmdata.models.scenegraph.conventions import (
    DROP,
    FLIP,
    RELATED,
    SPLIT_ATTRIBUTE,
    Conventions,
    attachment_keys,
)
from mmdata.models.scenegraph.lemmas import plain_lemma
from mmdata.models.scenegraph.phrases import (
    RELATION_DEPS,
    adjacent,
    conjuncts,
    count_of,
    default_in_name,
    in_hyphenated,
    is_object_head,
    merge_spatial,
    modifiers,
    name_candidates,
    own_count,
    own_number,
    partitive_of,
    phrase_start,
    pointing_back,
    resolve,
    retag_headline_nouns,
    span,
    subjects,
    words,
)
from mmdata.models.scenegraph.words import (
    COLOURS,
    CONTAINERS_IN,
    CONTAINERS_ON,
    DEPICTIONS,
    INDEFINITE_PRONOUNS,
    POSSESSIVE_PRONOUNS,
    POSSESSIVE_WORDS,
    RELATIVE_PRONOUNS,
    SIDE_DETERMINERS,
    SPATIAL_HEADS,
    SPATIAL_NOUNS,
    STRANDABLE,
    SUBJECT_PRONOUNS,
)


@dataclass
class GraphBuilder:
    """Collects the objects and relations of one parsed caption."""

    doc: Doc
    lemma: Callable[[Token], str] = plain_lemma
    conventions: Conventions | None = None
    objects: list[dict] = field(default_factory=list)
    relations: list[dict] = field(default_factory=list)
    index: dict[int, int] = field(default_factory=dict)  # head token index -> object index
    seen: set[tuple[int, str, int]] = field(default_factory=set)
    #: (compound word, its head, written predicate): "bus wheel" -> (bus, have, wheel)
    split_parts: list[tuple[Token, Token, str]] = field(default_factory=list)
    #: PP-attachment choices met: (keys, noun before the preposition, subject, its object)
    attachments: list[tuple[tuple[str, ...], int, int, int]] = field(default_factory=list)
    #: Parts named by an -ed word met: (the word, the object it describes, the part's name)
    denominals: list[tuple[str, int, str]] = field(default_factory=list)

    def build(self) -> dict:
        retag_headline_nouns(self.doc)
        if self.conventions is not None:
            self.retag_known_nouns()
        for token in self.doc:
            if is_object_head(token) and self.writes_object(token):
                self.add_object(token)
            elif self.pronoun_object(token):
                self.add_object(token)
        for part, head, form in self.split_parts:
            self.relate_split(part, head, form)
        if self.conventions is not None:
            self.denominal_parts()
        for token in self.doc:
            self.add_predicative(token)
            self.add_relations(token)
        self.participle_compounds()
        if self.conventions is not None:
            self.bridge_lone_objects()
            self.drop_predicate_attributes()
            for rel in self.redundant_possessives():
                if not self.conventions.keep_possessive(self.objects[rel["object"]]["lemma"]):
                    self.relations.remove(rel)
            for obj in self.objects:
                keep = self.conventions.keep_attribute
                obj["attributes"] = [a for a in obj["attributes"] if keep(a["text"].lower())]
                for attribute in obj["attributes"]:
                    attribute["name"] = self.conventions.rename_attribute(attribute["text"].lower())
        return {"objects": self.objects, "relations": self.relations, "note": None}

    def denominal_parts(self) -> None:
        """ "a dark haired man", "short sleeved shirt": an -ed word made from a noun names
        a part the thing has, which the words before it describe. Where the corpus writes
        it so (conventions' ``denominals``), the part is an object of its own, named by
        the noun, and the thing has it: (man, have, hair), (hair, is, dark). Every one
        met is kept for the trainer."""
        assert self.conventions is not None
        written = self.conventions.written.get("objects", {})
        for head_i, index in list(self.index.items()):
            head = self.doc[head_i]
            for ed in head.lefts:
                base = denominal_base(ed, written)
                describing = describers(ed) if base else []
                if not describing:
                    continue
                self.denominals.append((ed.lower_, index, base))
                if not self.conventions.write_denominal(ed.lower_):
                    continue
                owner = self.objects[index]
                first, last = describing[0].idx, ed.idx + len(ed)
                owner["attributes"] = [
                    a
                    for a in owner["attributes"]
                    if a["span"]["end"] <= first or a["span"]["start"] >= last
                ]
                counts = [count_of(t) for t in describing if t.pos_ == "NUM"]
                if counts and own_number(head) in describing:
                    owner["count"] = None  # "four wheeled vehicle": the wheels are four
                self.index[ed.i] = len(self.objects)
                self.objects.append(
                    {
                        "head": ed.text,
                        "lemma": base,
                        "name": base,
                        "text": ed.text,
                        "span": span([ed]),
                        "count": next((n for n in counts if n is not None), None),
                        "attributes": [self.attribute(t) for t in describing if t.pos_ != "NUM"],
                    }
                )
                self.add_relation(head, [ed], ed, lemma="have")

    def participle_compounds(self) -> None:
        """ "a snow covered field", "lady holding vase": a participle in front of a noun,
        with a noun of its own before it, relates the two: (snow, covered, field) with
        the verb's lemma (cover), (lady, holding, vase). The participle then does not
        describe the noun as well."""
        for head_i, index in list(self.index.items()):
            head = self.doc[head_i]
            for verb in head.lefts:
                if verb.tag_ not in PARTICIPLE_TAGS or verb.dep_ not in ("amod", "compound"):
                    continue
                doer = next(
                    (c for c in verb.lefts if c.i in self.index and c.dep_ in PARTICIPLE_DOER_DEPS),
                    None,
                )
                if doer is None and head.dep_ == "appos" and head.head.i in self.index:
                    # "wooden fence surrounding pier": the parse makes the pier an
                    # appositive of the fence, with the participle in front of it
                    doer = head.head
                if doer is None:
                    continue
                self.add_relation(doer, [verb], head)
                attrs = self.objects[index]["attributes"]
                self.objects[index]["attributes"] = [
                    a for a in attrs if a["span"]["start"] != verb.idx
                ]

    def drop_predicate_attributes(self) -> None:
        """ "child walking up ramp": a participle that is the predicate of its subject's
        relation does not describe the subject as well."""
        said = {(r["subject"], r["span"]["start"]) for r in self.relations}
        said |= {(r["subject"], r["span"]["end"]) for r in self.relations}
        for index, obj in enumerate(self.objects):
            obj["attributes"] = [
                a
                for a in obj["attributes"]
                if (index, a["span"]["start"]) not in said and (index, a["span"]["end"]) not in said
            ]

    def retag_known_nouns(self) -> None:
        """ "tree next to sidewalk", "building in the mountains": a word the corpus names
        things with (conventions' ``nouns``), tagged a verb, adjective or adverb and not
        modifying a noun after it, is the noun it nearly always is."""
        for token in self.doc:
            if (
                token.pos_ not in ("VERB", "ADJ", "ADV")
                or token.lower_ not in self.conventions.nouns
            ):
                continue
            if token.dep_ in ("amod", "compound", "nmod") and token.head.i > token.i:
                continue  # "hot dog": whether it is part of the name is the names' call
            token.pos_ = "NOUN"
            token.tag_ = "NNS" if token.tag_ == "VBZ" or token.lower_.endswith("s") else "NN"

    def pronoun_object(self, token: Token) -> bool:
        """Is ``token`` a pronoun that names a thing of its own: "someone holding a donut",
        "someone 's pet", or a subject "he", "she", "they" with no noun before it to stand
        for ("he is riding a motorcycle")? The corpus' name for it is learned ("man")."""
        if token.lower_ in INDEFINITE_PRONOUNS:
            return token.dep_ in ("nsubj", "nsubjpass", "poss", "dobj", "pobj", "ROOT")
        if token.lower_ not in SUBJECT_PRONOUNS or token.dep_ not in ("nsubj", "nsubjpass"):
            return False
        if any(c.dep_ == "attr" for c in token.head.children):
            return False  # "he is a customer": the noun after the copula is the thing
        return self.stands_for(token) is None

    def writes_object(self, head: Token) -> bool:
        """Does the corpus write ``head`` as an object? "on the right", "in the background":
        FACTUAL writes no object "right" or "background" (the conventions' table says)."""
        return self.conventions is None or self.conventions.keep_object(head.lemma_.lower())

    def bridge_lone_objects(self) -> None:
        """ "tree next to sidewalk", "building in the mountains": where the parse leaves an
        object in no relation, the words between it and its neighbour object, if they are
        a verb and/or preposition, relate the two (FACTUAL relates what a caption lists)."""
        related = {r["subject"] for r in self.relations} | {r["object"] for r in self.relations}
        heads = sorted(self.index)
        for left, right in zip(heads, heads[1:]):
            if self.index[left] in related or self.index[right] in related:
                continue
            start = phrase_start(self.doc[right])
            if start <= left:
                continue  # "lady holding vase": participle_compounds' case
            between = list(self.doc[left + 1 : start])
            if len(between) == 1 and between[0].pos_ == "CCONJ" and between[0].lower_ == "and":
                # "a desk and guitar": whether and how the corpus relates what a caption
                # lists is the conventions' call ("and" is written "next to" or dropped)
                lemma = self.conventions.predicate("and", self.doc[right].lemma_.lower())
                if lemma not in ("and", DROP):
                    self.add_relation(self.doc[left], between, self.doc[right])
                continue
            while between and between[-1].pos_ in ("DET", "ADJ", "NUM", "PRON"):
                between.pop()  # "on the", "in a large": the target's own words
            if not between or not all(_bridge_word(t) for t in between):
                continue
            if not any(t.pos_ in ("ADP", "VERB") or t.lower_ in SPATIAL_HEADS for t in between):
                continue
            while len(between) > 1 and between[0].pos_ == "AUX":
                between.pop(0)  # "is lying in": a copula or auxiliary says nothing
            self.add_relation(self.doc[left], between, self.doc[right])

    def add_object(self, head: Token) -> None:
        compounds = self.name_tokens(head)
        phrase = [t for t in head.subtree if t.i <= head.i and t.i >= phrase_start(head)]
        count = own_count(head)
        if count is not None and self.conventions and count < self.conventions.min_count:
            count = None
        number = own_number(head)
        # "7 chairs", "the 99 jersey": a corpus may write few counts given in digits
        unwritten = (
            self.conventions is not None
            and number is not None
            and number.text.isdigit()
            and not self.conventions.digits_written(int(number.text))
        )
        if unwritten:
            count = None
        elif count is None and self.conventions is not None and head.tag_ in ("NNS", "NNPS"):
            # "two men wearing jeans", "hands": counts a corpus writes without a number word
            count = self.conventions.implied_count(head.lemma_.lower(), self.counts())
        # words in front of the name that are not part of it describe the thing, or,
        # for a noun the corpus relates ("bus wheel": (bus, have, wheel)), name another
        # thing, which takes the words in front of it along
        first = compounds[0].i
        for token in reversed(name_candidates(head)):
            if token.i >= first or token.pos_ not in ("NOUN", "PROPN"):
                continue
            form = (
                self.conventions.split_form(
                    token.lower_, head.lemma_.lower(), token.tag_ in ("NNS", "NNPS")
                )
                if (self.conventions is not None)
                else SPLIT_ATTRIBUTE
            )
            if form not in (SPLIT_ATTRIBUTE, DROP):
                self.split_parts.append((token, head, form))
                first = token.i
                break
        described = {t.i: t for t in modifiers(head) if t.i < compounds[0].i or t.i > head.i}
        for token in name_candidates(head):
            if token.i < compounds[0].i and token.pos_ in ("NOUN", "PROPN", "ADJ"):
                described.setdefault(token.i, token)
        for part in compounds[:-1]:
            # "white remote control": the colour the parse hangs on a word of the name
            for child in part.children:
                if child.i < compounds[0].i and child.dep_ in ("amod", "nmod", "compound"):
                    if child.pos_ == "ADJ" or child.lower_ in COLOURS:
                        described.setdefault(child.i, child)
        for token in list(described.values()):
            for child in token.children:
                # "short brown hair", "dry tall grass": an adjective the parse hangs on
                # another describes the thing too, unless the corpus writes the two as one
                if child.i < token.i and child.pos_ == "ADJ" and child.dep_ in EXTENSION_DEPS:
                    key = f"{child.lower_} *"
                    if self.conventions is None or not self.conventions.join_attribute(key):
                        described.setdefault(child.i, child)
        if first < compounds[0].i:  # the split word and the words before it are its own
            described = {i: t for i, t in described.items() if i > first or i < phrase_start(head)}

        self.index[head.i] = len(self.objects)
        head_words, lemma = words(compounds), " ".join(self.lemma(t) for t in compounds)
        self.objects.append(
            {
                "head": head_words,
                "lemma": lemma,
                # the corpus' own name for it, where that is not its words ("surfboard")
                "name": self.conventions.rename(head_words.lower(), lemma)
                if self.conventions
                else None,
                "text": words(phrase),
                "span": span(phrase),
                "count": count,
                "attributes": _outermost([self.attribute(described[i]) for i in sorted(described)]),
            }
        )
        whole = partitive_of(head)
        if whole is not None and self.conventions is not None:
            self.partitive_attribute(whole, head)

    def relate_split(self, part: Token, head: Token, form: str) -> None:
        """The compound word ``part`` as an object of its own, related to ``head`` as the
        corpus writes it; the predicate's words are the compound's ("bus wheel")."""
        if part.i not in self.index:
            self.add_object(part)
        words_ = list(self.doc[part.i : head.i + 1])
        if form.startswith(FLIP):
            self.add_relation(head, words_, part, lemma=form[len(FLIP) :])
        else:
            self.add_relation(part, words_, head, lemma=form)

    def counts(self) -> list[int]:
        """The counts the caption says, each once, in order."""
        found = (count_of(t) for t in self.doc if t.dep_ == "nummod")
        floor = self.conventions.min_count if self.conventions else 0
        return list(dict.fromkeys(n for n in found if n is not None and n >= floor))

    def partitive_attribute(self, whole: Token, head: Token) -> None:
        """ "a group of people": the partitive as the corpus writes it, "group of" or
        "piece" (the lemma, as the start of "pieces") or nothing; or a thing of its own
        that ``head`` is related to: "a line of trees" -> (trees, in, line), the
        predicate's words the "of"."""
        form = self.conventions.partitive_form(whole.lemma_.lower()) if self.conventions else ""
        attributes = self.objects[self.index[head.i]]["attributes"]
        after = whole.doc[whole.i + 1 : whole.i + 2]
        of = after[0] if after and after[0].lower_ == "of" else None
        if form.startswith(RELATED) and of is not None:
            if whole.i not in self.index:
                self.add_object(whole)
            self.add_relation(head, [of], whole, lemma=form[len(RELATED) :])
        elif form == "of" and of is not None:
            attributes.append(
                {
                    "text": words([whole, of]),
                    "lemma": f"{self.lemma(whole)} of",
                    "span": span([whole, of]),
                }
            )
        elif form in ("lemma", "word"):
            lemma = whole.lemma_.lower()
            cut = len(lemma) if form == "lemma" and whole.lower_.startswith(lemma) else len(whole)
            start = whole.idx
            attributes.append(
                {
                    "text": whole.text[:cut],
                    "lemma": lemma,
                    "span": {"start": start, "end": start + cut},
                }
            )

    def name_tokens(self, head: Token) -> list[Token]:
        """The words that name the object ``head`` heads, contiguous, ending at ``head``:
        the nearest words in front of it while each is part of the name."""
        start = head.i
        head_lemma = head.lemma_.lower()
        for token in reversed(name_candidates(head)):
            default = default_in_name(token)
            if in_hyphenated(token):
                keep = True
            elif self.conventions is not None:
                keep = self.conventions.keep_in_name(token.lower_, head_lemma, default)
            else:
                keep = default
            if not keep:
                break
            start = token.i
        return list(head.doc[start : head.i + 1])

    def attribute(self, token: Token) -> dict:
        """``token`` as an attribute, with the word next to it that the corpus writes as
        part of it ("bright red", "rolled up"), where the conventions say so."""
        tokens = [token]
        if self.conventions is not None:
            for word, key in attribute_extensions(token):
                if self.conventions.join_attribute(key):
                    tokens.append(word)
        return {
            "text": words(tokens),
            "lemma": " ".join(self.lemma(t) for t in sorted(tokens, key=lambda t: t.i)),
            "span": span(tokens),
        }

    def add_predicative(self, token: Token) -> None:
        """ "the car is red", "the sky is blue and cloudy": the subject gets the adjective.
        "black laptop open on a table": a headline's adjective with a subject and no verb
        says the same, and its preposition relates the subject."""
        if token.pos_ == "ADJ" and token.dep_ == "ROOT" and token.lower_ not in SPATIAL_HEADS:
            subs = [c for c in token.children if c.dep_ == "nsubj" and c.i in self.index]
            for subject in subs[:1]:
                self.objects[self.index[subject.i]]["attributes"].append(self.attribute(token))
                preps = [c for c in token.children if c.dep_ == "prep"]
                for prep in preps:
                    self.prep_relations([subject], [prep])
            return
        if token.dep_ != "acomp" or token.pos_ != "ADJ" or token.lower_ in SPATIAL_HEADS:
            return
        for subject in map(resolve, subjects(token.head)):
            if subject.i in self.index:
                attrs = self.objects[self.index[subject.i]]["attributes"]
                for adjective in [token, *conjuncts(token)]:
                    attrs.append(self.attribute(adjective))

    def add_relations(self, token: Token) -> None:
        if token.pos_ in ("VERB", "AUX"):
            self.verb_relations(token)
            self.stranded(token)
        elif token.i in self.index:
            self.possessive(token)
            self.verbless(token)
            self.noun_relations(token, token)
        elif resolve(token).i in self.index:
            # "a mound of dirt next to a fence": the partitive's phrases are the dirt's
            self.noun_relations(token, resolve(token))

    def stranded(self, verb: Token) -> None:
        """ "the desk the letters are placed on", "the helmet the child is wearing": a
        clause after a noun, whose preposition (or transitive verb) has no object of its
        own, relates its subject to that noun: (letters, placed on, desk)."""
        subs = [c for c in verb.lefts if c.dep_ in ("nsubj", "nsubjpass") and c.i in self.index]
        said = subs[-1] if subs else None
        if not subs:
            subs = self.pronoun_subject(verb)
            said = subject_word(verb)
        if not subs or any(c.dep_ in ("dobj", "attr", "oprd") for c in verb.children):
            return
        subject = subs[-1]
        if verb.dep_ == "relcl" and verb.head.i in self.index:
            target = verb.head
        else:  # the noun the caption opens with, before the clause's subject
            earlier = [i for i in self.index if i < phrase_start(said)]
            if not earlier:
                return
            target = self.doc[max(earlier)]
        if target.i == subject.i:
            return
        last = [t for t in verb.rights if t.dep_ != "punct"]
        copula = verb.lemma_ == "be"
        if last and last[-1].lower_ in STRANDABLE and not list(last[-1].children):
            prep = last[-1]
            words_ = [verb, prep] if not copula and prep.i == verb.i + 1 else [prep]
            self.add_relation(subject, words_, target, via=None if copula else verb)
        elif not last and not copula and verb.pos_ == "VERB" and verb.dep_ == "relcl":
            self.add_relation(subject, [verb], target)

    def plural_referent(self, token: Token) -> Token | None:
        """``token`` if it names several things, else the nearest earlier object that does:
        "two cats in front of a window facing each other" -> cats."""
        if token.tag_ in ("NNS", "NNPS") or token.conjuncts:
            return token
        earlier = [i for i in self.index if i < token.i and self.doc[i].tag_ in ("NNS", "NNPS")]
        return self.doc[max(earlier)] if earlier else None

    def pronoun_subject(self, verb: Token) -> list[Token]:
        """ "woman 's face as she sits at the table", "the clouds are so low, they shroud
        the mountains": a subject "he", "she" or "they" is the caption's first noun before
        it (of that number)."""
        pronoun = subject_word(verb)
        if pronoun is None or pronoun.lower_ not in SUBJECT_PRONOUNS:
            return []
        found = self.stands_for(pronoun)
        return [] if found is None else [found]

    def stands_for(self, pronoun: Token) -> Token | None:
        """The caption's first object before the subject pronoun ``pronoun`` of its
        number, or None."""
        plural = SUBJECT_PRONOUNS[pronoun.lower_]
        for i in sorted(self.index):
            token = self.doc[i]
            if i < pronoun.i and (token.tag_ in ("NNS", "NNPS")) == plural:
                return token
        return None

    def noun_relations(self, noun: Token, subject: Token) -> None:
        """Relations from the prepositions on ``noun``, said of ``subject``."""
        for prep in noun.children:
            if prep.dep_ == "prep" and prep.lower_ == "of":
                if noun.i == subject.i:
                    self.of_relations(noun, prep)
            elif prep.dep_ == "prep" and prep.lower_ == "with":
                self.with_relations(subject, prep)
            elif prep.dep_ == "prep":
                targets = [t for t in prep.children if t.dep_ == "pobj"]
                outer = self.outer_subject(subject, prep.lower_, targets)
                self.prep_relations([outer], [prep])
            elif prep.lower_ in SPATIAL_HEADS and prep.dep_ in ("advmod", "amod"):
                for inner in prep.children:
                    if inner.dep_ == "prep":
                        self.prep_relations([subject], [prep, inner])

    def verbless(self, noun: Token) -> None:
        """ "the bird has beak": tagged as a noun phrase whose "has" is an auxiliary; the
        auxiliary is the verb, the subject has the noun."""
        aux = [c for c in noun.children if c.dep_ == "aux" and c.tag_.startswith("VB")]
        aux = [c for c in aux if c.lemma_ != "be"]
        subs = [c for c in noun.children if c.dep_ == "nsubj" and c.i in self.index]
        for verb in aux[:1]:
            for subject in subs:
                self.add_relation(subject, [verb], noun)

    def possessive(self, owned: Token) -> None:
        """ "the man 's hat": (man, 's, hat), whose lemma is "have" (a possessive says
        the owner has the thing, and matching needs the verb, not the clitic)."""
        for owner in owned.children:
            marker = next((c for c in owner.children if c.dep_ == "case"), None)
            if owner.dep_ == "poss" and owner.i in self.index and marker is not None:
                self.add_relation(owner, [marker], owned, lemma="have")
            elif owner.dep_ == "poss" and owner.lower_ in POSSESSIVE_PRONOUNS:
                antecedent = self.antecedent(
                    owned,
                    plural=POSSESSIVE_PRONOUNS[owner.lower_],
                    person=owner.lower_ in ("his", "her"),
                )
                if antecedent is not None:
                    self.add_relation(antecedent, [owner], owned, lemma="have")

    def redundant_possessives(self) -> list[dict]:
        """Possessive relations ("a man holding his hat": (man, his, hat)) whose owner and
        thing another relation already links ((man, holding, hat)); a corpus may not write
        them (the conventions' ``possessives``)."""
        possessives = [r for r in self.relations if r["predicate"].lower() in POSSESSIVE_WORDS]
        linked = {
            frozenset((r["subject"], r["object"]))
            for r in self.relations
            if r["predicate"].lower() not in POSSESSIVE_WORDS
        }
        return [r for r in possessives if frozenset((r["subject"], r["object"])) in linked]

    def antecedent(self, owned: Token, plural: bool, person: bool = False) -> Token | None:
        """Who "his", "her", "its" or "their" in front of ``owned`` points back to: the
        subject of the verb above it ("a cat licking its paw"), else the noun it hangs
        on ("a girl with her mother"), else the nearest earlier noun of that number."""

        def fits(token: Token) -> bool:
            others = [c for c in token.conjuncts if c.i != owned.i]  # "a man and a woman"
            many = token.tag_ in ("NNS", "NNPS") or bool(others)
            return token.i in self.index and token.i != owned.i and many == plural

        chain = []
        node = owned
        while node.head.i != node.i:
            node = node.head
            chain.append(node)
        nearest = None
        for node in chain:
            if node.pos_ in ("VERB", "AUX"):
                found = [s for s in map(resolve, subjects(node)) if fits(s)]
                if found and (nearest is None or person):
                    return found[0]
            elif node.i < owned.i and fits(node) and nearest is None:
                # "a girl with her mother"; for "his" and "her" a verb further up may
                # still say who ("a man wearing a towel around his waist")
                nearest = node
                if not person:
                    return node
        if nearest is not None:
            return nearest
        earlier = [t for t in self.doc[: owned.i] if fits(t)]
        return earlier[-1] if earlier else None

    def of_relations(self, head: Token, of: Token) -> None:
        """ "the tail of the horse": (horse, of, tail) with lemma "have", the owner first
        as for "the horse 's tail"; after a container or a depiction the thing named by
        "of" is in (or on) it."""
        lemma = head.lemma_.lower()
        if lemma in CONTAINERS_ON:
            meaning = "on"
        elif lemma in CONTAINERS_IN or lemma in DEPICTIONS:
            meaning = "in"
        else:
            meaning = "have"
        for target in of.children:
            if target.dep_ != "pobj":
                continue
            for whole in map(resolve, [target, *conjuncts(target)]):
                if whole.i not in self.index:
                    continue
                self.add_relation(whole, [of], head, lemma=meaning)

    def with_relations(self, holder: Token, with_: Token) -> None:
        """ "a plate with a cake": (plate, with, cake); but where the thing held says
        where it is, relative to the holder ("a bowl with flowers in it", "a truck with a
        plant on top"), that is the relation: (flowers, in, bowl), (plant, on top, truck)."""
        for target in with_.children:
            if target.dep_ != "pobj":
                continue
            for held in map(resolve, [target, *conjuncts(target)]):
                where = pointing_back(held)
                if where is None:
                    self.link([holder], [with_], held)
                elif held.i in self.index:
                    words_, lemma = where
                    self.add_relation(held, words_, holder, lemma=lemma)

    def verb_relations(self, verb: Token) -> None:
        subs = [s for s in map(resolve, subjects(verb)) if s.i in self.index]
        if not subs:
            subs = self.pronoun_subject(verb)
        if not subs:
            return
        if verb.dep_ == "acl" and len(subs) == 1:
            # "a woman with shades sitting in the crowd": the woman sits, not the shades
            subs = [self.outer_subject(subs[0], self.lemma(verb), verb_targets(verb), True)]
        copula = verb.lemma_ == "be"
        passive = any(c.dep_ in ("nsubjpass", "auxpass") for c in verb.children) or (
            verb.tag_ == "VBN" and verb.dep_ == "acl"
        )
        # "sitting on a couch": the verb joins its preposition; "riding a wave on a
        # board", "is on the mat": the preposition alone says where the subject is.
        transitive = any(c.dep_ in ("dobj", "attr", "oprd") for c in verb.children)
        lead = [] if copula or transitive else [verb]
        # "boats sitting quietly in the water", "hitting the ball with a racquet": the
        # predicate's words are the preposition's, its meaning may take the verb too
        # (conventions.py learns which a corpus writes)
        via = None if copula or self.conventions is None else verb
        describing = verb.dep_ == "acl" or (
            # "man in dark suit smiling", "swinging at ball and looking up"
            verb.tag_ in ("VBG", "VBN") and verb.dep_ in ("ROOT", "conj", "advcl", "ccomp")
        )
        if (
            verb.pos_ == "VERB"
            and describing
            and not any(c.dep_ in RELATION_DEPS for c in verb.children)
        ):
            # "a man walking": a participle with nothing to relate to describes its noun.
            for subject in subs:
                for sub in [subject, *subject.conjuncts]:
                    if sub.i in self.index:
                        self.objects[self.index[sub.i]]["attributes"].append(self.attribute(verb))
            return
        self.object_complements(verb)
        placed = self.placed_by_having(verb, subs) if verb.lemma_ == "have" else set()
        for child in verb.children:
            if child.i in placed:
                continue
            if child.dep_ == "dobj" and child.lower_ in RELATIVE_PRONOUNS and verb.dep_ == "relcl":
                self.link(subs, [verb], verb.head)  # "the ball that the boy kicked"
            elif child.dep_ in ("dobj", "attr", "oprd") and not copula:
                self.link(subs, [verb], child)
            elif child.dep_ == "agent" and passive:
                self.prep_relations(subs, [verb, child])
            elif child.dep_ == "prep":
                low = self.low_attachment(verb, child, subs)
                if low is not None:
                    self.prep_relations([low], [child])
                else:
                    self.prep_relations(subs, [*adjacent(lead, child), child], via)
            elif child.dep_ in ("advmod", "acomp") and child.lower_ in SPATIAL_HEADS:
                for inner in child.children:
                    if inner.dep_ == "prep":
                        self.prep_relations(subs, [*adjacent(lead, child), child, inner], via)
            elif copula and child.dep_ == "acomp" and child.pos_ == "ADJ":
                # "the horse is white with a long mane", "the keyboard is green on the
                # laptop": the preposition after the adjective relates the subject
                for inner in child.children:
                    if inner.dep_ == "prep":
                        self.prep_relations(subs, [inner])

    def placed_by_having(self, verb: Token, subs: list[Token]) -> set[int]:
        """ "the picture has trees in it", "the plane has numbers on the side": where the
        thing had says where it is on or in the haver, that is the relation, as for "a bowl
        with flowers in it": (trees, in, picture), (numbers, on side of, plane). Returns the
        verb's children said here (the object and the preposition)."""
        preps = [c for c in verb.children if c.dep_ == "prep"]
        done: set[int] = set()
        for held in (c for c in verb.children if c.dep_ == "dobj"):
            where = pointing_back(held, preps)
            if where is None:
                continue
            words_, lemma = where
            for thing in map(resolve, [held, *conjuncts(held)]):
                for subject in subs:
                    self.add_relation(thing, words_, subject, lemma=lemma)
            done |= {held.i, words_[0].i}
        return done

    def outer_subject(
        self, noun: Token, word: str, targets: list[Token], verb: bool = False
    ) -> Token:
        """``noun``, or the noun whose phrase it ends ("woman with shades", "shadow of the
        trees") where the corpus relates ``targets`` (said by ``word``: a participle or a
        preposition hanging on ``noun``) to that outer noun. The choice is learned
        (conventions' ``attachments``, keys "<prep>+<word>|<target>"); every choice met is
        kept for the trainer."""
        prep = noun.head
        if noun.dep_ != "pobj" or prep.dep_ != "prep" or prep.lower_ not in ("with", "of"):
            return noun
        outer = resolve(prep.head)
        if outer.i not in self.index or outer.i == noun.i:
            return noun
        chosen = []
        for target in targets:
            keys = (
                f"{prep.lower_}+{word}|{target.lemma_.lower()}",
                f"{prep.lower_}+{word}",
                f"{prep.lower_}+{'*' if verb else '?'}",  # any participle, any preposition
            )
            self.attachments.append((keys, noun.i, outer.i, target.i))
            chosen.append(self.conventions is not None and self.conventions.attach_high(keys))
        return outer if chosen and all(chosen) else noun

    def low_attachment(self, verb: Token, prep: Token, subs: list[Token]) -> Token | None:
        """The noun right before ``prep`` (after ``verb``) where the corpus relates the
        preposition's object to it rather than to the verb's subject: "girl sitting at
        a table in the background" -> (table, in, background). The choice is learned
        (conventions' ``attachments``); every choice met is kept for the trainer."""
        before = self.doc[prep.i - 1] if prep.i > 0 else None
        target = next((c for c in prep.children if c.dep_ == "pobj"), None)
        if before is None or target is None or before.i <= verb.i:
            return None
        if before.i not in self.index or any(before.i == s.i for s in subs):
            return None
        # the parser's lemma rule: spaCy's own lemma of "riding" is "rid"
        keys = attachment_keys(prep.lower_, target.lemma_.lower(), self.lemma(verb))
        for sub in subs:
            self.attachments.append((keys, before.i, sub.i, target.i))
        if self.conventions is not None and self.conventions.attach_low(keys):
            return before
        return None

    def object_complements(self, verb: Token) -> None:
        """ "the dog has its mouth open", "a man with arms extended": an adjective or a
        bare participle completing the verb's object describes the object."""
        objects = [c for c in verb.children if c.dep_ == "dobj" and c.i in self.index]
        for child in verb.children:
            if child.dep_ not in ("ccomp", "xcomp", "oprd") or list(child.children):
                continue
            if child.pos_ == "ADJ" or child.tag_ == "VBN":
                for obj in objects[:1]:
                    attrs = self.objects[self.index[obj.i]]["attributes"]
                    attrs.append(self.attribute(child))

    def prep_relations(
        self, subs: list[Token], predicate: list[Token], via: Token | None = None
    ) -> None:
        """Relations from ``subs`` through ``predicate`` (ending in a preposition), said
        by the verb ``via`` where given."""
        prep = predicate[-1]
        targets = [t for t in prep.children if t.dep_ == "pobj"]
        for target in targets:
            clause = next((a for a in target.ancestors if a.dep_ == "relcl"), None)
            if target.lower_ in RELATIVE_PRONOUNS and clause is not None and target.i < prep.i:
                # "the box that the bat is resting on": the box ("on which": done elsewhere)
                target = clause.head
            words_, target = merge_spatial(predicate, target)
            self.link(subs, words_, target, via)
        if not targets:
            # "out of the water", "away from the car": a preposition that carries the next
            for inner in prep.children:
                if inner.dep_ == "prep" and inner.i == prep.i + 1:
                    self.prep_relations(subs, [*predicate, inner], via)

    def link(
        self, subs: list[Token], predicate: list[Token], target: Token, via: Token | None = None
    ) -> None:
        if reciprocal(target):
            # "two zebras nuzzling each other": each relates to the other, (zebra, nuzzle,
            # zebra)
            for subject in subs:
                several = self.plural_referent(subject)
                if several is not None:
                    self.add_relation(several, predicate, several, via=via, itself=True)
            return
        for obj in map(resolve, [target, *conjuncts(target)]):
            if obj.i not in self.index:
                continue
            for subject in subs:
                # "a man and a woman sitting on a bench": the participle hangs on the
                # last conjunct but says something of every one.
                for sub in map(resolve, [subject, *subject.conjuncts]):
                    self.add_relation(sub, predicate, obj, via=via)

    def add_relation(
        self,
        subject: Token,
        predicate: list[Token],
        obj: Token,
        lemma: str | None = None,
        via: Token | None = None,
        itself: bool = False,
    ) -> None:
        """(subject, predicate, obj); ``lemma`` (else the predicate's words' lemmas) says
        what it means, after the lemma of the verb ``via`` where the words lack it.
        ``itself``: a relation among the things the subject names ("each other")."""
        if subject.i not in self.index or (subject.i == obj.i and not itself):
            return
        # "on the side of" matches "on side of": determiners carry no relation, but
        # "on both sides of" and "on either side of" are other places, as written
        lemma = lemma or " ".join(
            self.lemma(t)
            for t in sorted(predicate)
            if t.dep_ != "det" or t.lower_ in SIDE_DETERMINERS
        )
        if via is not None and all(t.i != via.i for t in predicate):
            lemma = f"{self.lemma(via)} {lemma}"
        if self.conventions is not None:
            written = self.conventions.predicate(lemma, obj.lemma_.lower())
            if written == DROP:
                return  # a relation the corpus does not write ("a man and a dog")
            if not written.startswith(FLIP):
                lemma = written
            else:
                # "a field covered in snow": (snow, cover, field); "a field surrounded by
                # trees": (trees, surrounded, field), the doer first without its "by".
                # The rules alone keep a passive's surface order (tests/scenegraph/cases.py).
                if predicate[-1].dep_ == "agent" and len(predicate) > 1:
                    predicate = predicate[:-1]
                lemma, subject, obj = written[len(FLIP) :], obj, subject
        text = " ".join(t.text for t in sorted(predicate, key=lambda t: t.i))
        key = (self.index[subject.i], text.lower(), self.index[obj.i])
        if key in self.seen:
            return
        self.seen.add(key)
        self.relations.append(
            {
                "subject": key[0],
                "predicate": text,
                "predicate_lemma": lemma,
                "object": key[2],
                "span": span(predicate),
            }
        )


#: How the parse hangs the doer on a participle in front of a noun ("snow covered field").
PARTICIPLE_DOER_DEPS = frozenset({"npadvmod", "compound", "nsubj", "nmod"})
#: A participle's tags; the tagger calls "covered" in "snow covered ski slope" a past tense.
PARTICIPLE_TAGS = frozenset({"VBN", "VBG", "VBD"})

#: Words next to an attribute that may be part of it: "bright" red, rolled "up".
EXTENSION_DEPS = frozenset({"advmod", "npadvmod", "amod", "compound"})


def attribute_extensions(token: Token) -> list[tuple[Token, str]]:
    """``(word, key)`` for the words right next to the attribute ``token`` that may be
    part of it: a modifier just before ("bright red": key "bright *") and a particle just
    after ("rolled up": key "* up")."""
    found = []
    before = token.doc[token.i - 1] if token.i else None
    if (
        before is not None
        and token.dep_ == "amod"
        and before.dep_ == "amod"
        and before.head.i == token.head.i
        and before.pos_ == "ADJ"
        and not list(before.children)
    ):
        # "light blue shirt": the parse hangs both on the noun
        found.append((before, f"{before.lower_} *"))
    for child in token.children:
        if child.i == token.i - 1 and child.dep_ in EXTENSION_DEPS and child.text.isalpha():
            found.append((child, f"{child.lower_} *"))
        elif child.i == token.i + 1 and child.dep_ == "prt":
            found.append((child, f"* {child.lower_}"))
    return found


#: How often gold graphs must write a noun as an object's word to be an -ed word's part.
DENOMINAL_FLOOR = 10


def denominal_base(token: Token, written: Mapping[str, int]) -> str | None:
    """The noun an -ed modifier is made from, where gold graphs write it often as an
    object's word: "haired" -> hair, "sleeved" -> sleeve; else None."""
    word = token.lower_
    if token.dep_ not in ("amod", "compound") or not word.endswith("ed"):
        return None
    count, base = max((written.get(b, 0), b) for b in (word[:-2], word[:-1]))
    return base if count >= DENOMINAL_FLOOR else None


def describers(ed: Token) -> list[Token]:
    """The adjectives or number that describe the part an -ed word names: its own
    ("dark haired", "short sleeved"), else the one right before it ("black framed",
    "four wheeled"), past a hyphen ("dark-haired")."""
    own = [c for c in ed.lefts if c.pos_ in ("ADJ", "NUM") and c.dep_ in EXTENSION_DEPS]
    if own:
        return own
    before = ed.i - 1
    if before >= 0 and ed.doc[before].text == "-":
        before -= 1
    token = ed.doc[before] if before >= 0 else None
    if token is not None and token.pos_ in ("ADJ", "NUM") and token.head.i in (ed.i, ed.head.i):
        return [token]
    return []


def subject_word(verb: Token) -> Token | None:
    """The word in the subject slot before ``verb``, object or not ("he", "she")."""
    return next((c for c in verb.lefts if c.dep_ in ("nsubj", "nsubjpass")), None)


def verb_targets(verb: Token) -> list[Token]:
    """The nouns a verb relates its subject to: its objects and its prepositions' objects."""
    found = [c for c in verb.children if c.dep_ in ("dobj", "attr", "oprd")]
    for prep in (c for c in verb.children if c.dep_ == "prep"):
        found.extend(c for c in prep.children if c.dep_ == "pobj")
    return [resolve(t) for t in found]


def reciprocal(token: Token) -> bool:
    """ "each other", "one another": the thing relates to itself."""
    return (token.lower_ == "other" and any(c.lower_ == "each" for c in token.children)) or (
        token.lower_ == "another" and token.i > 0 and token.doc[token.i - 1].lower_ == "one"
    )


def _outermost(attributes: list[dict]) -> list[dict]:
    """``attributes`` without those inside another's span ("light" in "light blue")."""

    def inside(a: dict, b: dict) -> bool:
        (a0, a1), (b0, b1) = ((x["span"]["start"], x["span"]["end"]) for x in (a, b))
        return b0 <= a0 and a1 <= b1 and b1 - b0 > a1 - a0

    return [a for a in attributes if not any(inside(a, b) for b in attributes)]


def _bridge_word(token: Token) -> bool:
    """A word that may stand between two objects in a relation's words: a verb, a
    preposition, a particle, an adverb, a spatial word ("next to", "in front of")."""
    if token.lower_ in SPATIAL_HEADS or token.lower_ in SPATIAL_NOUNS:
        return True
    return token.pos_ in ("ADP", "VERB", "AUX", "ADV", "PART", "SCONJ")


def build_graph(
    doc: Doc,
    lemma: Callable[[Token], str] = plain_lemma,
    conventions: Conventions | None = None,
) -> dict:
    """The scene graph of a parsed caption (objects, relations, spans into its text),
    written by ``conventions`` where given (else by the rules' defaults)."""
    return GraphBuilder(doc, lemma, conventions).build()
