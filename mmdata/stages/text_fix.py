"""Repair broken caption text with ftfy: mojibake, HTML entities, ligatures, odd widths.

Web captions (CC3M, CC12M, LAION-style alt text) are often decoded in the wrong
encoding ("cafÃ©"), carry HTML entities ("Tom &amp; Jerry") or curly-quote mojibake
("Donâ€™t"). Fixing them before filtering and parsing keeps the language detector and
the scene-graph parser from seeing garbage.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, get_args

import ftfy
import pyarrow as pa

from mmdata.core.batch import set_columns
from mmdata.core.registry import STAGES
from mmdata.core.stage import Stage

Normalization = Literal["NFC", "NFKC", "NFD", "NFKD"]
NORMALIZATIONS: tuple[str, ...] = get_args(Normalization)


def ftfy_can_change(text: str) -> bool:
    """False for text that no ftfy fixer can change, so ``fix_text`` can be skipped.

    fix_text is slow even on clean text (about 75,000 short captions/s on one core here),
    and most captions are plain ASCII (90% of a LAION-style sample; with this check the
    stage fixes about 400,000/s). Printable ASCII cannot be mojibake, has no ligatures,
    wide forms, curly quotes or control characters, and Unicode normalisation leaves it
    alone; only an HTML entity (which starts with '&') could change it.
    """
    return not (text.isascii() and text.isprintable() and "&" not in text)


def map_caption_texts(captions: pa.ChunkedArray, fix: Callable[[str], str]) -> pa.Array:
    """``captions`` with ``fix`` applied to every non-null text.

    Works on the Arrow children so caption ids and scene graphs are carried over as they
    are, without a round trip through Python objects.
    """
    lists = captions.combine_chunks()
    offsets = lists.offsets.to_numpy()
    start, end = int(offsets[0]), int(offsets[-1])
    items = lists.values.slice(start, end - start)  # .values ignores the list's own slicing
    children = items.flatten()
    index = items.type.get_field_index("text")
    texts = children[index].to_pylist()
    children[index] = pa.array([t if t is None else fix(t) for t in texts], pa.string())
    items = pa.StructArray.from_arrays(children, fields=list(items.type), mask=items.is_null())
    rebased = pa.array(offsets - start, pa.int32())
    return pa.ListArray.from_arrays(rebased, items, mask=lists.is_null())


@STAGES.register("text_fix")
class TextFix(Stage):
    """Repair each caption's text with ``ftfy.fix_text``; rows are never dropped.

    Only ``text`` changes: caption ids and scene graphs are untouched. Whitespace is left
    to caption_filter, which normalises it.
    """

    reads = ("captions",)
    writes = ("captions",)

    def __init__(
        self,
        *,
        unescape_html: bool = True,
        fix_encoding: bool = True,
        fix_latin_ligatures: bool = True,
        fix_character_width: bool = True,
        uncurl_quotes: bool = True,
        normalization: Normalization | None = "NFC",
    ) -> None:
        """Args:
        unescape_html: replace HTML entities ("&amp;", "&#39;") by their characters, even
            when the caption also holds a literal "<" (ftfy's "auto" would then keep them).
        fix_encoding: decode mojibake ("cafÃ©" -> "café", "â€™" -> "’").
        fix_latin_ligatures: spell out ligatures ("ﬁ" -> "fi").
        fix_character_width: fullwidth Latin to normal width ("ＬＯＵＤ" -> "LOUD").
        uncurl_quotes: curly quotes to straight ones.
        normalization: Unicode normal form (NFC, NFKC, NFD or NFKD); None: leave as is.
        """
        flags = {
            "unescape_html": unescape_html,
            "fix_encoding": fix_encoding,
            "fix_latin_ligatures": fix_latin_ligatures,
            "fix_character_width": fix_character_width,
            "uncurl_quotes": uncurl_quotes,
        }
        for key, value in flags.items():
            if not isinstance(value, bool):
                raise ValueError(f"{key} must be true or false, got {value!r}")
        if normalization is not None and normalization not in NORMALIZATIONS:
            choices = ", ".join(NORMALIZATIONS)
            got = f"got {normalization!r}"
            raise ValueError(f"normalization must be one of {choices} or None, {got}")
        # explain=False: the explanation is not used, and building it costs time
        self.config = ftfy.TextFixerConfig(normalization=normalization, explain=False, **flags)

    def fix(self, text: str) -> str:
        """``text`` repaired; returned as is when ftfy could not change it."""
        return ftfy.fix_text(text, self.config) if ftfy_can_change(text) else text

    def process(self, table: pa.Table) -> pa.Table:
        captions = map_caption_texts(table.column("captions"), self.fix)
        return set_columns(table, {"captions": captions})
