"""The cc3m and cc12m sources on real TSV rows (tests/data/cc3m, tests/data/cc12m)."""

from pathlib import Path

import pytest

from annotation.conceptual import Cc3mSource, Cc12mSource
from annotation.webrows import line_starts_before
from tests.conftest import DATA, import_only

TRAIN = DATA / "cc3m" / "cc3m_train_GCC-training_first5.tsv"
VALIDATION = DATA / "cc3m" / "cc3m_validation_GCC-1.1.0-Validation_first5.tsv"
LABELS = DATA / "cc3m" / "cc3m_labels_Image_Labels_Subset_Train_GCC-Labels-training_first5.tsv"
CC12M = DATA / "cc12m" / "cc12m_first5.tsv"


def _rows(source: Cc3mSource | Cc12mSource, rows_per_partition: int = 1000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def test_cc3m_train_rows_verbatim():
    rows = _rows(Cc3mSource(tsv=str(TRAIN), split="train"))
    assert [r["image_id"] for r in rows] == [f"cc3m:{i}" for i in range(5)]
    first = rows[0]
    assert first["captions"] == [
        {"caption_id": "cc3m:0#0", "text": "a very typical bus station", "scene_graph": None}
    ]
    assert first["url"] == (
        "http://lh6.ggpht.com/-IvRtNLNcG8o/TpFyrudaT6I/AAAAAAAAM6o/_11MuAAKalQ/IMG_3422.JPG?imgmax=800"
    )
    assert (first["source"], first["split"], first["gold"]) == ("cc3m", "train", None)
    assert all(r["status"] is None for r in rows)


def test_cc3m_validation_rows():
    rows = _rows(Cc3mSource(tsv=str(VALIDATION)))
    assert len(rows) == 5
    assert rows[0]["captions"][0]["text"] == "author : a life in photography -- in pictures"
    assert rows[4]["url"] == (
        "https://www.featurepics.com/StockImage/20090316/carrying-globe-stock-image-1115085.jpg"
    )


def test_cc3m_labelled_subset_becomes_gold_objects():
    rows = _rows(Cc3mSource(tsv=str(LABELS)))
    assert len(rows) == 6  # the "first5" sample really holds 6 lines
    first = rows[0]
    assert first["captions"][0]["text"] == "christmas tree on a black background ."
    objects = first["gold"]["objects"]
    raw = LABELS.read_text().splitlines()[0].split("\t")
    labels, mids, scores = (column.split(",") for column in raw[2:])
    assert len(objects) == len(labels) == 15
    assert [o["names"] for o in objects] == [[label] for label in labels]
    assert [o["object_id"] for o in objects] == mids
    assert objects[0]["names"] == ["christmas tree"] and objects[0]["object_id"] == "/m/025nd"
    assert objects[0]["score"] == pytest.approx(float(scores[0]), rel=1e-6)
    assert all(o["box_xywh_px"] is None for o in objects)
    actor = rows[3]["gold"]["objects"]
    assert [o["names"][0] for o in actor] == [
        "musician",
        "premiere",
        "event",
        "singer",
        "suit",
        "performance",
    ]
    assert actor[0]["score"] == pytest.approx(0.8445718288421631, rel=1e-6)


def test_cc12m_columns_reversed_person_kept_no_final_newline():
    assert not CC12M.read_bytes().endswith(b"\n")
    rows = _rows(Cc12mSource(tsv=str(CC12M)))
    assert [r["image_id"] for r in rows] == [f"cc12m:{i}" for i in range(5)]
    assert rows[0]["url"].startswith("https://chairish-prod.freetls.fastly.net/image/product/")
    assert rows[0]["captions"][0]["text"] == (
        "Metal Design Within Reach Ivory Slipper Chairs - a Pair For Sale - Image 7 of 10"
    )
    assert rows[2]["captions"][0]["text"].startswith(
        "The source of Anime quotes & Manga quotes : Photo <PERSON>, Manga Quotes"
    )
    assert rows[4]["captions"][0]["text"] == (
        "Drone shot of Green Bowl beach and two people on the sand and sea around"
    )


@pytest.mark.parametrize(
    "make,path", [(Cc3mSource, TRAIN), (Cc3mSource, LABELS), (Cc12mSource, CC12M)]
)
def test_small_partitions_give_the_same_rows(make, path):
    source = make(tsv=str(path))
    whole = _rows(source)
    for size in (1, 2, 3):
        assert _rows(source, size) == whole


def _generated(tmp_path: Path, lines: int, final_newline: bool) -> Path:
    path = tmp_path / f"gen_{final_newline}.tsv"
    body = "\n".join(
        f"caption number {i} {'x' * (i % 37)}\thttp://example.com/{i}.jpg" for i in range(lines)
    )
    path.write_text(body + ("\n" if final_newline else ""))
    return path


@pytest.mark.parametrize("final_newline", [True, False])
def test_byte_ranges_lose_and_duplicate_nothing(tmp_path, final_newline):
    path = _generated(tmp_path, 347, final_newline)
    source = Cc3mSource(tsv=str(path))
    for size in (1, 7, 50, 346, 347, 5000):
        rows = _rows(source, size)
        assert [r["image_id"] for r in rows] == [f"cc3m:{i}" for i in range(347)]
        assert [r["url"] for r in rows] == [f"http://example.com/{i}.jpg" for i in range(347)]
    assert len(source.partitions(7)) > 40


def test_line_starts_before_positions(tmp_path):
    path = tmp_path / "f.txt"
    path.write_bytes(b"a\nbb\n\nccc")  # lines start at 0, 2, 5, 6
    assert line_starts_before(str(path), [0, 1, 2, 3, 5, 6, 7, 9]) == [0, 1, 1, 2, 2, 3, 4, 4]


def _write(tmp_path: Path, lines: list[bytes]) -> str:
    path = tmp_path / "bad.tsv"
    path.write_bytes(b"\n".join(lines) + b"\n")
    return str(path)


def test_row_problems_become_rows(tmp_path):
    good = TRAIN.read_bytes().splitlines()
    lines = [
        good[0],
        b"only one column",
        b"   \thttp://example.com/a.jpg",
        b"a caption\tftp://example.com/a.jpg",
        b"a caption\t",
        b"caf\xe9 latte\thttp://example.com/b.jpg",
        good[1],
    ]
    path = _write(tmp_path, lines)
    rows = _rows(Cc3mSource(tsv=path))
    got = [(r["image_id"], r["status"], r["reason"]) for r in rows]
    assert got == [
        ("cc3m:0", None, None),
        ("cc3m:1", "error", "malformed_line"),
        ("cc3m:2", "rejected", "empty_caption"),
        ("cc3m:3", "rejected", "bad_url"),
        ("cc3m:4", "rejected", "bad_url"),
        ("cc3m:5", "error", "bad_encoding"),
        ("cc3m:6", None, None),
    ]
    offset = len(good[0]) + 1
    assert rows[1]["_detail"] == (
        f"{path}: line 2 (byte {offset}): expected 2 or 5 tab-separated columns, got 1"
    )
    assert "invalid UTF-8" in rows[5]["_detail"]


def test_cc12m_malformed_detail(tmp_path):
    path = _write(tmp_path, [b"http://example.com/a.jpg\tok", b"a\tb\tc"])
    rows = _rows(Cc12mSource(tsv=path))
    assert rows[1]["_detail"] == (
        f"{path}: line 2 (byte 28): expected 2 tab-separated columns, got 3"
    )


def test_blank_lines_are_skipped_but_counted(tmp_path):
    good = TRAIN.read_bytes().splitlines()
    path = _write(tmp_path, [good[0], b"", good[1]])
    assert [r["image_id"] for r in _rows(Cc3mSource(tsv=path))] == ["cc3m:0", "cc3m:2"]


def test_end_to_end_local(tmp_path):
    good = TRAIN.read_bytes().splitlines()
    data = _write(tmp_path, [*good, b"\thttp://example.com/x.jpg", b"no tabs here"])
    catalog = import_only(tmp_path, "cc3m_test", {"cc3m": {"tsv": data, "split": "train"}}, 2)
    assert catalog.query("SELECT count(*) FROM images")[1] == [(5,)]
    assert catalog.query("SELECT count(*) FROM captions")[1] == [(5,)]
    texts = catalog.query("SELECT text FROM captions WHERE image_id = 'cc3m:0'")[1]
    assert texts == [("a very typical bus station",)]
    rejects = catalog.query("SELECT image_id, reason FROM rejects ORDER BY image_id")[1]
    assert rejects == [("cc3m:5", "empty_caption"), ("cc3m:6", "malformed_line")]
