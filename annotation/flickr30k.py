"""Flickr30k captions -> one image row per photo with its (about) five captions.

Two real layouts of the captions file are read, told apart by the first line:

- ``results_20130124.token`` (the official ``flickr30k.tar.gz``):
  ``1000092795.jpg#0<TAB>Two young guys ... .``, no header.
- Kaggle's ``results.csv``: header ``image_name| comment_number| comment``, then
  ``1000092795.jpg| 0| Two young guys ... .``. The separator is ``|`` followed by one
  space, which is not part of the caption; later ``|`` stay in the caption.

Karpathy's ``dataset_flickr30k.json`` gives each image's split (train/val/test). When no
captions file is given its ``sentences[].raw`` are the captions instead (untokenised
text, e.g. ``Two young, White males`` where the token file has ``Two young , White``),
so ``captions`` may be None as long as ``karpathy`` is set.

The files are small (31,783 images, 158,915 captions): they are parsed once per process
and partitions are slices of the image list, in order of first appearance.
"""

from __future__ import annotations

import functools
import os
from typing import Any

import pyarrow as pa

from annotation.jsonfile import AnnotationError, iter_array
from annotation.webrows import error_row, rows_table
from mmdata.core.args import InputPath
from mmdata.core.io import join
from mmdata.core.registry import SOURCES
from mmdata.core.stage import Partition, Source

CSV_HEADER = "image_name|"


@SOURCES.register("flickr30k")
class Flickr30kSource(Source):
    """Flickr30k captions (token file, Kaggle CSV or Karpathy JSON) -> image rows.

    Image ids are ``flickr30k:{file stem}`` (``flickr30k:1000092795``); caption ids add
    ``#{n}``, the caption number in the file (its index for Karpathy sentences).
    """

    name = "flickr30k"
    writes = ("image_id", "source", "split", "path", "captions")

    def __init__(
        self,
        *,
        captions: InputPath | None = None,
        karpathy: InputPath | None = None,
        images: InputPath | None = None,
    ) -> None:
        """Args:
        captions: ``results_20130124.token`` or Kaggle ``results.csv``.
        karpathy: ``dataset_flickr30k.json``: splits (and captions when ``captions``
            is None).
        images: folder holding the photos (``flickr30k-images``).

        Raises:
            ValueError: neither captions nor karpathy is given.
        """
        if captions is None and karpathy is None:
            raise ValueError("give captions (token or CSV file), karpathy, or both")
        self.captions, self.karpathy, self.images = captions, karpathy, images

    def partitions(self, rows_per_partition: int) -> list[Partition]:
        n = len(self._groups)
        return [
            Partition(i, {"start": s, "end": min(s + rows_per_partition, n)})
            for i, s in enumerate(range(0, n, rows_per_partition))
        ]

    def read(self, partition: Partition) -> pa.Table:
        groups = self._groups[partition.spec["start"] : partition.spec["end"]]
        return rows_table([self._row(group) for group in groups])

    def _row(self, group: dict) -> dict:
        if "error" in group:
            return group["error"]
        filename = group["filename"]
        image_id = f"flickr30k:{os.path.splitext(filename)[0]}"
        return {
            "image_id": image_id,
            "source": self.name,
            "split": self._splits.get(filename),
            "path": join(self.images, filename) if self.images else None,
            "captions": [
                {"caption_id": f"{image_id}#{n}", "text": text, "scene_graph": None}
                for n, text in group["captions"]
            ],
        }

    @functools.cached_property
    def _groups(self) -> list[dict]:
        """One ``{filename, captions: [(n, text)]}`` per image in order of first
        appearance, or ``{error: row}`` for a line that names no image."""
        if self.captions is None:
            return self._karpathy_groups()
        entries: list[dict] = []
        groups: dict[str, dict] = {}
        for number, line in _lines(self.captions):
            parsed = _parse_line(line)
            if parsed is None:
                detail = f"{self.captions}: line {number}: not a Flickr30k caption line"
                row = error_row(self.name, 0, "malformed_line", detail)
                entries.append({"error": {**row, "image_id": f"flickr30k:?line{number}"}})
                continue
            filename, n, text = parsed
            if filename not in groups:
                groups[filename] = {"filename": filename, "captions": []}
                entries.append(groups[filename])
            groups[filename]["captions"].append((n, text))
        return entries

    def _karpathy_groups(self) -> list[dict]:
        return [
            {
                "filename": image["filename"],
                "captions": [(i, s["raw"]) for i, s in enumerate(image.get("sentences", []))],
            }
            for image in self._karpathy_images
        ]

    @functools.cached_property
    def _splits(self) -> dict[str, str]:
        if self.karpathy is None:
            return {}
        return {image["filename"]: image.get("split") for image in self._karpathy_images}

    @functools.cached_property
    def _karpathy_images(self) -> list[dict]:
        """The Karpathy file's image records, parsed once (captions and splits both
        come from them when no captions file is given)."""
        images = []
        for i, image in enumerate(iter_array(str(self.karpathy), "images.item")):
            problem = _karpathy_problem(image)
            if problem:
                raise AnnotationError(f"{self.karpathy}: images[{i}] {problem}")
            images.append(image)
        return images


def _karpathy_problem(image: Any) -> str | None:
    """What makes a Karpathy image record unusable, or None."""
    if not isinstance(image, dict) or "filename" not in image:
        return "has no 'filename'"
    if not isinstance(image["filename"], str) or not image["filename"]:
        return f"has filename {image['filename']!r}, not a file name"
    if image.get("split") is not None and not isinstance(image["split"], str):
        return f"has split {image['split']!r}, not a string"
    sentences = image.get("sentences", [])
    if not isinstance(sentences, list) or not all(
        isinstance(x, dict) and isinstance(x.get("raw"), str) for x in sentences
    ):
        return "has 'sentences' that are not a list of {raw: text} objects"
    return None


def _lines(path: str) -> list[tuple[int, str]]:
    """``(1-based line number, text)`` of the data lines (header and blanks skipped)."""
    try:
        with open(path, encoding="utf-8") as handle:
            lines = handle.read().splitlines()
    except FileNotFoundError:
        raise AnnotationError(f"{path}: file not found") from None
    except UnicodeDecodeError as exc:
        raise AnnotationError(f"{path}: not UTF-8 at byte {exc.start}") from None
    first = 1 if lines and lines[0].startswith(CSV_HEADER) else 0
    return [(i + 1, line) for i, line in enumerate(lines) if i >= first and line.strip()]


def _parse_line(line: str) -> tuple[str, Any, str] | None:
    """``(file name, caption number, caption)`` from a token or Kaggle CSV line."""
    if "\t" in line:
        key, _, text = line.partition("\t")
        filename, hash_sign, number = key.partition("#")
    else:
        fields = line.split("|", 2)
        if len(fields) != 3:
            return None
        filename, number, text = fields[0], fields[1].strip(), fields[2]
        hash_sign = "|"
        text = text[1:] if text.startswith(" ") else text  # the separator's space
    if not filename or not hash_sign or not number.strip().isdigit():
        return None
    return filename.strip(), int(number), text
