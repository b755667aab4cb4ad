"""The Visual Genome 1600-object / 400-attribute vocabularies of bottom-up attention.

Index convention, everywhere in mmdata: class ``i`` of a region row is line ``i - 1`` of
the vocabulary file, and class 0 is background ("no attribute" for attributes), as in
the Caffe model. detectron2 puts background last; LXMERT's TSV stores ids with
background removed (``i - 1``). The conversions live here and nowhere else.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from mmdata.core.errors import InputFormatError

VOCAB_DIR = Path(__file__).resolve().parents[3] / "annotation" / "vg_vocab"
BACKGROUND = "__background__"
NO_ATTRIBUTE = "__no_attribute__"


@dataclass(frozen=True)
class Vocabulary:
    """Display names by class index (0 = background) and every synonym of each class."""

    names: tuple[str, ...]
    synonyms: tuple[tuple[str, ...], ...]

    def __len__(self) -> int:
        return len(self.names)

    def name(self, index: int) -> str:
        return self.names[index]


def parse_vocabulary(text: str, first: str, source: str) -> Vocabulary:
    """One class per line, comma-separated synonyms, ``first`` as class 0."""
    synonyms: list[tuple[str, ...]] = [(first,)]
    for number, line in enumerate(text.split("\n"), start=1):
        names = tuple(n.strip() for n in line.strip("\r").split(",") if n.strip())
        if not names:
            if line.strip():
                raise InputFormatError(f"{source}, line {number}: no class name in {line!r}")
            continue
        synonyms.append(names)
    return Vocabulary(tuple(s[0] for s in synonyms), tuple(synonyms))


def load_vocabulary(path: str | Path, kind: str = "objects") -> Vocabulary:
    """A vocabulary file in the bottom-up-attention format (``kind``: objects or attributes)."""
    first = BACKGROUND if kind == "objects" else NO_ATTRIBUTE
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise InputFormatError(f"{path}: cannot read vocabulary: {exc}") from None
    return parse_vocabulary(text, first, str(path))


@functools.lru_cache(maxsize=2)
def vg_vocabulary(kind: str) -> Vocabulary:
    """The bundled VG vocabulary: ``objects`` (1601 with background) or ``attributes`` (401)."""
    if kind not in ("objects", "attributes"):
        raise ValueError(f"kind must be objects or attributes, got {kind!r}")
    # annotation/ sits beside mmdata/ in a checkout and in site-packages alike; reading
    # the file (not importing annotation) keeps mmdata independent of the importers
    path = VOCAB_DIR / f"{kind}_vocab.txt"
    return load_vocabulary(path, kind)


def detectron2_to_caffe(index: Any, num_classes: int) -> Any:
    """detectron2 puts background at ``num_classes`` (last): move it to 0. ``index``: an
    int or an integer array (numpy or torch), converted elementwise."""
    if isinstance(index, int):
        return 0 if index == num_classes else index + 1
    return (index + 1) * (index != num_classes)


def caffe_to_lxmert(index: Any) -> Any:
    """LXMERT's TSV ids skip background: class ``i`` is stored as ``i - 1``. ``index``: an
    int or an integer array."""
    low = index if isinstance(index, int) else (int(np.min(index)) if len(index) else 1)
    if low < 1:
        raise ValueError(f"class {low} is background: LXMERT's TSV has no id for it")
    return index - 1
