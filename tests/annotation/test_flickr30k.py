"""The flickr30k source on real caption records (tests/data/flickr30k, see PROVENANCE.md)."""

import pytest

from annotation.flickr30k import Flickr30kSource
from tests.conftest import DATA

TOKEN = str(DATA / "flickr30k" / "results_20130124_first10.token")
KAGGLE = str(DATA / "flickr30k" / "results_kaggle_first15.csv")
KARPATHY = str(DATA / "flickr30k" / "dataset_flickr30k_first_record.json")


def _rows(source: Flickr30kSource, rows_per_partition: int = 1000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def test_token_file_grouped_per_image_with_karpathy_split():
    rows = _rows(Flickr30kSource(captions=TOKEN, karpathy=KARPATHY, images="/data/f30k"))
    assert [r["image_id"] for r in rows] == ["flickr30k:1000092795", "flickr30k:10002456"]
    assert [r["split"] for r in rows] == ["train", None]  # only the first is in the excerpt
    assert rows[0]["path"] == "/data/f30k/1000092795.jpg"
    first = rows[0]["captions"]
    assert [c["caption_id"] for c in first] == [f"flickr30k:1000092795#{i}" for i in range(5)]
    assert first[0]["text"] == (
        "Two young guys with shaggy hair look at their hands while hanging out in the yard ."
    )
    assert rows[1]["captions"][4]["text"] == "Three men on a large rig ."


def test_kaggle_csv_header_skipped_separator_space_dropped():
    rows = _rows(Flickr30kSource(captions=KAGGLE))
    assert [len(r["captions"]) for r in rows] == [5, 5, 5]
    assert (
        rows[0]["captions"][1]["text"] == "Two young , White males are outside near many bushes ."
    )
    assert rows[2]["captions"][3]["text"] == "A little girl climbing into a wooden playhouse"
    token_texts = [c["text"] for r in _rows(Flickr30kSource(captions=TOKEN)) for c in r["captions"]]
    assert [c["text"] for r in rows[:2] for c in r["captions"]] == token_texts


def test_karpathy_alone_gives_raw_sentences():
    rows = _rows(Flickr30kSource(karpathy=KARPATHY))
    assert len(rows) == 1 and rows[0]["split"] == "train"
    assert rows[0]["captions"][1]["text"] == "Two young, White males are outside near many bushes."


def test_needs_captions_or_karpathy():
    with pytest.raises(ValueError, match="captions"):
        Flickr30kSource()


def test_partitions_give_the_same_rows():
    source = Flickr30kSource(captions=KAGGLE)
    assert _rows(source, 1) == _rows(source)
    assert len(source.partitions(2)) == 2


def test_malformed_line_becomes_error_row(tmp_path):
    lines = open(KAGGLE, encoding="utf-8").read().splitlines()
    bad = tmp_path / "results.csv"
    bad.write_text("\n".join([*lines[:3], "2199200615.jpg| 4 A dog runs", *lines[3:]]) + "\n")
    rows = _rows(Flickr30kSource(captions=str(bad)))
    assert [r["image_id"] for r in rows] == [
        "flickr30k:1000092795",
        "flickr30k:?line4",
        "flickr30k:10002456",
        "flickr30k:1000268201",
    ]
    assert (rows[1]["status"], rows[1]["reason"]) == ("error", "malformed_line")
    assert rows[1]["_detail"] == f"{bad}: line 4: not a Flickr30k caption line"
    assert len(rows[0]["captions"]) == 5
