import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from mmdata.core import schema


def test_conform_orders_fills_and_casts():
    table = pa.table({"width_px": pa.array([3], pa.int64()), "image_id": ["coco:1"]})
    out = schema.conform(table)
    assert out.schema == schema.IMAGE_SCHEMA
    assert out.column("width_px").type == pa.int32()
    assert out.column("captions").null_count == 1
    schema.validate(out)


def test_conform_refuses_unknown_columns():
    with pytest.raises(schema.SchemaError, match="widht_px"):
        schema.conform(pa.table({"image_id": ["a"], "widht_px": [1]}))


def test_validate_names_the_field_that_differs():
    table = schema.conform(pa.table({"image_id": ["a"]}))
    bad = table.set_column(
        table.schema.get_field_index("height_px"), "height_px", pa.array(["tall"])
    )
    with pytest.raises(schema.SchemaError, match="height_px"):
        schema.validate(bad)
    with pytest.raises(schema.SchemaError, match="missing"):
        schema.validate(table.drop_columns(["gold"]))


def test_validate_refuses_null_image_id():
    table = schema.conform(pa.table({"image_id": pa.array([None], pa.string())}))
    with pytest.raises(schema.SchemaError, match="image_id"):
        schema.validate(table)


def test_scene_graph_spans_and_version_survive_parquet(tmp_path):
    caption = {
        "caption_id": "1",
        "text": "a red circle",
        "scene_graph": {
            "objects": [
                {
                    "head": "circle",
                    "name": "disc",
                    "text": "red circle",
                    "span": {"start": 2, "end": 12},
                    "count": None,
                    "attributes": [{"text": "red", "span": {"start": 2, "end": 5}}],
                }
            ],
            "relations": [],
        },
    }
    table = schema.conform(
        pa.table(
            {"image_id": ["demo:1"], "captions": pa.array([[caption]], pa.list_(schema.CAPTION))}
        )
    )
    path = tmp_path / "s.parquet"
    pq.write_table(table.cast(schema.with_version(schema.IMAGE_SCHEMA)), path)
    back = pq.read_table(path)
    assert back.schema.metadata[schema.SCHEMA_VERSION_KEY] == schema.SCHEMA_VERSION.encode()
    obj = back.column("captions")[0][0]["scene_graph"]["objects"][0].as_py()
    assert caption["text"][obj["span"]["start"] : obj["span"]["end"]] == "red circle"
    assert obj["name"] == "disc"
