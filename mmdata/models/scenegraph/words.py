"""Closed word classes the scene-graph rules read, and nothing open-ended.

Pronouns, quantifiers and partitives, spatial nouns, colours, materials, containers:
small sets a grammar can list. Which nouns are objects and which verbs relate them
comes from the dependency parse, never from a list.
"""

from __future__ import annotations

RELATIVE_PRONOUNS = frozenset({"who", "that", "which", "whom", "whose"})
#: "a man holding his hat": the owner is an earlier noun; "their" wants a plural one.
POSSESSIVE_PRONOUNS = {"his": False, "her": False, "its": False, "their": True}
#: The words a possessive relation is written with: "the man 's hat", "his hat".
POSSESSIVE_WORDS = frozenset({"'s", "'", *POSSESSIVE_PRONOUNS})
#: Subject pronouns that point back to a noun of the caption (value: plural?).
SUBJECT_PRONOUNS = {"he": False, "she": False, "they": True}
#: Pronouns that are a thing of their own: "someone holding a donut".
INDEFINITE_PRONOUNS = frozenset({"someone", "somebody"})
#: "a bowl with flowers in it": the pronoun is the noun that has "with".
BACK_PRONOUNS = frozenset({"it", "them"})
#: "in front of", "on top of": a preposition whose object is one of these, then "of".
SPATIAL_NOUNS = frozenset(
    {"front", "top", "middle", "back", "side", "edge", "bottom", "center", "centre", "end"}
    | {"left", "right", "rear", "corner", "base", "surface", "underside", "tip", "sides"}
)
#: Determiners a spatial preposition keeps: "on both sides of", "on either side of".
SIDE_DETERMINERS = frozenset({"both", "either"})
#: "bits of ice", "a group of people": the thing is what follows "of".
PARTITIVES = frozenset(
    {"bit", "piece", "group", "pair", "bunch", "lot", "couple", "number", "herd", "flock"}
    | {"set", "pile", "stack", "row", "line", "slice", "variety", "assortment", "crowd"}
    | {"mound", "heap", "cluster", "clump", "patch", "thicket", "handful", "bundle"}
    | {"dozen", "lots", "alot", "plenty", "array", "collection", "series", "swarm"}
    | {"part", "pack", "portion"}
)
#: "next to", "close to": an adverb or adjective that carries the preposition ("full of":
#: "a plate full of fruit" relates the plate and the fruit).
SPATIAL_HEADS = frozenset({"next", "close", "adjacent", "near", "closer", "due", "full"})
NUMBER_WORDS = {
    w: i
    for i, w in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve".split()
    )
}
#: Basic colour terms, a closed class: the tagger often calls "silver lamp" or "black
#: leather" a noun compound, but a colour in front of a noun describes it.
COLOURS = frozenset(
    "black white red green blue yellow orange purple pink brown grey gray silver gold"
    " golden beige tan navy maroon".split()
)
#: What a thing is made of, a closed class like the colours: in "brick building" or
#: "metal railing" the tagger sees a compound, but the material describes the thing.
MATERIALS = frozenset(
    "wood wooden metal metallic steel iron plastic glass stone brick concrete cement"
    " leather rubber dirt asphalt marble granite ceramic porcelain wicker straw".split()
)
#: "X of Y" says Y has X ("the tail of the horse" -> (horse, of, tail), lemma "have"),
#: except after a container, whose contents are in or on it ("a bowl of fruit" ->
#: (fruit, of, bowl), lemma "in"), or a depiction ("a picture of a dog" -> "in").
CONTAINERS_ON = frozenset({"plate", "tray", "platter", "saucer"})
CONTAINERS_IN = frozenset(
    "bowl cup glass mug bottle jar box basket bag bucket pot pan vase pitcher carton"
    " crate tub can dish".split()
)
DEPICTIONS = frozenset(
    "picture photo photograph image painting drawing poster portrait reflection".split()
)
#: Prepositions that can end a clause with their object before it ("the desk the letters
#: are placed on"), a closed class.
STRANDABLE = frozenset(
    "on in at to from with by under over behind near into onto inside outside above below"
    " beside against around through across along beneath underneath toward towards".split()
)
