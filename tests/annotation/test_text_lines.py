"""The text_lines source on a real WikiText-103 excerpt (tests/data/text) and JSON lines."""

import json
import pickle
import tomllib
from importlib import import_module
from pathlib import Path

import pytest

from annotation import text_lines
from annotation.text_lines import TextLinesSource, caption_start, sentence_model
from annotation.webrows import iter_range_lines, line_starts_before
from mmdata.core.stage import Partition
from mmdata.models.scenegraph.parser import load_model
from tests.conftest import DATA, ROOT, write_recipe

WIKI = DATA / "text" / "wikitext103_train_first10.tokens"
JSONL = DATA / "text" / "synthetic.jsonl"
#: The excerpt's lines 4, 5, 6 and 10 are paragraphs; 2 and 8 are headings, the rest blank.
WIKI_ROWS = [3, 4, 5, 9]


def _rows(source: TextLinesSource, rows_per_partition: int = 100_000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def _lines(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")


def _byte_cuts(path: Path, step: int) -> list[Partition]:
    """Partitions cut every ``step`` bytes, wherever that falls (mid-line, mid-character)."""
    size = path.stat().st_size
    starts = list(range(0, size, step))
    firsts = line_starts_before(str(path), starts)
    specs = [
        {"start": s, "end": min(s + step, size), "first_line": f}
        for s, f in zip(starts, firsts, strict=True)
    ]
    return [Partition(i, spec) for i, spec in enumerate(specs)]


def _assert_substrings(rows: list[dict], texts: dict[str, str]) -> None:
    """Every caption's text is its line (or JSON text) at the offset its id carries."""
    for row in rows:
        line = texts[row["image_id"]]
        for caption in row["captions"]:
            start = caption_start(caption["caption_id"])
            assert caption["caption_id"] == f"{row['image_id']}#{start}"
            assert line[start : start + len(caption["text"])] == caption["text"]
            assert caption["text"] == caption["text"].strip() != ""


def test_wikitext_lines_become_text_rows():
    rows = _rows(TextLinesSource(path=str(WIKI)))
    lines = _lines(WIKI)
    assert [r["image_id"] for r in rows] == [f"text:{i}" for i in WIKI_ROWS]
    assert rows[0]["captions"] == [
        {"caption_id": "text:3#1", "text": lines[3].strip(), "scene_graph": None}
    ]
    assert rows[0]["captions"][0]["text"].startswith("Senjō no Valkyria 3 : <unk> Chronicles")
    for row in rows:
        assert row["source"] == "text_lines" and row["status"] is None
        assert row["url"] is None and row["path"] is None and row["gold"] is None
    _assert_substrings(rows, {f"text:{i}": line for i, line in enumerate(lines)})


def test_byte_range_partitions_give_the_same_rows():
    source = TextLinesSource(path=str(WIKI), split_sentences=True)
    whole = _rows(source)
    partitions = source.partitions(1)
    assert len(partitions) > 3
    # row numbers are exact and contiguous: each range starts at its first_line, and
    # together the ranges hold every line once (a line belongs to the range holding its
    # first byte; a range where no line starts is dropped)
    numbers = [i for p in partitions for i, _, _ in iter_range_lines(str(WIKI), dict(p.spec))]
    assert numbers == list(range(len(WIKI.read_bytes().splitlines())))
    firsts = [p.spec["first_line"] for p in partitions]
    assert firsts == sorted(set(firsts)) and firsts[0] == 0
    assert [r for p in partitions for r in source.read(p).to_pylist()] == whole
    for step in (1, 7, 97, 500):  # cuts mid-line and inside multi-byte characters
        parts = _byte_cuts(WIKI, step)
        assert [r for p in parts for r in source.read(p).to_pylist()] == whole


def test_headings_and_blank_lines_are_skipped(tmp_path):
    kept = _rows(TextLinesSource(path=str(WIKI), skip_headings=False))
    assert [r["image_id"] for r in kept] == [
        "text:1",
        "text:3",
        "text:4",
        "text:5",
        "text:7",
        "text:9",
    ]
    assert [c["text"] for c in kept[0]["captions"]] == ["= Valkyria Chronicles III ="]
    assert kept[4]["captions"][0] == {
        "caption_id": "text:7#1",
        "text": "= = Gameplay = =",
        "scene_graph": None,
    }
    path = tmp_path / "blank.txt"
    path.write_text("first\n\n   \n\t \r\n = = = Deep = = = \nA = B is not a heading .\nlast")
    rows = _rows(TextLinesSource(path=str(path)))
    got = [(r["image_id"], r["captions"][0]["text"]) for r in rows]
    assert got == [("text:0", "first"), ("text:5", "A = B is not a heading ."), ("text:6", "last")]


def test_sentences_are_spacy_sentences_and_exact_substrings():
    rows = _rows(TextLinesSource(path=str(WIKI), split_sentences=True, id_prefix="wiki"))
    lines = _lines(WIKI)
    assert [r["image_id"] for r in rows] == [f"wiki:{i}" for i in WIKI_ROWS]
    _assert_substrings(rows, {f"wiki:{i}": line for i, line in enumerate(lines)})
    # the count matches spaCy's full default pipeline (the source runs only tok2vec +
    # parser: the boundaries must not change)
    full = load_model(None, exclude=())
    for row, index in zip(rows, WIKI_ROWS, strict=True):
        doc = full(lines[index].strip())
        expected = [s.text.strip() for s in doc.sents if s.text.strip()]
        assert [c["text"] for c in row["captions"]] == expected
    assert [len(r["captions"]) for r in rows] == [5, 5, 6, 8]
    assert rows[0]["captions"][1]["caption_id"] == "wiki:3#73"
    assert rows[0]["captions"][1]["text"].startswith("Valkyria of the Battlefield 3 )")


def test_sentence_model_is_loaded_once_with_only_the_parser():
    assert sentence_model() is sentence_model()
    assert sentence_model().pipe_names == ["tok2vec", "parser"]


def test_jsonl_with_id_field():
    records = [json.loads(line) for line in JSONL.read_text(encoding="utf-8").splitlines()]
    source = TextLinesSource(path=str(JSONL), id_field="id", split_sentences=True)
    assert source.format == "jsonl"
    rows = _rows(source)
    assert [r["image_id"] for r in rows] == ["text:doc-a", "text:doc-b", "text:7", "text:doc-z"]
    _assert_substrings(rows, {f"text:{r['id']}": r["text"] for r in records})
    assert [[c["caption_id"] for c in r["captions"]] for r in rows] == [
        ["text:doc-a#0", "text:doc-a#36"],
        ["text:doc-b#2"],
        ["text:7#0", "text:7#25", "text:7#48"],
        ["text:doc-z#0"],
    ]
    whole_lines = _rows(TextLinesSource(path=str(JSONL), id_prefix="j"))
    assert [r["image_id"] for r in whole_lines] == ["j:0", "j:1", "j:2", "j:5"]
    assert [len(r["captions"]) for r in whole_lines] == [1, 1, 1, 1]
    assert [r for p in _byte_cuts(JSONL, 13) for r in source.read(p).to_pylist()] == rows


def test_format_from_extension_or_argument(tmp_path):
    path = tmp_path / "docs.ndjson"
    path.write_text('{"body": "One. Two."}\n')
    assert TextLinesSource(path=str(path)).format == "jsonl"
    assert _rows(TextLinesSource(path=str(path), text_field="body"))[0]["captions"][0]["text"] == (
        "One. Two."
    )
    as_text = _rows(TextLinesSource(path=str(path), format="text"))
    assert as_text[0]["captions"][0]["text"] == '{"body": "One. Two."}'
    assert TextLinesSource(path=str(WIKI)).format == "text"
    with pytest.raises(ValueError, match="id_field applies to JSON lines"):
        TextLinesSource(path=str(WIKI), id_field="id")
    with pytest.raises(ValueError, match="id_prefix"):
        TextLinesSource(path=str(WIKI), id_prefix="")


def test_bad_lines_become_error_rows_naming_file_and_line(tmp_path):
    text = tmp_path / "bad.txt"
    text.write_bytes(b"fine line\n\xff\xfe broken\nalso fine\n")
    rows = _rows(TextLinesSource(path=str(text)))
    assert [(r["image_id"], r["status"], r["reason"]) for r in rows] == [
        ("text:0", None, None),
        ("text:1", "error", "bad_encoding"),
        ("text:2", None, None),
    ]
    assert rows[1]["_detail"] == f"{text}: line 2 (byte 10): invalid UTF-8 at byte 10"
    assert rows[1]["source"] == "text_lines"

    lines = [
        '{"id": "a", "text": "Good."}',
        '{"id": "b", "text": "unterminated',
        '{"id": "c", "body": "no text key"}',
        '{"id": "d", "text": 5}',
        '{"id": "e", "text": null}',
        '["not", "an", "object"]',
        '{"text": "no id"}',
        '{"id": true, "text": "a bool is not an id"}',
    ]
    jsonl = tmp_path / "bad.jsonl"
    jsonl.write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = _rows(TextLinesSource(path=str(jsonl), id_field="id"))
    assert [(r["image_id"], r["status"], r["reason"]) for r in rows] == [
        ("text:a", None, None),
        ("text:row1", "error", "malformed_line"),
        ("text:c", "error", "missing_key"),
        ("text:d", "error", "bad_value"),
        ("text:e", "error", "bad_value"),
        ("text:row5", "error", "missing_key"),
        ("text:row6", "error", "missing_key"),
        ("text:row7", "error", "bad_id"),
    ]
    offsets = [sum(len(line) + 1 for line in lines[:i]) for i in range(len(lines))]
    for n, row in enumerate(rows[1:], 1):
        assert row["_detail"].startswith(f"{jsonl}: line {n + 1} (byte {offsets[n]}): ")
    assert "not JSON" in rows[1]["_detail"]
    assert rows[2]["_detail"].endswith("no key 'text' (text_field)")
    assert rows[3]["_detail"].endswith("text is a JSON int (5), expected a string")
    assert rows[4]["_detail"].endswith("text is null, expected a string")
    assert rows[5]["_detail"].endswith("a JSON list, expected an object")
    assert rows[6]["_detail"].endswith("no key 'id' (id_field)")
    # without id_field an error row is numbered like the others
    plain = _rows(TextLinesSource(path=str(jsonl)))
    assert [r["image_id"] for r in plain[:3]] == ["text:0", "text:1", "text:2"]


def test_a_text_too_long_for_spacy_is_an_error_row(tmp_path, monkeypatch):
    monkeypatch.setattr(text_lines, "MAX_SENTENCE_CHARS", 20)
    path = tmp_path / "long.txt"
    path.write_text("Short one.\nThis line is longer than twenty characters.\n")
    rows = _rows(TextLinesSource(path=str(path), split_sentences=True))
    assert [(r["image_id"], r["reason"]) for r in rows] == [
        ("text:0", None),
        ("text:1", "text_too_long"),
    ]
    assert rows[1]["_detail"].startswith(f"{path}: line 2 (byte 11): 43 characters")
    assert len(_rows(TextLinesSource(path=str(path)))) == 2  # whole lines need no spaCy


def test_source_pickles_for_ray_workers():
    source = TextLinesSource(path=str(WIKI), split_sentences=True)
    partition = source.partitions(100_000)[0]
    source.read(partition)
    copy = pickle.loads(pickle.dumps(source))
    assert copy.read(partition).equals(source.read(partition))


def test_entry_point_names_the_class():
    entry = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["entry-points"]
    module, _, name = entry["mmdata.sources"]["text_lines"].partition(":")
    assert getattr(import_module(module), name) is TextLinesSource


def _recipe(tmp_path: Path, stages: list[dict], **source) -> dict:
    return {
        "name": "wiki_text",
        "source": {"text_lines": {"path": str(WIKI), **source}},
        "stages": stages,
        "output": str(tmp_path / "corpus"),
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 3,
    }


def test_recipe_runs_end_to_end_into_the_catalog(tmp_path, capsys):
    from mmdata.catalog.store import Catalog
    from mmdata.commands.cli import main
    from mmdata.engine import recipe as recipes
    from mmdata.engine.run import run_recipe

    stages = [{"caption_filter": {"min_words": 1}}]
    path = write_recipe(tmp_path / "wiki.yaml", _recipe(tmp_path, stages, split_sentences=True))
    assert main(["validate", str(path)]) == 0
    assert "ok: corpus 'wiki_text': text_lines -> caption_filter" in capsys.readouterr().out
    run_recipe(recipes.load(path), "local", progress=False)
    catalog = Catalog(str(tmp_path / "catalog.duckdb"))
    count = "SELECT count(*) FROM captions WHERE corpus = 'wiki_text'"
    assert catalog.query(count)[1] == [(24,)]  # 5 + 5 + 6 + 8 sentences
    assert catalog.query("SELECT count(*) FROM images WHERE corpus = 'wiki_text'")[1] == [(4,)]
    assert catalog.query("SELECT count(*) FROM rejects")[1] == [(0,)]
    stored = catalog.query(
        "SELECT image_id, caption_id, text FROM captions WHERE corpus = 'wiki_text'"
    )[1]
    rows = _rows(TextLinesSource(path=str(WIKI), split_sentences=True))
    expected = [(r["image_id"], c["caption_id"], c["text"]) for r in rows for c in r["captions"]]
    assert sorted(stored) == sorted(expected)


def test_recipe_arguments_are_checked(tmp_path, capsys):
    from mmdata.commands.cli import main

    bad = _recipe(tmp_path, [], format="csv", split_sentences="yes")
    path = write_recipe(tmp_path / "bad.yaml", bad)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "format" in err and "split_sentences" in err
    assert main(["stages"]) == 0
    out = capsys.readouterr().out
    assert "  text_lines: A text file" in out
    assert "- split_sentences: bool = False" in out
    assert "- format: 'text' | 'jsonl' | None = None" in out
