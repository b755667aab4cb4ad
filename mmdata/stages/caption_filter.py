"""Normalise caption whitespace and drop captions that are empty, too short or too long."""

from __future__ import annotations

import re
from typing import Any

import pyarrow as pa

from mmdata.core.batch import ITEM_REJECT, WORK_SCHEMA, item_reject, mark, set_columns
from mmdata.core.registry import STAGES
from mmdata.core.schema import STATUS_REJECTED
from mmdata.core.stage import Stage

_SPACE = re.compile(r"\s+")


def normalise(text: str | None) -> str:
    """Strip and collapse every run of whitespace (tabs, newlines, NBSP) to one space."""
    return _SPACE.sub(" ", text or "").strip()


@STAGES.register("caption_filter")
class CaptionFilter(Stage):
    """Filter captions one by one; a row whose captions are all dropped is rejected.

    Dropped captions of kept rows are not lost: each goes to the rejects with its
    caption id and reason. The row-level reason is ``no_caption_left``.
    """

    reads = ("captions",)
    writes = ("captions",)

    def __init__(
        self,
        *,
        min_words: int = 1,
        max_words: int = 0,
        min_chars: int = 1,
        max_chars: int = 0,
    ) -> None:
        """Args:
        min_words: fewest words a caption may have.
        max_words: most words (0: no limit).
        min_chars: fewest characters after normalisation.
        max_chars: most characters after normalisation (0: no limit).
        """
        for key, value in locals().items():
            if key != "self" and value < 0:
                raise ValueError(f"{key} must be >= 0, got {value}")
        self.min_words, self.max_words = min_words, max_words
        self.min_chars, self.max_chars = min_chars, max_chars

    def check(self, text: str) -> tuple[str, str] | None:
        """``(reason, detail)`` when the normalised ``text`` must go, else None."""
        words, chars = len(text.split()), len(text)
        if not text:
            return "empty_caption", "empty after whitespace normalisation"
        if words < self.min_words:
            return "caption_too_short", f"{words} words < min_words {self.min_words}"
        if self.max_words and words > self.max_words:
            return "caption_too_long", f"{words} words > max_words {self.max_words}"
        if chars < self.min_chars:
            return "caption_too_short", f"{chars} chars < min_chars {self.min_chars}"
        if self.max_chars and chars > self.max_chars:
            return "caption_too_long", f"{chars} chars > max_chars {self.max_chars}"
        return None

    def process(self, table: pa.Table) -> pa.Table:
        kept_lists, rejects_lists, empty_rows = [], [], []
        previous = table.column("_item_rejects").to_pylist()
        for captions, earlier in zip(table.column("captions").to_pylist(), previous):
            kept, dropped = self._split(captions or [])
            kept_lists.append(kept)
            rejects_lists.append((earlier or []) + dropped or None)
            empty_rows.append(not kept)
        table = set_columns(
            table,
            {
                "captions": pa.array(kept_lists, WORK_SCHEMA.field("captions").type),
                "_item_rejects": pa.array(rejects_lists, pa.list_(ITEM_REJECT)),
            },
        )
        return mark(
            table,
            pa.array(empty_rows),
            STATUS_REJECTED,
            "no_caption_left",
            pa.array(["every caption was dropped"] * table.num_rows),
        )

    def _split(self, captions: list[dict[str, Any]]) -> tuple[list[dict], list[dict]]:
        kept, dropped = [], []
        for caption in captions:
            text = normalise(caption.get("text"))
            verdict = self.check(text)
            if verdict is None:
                kept.append({**caption, "text": text})
            else:
                dropped.append(
                    item_reject("caption", caption.get("caption_id"), *verdict, caption.get("text"))
                )
        return kept, dropped
