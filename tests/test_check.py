"""`mmdata check`: a clean corpus passes; each kind of damage a crash or a user can do
to the files (a listed shard deleted, rewritten, truncated; an unlisted shard, a staging
part, an unfinished write) is reported by path, and the exit status says so."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq

from mmdata.catalog.store import Catalog
from mmdata.commands.check import check
from mmdata.commands.cli import main
from mmdata.demo import oracle as demo_oracle


def _corpus(tmp_path: Path) -> tuple[str, Path]:
    catalog = demo_oracle.build(tmp_path / "catalog.duckdb", tmp_path / "corpus", images=200)
    return catalog, tmp_path / "corpus" / "data"


def test_a_clean_corpus_passes(tmp_path, capsys):
    catalog, data = _corpus(tmp_path)
    (tmp_path / "corpus" / "tokenizer").mkdir()
    (tmp_path / "corpus" / "tokenizer" / "vocab.txt").write_text("[PAD]\n")  # the user's
    assert main(["check", "--catalog", catalog]) == 0
    captured = capsys.readouterr()
    assert "4 listed shard files and 5 files checked: ok" in captured.out
    assert "4/4" in captured.err and "rows=200" in captured.err  # the progress bar
    assert main(["check", "--catalog", catalog, "-q"]) == 0
    assert capsys.readouterr().err == ""
    check(Catalog(catalog), progress="json")
    last = json.loads(capsys.readouterr().err.strip().splitlines()[-1])
    assert (last["unit"], last["done"], last["total"], last["rows"]) == ("file", 4, 4, 200)


def test_every_kind_of_damage_is_reported_by_path(tmp_path, capsys):
    catalog, data = _corpus(tmp_path)
    shards = sorted(data.glob("shard-*.parquet"))
    shards[0].unlink()  # missing
    table = pq.read_table(shards[1])
    pq.write_table(table.slice(0, 10), shards[1])  # rewritten: other size, hash and rows
    raw = shards[2].read_bytes()
    mid = len(raw) // 2  # in a data page: the footer still reads
    shards[2].write_bytes(raw[:mid] + bytes([raw[mid] ^ 1]) + raw[mid + 1 :])  # one bit
    pq.write_table(table, data / "shard-00009.parquet")  # no catalog row lists it
    (tmp_path / "corpus" / "_staging").mkdir()
    (tmp_path / "corpus" / "_staging" / "00004-ab12.data.parquet").write_bytes(b"x")
    (data / "shard-00005.parquet.partial").write_bytes(b"half")
    report = check(Catalog(catalog))
    found = {(Path(p.path).name, p.kind) for p in report.problems}
    assert found == {
        ("shard-00000.parquet", "missing"),
        ("shard-00001.parquet", "size"),
        ("shard-00002.parquet", "sha256"),
        ("shard-00009.parquet", "orphan"),
        ("00004-ab12.data.parquet", "staging"),
        ("shard-00005.parquet.partial", "unfinished"),
    }
    assert all(p.corpus == "demo_oracle" for p in report.problems)
    assert main(["check", "--catalog", catalog, "--no-hash"]) == 1
    out = capsys.readouterr().out
    assert "5 problem(s)" in out  # without hashes the flipped bit goes unseen
    assert f"missing     demo_oracle  {shards[0]}: listed in the catalog, not on disk" in out
    assert main(["check", "--catalog", catalog, "--json"]) == 1
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert len(lines) == 6 and {line["problem"] for line in lines} >= {"missing", "sha256"}


def test_a_listed_file_with_other_rows_is_reported(tmp_path):
    catalog, data = _corpus(tmp_path)
    first = sorted(data.glob("shard-*.parquet"))[0]
    table = pq.read_table(first)
    size = first.stat().st_size
    with Catalog(catalog).write() as con:  # the catalog says 1 row more than the file has
        con.execute("UPDATE shards SET rows = rows + 1 WHERE path = ?", [str(first)])
    report = check(Catalog(catalog), "demo_oracle")
    assert [(p.kind, p.detail) for p in report.problems] == [
        ("rows", f"{table.num_rows} rows, the catalog recorded {table.num_rows + 1}")
    ]
    assert first.stat().st_size == size  # checking changes nothing
