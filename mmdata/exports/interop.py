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
- ``export_webdataset``: one tar per shard and ``sizes.json`` (each tar's sample count,
  which OpenCLIP's trainer reads instead of ``--train-num-samples``). ``unit="image"``:
  one sample per image: ``.jpg`` (or the image's format), ``.json`` (ids, size, captions
  with their scene graphs, gold, region metadata), ``.txt`` (the first caption),
  ``.features.npy`` (region features). ``unit="caption"``: one sample per caption, key
  ``{image key}_c{n}``: the image's bytes again, ``.txt`` (that caption), ``.json`` (the
  image's ids and size, the caption's id, index, text and scene graph).
  ``webdataset_urls`` gives the tars' brace pattern (OpenCLIP's ``--train-data``).
"""

from __future__ import annotations

import glob
import hashlib
import io
import json
import re
import tarfile
from collections.abc import Iterator
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


#: ``--unit`` of the webdataset export: one sample per image, or one per caption.
WEBDATASET_UNITS = ("image", "caption")
#: What OpenCLIP reads for the sample count (open_clip_train.data.get_dataset_size): a JSON
#: object, each tar's file name -> its number of samples, in the tars' folder.
SIZES_FILE = "sizes.json"
_IMAGE_META = ("image_id", "source", "split", "url", "width_px", "height_px", "sha256")


def sample_key(image_id: str) -> str:
    """A webdataset key: no dots (they separate the extensions) and nothing a tar path or
    a shell would trip on. ``source:native`` with a native id of letters, digits and ``-``
    (every source's ids: ``coco:42``) is ``source_native``, which names one id only (the
    last ``_`` splits it back); any other id is cleaned and gets 12 hex digits of its sha1,
    so two ids never share a key."""
    key = re.sub(r"[^A-Za-z0-9_-]", "_", image_id)
    if not re.fullmatch(r"([A-Za-z0-9_-]+:)?[A-Za-z0-9-]+", image_id):
        key += "-" + hashlib.sha1(image_id.encode("utf-8")).hexdigest()[:12]
    return key


def _metadata(row: dict[str, Any]) -> dict[str, Any]:
    meta = {k: row.get(k) for k in _IMAGE_META}
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


def _image_ext(row: dict[str, Any]) -> str:
    return (row.get("format") or "jpg").lower().replace("jpeg", "jpg")


def _json(value: Any) -> bytes:
    return json.dumps(value, ensure_ascii=False, default=str).encode("utf-8")


def _members(row: dict[str, Any]) -> list[tuple[str, bytes]]:
    """The files of one image's webdataset sample: (name, bytes)."""
    key = sample_key(row["image_id"])
    members = []
    if row.get("image_bytes") is not None:
        members.append((f"{key}.{_image_ext(row)}", row["image_bytes"]))
    members.append((f"{key}.json", _json(_metadata(row))))
    captions = row.get("captions") or []
    if captions:
        members.append((f"{key}.txt", (captions[0]["text"] or "").encode("utf-8")))
    if row.get("regions") is not None:
        buf = io.BytesIO()
        np.save(buf, features_of(row["regions"]), allow_pickle=False)
        members.append((f"{key}.features.npy", buf.getvalue()))
    return members


def _caption_members(row: dict[str, Any]) -> Iterator[list[tuple[str, bytes]]]:
    """One sample per caption of an image: ``{key}_c{n}`` with the image's bytes, the
    caption as ``.txt``, and ``.json`` (the image's ids and size, the caption's id, index,
    text and scene graph). Region features stay with ``unit="image"``."""
    key = sample_key(row["image_id"])
    image = row.get("image_bytes")
    base = {k: row.get(k) for k in _IMAGE_META}
    for n, caption in enumerate(row.get("captions") or []):
        name = f"{key}_c{n}"
        members = [] if image is None else [(f"{name}.{_image_ext(row)}", image)]
        meta = {**base, "caption_index": n, **caption}  # caption_id, text, scene_graph
        members.append((f"{name}.json", _json(meta)))
        members.append((f"{name}.txt", (caption["text"] or "").encode("utf-8")))
        yield members


def export_webdataset(
    catalog: str,
    corpus: str,
    out: str | Path,
    progress: bool | str = False,
    unit: str = "image",
) -> int:
    """One ``{corpus}-{index:05d}.tar`` per shard in ``out`` and ``sizes.json`` (each tar's
    sample count, what OpenCLIP reads); returns the number of samples. ``unit``: "image"
    (one sample per image, ``.txt`` its first caption) or "caption" (one per caption, the
    image repeated). ``progress``: as for ``run_recipe`` (shards done of all, samples,
    rate, ETA).

    Each tar is written whole or not at all, and ``sizes.json`` last: while the export
    runs (or after it was killed) ``sizes.json`` lists none of this corpus's tars, so a
    trainer reading it never counts a tar of another export. Tars of an earlier export of
    the corpus that this one did not write are removed; other corpora's entries stay."""
    if unit not in WEBDATASET_UNITS:
        raise StreamError(f"unit must be one of {', '.join(WEBDATASET_UNITS)}, not {unit!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)  # tars a killed export was writing
    mine = re.compile(rf"{re.escape(corpus)}-\d{{5}}\.tar")
    others = {k: v for k, v in _read_sizes(out).items() if not mine.fullmatch(k)}
    _write_sizes(out, others)  # this corpus's old counts go before its tars change
    sizes: dict[str, int] = {}
    shards = resolve_shards(catalog, corpus)
    with Progress(len(shards), "shard", progress, desc="webdataset") as bar:
        for shard in shards:
            name = f"{corpus}-{shard.index:05d}.tar"
            sizes[name] = _write_tar(shard, out / name, unit)
            bar.update(1, rows=sizes[name])
    for stale in out.glob(f"{glob.escape(corpus)}-*.tar"):
        if mine.fullmatch(stale.name) and stale.name not in sizes:
            stale.unlink()
    _write_sizes(out, {**others, **sizes})
    return sum(sizes.values())


def webdataset_urls(out: str | Path, corpus: str) -> str:
    """The brace pattern naming ``corpus``'s tars in ``out`` (from ``sizes.json``), as
    OpenCLIP's ``--train-data`` and ``webdataset.WebDataset`` take it:
    ``out/demo-{00000..00003}.tar``."""
    mine = re.compile(rf"{re.escape(corpus)}-(\d{{5}})\.tar")
    indices = sorted(int(m.group(1)) for k in _read_sizes(Path(out)) if (m := mine.fullmatch(k)))
    if not indices:
        raise StreamError(f"{Path(out) / SIZES_FILE} lists no tar of corpus {corpus!r}")
    if len(indices) == 1:
        names = f"{indices[0]:05d}"
    elif indices == list(range(indices[0], indices[-1] + 1)):
        names = f"{{{indices[0]:05d}..{indices[-1]:05d}}}"
    else:
        names = "{" + ",".join(f"{i:05d}" for i in indices) + "}"
    return f"{Path(out) / corpus}-{names}.tar"


def _read_sizes(out: Path) -> dict[str, int]:
    try:
        sizes = json.loads((out / SIZES_FILE).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise StreamError(f"{out / SIZES_FILE}: cannot read: {exc}") from None
    if not isinstance(sizes, dict):
        raise StreamError(f"{out / SIZES_FILE}: not a JSON object of tar name -> samples")
    return sizes


def _write_sizes(out: Path, sizes: dict[str, int]) -> None:
    with written_whole(out / SIZES_FILE) as partial:
        partial.write_text(json.dumps(dict(sorted(sizes.items())), indent=1) + "\n")


def _write_tar(shard: ShardInfo, target: Path, unit: str = "image") -> int:
    """One shard's samples as one tar; returns how many."""
    try:
        parquet = pq.ParquetFile(shard.path)
    except (OSError, ValueError) as exc:
        raise StreamError(f"{shard.path}: cannot read shard: {exc}") from None
    count = 0
    with written_whole(target) as partial, tarfile.open(partial, "w") as tar:
        for batch in parquet.iter_batches(batch_size=64):
            for row in batch.to_pylist():
                samples = [_members(row)] if unit == "image" else _caption_members(row)
                for members in samples:
                    for name, data in members:
                        _add(tar, name, data)
                    count += 1
    return count
