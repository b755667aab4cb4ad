"""The sbu source on the real first 5 entries of sbu-captions-all.json."""

import json
import os
from pathlib import Path

import pytest

from annotation.jsonfile import AnnotationError
from annotation.sbu import SbuSource
from annotation.spill import MARKER, spill_path
from tests.conftest import DATA

SBU = DATA / "sbu" / "sbu-captions-all_first5.json"


def _rows(source: SbuSource, rows_per_partition: int = 1000) -> list[dict]:
    return [r for p in source.partitions(rows_per_partition) for r in source.read(p).to_pylist()]


def _source(tmp_path: Path, path: Path = SBU) -> SbuSource:
    return SbuSource(json=str(path), cache_dir=str(tmp_path / "cache"))


def test_rows_verbatim(tmp_path):
    rows = _rows(_source(tmp_path))
    assert [r["image_id"] for r in rows] == [f"sbu:{i}" for i in range(5)]
    assert rows[0]["url"] == "http://static.flickr.com/2723/4385058960_b0f291553e.jpg"
    assert rows[0]["captions"] == [
        {"caption_id": "sbu:0#0", "text": "A wooden chair in the living room", "scene_graph": None}
    ]
    assert rows[3]["captions"][0]["text"] == (
        "King Arthur's beheading rock - right on the sidewalk in the middle of town"
    )
    assert all(r["status"] is None and r["source"] == "sbu" for r in rows)


def test_small_partitions_give_the_same_rows(tmp_path):
    source = _source(tmp_path)
    whole = _rows(source)
    for size in (1, 2, 3, 5):
        assert _rows(source, size) == whole
    assert [source.read(p).num_rows for p in source.partitions(2)] == [2, 2, 1]


def test_cache_is_reused_and_rebuilt_when_incomplete(tmp_path):
    source = _source(tmp_path)
    parts = source.partitions(2)
    folder = parts[0].spec["cache"]
    assert sorted(os.listdir(folder)) == [MARKER, *(f"entries-00000{i}.jsonl" for i in range(3))]
    Path(spill_path(folder, "entries", 0)).write_text('["http://stale.example/x.jpg", "stale"]\n')
    assert source.read(parts[0]).to_pylist()[0]["url"] == "http://stale.example/x.jpg"
    os.remove(os.path.join(folder, MARKER))  # as if the build had been killed
    assert source.partitions(2) == parts
    assert _rows(source, 2)[0]["url"] == "http://static.flickr.com/2723/4385058960_b0f291553e.jpg"
    assert len(os.listdir(tmp_path / "cache")) == 1  # no temporary folders left behind


def test_missing_spill_file_is_rebuilt(tmp_path):
    source = _source(tmp_path)
    parts = source.partitions(2)
    os.remove(os.path.join(parts[0].spec["cache"], MARKER))
    os.remove(spill_path(parts[0].spec["cache"], "entries", 1))
    assert source.read(parts[1]).to_pylist()[0]["image_id"] == "sbu:2"


def test_unequal_lists_name_the_file(tmp_path):
    data = json.loads(SBU.read_text())
    data["captions"].pop()
    path = tmp_path / "short.json"
    path.write_text(json.dumps(data))
    with pytest.raises(AnnotationError, match=r"short.json: .*\['captions'\] end after 4"):
        _source(tmp_path, path).partitions(2)


def test_row_problems(tmp_path):
    data = json.loads(SBU.read_text())
    data["captions"][1] = "  "
    data["image_urls"][2] = "static.flickr.com/4104/5079196943_c218abbf11.jpg"
    data["image_urls"][3] = None
    path = tmp_path / "bad.json"
    path.write_text(json.dumps(data))
    rows = _rows(_source(tmp_path, path))
    assert [(r["status"], r["reason"]) for r in rows] == [
        (None, None),
        ("rejected", "empty_caption"),
        ("rejected", "bad_url"),
        ("rejected", "bad_url"),
        (None, None),
    ]
    assert rows[1]["_detail"] == f"{path}: entry 1: empty caption"
