"""Conceptual Captions: CC3M and CC12M TSV files -> one image row per line.

CC3M (``Train_GCC-training.tsv``, ``GCC-1.1.0-Validation.tsv``): ``caption<TAB>url``,
no header. Its labelled subset (``Image_Labels_Subset_Train_GCC-Labels-training.tsv``)
adds three comma-separated columns, ``labels<TAB>MIDs<TAB>confidence_scores``: those
become image-level gold objects (no box). The layout is told per line by its column
count, so one source reads both files.

CC12M (``cc12m.tsv``): ``url<TAB>caption`` (columns the other way round), no header,
no final newline. Its captions hold ``<PERSON>`` where names were hypernymised; that
token is kept verbatim.
"""

from __future__ import annotations

from typing import Any

from annotation.webrows import WEB_WRITES, LineFileSource, error_row, web_row
from mmdata.core.args import InputPath
from mmdata.core.registry import SOURCES

_PLAIN_COLUMNS = 2
_LABELLED_COLUMNS = 5


@SOURCES.register("cc3m")
class Cc3mSource(LineFileSource):
    """CC3M TSV (plain or labelled subset) -> image rows with one caption each.

    Image ids are ``cc3m:{row}``, the 0-based line index in the file, so the train and
    validation files need separate corpora (or a ``split`` to tell them apart in SQL).
    """

    name = "cc3m"
    writes = (*WEB_WRITES, "gold")

    def __init__(self, *, tsv: InputPath, split: str | None = None) -> None:
        """Args:
        tsv: path of a CC3M TSV (``caption<TAB>url`` or the 5-column labelled subset).
        split: split name stored on every row (e.g. train, validation).
        """
        self.tsv, self.split = tsv, split

    def _path(self) -> str:
        return self.tsv

    def _parse(self, text: str, row_number: int, where: str) -> dict:
        fields = text.split("\t")
        if len(fields) not in (_PLAIN_COLUMNS, _LABELLED_COLUMNS):
            return self._malformed(row_number, where, "2 or 5", len(fields))
        gold = None
        if len(fields) == _LABELLED_COLUMNS:
            gold = _label_gold(*fields[2:])
            if isinstance(gold, str):
                return error_row(
                    self.name, row_number, "malformed_labels", f"{where}: {gold}", self.split
                )
        return web_row(self.name, row_number, fields[1], fields[0], where, self.split, gold)


def _label_gold(labels: str, mids: str, scores: str) -> dict[str, Any] | str:
    """Gold with one image-level object per label, or a message saying what is wrong.

    Labels, Freebase MIDs and confidences are parallel comma-separated lists.
    """
    names, ids, confidences = labels.split(","), mids.split(","), scores.split(",")
    if not len(names) == len(ids) == len(confidences):
        return (
            f"{len(names)} labels, {len(ids)} MIDs and {len(confidences)} "
            "confidence scores: the lists must be parallel"
        )
    try:
        values = [float(c) for c in confidences]
    except ValueError:
        return f"confidence scores {scores!r} are not all numbers"
    objects = [
        {
            "object_id": mid,
            "names": [name],
            "box_xywh_px": None,
            "score": value,
            "attributes": [],
            "synsets": [],
        }
        for name, mid, value in zip(names, ids, values, strict=True)
    ]
    return {"objects": objects, "relations": [], "regions": [], "scene_graph": None}


@SOURCES.register("cc12m")
class Cc12mSource(LineFileSource):
    """CC12M TSV (``url<TAB>caption``) -> image rows ``cc12m:{row}`` with one caption."""

    name = "cc12m"
    writes = WEB_WRITES

    def __init__(self, *, tsv: InputPath, split: str | None = None) -> None:
        """Args:
        tsv: path of ``cc12m.tsv``.
        split: split name stored on every row.
        """
        self.tsv, self.split = tsv, split

    def _path(self) -> str:
        return self.tsv

    def _parse(self, text: str, row_number: int, where: str) -> dict:
        fields = text.split("\t")
        if len(fields) != _PLAIN_COLUMNS:
            return self._malformed(row_number, where, "2", len(fields))
        return web_row(self.name, row_number, fields[0], fields[1], where, self.split)
