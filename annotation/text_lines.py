"""Text corpora -> text-only rows, so a pure text corpus (Wiki103) becomes an mmdata corpus.

One row per non-blank line of a text file (a document, paragraph or sentence per line:
WikiText's ``wiki.train.tokens``) or of a JSON-lines file (the text under ``text_field``).
A row has no image (url, path, bytes and size are null); its ``captions`` hold the text:
the whole line, or with ``split_sentences`` one caption per spaCy sentence.

Ids. ``image_id`` is ``{id_prefix}:{row}``, the 0-based line index in the file (blank and
heading lines counted, as url_list counts rows), exact across byte-range partitions; with
``id_field`` it is ``{id_prefix}:{value of id_field}`` (the values must be unique). A
caption's id is ``{image_id}#{start}``, where ``start`` is the character offset (Python
``str`` index) of the caption's text in the line (text format) or in the ``text_field``
value (JSONL): the schema's CAPTION struct has no offset field, so the id carries it
(``caption_start`` reads it back). Every caption's text is exactly
``line[start:start + len(text)]``: lines and sentences are stripped of surrounding
whitespace, never rewritten, so character spans of later stages index the line too.
The line itself is not stored (no IMAGE_SCHEMA field holds it): it is its captions at
their offsets with whitespace between.

Skipped, not rows and not rejects: blank or whitespace-only lines (text) or texts
(JSONL); with ``skip_headings`` (default), WikiText heading lines (or texts) ``= Title =``,
``= = Section = =`` (after stripping: starts with ``= `` and ends with `` =``), which the
original vokenization drops too (its HDF5 preprocessing skips Wiki103 lines starting
with `` = ``).

Bad input becomes error rows whose detail names the file, line and byte: invalid UTF-8
(``bad_encoding``), a line that is not JSON (``malformed_line``), a record that is not an
object or lacks ``text_field`` / ``id_field`` (``missing_key``), a text that is not a
string (``bad_value``), an id that is not an int or a non-empty string (``bad_id``), a
text longer than spaCy's ``max_length`` when splitting sentences (``text_too_long``).
An error row's id is ``{id_prefix}:{row}``; with ``id_field``, the record's id when it
has a usable one, else ``{id_prefix}:row{row}`` (not to be mistaken for an integer id).
"""

from __future__ import annotations

import functools
import json
import os
from typing import TYPE_CHECKING, Any, Literal

import pyarrow as pa

from annotation.gcpause import without_gc
from annotation.records import is_id
from annotation.webrows import LineFileSource, error_row, rows_table
from mmdata.core.args import InputPath
from mmdata.core.registry import SOURCES
from mmdata.core.schema import STATUS_ERROR
from mmdata.core.stage import Partition

if TYPE_CHECKING:
    from spacy.language import Language

Format = Literal["text", "jsonl"]
_JSONL_EXTENSIONS = (".jsonl", ".ndjson")
TEXT_WRITES: tuple[str, ...] = ("image_id", "source", "split", "captions")
#: en_core_web_sm without what sentence boundaries do not need: tok2vec + parser stay
#: (the parser's boundaries; the tagger does not feed it, so they are the full pipeline's).
SENTENCE_EXCLUDE = ("tagger", "attribute_ruler", "lemmatizer", "ner", "senter")
PIPE_BATCH = 256
#: spaCy's Language.max_length (the parser needs about 1 GB per 100,000 characters): a
#: longer text is an error row when splitting sentences.
MAX_SENTENCE_CHARS = 1_000_000


def caption_start(caption_id: str) -> int:
    """The character offset in its line of a text_lines caption, read from its id."""
    return int(caption_id.rpartition("#")[2])


def is_heading(text: str) -> bool:
    """A WikiText heading line (``text`` stripped): ``= Title =``, ``= = Section = =``."""
    return text.startswith("= ") and text.endswith(" =")


def _stripped(text: str, start: int = 0, end: int | None = None) -> tuple[int, int]:
    """``[start, end)`` of ``text[start:end]`` without its surrounding whitespace."""
    end = len(text) if end is None else end
    piece = text[start:end]
    return start + len(piece) - len(piece.lstrip()), start + len(piece.rstrip())


@functools.cache
def sentence_model() -> Language:
    """en_core_web_sm with only what sentence boundaries need, loaded once per process
    (a worker), on first use: recipe validation never loads it."""
    from mmdata.models.scenegraph.parser import load_model

    nlp = load_model(None, exclude=SENTENCE_EXCLUDE)
    nlp.max_length = MAX_SENTENCE_CHARS
    return nlp


@SOURCES.register("text_lines")
class TextLinesSource(LineFileSource):
    """A text file (a document or sentence per line) or JSON lines -> text-only rows.

    See the module docstring for ids, caption offsets, skipped lines and error reasons.
    """

    name = "text_lines"
    writes = TEXT_WRITES

    def __init__(
        self,
        *,
        path: InputPath,
        format: Format | None = None,  # noqa: A002 - the recipe key users expect
        text_field: str = "text",
        id_field: str | None = None,
        split_sentences: bool = False,
        skip_headings: bool = True,
        id_prefix: str = "text",
        split: str | None = None,
    ) -> None:
        """Args:
        path: the text file (UTF-8, one document or sentence per line) or JSON lines.
        format: text or jsonl; None: jsonl for .jsonl / .ndjson, text for anything else.
        text_field: JSONL: the key holding the text.
        id_field: JSONL: the key holding a record id (int or string) used in the image id
            instead of the row number.
        split_sentences: one caption per spaCy sentence (en_core_web_sm's parser) instead
            of one per line.
        skip_headings: skip WikiText heading lines (``= Title =``, ``= = Section = =``).
        id_prefix: image ids are ``{id_prefix}:{row or id}``.
        split: split name stored on every row.

        Raises:
            ValueError: an empty id_prefix or text_field, or id_field with the text format.
        """
        self.path, self.split = path, split
        self.format: Format = format or (
            "jsonl" if os.path.splitext(path)[1].lower() in _JSONL_EXTENSIONS else "text"
        )
        if not id_prefix:
            raise ValueError("id_prefix must not be empty")
        if not text_field:
            raise ValueError("text_field must not be empty")
        if id_field is not None and self.format != "jsonl":
            raise ValueError(f"id_field applies to JSON lines; {path} is read as {self.format}")
        self.text_field, self.id_field = text_field, id_field
        self.split_sentences, self.skip_headings = split_sentences, skip_headings
        self.id_prefix = id_prefix

    def _path(self) -> str:
        return self.path

    @without_gc
    def read(self, partition: Partition) -> pa.Table:
        rows = list(self._rows(partition))
        if self.split_sentences:
            self._split_sentences(rows)
        return rows_table(rows)

    def _parse(self, text: str, row_number: int, where: str) -> dict | None:
        if self.format == "text":
            return self._text_row(f"{self.id_prefix}:{row_number}", text, row_number, where)
        try:
            record = json.loads(text)
        except json.JSONDecodeError as exc:
            return self._error_row(row_number, "malformed_line", f"{where}: not JSON: {exc}")
        if not isinstance(record, dict):
            detail = f"{where}: a JSON {type(record).__name__}, expected an object"
            return self._error_row(row_number, "missing_key", detail)
        image_id = f"{self.id_prefix}:{row_number}"
        if self.id_field is not None:
            if self.id_field not in record:
                detail = f"{where}: no key {self.id_field!r} (id_field)"
                return self._error_row(row_number, "missing_key", detail)
            value = record[self.id_field]
            if not is_id(value):
                detail = (
                    f"{where}: {self.id_field} is {value!r}, expected an int or a non-empty string"
                )
                return self._error_row(row_number, "bad_id", detail)
            image_id = f"{self.id_prefix}:{value}"
        if self.text_field not in record:
            detail = f"{where}: no key {self.text_field!r} (text_field)"
            return {**self._error_row(row_number, "missing_key", detail), "image_id": image_id}
        value = record[self.text_field]
        if not isinstance(value, str):
            detail = f"{where}: {self.text_field} is {_kind(value)}, expected a string"
            return {**self._error_row(row_number, "bad_value", detail), "image_id": image_id}
        return self._text_row(image_id, value, row_number, where)

    def _text_row(self, image_id: str, text: str, row_number: int, where: str) -> dict | None:
        """The row of one text, or None when it is blank or a heading (not data)."""
        start, end = _stripped(text)
        if start >= end or (self.skip_headings and is_heading(text[start:end])):
            return None
        if self.split_sentences and end - start > MAX_SENTENCE_CHARS:
            detail = (
                f"{where}: {end - start} characters, more than spaCy's max_length "
                f"{MAX_SENTENCE_CHARS}: cut the document into lines first"
            )
            return {**self._error_row(row_number, "text_too_long", detail), "image_id": image_id}
        caption = {
            "caption_id": f"{image_id}#{start}",
            "text": text[start:end],
            "scene_graph": None,
        }
        return {
            "image_id": image_id,
            "source": self.name,
            "split": self.split,
            "captions": [caption],
        }

    def _error_row(self, row_number: int, reason: str, detail: str) -> dict:
        row = error_row(self.name, row_number, reason, detail, self.split)
        marker = "row" if self.id_field is not None else ""
        return {**row, "image_id": f"{self.id_prefix}:{marker}{row_number}"}

    def _split_sentences(self, rows: list[dict]) -> None:
        """Replace each ok row's one caption by its sentences, in place: the partition's
        texts go through ``nlp.pipe`` in batches."""
        todo = [i for i, row in enumerate(rows) if row.get("status") != STATUS_ERROR]
        if not todo:
            return
        texts = (rows[i]["captions"][0]["text"] for i in todo)
        docs = sentence_model().pipe(texts, batch_size=PIPE_BATCH)
        for i, doc in zip(todo, docs, strict=True):
            row = rows[i]
            text = doc.text
            base = caption_start(row["captions"][0]["caption_id"])
            captions = []
            for sentence in doc.sents:
                start, end = _stripped(text, sentence.start_char, sentence.end_char)
                if start < end:
                    captions.append(
                        {
                            "caption_id": f"{row['image_id']}#{base + start}",
                            "text": text[start:end],
                            "scene_graph": None,
                        }
                    )
            row["captions"] = captions


def _kind(value: Any) -> str:
    return "null" if value is None else f"a JSON {type(value).__name__} ({value!r:.40})"
