"""Every Arrow schema of mmdata, in one place.

One row per image. Captions, gold annotations and detector regions are nested in the
image row so a shard is self-contained; DuckDB views unnest them for SQL. Character
spans are half-open ``[start, end)`` offsets into the caption text (not the lemma), so a
trainer can mask exactly the words of an object, attribute or relation (ERNIE-ViL).
Boxes carry their convention and unit in the field name (``box_xywh_px``).
"""

from __future__ import annotations

import pyarrow as pa

#: Written into every shard's Parquet metadata under ``mmdata.schema_version``.
SCHEMA_VERSION = "1"
SCHEMA_VERSION_KEY = b"mmdata.schema_version"

#: Row status values. ``rejected`` rows were dropped by a filter; ``error`` rows failed
#: in a stage (with ``on_error: record``). Both end up in the rejects, never in shards.
STATUS_OK = "ok"
STATUS_REJECTED = "rejected"
STATUS_ERROR = "error"

SPAN = pa.struct([("start", pa.int32()), ("end", pa.int32())])

SG_ATTRIBUTE = pa.struct(
    [
        ("text", pa.string()),
        ("span", SPAN),
        ("lemma", pa.string()),
        ("name", pa.string()),  # the corpus' spelling where the caption misspells it; else null
    ]
)

SG_OBJECT = pa.struct(
    [
        ("head", pa.string()),  # the head noun (with its compound) as written: "fire hydrant"
        ("text", pa.string()),  # the whole noun phrase as written in the caption
        ("span", SPAN),
        ("count", pa.int32()),  # "two dogs" -> 2; null when not counted
        ("attributes", pa.list_(SG_ATTRIBUTE)),
        ("lemma", pa.string()),  # lemmatised head, for matching ("dogs" -> "dog")
        # the name the corpus writes where it is not the head as written: a respelling
        # ("skiier" -> "skier"), a joined compound ("surf board" -> "surfboard"), a rename
        # ("guys" -> "person"); null otherwise. Added in place (schema version 1): readers
        # of older shards see null.
        ("name", pa.string()),
    ]
)

SG_RELATION = pa.struct(
    [
        ("subject", pa.int32()),  # index into objects
        ("predicate", pa.string()),
        ("object", pa.int32()),  # index into objects
        ("span", SPAN),  # the predicate's words
        ("predicate_lemma", pa.string()),  # "sitting on" -> "sit on", for matching
    ]
)

SCENE_GRAPH = pa.struct(
    [
        ("objects", pa.list_(SG_OBJECT)),
        ("relations", pa.list_(SG_RELATION)),
        ("note", pa.string()),  # why a graph is empty or partial ("truncated at 64 tokens")
    ]
)

CAPTION = pa.struct(
    [
        ("caption_id", pa.string()),
        ("text", pa.string()),
        ("scene_graph", SCENE_GRAPH),  # null until a scene-graph stage fills it
    ]
)

BOX_XYWH_PX = pa.list_(pa.float32(), 4)

GOLD_OBJECT = pa.struct(
    [
        ("object_id", pa.string()),
        ("category_id", pa.int64()),
        ("names", pa.list_(pa.string())),  # COCO: [category name]; VG: object names
        ("box_xywh_px", BOX_XYWH_PX),  # null for image-level labels (CC3M labelled subset)
        ("score", pa.float32()),  # label confidence where the source gives one
        ("area_px", pa.float64()),
        ("iscrowd", pa.bool_()),
        ("attributes", pa.list_(pa.string())),
        ("synsets", pa.list_(pa.string())),
        ("segmentation", pa.string()),  # JSON text, only when asked to keep it
    ]
)

GOLD_RELATION = pa.struct(
    [
        ("relation_id", pa.string()),
        ("subject", pa.int32()),  # index into gold objects
        ("predicate", pa.string()),
        ("object", pa.int32()),
        ("synsets", pa.list_(pa.string())),
    ]
)

GOLD_REGION = pa.struct(
    [
        ("region_id", pa.string()),
        ("text", pa.string()),
        ("box_xywh_px", BOX_XYWH_PX),
    ]
)

GOLD = pa.struct(
    [
        ("objects", pa.list_(GOLD_OBJECT)),
        ("relations", pa.list_(GOLD_RELATION)),
        ("regions", pa.list_(GOLD_REGION)),
        # The same objects/attributes/relations in the caption parser's struct (spans
        # null, object i == objects[i]) so parsed and gold graphs compare directly.
        ("scene_graph", SCENE_GRAPH),
    ]
)

#: Detector output for one image. Class indices follow the Caffe bottom-up-attention
#: convention: 0 is background (for attributes: no attribute), class i is line i - 1 of
#: the vocabulary (annotation/vg_vocab); mmdata.models.regions.vocab converts from detectron2's
#: background-last order and to LXMERT's background-free ids.
REGIONS = pa.struct(
    [
        ("extractor_id", pa.string()),  # model name + hash of config and weights
        ("image_width_px", pa.int32()),  # size the boxes refer to
        ("image_height_px", pa.int32()),
        ("num_boxes", pa.int32()),
        ("boxes_xyxy_px", pa.list_(pa.list_(pa.float32(), 4))),
        # x1/w, y1/h, x2/w, y2/h, bw/w, bh/h, area: UNITER's 7-d geometry; the 5-d, 4-d
        # and 6-d layouts other models read derive from it (mmdata.models.regions.geometry)
        ("boxes_norm7", pa.list_(pa.list_(pa.float32(), 7))),
        ("boxes_given", pa.bool_()),  # features pooled for given (gold) boxes, not detected
        ("feature_dim", pa.int32()),
        ("features_f16", pa.binary()),  # num_boxes x feature_dim float16, little endian
        ("object_ids", pa.list_(pa.int32())),
        ("object_conf", pa.list_(pa.float32())),
        ("attribute_ids", pa.list_(pa.int32())),
        ("attribute_conf", pa.list_(pa.float32())),
        ("attribute_names", pa.list_(pa.string())),  # "" where the top attribute is none
        # optional soft labels for MRC-kl: num_boxes x num_classes float16 softmax over
        # every class, background at index background_index (0)
        ("class_probs_f16", pa.binary()),
        ("num_classes", pa.int32()),
        ("background_index", pa.int32()),
        ("tags", pa.list_(pa.string())),  # class names of the boxes, for Oscar-style input
    ]
)

IMAGE_FIELDS: list[pa.Field] = [
    pa.field("image_id", pa.string(), nullable=False),  # "{source}:{native id}"
    pa.field("source", pa.string()),
    pa.field("split", pa.string()),
    pa.field("url", pa.string()),
    pa.field("path", pa.string()),
    pa.field("width_px", pa.int32()),
    pa.field("height_px", pa.int32()),
    pa.field("format", pa.string()),
    pa.field("sha256", pa.string()),
    pa.field("phash", pa.string()),
    pa.field("image_bytes", pa.binary()),  # last, so projections skip it cheaply
    pa.field("status", pa.string()),
    pa.field("reason", pa.string()),
]

IMAGE_SCHEMA = pa.schema(
    IMAGE_FIELDS
    + [
        pa.field("captions", pa.list_(CAPTION)),
        pa.field("gold", GOLD),
        pa.field("regions", REGIONS),
    ]
)

#: One row per rejected input row: which stage dropped it, why, and enough to find it.
REJECT_SCHEMA = pa.schema(
    [
        pa.field("image_id", pa.string()),
        pa.field("item_kind", pa.string()),  # null: the whole image; else caption, object, ...
        pa.field("item_id", pa.string()),  # the caption/object/... id when only it was dropped
        pa.field("url", pa.string()),
        pa.field("path", pa.string()),
        pa.field("stage", pa.string()),
        pa.field("status", pa.string()),  # rejected (filtered) or error
        pa.field("reason", pa.string()),
        pa.field("detail", pa.string()),
    ]
)


def layer_schema(fields: tuple[pa.Field, ...] | list[pa.Field]) -> pa.Schema:
    """A layer file's schema: ``image_id``, the layer's fields (in recipe order), then
    the row's ``status`` and ``reason`` in the layer run (the fields are null unless ok).
    One row per base row, in the base shard's order, so readers zip by position."""
    return pa.schema(
        [IMAGE_SCHEMA.field("image_id"), *fields, pa.field("status", pa.string()),
         pa.field("reason", pa.string())]
    )  # fmt: skip


#: Columns the executors add while a batch travels through the stages; never stored.
INTERNAL_FIELDS: list[pa.Field] = [
    pa.field("_shard", pa.int64()),  # index of the input partition = output shard
    pa.field("_row", pa.int64()),  # row order inside the partition
    pa.field("_shard_rows", pa.int64()),  # input rows of the partition
    pa.field("_reject_stage", pa.int32()),  # stage index that rejected the row; -1 source
    pa.field("_detail", pa.string()),
]


class SchemaError(ValueError):
    """A table does not match the schema it claims."""


def conform(table: pa.Table, schema: pa.Schema = IMAGE_SCHEMA) -> pa.Table:
    """Reorder ``table`` to ``schema``, adding missing columns as nulls and casting.

    Columns not in the schema are an error: a misspelt column must not vanish.
    """
    extra = [n for n in table.column_names if schema.get_field_index(n) < 0]
    if extra:
        raise SchemaError(f"columns not in the schema: {extra}")
    columns = []
    for field in schema:
        if field.name in table.column_names:
            columns.append(table.column(field.name).cast(field.type))
        else:
            columns.append(pa.nulls(table.num_rows, field.type))
    return pa.Table.from_arrays(columns, schema=schema)


def validate(table: pa.Table, schema: pa.Schema = IMAGE_SCHEMA) -> None:
    """Check that ``table`` has exactly ``schema``'s fields and types, in order.

    Raises:
        SchemaError: naming the first field that differs, or a null image_id.
    """
    names, expected = table.schema.names, schema.names
    if names != expected:
        missing = [n for n in expected if n not in names]
        extra = [n for n in names if n not in expected]
        raise SchemaError(f"fields differ: missing {missing}, extra {extra}, order {names}")
    for field in schema:
        actual = table.schema.field(field.name).type
        if actual != field.type:
            raise SchemaError(f"field {field.name!r} is {actual}, expected {field.type}")
        if not field.nullable and table.column(field.name).null_count:
            raise SchemaError(f"field {field.name!r} has nulls")


def with_version(schema: pa.Schema) -> pa.Schema:
    """``schema`` with SCHEMA_VERSION in its metadata, as every shard is written."""
    metadata = dict(schema.metadata or {})
    metadata[SCHEMA_VERSION_KEY] = SCHEMA_VERSION.encode()
    return schema.with_metadata(metadata)
