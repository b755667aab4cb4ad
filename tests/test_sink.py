import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmdata.core.batch import to_work
from mmdata.core.schema import SCHEMA_VERSION_KEY
from mmdata.engine import sink
from mmdata.engine.executors.base import run_stage
from mmdata.engine.sink import ShardAssembler, shard_path, write_parts
from mmdata.stages.image_size_filter import ImageSizeFilter

NAMES = ["coco", "image_size_filter"]


def _batch(shard: int, n: int = 6) -> pa.Table:
    table = to_work(
        pa.table(
            {
                "image_id": [f"t:{shard}:{i}" for i in range(n)],
                "width_px": [10 if i % 3 == 0 else 100 for i in range(n)],
                "height_px": [100] * n,
            }
        ),
        shard,
    )
    return run_stage(ImageSizeFilter(min_side_px=50), 0, table, "record")


def test_one_part_is_moved_into_place(tmp_path):
    (part,) = write_parts(_batch(0), str(tmp_path / "_staging"), NAMES)
    shard = ShardAssembler(str(tmp_path)).add(part)
    assert shard is not None and shard.input_rows == 6
    data = pq.read_table(shard_path(str(tmp_path), 0))
    assert data.column("image_id").to_pylist() == ["t:0:1", "t:0:2", "t:0:4", "t:0:5"]
    assert data.schema.metadata[SCHEMA_VERSION_KEY] == b"1"
    kinds = {f["kind"]: f["rows"] for f in shard.files}
    assert kinds == {"data": 4, "rejects": 2}
    step = shard.stats[1]
    assert (step["rows_in"], step["rows_out"], step["drops"]) == (6, 4, {"image": {"too_small": 2}})


def test_parts_in_any_order_merge_back_into_input_order(tmp_path):
    table = _batch(3, n=9)
    pieces = [table.slice(6, 3), table.slice(0, 2), table.slice(2, 4)]
    parts = [p for piece in pieces for p in write_parts(piece, str(tmp_path / "s"), NAMES)]
    assembler = ShardAssembler(str(tmp_path))
    assert assembler.add(parts[0]) is None and assembler.add(parts[1]) is None
    assert assembler.pending() == [3]
    shard = assembler.add(parts[2])
    data = pq.read_table(shard_path(str(tmp_path), 3))
    kept = [f"t:3:{i}" for i in range(9) if i % 3]
    assert data.column("image_id").to_pylist() == kept
    assert shard.stats[1]["drops"] == {"image": {"too_small": 3}}
    assert sum(json.loads(p["stats"])[1]["rows_in"] for p in parts) == 9


def test_a_duplicated_row_is_caught(tmp_path):
    table = _batch(1)
    (a,) = write_parts(table, str(tmp_path / "s"), NAMES)
    (b,) = write_parts(table.slice(0, 1), str(tmp_path / "s"), NAMES)
    assembler = ShardAssembler(str(tmp_path))
    assembler.add(b)
    with pytest.raises(RuntimeError, match="duplicated"):
        assembler.add(a)


def test_row_groups_are_sized_by_bytes_within_bounds():
    wide = pa.table({"blob": pa.array([b"x" * 1_000_000] * 20)})  # 1 MB rows
    narrow = pa.table({"text": pa.array(["a caption"] * 5000)})
    assert sink.row_group_rows(wide) == sink.ROW_GROUP_MIN_ROWS
    assert sink.row_group_rows(narrow) == sink.ROW_GROUP_ROWS
    middle = pa.table({"blob": pa.array([b"x" * 150_000] * 200)})  # region-feature rows
    rows = sink.row_group_rows(middle)
    assert rows * 150_000 <= sink.ROW_GROUP_BYTES < (rows + 1) * 150_100
