"""The url_list source on img2dataset's real 1,000-row LAION-style Parquet file."""

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from annotation.jsonfile import AnnotationError
from annotation.url_list import UrlListSource
from tests.conftest import DATA, import_only

PARQUET = DATA / "url_list" / "img2dataset_tests_test_1000_laion_style.parquet"
FIRST_URL = "http://direct.rhapsody.com/imageserver/v2/albums/Alb.131805200/images/170x170.jpg"
FIRST_TEXT = "Classical Masterpieces: Xerses & More, Vol. 8 by Various Artists"


def _rows(source: UrlListSource, rows_per_partition: int = 100_000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def _laion(path: Path = PARQUET, **kwargs) -> UrlListSource:
    return UrlListSource(path=str(path), url_col="URL", caption_col="TEXT", **kwargs)


def test_parquet_rows_verbatim():
    rows = _rows(_laion())
    assert len(rows) == 1000
    assert [r["image_id"] for r in rows] == [f"url_list:{i}" for i in range(1000)]
    assert rows[0]["url"] == FIRST_URL
    assert rows[0]["captions"] == [
        {"caption_id": "url_list:0#0", "text": FIRST_TEXT, "scene_graph": None}
    ]
    table = pq.read_table(PARQUET)
    assert [r["url"] for r in rows] == table.column("URL").to_pylist()
    assert all(r["status"] is None for r in rows)


def test_parquet_row_ranges_across_row_groups(tmp_path):
    table = pq.read_table(PARQUET, columns=["URL", "TEXT"])
    path = tmp_path / "groups.parquet"
    pq.write_table(table, path, row_group_size=128)  # 8 row groups, ranges straddle them
    whole = _rows(_laion(path))
    assert [p.spec for p in _laion(path).partitions(300)][-1] == {"start": 900, "end": 1000}
    for size in (1000, 300, 97, 128):
        assert _rows(_laion(path), size) == whole
    assert _rows(_laion(), 300) == _rows(_laion())


def test_missing_column_names_file_and_columns():
    source = UrlListSource(path=str(PARQUET), url_col="url", caption_col="TEXT")
    with pytest.raises(AnnotationError, match=r"test_1000_laion_style.parquet.*'URL', 'TEXT'"):
        source.partitions(10)


def _to_text(tmp_path: Path, suffix: str, limit: int = 200) -> tuple[Path, list[dict]]:
    records = pq.read_table(PARQUET, columns=["URL", "TEXT"]).slice(0, limit).to_pylist()
    path = tmp_path / f"list{suffix}"
    with open(path, "w", newline="", encoding="utf-8") as handle:
        if suffix == ".jsonl":
            handle.writelines(json.dumps(r) + "\n" for r in records)
        else:
            writer = csv.writer(handle, delimiter="," if suffix == ".csv" else "\t")
            writer.writerow(["TEXT", "URL"])  # columns found by name, not position
            writer.writerows([[r["TEXT"], r["URL"]] for r in records])
    return path, records


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl"])
def test_text_formats_match_parquet(tmp_path, suffix):
    path, records = _to_text(tmp_path, suffix)
    source = _laion(path)
    rows = _rows(source)
    assert [r["image_id"] for r in rows] == [f"url_list:{i}" for i in range(len(records))]
    assert [r["url"] for r in rows] == [r["URL"] for r in records]
    assert [r["captions"][0]["text"] for r in rows] == [r["TEXT"] for r in records]
    for size in (1, 13, 64):
        assert _rows(source, size) == rows


def test_missing_csv_column(tmp_path):
    path, _ = _to_text(tmp_path, ".csv", 3)
    source = UrlListSource(path=str(path), url_col="URL", caption_col="caption")
    with pytest.raises(
        AnnotationError, match=r"list.csv: no column \['caption'\].*\['TEXT', 'URL'\]"
    ):
        source.partitions(10)


def test_format_from_argument_or_extension(tmp_path):
    path, _ = _to_text(tmp_path, ".tsv", 3)
    renamed = path.rename(tmp_path / "list.txt")
    with pytest.raises(ValueError, match="cannot tell the format"):
        _laion(renamed)
    assert len(_rows(_laion(renamed, format="tsv"))) == 3


def test_row_problems_in_csv(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text(
        "url,caption\n"
        "http://example.com/0.jpg,fine\n"
        '"http://example.com/1.jpg","a quoted\n'
        'newline"\n'
        "http://example.com/2.jpg,  \n"
        "mailto:x@example.com,a caption\n"
        "http://example.com/4.jpg,too,many\n"
    )
    rows = _rows(UrlListSource(path=str(path)))
    got = [(r["image_id"], r["status"], r["reason"]) for r in rows]
    assert got == [
        ("url_list:0", None, None),
        ("url_list:1", "error", "malformed_line"),
        ("url_list:2", "error", "malformed_line"),
        ("url_list:3", "rejected", "empty_caption"),
        ("url_list:4", "rejected", "bad_url"),
        ("url_list:5", "error", "malformed_line"),
    ]
    assert "quoted field spanning lines is not supported" in rows[1]["_detail"]
    assert rows[5]["_detail"] == (
        f"{path}: line 7 (byte {path.read_bytes().rindex(b'http')}): "
        "expected 2 comma-separated columns, got 3"
    )


def test_parquet_nulls_are_rejected(tmp_path):
    path = tmp_path / "nulls.parquet"
    table = pa.table({"url": ["http://a.example/x.jpg", None], "caption": [None, "text"]})
    pq.write_table(table, path)
    rows = _rows(UrlListSource(path=str(path)))
    assert [(r["status"], r["reason"]) for r in rows] == [
        ("rejected", "empty_caption"),
        ("rejected", "bad_url"),
    ]


def test_end_to_end_local(tmp_path):
    source = {"url_list": {"path": str(PARQUET), "url_col": "URL", "caption_col": "TEXT"}}
    catalog = import_only(tmp_path, "laion_test", source, 300)
    assert catalog.query("SELECT count(*) FROM images")[1] == [(1000,)]
    assert catalog.query("SELECT count(*) FROM captions")[1] == [(1000,)]
    assert catalog.query("SELECT count(*) FROM rejects")[1] == [(0,)]
    assert catalog.query("SELECT count(*) FROM shards")[1] == [(4,)]
    first = catalog.query("SELECT text FROM captions WHERE image_id = 'url_list:0'")[1]
    assert first == [(FIRST_TEXT,)]
