"""A corpus for other ecosystems: its shard files, Hugging Face datasets, webdataset tars.

- ``shard_files``: the data shards the catalog lists, in order (what any Parquet reader
  takes: ``datasets.load_dataset("parquet", data_files=...)``, ``ray.data.read_parquet``,
  ``pyarrow.dataset``; Ray's loader is ``mmdata.exports.ray_data.ray_dataset``).
- ``hf_dataset``: ``datasets.load_dataset("parquet", ...)`` on those files, ``image_bytes``
  decoded to PIL images, region features left as float16 bytes (needs the ``datasets``
  package; mmdata does not depend on it).
- ``export_hf``: a folder ``load_dataset(folder)`` reads: each shard rewritten as a new
  Parquet file under ``data/`` (never a link or a copy of the corpus's file) with ``image``
  a ``datasets.Image()`` and regions' ``features``/``class_probs`` as ``num_boxes x dim``
  float16 lists, the features declared in each file's ``huggingface`` schema metadata
  (where ``datasets`` reads them), and a dataset card.
- ``export_webdataset``: one tar per shard, one webdataset sample per image: ``.jpg``
  (or the image's format), ``.json`` (ids, size, captions with their scene graphs, gold,
  region metadata), ``.txt`` (the first caption), ``.features.npy`` (region features).
"""

from __future__ import annotations

import io
import json
import re
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from mmdata.core.io import remove_partials, resolve, written_whole
from mmdata.core.progress import Progress
from mmdata.core.schema import IMAGE_SCHEMA, REGIONS
from mmdata.models.regions.rows import features_of
from mmdata.stream.shards import ShardInfo, StreamError, resolve_shards

EXPORT_FORMATS = ("webdataset", "hf")


def shard_files(catalog: str, corpus: str) -> list[str]:
    """Paths of ``corpus``'s data shards, in shard order."""
    return [s.path for s in resolve_shards(catalog, corpus)]


def hf_dataset(catalog: str, corpus: str, **kwargs: Any) -> Any:
    """``datasets.load_dataset("parquet", data_files=<the shards>, split="train")`` on the
    corpus's own shards, with ``image_bytes`` declared ``datasets.Image()`` so it decodes
    to a PIL image (unless ``features`` is passed). Region features stay raw float16
    bytes (``mmdata.models.regions.rows.features_of`` reads them); ``export_hf`` writes them as
    arrays."""
    try:
        import datasets
    except ImportError:
        raise StreamError("hf_dataset needs the datasets package: pip install datasets") from None
    files = shard_files(catalog, corpus)
    if files and "features" not in kwargs:
        fs, path = resolve(files[0])
        with fs.open_input_file(path) as handle:
            features = datasets.Features.from_arrow_schema(pq.read_schema(handle))
        features["image_bytes"] = datasets.Image()
        kwargs["features"] = features
    return datasets.load_dataset("parquet", data_files=files, split="train", **kwargs)


#: Columns of the corpus that the HF export leaves out: ``image_bytes`` becomes ``image``;
#: ``status`` and ``reason`` are "ok" and null in every data shard.
_HF_DROPPED = ("image_bytes", "status", "reason")

#: The HF export's image column: the struct ``datasets.Image()`` stores.
_HF_IMAGE = pa.struct([("bytes", pa.binary()), ("path", pa.string())])

#: Float16 matrices of the REGIONS struct stored as bytes -> (export name, rows, columns).
_HF_MATRICES = {
    "features_f16": ("features", "num_boxes", "feature_dim"),
    "class_probs_f16": ("class_probs", "num_boxes", "num_classes"),
}

_HF_MATRIX = pa.list_(pa.list_(pa.float16()))

_HF_VALUES = {
    pa.string(): "string",
    pa.binary(): "binary",
    pa.bool_(): "bool",
    pa.int32(): "int32",
    pa.int64(): "int64",
    pa.float16(): "float16",
    pa.float32(): "float32",
    pa.float64(): "float64",
}


def _hf_regions_type() -> pa.StructType:
    """REGIONS with its float16 byte matrices as nested lists (``features``: num_boxes x
    feature_dim, ``class_probs``: num_boxes x num_classes)."""
    fields = []
    for field in REGIONS:
        if field.name in _HF_MATRICES:
            fields.append(pa.field(_HF_MATRICES[field.name][0], _HF_MATRIX))
        else:
            fields.append(field)
    return pa.struct(fields)


def _hf_schema() -> pa.Schema:
    """The exported rows: IMAGE_SCHEMA with ``image`` after ``image_id``, regions'
    matrices as lists, every field nullable (as ``datasets`` declares them), and the
    ``datasets`` features in the schema metadata."""
    fields = [pa.field("image_id", pa.string()), pa.field("image", _HF_IMAGE)]
    for field in IMAGE_SCHEMA:
        if field.name == "regions":
            fields.append(pa.field("regions", _hf_regions_type()))
        elif field.name not in (*_HF_DROPPED, "image_id"):
            fields.append(pa.field(field.name, field.type))
    features = {f.name: _hf_feature(f.type) for f in fields}
    features["image"] = {"_type": "Image"}
    metadata = {"huggingface": json.dumps({"info": {"features": features}})}
    return pa.schema(fields, metadata=metadata)


def _hf_feature(type_: pa.DataType) -> Any:
    """The ``datasets`` feature (its ``Features.to_dict`` form) of an Arrow type."""
    if pa.types.is_struct(type_):
        return {f.name: _hf_feature(f.type) for f in type_}
    if pa.types.is_list(type_) or pa.types.is_fixed_size_list(type_):
        feature = {"_type": "List", "feature": _hf_feature(type_.value_type)}
        if pa.types.is_fixed_size_list(type_):
            feature["length"] = type_.list_size
        return feature
    return {"_type": "Value", "dtype": _HF_VALUES[type_]}


def _hf_matrix(regions: dict[str, pa.Array], name: str, ids: list[str]) -> pa.Array:
    """One float16 byte matrix of ``regions`` (its children, by name) as
    list<list<float16>>, null where the regions or the matrix are null."""
    rows_name, cols_name = _HF_MATRICES[name][1:]
    blobs = regions[name].to_pylist()
    rows = regions[rows_name].to_pylist()
    cols = regions[cols_name].to_pylist()
    per_image, per_box, parts = [], [], []  # lists per image, values per box, the bytes
    for image_id, blob, n, d in zip(ids, blobs, rows, cols):
        n, d = (n or 0, d or 0) if blob is not None else (0, 0)
        if blob is not None and len(blob) != 2 * n * d:
            raise StreamError(
                f"{image_id}: regions.{name} holds {len(blob)} bytes, not {n} x {d} float16"
            )
        per_image.append(n)
        per_box.extend([d] * n)
        parts.append(blob or b"")
    values = pa.array(np.frombuffer(b"".join(parts), dtype="<f2"), pa.float16())
    boxes = pa.ListArray.from_arrays(_offsets(per_box), values)
    missing = pa.array([blob is None for blob in blobs], pa.bool_())
    return pa.ListArray.from_arrays(_offsets(per_image), boxes, type=_HF_MATRIX, mask=missing)


def _offsets(lengths: list[int]) -> pa.Array:
    return pa.array(np.concatenate([[0], np.cumsum(lengths, dtype=np.int64)]), pa.int32())


def _hf_batch(batch: pa.RecordBatch, schema: pa.Schema) -> pa.RecordBatch:
    """A batch of shard rows as export rows (``schema`` from ``_hf_schema``)."""
    image_bytes = batch.column("image_bytes")
    columns = {
        "image": pa.StructArray.from_arrays(
            [image_bytes, pa.nulls(len(batch), pa.string())],
            fields=list(_HF_IMAGE),
            mask=image_bytes.is_null(),
        )
    }
    regions = batch.column("regions")
    children = dict(zip([f.name for f in REGIONS], regions.flatten()))
    ids = batch.column("image_id").to_pylist()
    columns["regions"] = pa.StructArray.from_arrays(
        [
            _hf_matrix(children, f.name, ids) if f.name in _HF_MATRICES else children[f.name]
            for f in REGIONS
        ],
        fields=list(schema.field("regions").type),
        mask=regions.is_null(),
    )
    arrays = [
        columns[f.name] if f.name in columns else batch.column(f.name).cast(f.type) for f in schema
    ]
    return pa.RecordBatch.from_arrays(arrays, schema=schema)


def export_hf(catalog: str, corpus: str, out: str | Path, progress: bool | str = False) -> int:
    """Write a Hugging Face dataset folder that ``datasets.load_dataset(out)`` reads;
    returns the number of shard files.

    Each shard becomes a new ``data/train-*.parquet`` (written here, never linked or
    copied, so writing to the export cannot touch the corpus), converted as ``datasets``
    decodes it: ``image`` is a ``datasets.Image()`` (a PIL image on access), regions'
    ``features`` and ``class_probs`` are float16 ``num_boxes x dim`` nested lists (arrays
    with ``with_format("numpy")`` or ``"torch"``), and the features are declared in each
    file's ``huggingface`` schema metadata, where ``datasets`` reads them back. Shard by
    shard, 64 rows at a time. ``progress``: as for ``run_recipe``."""
    out = Path(out)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    for folder in (out, data):
        remove_partials(folder)  # files a killed export was writing
    shards = resolve_shards(catalog, corpus)
    schema = _hf_schema()
    written = set()
    with Progress(len(shards), "shard", progress, desc="hf") as bar:
        for i, shard in enumerate(shards):
            target = data / f"train-{i:05d}-of-{len(shards):05d}.parquet"
            bar.update(1, rows=_write_hf_shard(shard, target, schema))
            written.add(target)
    for stale in data.glob("train-*.parquet"):  # an earlier export's other shard count
        if stale not in written:
            stale.unlink()
    card = [
        "---",
        "configs:",
        "- config_name: default",
        "  data_files:",
        "  - split: train",
        "    path: data/train-*.parquet",
        "---",
        "",
        f"# {corpus}",
        "",
        f"Exported by `mmdata export --format hf` from `{catalog}`: {len(shards)} Parquet",
        "files, one row per image: `image` (decoded to a PIL image), the image's ids, source,",
        "split and size, `captions` with their scene graphs, `gold` annotations and detector",
        "`regions` (boxes, classes, attributes; `features` and `class_probs` as float16",
        "`num_boxes x dim` arrays). The features are declared in each file's `huggingface`",
        "schema metadata.",
        "",
        "```python",
        "import datasets",
        "",
        'ds = datasets.load_dataset("<this folder>", split="train")',
        'ds[0]["image"]  # PIL.Image',
        'ds.with_format("numpy")[0]["regions"]["features"]  # (num_boxes, dim) array',
        "```",
        "",
    ]
    with written_whole(out / "README.md") as partial:
        partial.write_text("\n".join(card), encoding="utf-8")
    return len(shards)


def _write_hf_shard(shard: ShardInfo, target: Path, schema: pa.Schema) -> int:
    """One shard's rows as a new Parquet file at ``target``; returns how many."""
    fs, path = resolve(shard.path)
    try:
        parquet = pq.ParquetFile(path, filesystem=fs)
    except (OSError, ValueError) as exc:
        raise StreamError(f"{shard.path}: cannot read shard: {exc}") from None
    count = 0
    with parquet, written_whole(target) as partial, pq.ParquetWriter(partial, schema) as writer:
        for batch in parquet.iter_batches(batch_size=64):
            writer.write_batch(_hf_batch(batch, schema))
            count += batch.num_rows
    return count


def sample_key(image_id: str) -> str:
    """A webdataset key (no dots: they separate the extensions)."""
    return re.sub(r"[^A-Za-z0-9_-]", "_", image_id)


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    meta = {
        k: row.get(k)
        for k in ("image_id", "source", "split", "url", "width_px", "height_px", "sha256")
    }
    meta["captions"] = row.get("captions") or []
    meta["gold"] = row.get("gold")
    regions = row.get("regions")
    if regions is not None:
        meta["regions"] = {
            k: v for k, v in regions.items() if k not in ("features_f16", "class_probs_f16")
        }
    return meta


def _add(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mtime = 0  # reproducible archives
    tar.addfile(info, io.BytesIO(data))


def _members(row: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The files of one image's webdataset sample: (name, bytes)."""
    key = sample_key(row["image_id"])
    members = []
    if row.get("image_bytes") is not None:
        ext = (row.get("format") or "jpg").lower().replace("jpeg", "jpg")
        members.append((f"{key}.{ext}", row["image_bytes"]))
    meta = json.dumps(_metadata(row), ensure_ascii=False, default=str)
    members.append((f"{key}.json", meta.encode("utf-8")))
    captions = row.get("captions") or []
    if captions:
        members.append((f"{key}.txt", (captions[0]["text"] or "").encode("utf-8")))
    if row.get("regions") is not None:
        buf = io.BytesIO()
        np.save(buf, features_of(row["regions"]), allow_pickle=False)
        members.append((f"{key}.features.npy", buf.getvalue()))
    return members


def export_webdataset(
    catalog: str, corpus: str, out: str | Path, progress: bool | str = False
) -> int:
    """One ``{corpus}-{index:05d}.tar`` per shard in ``out``; returns the number of samples.
    ``progress``: as for ``run_recipe`` (shards done of all, samples, rate, ETA)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)  # tars a killed export was writing
    count = 0
    shards = resolve_shards(catalog, corpus)
    with Progress(len(shards), "shard", progress, desc="webdataset") as bar:
        for shard in shards:
            before = count
            count += _write_tar(shard, out / f"{corpus}-{shard.index:05d}.tar")
            bar.update(1, rows=count - before)
    return count


def _write_tar(shard: ShardInfo, target: Path) -> int:
    """One shard's samples as one tar; returns how many."""
    try:
        parquet = pq.ParquetFile(shard.path)
    except (OSError, ValueError) as exc:
        raise StreamError(f"{shard.path}: cannot read shard: {exc}") from None
    count = 0
    with written_whole(target) as partial, tarfile.open(partial, "w") as tar:
        for batch in parquet.iter_batches(batch_size=64):
            for row in batch.to_pylist():
                for name, data in _members(row):
                    _add(tar, name, data)
                count += 1
    return count
