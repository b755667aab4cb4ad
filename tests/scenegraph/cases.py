"""Hand-checked captions and the scene graphs a careful reader draws from them.

The gold below was written by hand, by reading each caption, not by running any parser. It is
meant for the tests of the rule-based (spaCy dependency) caption -> scene-graph parser, in the
ERNIE-ViL style: objects, attributes of objects, and relations between objects.

Conventions
-----------
Text matching
    Every object head, attribute word and predicate is written exactly as it appears in the
    caption, lower-cased, so that ``word in text.lower()`` holds for each of them. The only
    exception is a count, which is always given as digits ("two dogs" -> ("dogs", "2")).
    Plurals stay plural ("dogs", not "dog"). The order of the tuples is the order of first
    mention and carries no meaning: compare them as sets.

Objects
    * An object is a head noun. A noun compound is one object, named by the whole compound
      ("tennis racket", "fire hydrant", "stop signs"), and the whole compound is used wherever
      the object is named (in attributes and relations).
    * A material word or a colour word in front of a noun is an attribute, never part of a
      compound, even where the tagger calls it a noun ("metal fence" -> fence + metal,
      "brick building" -> building + brick). Material words used here: wooden, metal, glass,
      plastic, stone, brick, leather, steel.
    * Pronouns add no object, but for "someone"/"somebody" and a subject "he", "she" or
      "they" with no noun before it to stand for ("he is riding a motorcycle" -> (he, riding,
      motorcycle)). A possessive pronoun (his, her, its, their) links its noun to
      the owner it points back to, as "'s" does, with the pronoun as the predicate:
      "a man holding his hat" -> (man, his, hat); "a woman and her dog" -> (woman, her, dog).
    * "X of Y" says that Y has X, so the owner comes first, as for "the bus's tire":
      "black tire of a bus" -> (bus, of, tire). After a container or a picture, what follows
      "of" is in or on it and also comes first: "a bowl of fruit" -> (fruit, of, bowl).
      After a partitive ("bits of ice", "a slice of pizza") the object is what follows "of",
      and the partitive adds no object.

Attributes
    * Adjectival modifiers ("a red car" -> (car, red)), participles used as modifiers
      ("a parked car" -> (car, parked)), colours and materials.
    * Predicative adjectives belong to the subject: "the car is red" -> (car, red);
      conjoined adjectives give one attribute each ("blue and cloudy", "black and white").
    * Determiners (a, an, the) and possessives are never attributes; "a"/"an" gives no count.
    * Numbers ("two", "3", "ten") become counts, given as digits, never attributes.
    * Intensifiers are not part of an attribute: "a very tall man" -> (man, tall).
    * An attribute of one conjunct belongs to that conjunct only.

Relations: (subject, predicate, object)
    * Copulas and auxiliaries are never part of a predicate: "the cat is on the mat" ->
      (cat, on, mat); "the man is sitting on a bench" -> (man, sitting on, bench).
    * A verb with a direct object: the verb alone ("a girl eating a sandwich" ->
      (girl, eating, sandwich)). A prepositional phrase on such a verb gives a relation from
      the verb's subject with the preposition alone ("a man riding a wave on top of a
      surfboard" -> (man, riding, wave) and (man, on top of, surfboard)).
    * A verb without a direct object, followed by a preposition: verb and preposition together
      ("a dog sitting on a couch" -> (dog, sitting on, couch)).
    * A noun followed by a preposition: the preposition alone ("a cat on a mat").
    * Multi-word prepositions are kept whole. Only these are used: "next to", "in front of",
      "on top of", "close to", "in the middle of".
    * Passives keep the surface order, with the participle and "by" as the predicate:
      "a horse ridden by a man" -> (horse, ridden by, man). This is the rules' own
      convention: the bundled FACTUAL table writes the doer first, as FACTUAL does,
      (man, ridden, horse) with the predicate lemma "ride" (see :data:`RULES_ONLY`).
    * Participle clauses relate the noun they modify: "a man wearing a hat" ->
      (man, wearing, hat).
    * Conjunction distributes: in "X and Y <rel> Z" the relation holds for X and for Y, and in
      "Z <rel> X and Y" it holds for Z with X and with Z with Y.
    * The subject of a subject relative clause is its antecedent ("a man who is holding a bat"
      -> (man, holding, bat)); in an object relative clause the antecedent is the object
      ("the ball that the boy kicked" -> (boy, kicked, ball)).
    * "there is X on Y" is read as X on Y.
    * A reciprocal relates the thing to itself: "two zebras nuzzling each other" ->
      (zebras, nuzzling, zebras).

Bad input
    Empty or blank captions and captions with no English noun give an empty graph. HTML tags
    and entities are remnants to be ignored. ``crash_only=True`` (non-English, emoji, mixed
    scripts, control characters, very long input) means only "must not raise" is checked; the
    expected fields of such cases are left empty and mean nothing.

``rule`` names the rule a case exercises; "vg_style" (Visual Genome / FACTUAL region
descriptions) and "coco_style" (COCO captions) cases exercise several rules at once.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Case:
    text: str
    rule: str
    # head nouns as written (compounds whole), e.g. ("man", "horse")
    objects: tuple[str, ...] = ()
    # (object head as written, attribute word as written); counts as ("dogs", "2")
    attributes: tuple[tuple[str, str], ...] = ()
    # (subject head, predicate words as written, object head)
    relations: tuple[tuple[str, str, str], ...] = ()
    # True: only "must not crash" is checked (non-English, emoji, very long, ...)
    crash_only: bool = False


RULES: tuple[str, ...] = (
    "simple",
    "compound",
    "count",
    "conjunction",
    "pronoun",
    "relative_clause",
    "amod",
    "predicative",
    "colour",
    "material",
    "participle_attr",
    "verb_object",
    "preposition",
    "multiword_preposition",
    "verb_preposition",
    "passive",
    "copular_location",
    "participle_relation",
    "reciprocal",
    "bad_input",
    "vg_style",
    "coco_style",
)

LONG_CAPTION = " ".join(["a red car on the road"] * 200)

#: Rule tags whose cases hold for the rules alone (``CaptionParser(conventions=None)``):
#: the bundled table writes them FACTUAL's way instead, checked in test_conventions.py.
RULES_ONLY: frozenset[str] = frozenset({"passive"})

CASES: list[Case] = [
    # --- objects: simple nouns -------------------------------------------------------------
    Case("a dog", "simple", objects=("dog",)),
    Case("an elephant", "simple", objects=("elephant",)),
    Case("the ocean", "simple", objects=("ocean",)),
    Case("a bicycle", "simple", objects=("bicycle",)),
    # --- objects: compounds ------------------------------------------------------------------
    Case("a tennis racket", "compound", objects=("tennis racket",)),
    Case(
        "a fire hydrant on the sidewalk",
        "compound",
        objects=("fire hydrant", "sidewalk"),
        relations=(("fire hydrant", "on", "sidewalk"),),
    ),
    Case(
        "a stop sign near a building",
        "compound",
        objects=("stop sign", "building"),
        relations=(("stop sign", "near", "building"),),
    ),
    Case(
        "a man holding a baseball bat",
        "compound",
        objects=("man", "baseball bat"),
        relations=(("man", "holding", "baseball bat"),),
    ),
    Case(
        "a red fire hydrant",
        "compound",
        objects=("fire hydrant",),
        attributes=(("fire hydrant", "red"),),
    ),
    Case(
        "two stop signs",
        "compound",
        objects=("stop signs",),
        attributes=(("stop signs", "2"),),
    ),
    Case(
        "a teddy bear on a bed",
        "compound",
        objects=("teddy bear", "bed"),
        relations=(("teddy bear", "on", "bed"),),
    ),
    Case(
        "a cell phone next to a coffee cup",
        "compound",
        objects=("cell phone", "coffee cup"),
        relations=(("cell phone", "next to", "coffee cup"),),
    ),
    # --- objects: plurals and counts -----------------------------------------------------
    Case("two dogs", "count", objects=("dogs",), attributes=(("dogs", "2"),)),
    Case(
        "three red apples",
        "count",
        objects=("apples",),
        attributes=(("apples", "3"), ("apples", "red")),
    ),
    Case(
        "four horses in a field",
        "count",
        objects=("horses", "field"),
        attributes=(("horses", "4"),),
        relations=(("horses", "in", "field"),),
    ),
    Case(
        "five birds on a wire",
        "count",
        objects=("birds", "wire"),
        attributes=(("birds", "5"),),
        relations=(("birds", "on", "wire"),),
    ),
    Case(
        "2 cats on a sofa",
        "count",
        objects=("cats", "sofa"),
        attributes=(("cats", "2"),),
        relations=(("cats", "on", "sofa"),),
    ),
    Case(
        "two giraffes and three zebras",
        "count",
        objects=("giraffes", "zebras"),
        attributes=(("giraffes", "2"), ("zebras", "3")),
    ),
    Case(
        "ten boats in a harbor",
        "count",
        objects=("boats", "harbor"),
        attributes=(("boats", "10"),),
        relations=(("boats", "in", "harbor"),),
    ),
    # --- objects: conjunctions -----------------------------------------------------------
    Case("a man and a woman", "conjunction", objects=("man", "woman")),
    Case(
        "cats and dogs on a bed",
        "conjunction",
        objects=("cats", "dogs", "bed"),
        relations=(("cats", "on", "bed"), ("dogs", "on", "bed")),
    ),
    Case(
        "a man and a woman sitting on a bench",
        "conjunction",
        objects=("man", "woman", "bench"),
        relations=(("man", "sitting on", "bench"), ("woman", "sitting on", "bench")),
    ),
    Case(
        "a table with cups and plates",
        "conjunction",
        objects=("table", "cups", "plates"),
        relations=(("table", "with", "cups"), ("table", "with", "plates")),
    ),
    Case(
        "forks, knives and spoons on a table",
        "conjunction",
        objects=("forks", "knives", "spoons", "table"),
        relations=(("forks", "on", "table"), ("knives", "on", "table"), ("spoons", "on", "table")),
    ),
    Case(
        "a boy and a girl playing with a dog",
        "conjunction",
        objects=("boy", "girl", "dog"),
        relations=(("boy", "playing with", "dog"), ("girl", "playing with", "dog")),
    ),
    Case(
        "a big dog and a small cat",
        "conjunction",
        objects=("dog", "cat"),
        attributes=(("dog", "big"), ("cat", "small")),
    ),
    # --- objects: pronouns and possessives -----------------------------------------------
    Case(
        "a man holding his hat",
        "pronoun",
        objects=("man", "hat"),
        relations=(("man", "holding", "hat"), ("man", "his", "hat")),
    ),
    Case(
        "a woman and her dog",
        "pronoun",
        objects=("woman", "dog"),
        relations=(("woman", "her", "dog"),),
    ),
    Case(
        "a cat licking its paw",
        "pronoun",
        objects=("cat", "paw"),
        relations=(("cat", "licking", "paw"), ("cat", "its", "paw")),
    ),
    Case(
        "two boys riding their bikes",
        "pronoun",
        objects=("boys", "bikes"),
        attributes=(("boys", "2"),),
        relations=(("boys", "riding", "bikes"), ("boys", "their", "bikes")),
    ),
    Case(
        "a girl with her mother",
        "pronoun",
        objects=("girl", "mother"),
        relations=(("girl", "with", "mother"), ("girl", "her", "mother")),
    ),
    Case(
        "a man and his red car",
        "pronoun",
        objects=("man", "car"),
        attributes=(("car", "red"),),
        relations=(("man", "his", "car"),),
    ),
    # --- objects: relative clauses -------------------------------------------------------
    Case(
        "a man who is holding a bat",
        "relative_clause",
        objects=("man", "bat"),
        relations=(("man", "holding", "bat"),),
    ),
    Case(
        "a dog that is sitting on a couch",
        "relative_clause",
        objects=("dog", "couch"),
        relations=(("dog", "sitting on", "couch"),),
    ),
    Case(
        "a woman who wears glasses",
        "relative_clause",
        objects=("woman", "glasses"),
        relations=(("woman", "wears", "glasses"),),
    ),
    Case(
        "the cat which is on the table",
        "relative_clause",
        objects=("cat", "table"),
        relations=(("cat", "on", "table"),),
    ),
    Case("a boy who is tall", "relative_clause", objects=("boy",), attributes=(("boy", "tall"),)),
    Case(
        "the girl that holds a red balloon",
        "relative_clause",
        objects=("girl", "balloon"),
        attributes=(("balloon", "red"),),
        relations=(("girl", "holds", "balloon"),),
    ),
    Case(
        "the ball that the boy kicked",
        "relative_clause",
        objects=("ball", "boy"),
        relations=(("boy", "kicked", "ball"),),
    ),
    # --- attributes: adjectival modifiers ------------------------------------------------
    Case("a big dog", "amod", objects=("dog",), attributes=(("dog", "big"),)),
    Case(
        "an old man on a bench",
        "amod",
        objects=("man", "bench"),
        attributes=(("man", "old"),),
        relations=(("man", "on", "bench"),),
    ),
    Case("a tall building", "amod", objects=("building",), attributes=(("building", "tall"),)),
    Case(
        "a young girl eating an apple",
        "amod",
        objects=("girl", "apple"),
        attributes=(("girl", "young"),),
        relations=(("girl", "eating", "apple"),),
    ),
    Case("a very tall man", "amod", objects=("man",), attributes=(("man", "tall"),)),
    Case(
        "a large pizza on a round plate",
        "amod",
        objects=("pizza", "plate"),
        attributes=(("pizza", "large"), ("plate", "round")),
        relations=(("pizza", "on", "plate"),),
    ),
    # --- attributes: predicative adjectives ----------------------------------------------
    Case("the car is red", "predicative", objects=("car",), attributes=(("car", "red"),)),
    Case(
        "the sky is blue and cloudy",
        "predicative",
        objects=("sky",),
        attributes=(("sky", "blue"), ("sky", "cloudy")),
    ),
    Case(
        "the man is tall and thin",
        "predicative",
        objects=("man",),
        attributes=(("man", "tall"), ("man", "thin")),
    ),
    Case("the water is calm", "predicative", objects=("water",), attributes=(("water", "calm"),)),
    Case(
        "the bus is red and the sky is blue",
        "predicative",
        objects=("bus", "sky"),
        attributes=(("bus", "red"), ("sky", "blue")),
    ),
    Case(
        "the plates are empty",
        "predicative",
        objects=("plates",),
        attributes=(("plates", "empty"),),
    ),
    Case(
        "the old door is open",
        "predicative",
        objects=("door",),
        attributes=(("door", "old"), ("door", "open")),
    ),
    # --- attributes: colours ---------------------------------------------------------------
    Case("a black cat", "colour", objects=("cat",), attributes=(("cat", "black"),)),
    Case(
        "a red and white bus",
        "colour",
        objects=("bus",),
        attributes=(("bus", "red"), ("bus", "white")),
    ),
    Case(
        "a man in a green shirt",
        "colour",
        objects=("man", "shirt"),
        attributes=(("shirt", "green"),),
        relations=(("man", "in", "shirt"),),
    ),
    Case(
        "a white plate with a red apple",
        "colour",
        objects=("plate", "apple"),
        attributes=(("plate", "white"), ("apple", "red")),
        relations=(("plate", "with", "apple"),),
    ),
    Case(
        "a brown horse and a grey donkey",
        "colour",
        objects=("horse", "donkey"),
        attributes=(("horse", "brown"), ("donkey", "grey")),
    ),
    Case(
        "a blue and yellow train",
        "colour",
        objects=("train",),
        attributes=(("train", "blue"), ("train", "yellow")),
    ),
    # --- attributes: materials -------------------------------------------------------------
    Case("a wooden table", "material", objects=("table",), attributes=(("table", "wooden"),)),
    Case("a metal fence", "material", objects=("fence",), attributes=(("fence", "metal"),)),
    Case(
        "a glass vase on a wooden shelf",
        "material",
        objects=("vase", "shelf"),
        attributes=(("vase", "glass"), ("shelf", "wooden")),
        relations=(("vase", "on", "shelf"),),
    ),
    Case("a plastic bag", "material", objects=("bag",), attributes=(("bag", "plastic"),)),
    Case(
        "a stone wall behind a garden",
        "material",
        objects=("wall", "garden"),
        attributes=(("wall", "stone"),),
        relations=(("wall", "behind", "garden"),),
    ),
    Case("a leather jacket", "material", objects=("jacket",), attributes=(("jacket", "leather"),)),
    Case(
        "a steel bridge over a river",
        "material",
        objects=("bridge", "river"),
        attributes=(("bridge", "steel"),),
        relations=(("bridge", "over", "river"),),
    ),
    # --- attributes: participles as modifiers --------------------------------------------
    Case("a parked car", "participle_attr", objects=("car",), attributes=(("car", "parked"),)),
    Case(
        "a sleeping cat",
        "participle_attr",
        objects=("cat",),
        attributes=(("cat", "sleeping"),),
    ),
    Case(
        "a broken window",
        "participle_attr",
        objects=("window",),
        attributes=(("window", "broken"),),
    ),
    Case(
        "sliced tomatoes on a plate",
        "participle_attr",
        objects=("tomatoes", "plate"),
        attributes=(("tomatoes", "sliced"),),
        relations=(("tomatoes", "on", "plate"),),
    ),
    Case(
        "a smiling woman",
        "participle_attr",
        objects=("woman",),
        attributes=(("woman", "smiling"),),
    ),
    Case(
        "a fallen tree across the road",
        "participle_attr",
        objects=("tree", "road"),
        attributes=(("tree", "fallen"),),
        relations=(("tree", "across", "road"),),
    ),
    Case(
        "a folded towel",
        "participle_attr",
        objects=("towel",),
        attributes=(("towel", "folded"),),
    ),
    # --- relations: verb and direct object -------------------------------------------------
    Case(
        "man riding horse",
        "verb_object",
        objects=("man", "horse"),
        relations=(("man", "riding", "horse"),),
    ),
    Case(
        "a girl eating a sandwich",
        "verb_object",
        objects=("girl", "sandwich"),
        relations=(("girl", "eating", "sandwich"),),
    ),
    Case(
        "the woman holds a baby",
        "verb_object",
        objects=("woman", "baby"),
        relations=(("woman", "holds", "baby"),),
    ),
    Case(
        "a cat chases a mouse",
        "verb_object",
        objects=("cat", "mouse"),
        relations=(("cat", "chases", "mouse"),),
    ),
    Case(
        "a person flying a kite",
        "verb_object",
        objects=("person", "kite"),
        relations=(("person", "flying", "kite"),),
    ),
    Case(
        "a chef cutting vegetables",
        "verb_object",
        objects=("chef", "vegetables"),
        relations=(("chef", "cutting", "vegetables"),),
    ),
    Case(
        "the boy kicks the ball",
        "verb_object",
        objects=("boy", "ball"),
        relations=(("boy", "kicks", "ball"),),
    ),
    # --- relations: prepositions -----------------------------------------------------------
    Case(
        "a cat on a mat", "preposition", objects=("cat", "mat"), relations=(("cat", "on", "mat"),)
    ),
    Case(
        "a lamp beside the bed",
        "preposition",
        objects=("lamp", "bed"),
        relations=(("lamp", "beside", "bed"),),
    ),
    Case(
        "a clock above the door",
        "preposition",
        objects=("clock", "door"),
        relations=(("clock", "above", "door"),),
    ),
    Case(
        "a ball under the table",
        "preposition",
        objects=("ball", "table"),
        relations=(("ball", "under", "table"),),
    ),
    Case(
        "a vase with flowers",
        "preposition",
        objects=("vase", "flowers"),
        relations=(("vase", "with", "flowers"),),
    ),
    Case(
        "a bird in a cage",
        "preposition",
        objects=("bird", "cage"),
        relations=(("bird", "in", "cage"),),
    ),
    Case(
        "a tree behind the house",
        "preposition",
        objects=("tree", "house"),
        relations=(("tree", "behind", "house"),),
    ),
    Case(
        "a picture of a dog",
        "preposition",
        objects=("picture", "dog"),
        relations=(("dog", "of", "picture"),),
    ),
    # --- relations: multi-word prepositions ----------------------------------------------
    Case(
        "a car next to a truck",
        "multiword_preposition",
        objects=("car", "truck"),
        relations=(("car", "next to", "truck"),),
    ),
    Case(
        "a dog in front of a fireplace",
        "multiword_preposition",
        objects=("dog", "fireplace"),
        relations=(("dog", "in front of", "fireplace"),),
    ),
    Case(
        "a cup on top of a table",
        "multiword_preposition",
        objects=("cup", "table"),
        relations=(("cup", "on top of", "table"),),
    ),
    Case(
        "a tree in the middle of a field",
        "multiword_preposition",
        objects=("tree", "field"),
        relations=(("tree", "in the middle of", "field"),),
    ),
    Case(
        "a bench close to the water",
        "multiword_preposition",
        objects=("bench", "water"),
        relations=(("bench", "close to", "water"),),
    ),
    Case(
        "a man standing next to a horse",
        "multiword_preposition",
        objects=("man", "horse"),
        relations=(("man", "standing next to", "horse"),),
    ),
    Case(
        "a cat sitting on top of a car",
        "multiword_preposition",
        objects=("cat", "car"),
        relations=(("cat", "sitting on top of", "car"),),
    ),
    # --- relations: verb and preposition ---------------------------------------------------
    Case(
        "a dog sitting on a couch",
        "verb_preposition",
        objects=("dog", "couch"),
        relations=(("dog", "sitting on", "couch"),),
    ),
    Case(
        "a boy jumping over a fence",
        "verb_preposition",
        objects=("boy", "fence"),
        relations=(("boy", "jumping over", "fence"),),
    ),
    Case(
        "a woman walking down the street",
        "verb_preposition",
        objects=("woman", "street"),
        relations=(("woman", "walking down", "street"),),
    ),
    Case(
        "a plane flying over the city",
        "verb_preposition",
        objects=("plane", "city"),
        relations=(("plane", "flying over", "city"),),
    ),
    Case(
        "a man leaning against a wall",
        "verb_preposition",
        objects=("man", "wall"),
        relations=(("man", "leaning against", "wall"),),
    ),
    Case(
        "a child looking at a cake",
        "verb_preposition",
        objects=("child", "cake"),
        relations=(("child", "looking at", "cake"),),
    ),
    Case(
        "the man is sitting on a bench",
        "verb_preposition",
        objects=("man", "bench"),
        relations=(("man", "sitting on", "bench"),),
    ),
    # --- relations: passives (surface order: patient, "<participle> by", agent) ------------
    Case(
        "a horse ridden by a man",
        "passive",
        objects=("horse", "man"),
        relations=(("horse", "ridden by", "man"),),
    ),
    Case(
        "the horse is ridden by a man",
        "passive",
        objects=("horse", "man"),
        relations=(("horse", "ridden by", "man"),),
    ),
    Case(
        "a cart pulled by a donkey",
        "passive",
        objects=("cart", "donkey"),
        relations=(("cart", "pulled by", "donkey"),),
    ),
    Case(
        "a kite flown by a child",
        "passive",
        objects=("kite", "child"),
        relations=(("kite", "flown by", "child"),),
    ),
    Case(
        "a field surrounded by trees",
        "passive",
        objects=("field", "trees"),
        relations=(("field", "surrounded by", "trees"),),
    ),
    Case(
        "a car driven by a woman",
        "passive",
        objects=("car", "woman"),
        relations=(("car", "driven by", "woman"),),
    ),
    # --- relations: copular locations ------------------------------------------------------
    Case(
        "the cat is on the mat",
        "copular_location",
        objects=("cat", "mat"),
        relations=(("cat", "on", "mat"),),
    ),
    Case(
        "the dog is under the table",
        "copular_location",
        objects=("dog", "table"),
        relations=(("dog", "under", "table"),),
    ),
    Case(
        "the books are on the shelf",
        "copular_location",
        objects=("books", "shelf"),
        relations=(("books", "on", "shelf"),),
    ),
    Case(
        "the car is next to the house",
        "copular_location",
        objects=("car", "house"),
        relations=(("car", "next to", "house"),),
    ),
    Case(
        "the boy is in the water",
        "copular_location",
        objects=("boy", "water"),
        relations=(("boy", "in", "water"),),
    ),
    Case(
        "the keys are in the bowl",
        "copular_location",
        objects=("keys", "bowl"),
        relations=(("keys", "in", "bowl"),),
    ),
    Case(
        "there is a lamp on the desk",
        "copular_location",
        objects=("lamp", "desk"),
        relations=(("lamp", "on", "desk"),),
    ),
    # --- relations: participle clauses -----------------------------------------------------
    Case(
        "a man wearing a hat",
        "participle_relation",
        objects=("man", "hat"),
        relations=(("man", "wearing", "hat"),),
    ),
    Case(
        "a woman carrying a bag",
        "participle_relation",
        objects=("woman", "bag"),
        relations=(("woman", "carrying", "bag"),),
    ),
    Case(
        "a girl holding a doll",
        "participle_relation",
        objects=("girl", "doll"),
        relations=(("girl", "holding", "doll"),),
    ),
    Case(
        "a boy wearing a red shirt",
        "participle_relation",
        objects=("boy", "shirt"),
        attributes=(("shirt", "red"),),
        relations=(("boy", "wearing", "shirt"),),
    ),
    Case(
        "a dog chasing a ball",
        "participle_relation",
        objects=("dog", "ball"),
        relations=(("dog", "chasing", "ball"),),
    ),
    Case(
        "a man using a laptop",
        "participle_relation",
        objects=("man", "laptop"),
        relations=(("man", "using", "laptop"),),
    ),
    Case(
        "a woman pushing a stroller",
        "participle_relation",
        objects=("woman", "stroller"),
        relations=(("woman", "pushing", "stroller"),),
    ),
    # --- bad or odd input: empty or partial graph, never an exception ----------------------
    Case("", "bad_input"),
    Case("   ", "bad_input"),
    Case("...!?", "bad_input"),
    Case("12345", "bad_input"),
    Case("<b>a red car</b>", "bad_input", objects=("car",), attributes=(("car", "red"),)),
    Case(
        "<p>a dog on a couch</p>",
        "bad_input",
        objects=("dog", "couch"),
        relations=(("dog", "on", "couch"),),
    ),
    Case("a cat &amp; a dog", "bad_input", objects=("cat", "dog")),
    Case("🙂🙂", "bad_input", crash_only=True),
    Case("un chien sur le canapé", "bad_input", crash_only=True),
    Case("a cat 在沙发上", "bad_input", crash_only=True),
    Case("собака on a couch", "bad_input", crash_only=True),
    # Cyrillic "е" inside an otherwise English word
    Case("a r\u0435d car", "bad_input", crash_only=True),
    Case("a cat\n\ton a\x00 mat", "bad_input", crash_only=True),
    Case("A RED CAR ON THE ROAD", "bad_input", crash_only=True),
    Case(LONG_CAPTION, "bad_input", crash_only=True),
    Case("x" * 5000, "bad_input", crash_only=True),
    # --- Visual Genome region descriptions / FACTUAL style --------------------------------
    Case(
        "white stove in a kitchen",
        "vg_style",
        objects=("stove", "kitchen"),
        attributes=(("stove", "white"),),
        relations=(("stove", "in", "kitchen"),),
    ),
    Case(
        "bits of ice left on the ground",
        "vg_style",
        objects=("ice", "ground"),
        relations=(("ice", "left on", "ground"),),
    ),
    Case(
        "trees and bushes growing on green lawn",
        "vg_style",
        objects=("trees", "bushes", "lawn"),
        attributes=(("lawn", "green"),),
        relations=(("trees", "growing on", "lawn"), ("bushes", "growing on", "lawn")),
    ),
    Case(
        "man wearing black shirt",
        "vg_style",
        objects=("man", "shirt"),
        attributes=(("shirt", "black"),),
        relations=(("man", "wearing", "shirt"),),
    ),
    Case(
        "clouds in blue sky",
        "vg_style",
        objects=("clouds", "sky"),
        attributes=(("sky", "blue"),),
        relations=(("clouds", "in", "sky"),),
    ),
    Case(
        "red brick building",
        "vg_style",
        objects=("building",),
        attributes=(("building", "red"), ("building", "brick")),
    ),
    Case(
        "clock on the wall",
        "vg_style",
        objects=("clock", "wall"),
        relations=(("clock", "on", "wall"),),
    ),
    Case(
        "wooden fence behind the horse",
        "vg_style",
        objects=("fence", "horse"),
        attributes=(("fence", "wooden"),),
        relations=(("fence", "behind", "horse"),),
    ),
    Case(
        "black tire of a bus",
        "vg_style",
        objects=("tire", "bus"),
        attributes=(("tire", "black"),),
        relations=(("bus", "of", "tire"),),
    ),
    Case(
        "sign on a metal pole",
        "vg_style",
        objects=("sign", "pole"),
        attributes=(("pole", "metal"),),
        relations=(("sign", "on", "pole"),),
    ),
    Case(
        "leaves on the tree are green",
        "vg_style",
        objects=("leaves", "tree"),
        attributes=(("leaves", "green"),),
        relations=(("leaves", "on", "tree"),),
    ),
    Case(
        "gray cat sleeping on the bed",
        "vg_style",
        objects=("cat", "bed"),
        attributes=(("cat", "gray"),),
        relations=(("cat", "sleeping on", "bed"),),
    ),
    Case(
        "street lamp next to road",
        "vg_style",
        objects=("street lamp", "road"),
        relations=(("street lamp", "next to", "road"),),
    ),
    Case(
        "two people walking on the beach",
        "vg_style",
        objects=("people", "beach"),
        attributes=(("people", "2"),),
        relations=(("people", "walking on", "beach"),),
    ),
    Case(
        "man has short hair",
        "vg_style",
        objects=("man", "hair"),
        attributes=(("hair", "short"),),
        relations=(("man", "has", "hair"),),
    ),
    Case(
        "plate of food on table",
        "vg_style",
        objects=("plate", "food", "table"),
        relations=(("food", "of", "plate"), ("plate", "on", "table")),
    ),
    Case(
        "green leaves on tree branch",
        "vg_style",
        objects=("leaves", "tree branch"),
        attributes=(("leaves", "green"),),
        relations=(("leaves", "on", "tree branch"),),
    ),
    Case("the sky is clear", "vg_style", objects=("sky",), attributes=(("sky", "clear"),)),
    Case(
        "person standing near a car",
        "vg_style",
        objects=("person", "car"),
        relations=(("person", "standing near", "car"),),
    ),
    Case(
        "black and white dog",
        "vg_style",
        objects=("dog",),
        attributes=(("dog", "black"), ("dog", "white")),
    ),
    Case(
        "window on the building",
        "vg_style",
        objects=("window", "building"),
        relations=(("window", "on", "building"),),
    ),
    Case(
        "a man with a beard",
        "vg_style",
        objects=("man", "beard"),
        relations=(("man", "with", "beard"),),
    ),
    Case(
        "woman holding an umbrella",
        "vg_style",
        objects=("woman", "umbrella"),
        relations=(("woman", "holding", "umbrella"),),
    ),
    Case(
        "car parked on the street",
        "vg_style",
        objects=("car", "street"),
        relations=(("car", "parked on", "street"),),
    ),
    # --- COCO caption style ----------------------------------------------------------------
    Case(
        "A man riding a wave on top of a surfboard.",
        "coco_style",
        objects=("man", "wave", "surfboard"),
        relations=(("man", "riding", "wave"), ("man", "on top of", "surfboard")),
    ),
    Case(
        "A kitchen with a stove and a refrigerator.",
        "coco_style",
        objects=("kitchen", "stove", "refrigerator"),
        relations=(("kitchen", "with", "stove"), ("kitchen", "with", "refrigerator")),
    ),
    Case(
        "A giraffe standing next to a tree.",
        "coco_style",
        objects=("giraffe", "tree"),
        relations=(("giraffe", "standing next to", "tree"),),
    ),
    Case(
        "A red fire hydrant sitting on a sidewalk.",
        "coco_style",
        objects=("fire hydrant", "sidewalk"),
        attributes=(("fire hydrant", "red"),),
        relations=(("fire hydrant", "sitting on", "sidewalk"),),
    ),
    Case(
        "A cat sleeping on a laptop keyboard.",
        "coco_style",
        objects=("cat", "laptop keyboard"),
        relations=(("cat", "sleeping on", "laptop keyboard"),),
    ),
    Case(
        "A man holding a tennis racket on a court.",
        "coco_style",
        objects=("man", "tennis racket", "court"),
        relations=(("man", "holding", "tennis racket"), ("man", "on", "court")),
    ),
    Case(
        "A bathroom with a toilet and a sink.",
        "coco_style",
        objects=("bathroom", "toilet", "sink"),
        relations=(("bathroom", "with", "toilet"), ("bathroom", "with", "sink")),
    ),
    Case(
        "A black and white cat sitting on a couch.",
        "coco_style",
        objects=("cat", "couch"),
        attributes=(("cat", "black"), ("cat", "white")),
        relations=(("cat", "sitting on", "couch"),),
    ),
    Case(
        "A young boy swinging a baseball bat.",
        "coco_style",
        objects=("boy", "baseball bat"),
        attributes=(("boy", "young"),),
        relations=(("boy", "swinging", "baseball bat"),),
    ),
    Case(
        "A large elephant walking through the tall grass.",
        "coco_style",
        objects=("elephant", "grass"),
        attributes=(("elephant", "large"), ("grass", "tall")),
        relations=(("elephant", "walking through", "grass"),),
    ),
    Case(
        "Two zebras grazing in a grassy field.",
        "coco_style",
        objects=("zebras", "field"),
        attributes=(("zebras", "2"), ("field", "grassy")),
        relations=(("zebras", "grazing in", "field"),),
    ),
    Case(
        "A pizza sitting on top of a white plate.",
        "coco_style",
        objects=("pizza", "plate"),
        attributes=(("plate", "white"),),
        relations=(("pizza", "sitting on top of", "plate"),),
    ),
    Case(
        "A stop sign in front of a brick building.",
        "coco_style",
        objects=("stop sign", "building"),
        attributes=(("building", "brick"),),
        relations=(("stop sign", "in front of", "building"),),
    ),
    Case(
        "A man and a woman cutting a cake.",
        "coco_style",
        objects=("man", "woman", "cake"),
        relations=(("man", "cutting", "cake"), ("woman", "cutting", "cake")),
    ),
    Case(
        "An airplane flying over a city.",
        "coco_style",
        objects=("airplane", "city"),
        relations=(("airplane", "flying over", "city"),),
    ),
    Case(
        "A bowl of fruit on a wooden table.",
        "coco_style",
        objects=("bowl", "fruit", "table"),
        attributes=(("table", "wooden"),),
        relations=(("fruit", "of", "bowl"), ("bowl", "on", "table")),
    ),
    Case(
        "A little girl eating a slice of pizza.",
        "coco_style",
        objects=("girl", "pizza"),
        attributes=(("girl", "little"),),
        relations=(("girl", "eating", "pizza"),),
    ),
    Case(
        "A traffic light hanging over a street.",
        "coco_style",
        objects=("traffic light", "street"),
        relations=(("traffic light", "hanging over", "street"),),
    ),
    Case(
        "A teddy bear sitting on a chair.",
        "coco_style",
        objects=("teddy bear", "chair"),
        relations=(("teddy bear", "sitting on", "chair"),),
    ),
    Case(
        "Three sheep standing in a field.",
        "coco_style",
        objects=("sheep", "field"),
        attributes=(("sheep", "3"),),
        relations=(("sheep", "standing in", "field"),),
    ),
    Case(
        "A train traveling down the tracks.",
        "coco_style",
        objects=("train", "tracks"),
        relations=(("train", "traveling down", "tracks"),),
    ),
    Case(
        "A laptop computer sitting on a desk.",
        "coco_style",
        objects=("laptop computer", "desk"),
        relations=(("laptop computer", "sitting on", "desk"),),
    ),
    # --- "of", "with ... in it", pronouns pointing back --------------------------------------
    Case(
        "a vase with flowers in it",
        "preposition",
        objects=("vase", "flowers"),
        relations=(("flowers", "in", "vase"),),
    ),
    Case(
        "a cake with a candle on top",
        "multiword_preposition",
        objects=("cake", "candle"),
        relations=(("candle", "on top", "cake"),),
    ),
    Case(
        "the tail of a horse",
        "preposition",
        objects=("tail", "horse"),
        relations=(("horse", "of", "tail"),),
    ),
    Case(
        "a cup of coffee on a desk",
        "preposition",
        objects=("cup", "coffee", "desk"),
        relations=(("coffee", "of", "cup"), ("cup", "on", "desk")),
    ),
    Case(
        "smoke coming out of a chimney",
        "verb_preposition",
        objects=("smoke", "chimney"),
        relations=(("smoke", "coming out of", "chimney"),),
    ),
    Case(
        "a mound of dirt next to a fence",
        "vg_style",
        objects=("dirt", "fence"),
        relations=(("dirt", "next to", "fence"),),
    ),
    Case(
        "a boy with his dog",
        "pronoun",
        objects=("boy", "dog"),
        relations=(("boy", "with", "dog"), ("boy", "his", "dog")),
    ),
    Case(
        "concrete steps leading to a door",
        "material",
        objects=("steps", "door"),
        attributes=(("steps", "concrete"),),
        relations=(("steps", "leading to", "door"),),
    ),
    Case(
        "woman holding umbrella",
        "vg_style",
        objects=("woman", "umbrella"),
        relations=(("woman", "holding", "umbrella"),),
    ),
    Case(
        "the giraffe has spots",
        "verb_object",
        objects=("giraffe", "spots"),
        relations=(("giraffe", "has", "spots"),),
    ),
    Case(
        "the box that the bat is resting on",
        "relative_clause",
        objects=("box", "bat"),
        relations=(("bat", "resting on", "box"),),
    ),
    Case(
        "the horse is white with a long mane",
        "predicative",
        objects=("horse", "mane"),
        attributes=(("horse", "white"), ("mane", "long")),
        relations=(("horse", "with", "mane"),),
    ),
    # added with the second round of issue 23's rules
    Case(
        "lady holding vase",
        "participle_relation",
        objects=("lady", "vase"),
        relations=(("lady", "holding", "vase"),),
    ),
    Case(
        "child walking up ramp",
        "participle_relation",
        objects=("child", "ramp"),
        relations=(("child", "walking up", "ramp"),),
    ),
    Case(
        "a woman with shades sitting in the crowd",
        "participle_relation",
        objects=("woman", "shades", "crowd"),
        relations=(("woman", "with", "shades"), ("woman", "sitting in", "crowd")),
    ),
    Case(
        "wooden bookshelf hanging on a wall",
        "participle_relation",
        objects=("bookshelf", "wall"),
        attributes=(("bookshelf", "wooden"),),
        relations=(("bookshelf", "hanging on", "wall"),),
    ),
    Case(
        "two zebras nuzzling each other",
        "reciprocal",
        objects=("zebras",),
        attributes=(("zebras", "2"),),
        relations=(("zebras", "nuzzling", "zebras"),),
    ),
    Case(
        "two cats laying next to each other",
        "reciprocal",
        objects=("cats",),
        attributes=(("cats", "2"),),
        relations=(("cats", "laying next to", "cats"),),
    ),
    Case(
        "short brown hair",
        "amod",
        objects=("hair",),
        attributes=(("hair", "short"), ("hair", "brown")),
    ),
    Case(
        "man wearing light blue shirt",
        "colour",
        objects=("man", "shirt"),
        attributes=(("shirt", "light blue"),),
        relations=(("man", "wearing", "shirt"),),
    ),
    Case(
        "the keyboard is green on the laptop",
        "predicative",
        objects=("keyboard", "laptop"),
        attributes=(("keyboard", "green"),),
        relations=(("keyboard", "on", "laptop"),),
    ),
]
