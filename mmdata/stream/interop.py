"""A corpus for other ecosystems: its shard files, Hugging Face datasets, webdataset tars.

- ``shard_files``: the data shards the catalog lists, in order (what any Parquet reader
  takes: ``datasets.load_dataset("parquet", data_files=...)``, ``ray.data.read_parquet``,
  ``pyarrow.dataset``; Ray's loader is ``mmdata.executors.ray_data.ray_dataset``).
- ``hf_dataset``: ``datasets.load_dataset("parquet", ...)`` on those files (needs the
  ``datasets`` package; mmdata does not depend on it).
- ``export_hf``: a folder ``load_dataset(folder)`` reads: the shards under ``data/`` (hard
  links where the filesystem allows, else copies) and a dataset card naming them.
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
import os
import re
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mmdata.io import remove_partials, written_whole
from mmdata.progress import Progress
from mmdata.regions.rows import features_of
from mmdata.stream.shards import ShardInfo, StreamError, resolve_shards

EXPORT_FORMATS = ("webdataset", "hf")


def shard_files(catalog: str, corpus: str) -> list[str]:
    """Paths of ``corpus``'s data shards, in shard order."""
    return [s.path for s in resolve_shards(catalog, corpus)]


def hf_dataset(catalog: str, corpus: str, **kwargs: Any) -> Any:
    """``datasets.load_dataset("parquet", data_files=<the shards>, split="train")``."""
    try:
        import datasets
    except ImportError:
        raise StreamError("hf_dataset needs the datasets package: pip install datasets") from None
    files = shard_files(catalog, corpus)
    return datasets.load_dataset("parquet", data_files=files, split="train", **kwargs)


def export_hf(catalog: str, corpus: str, out: str | Path) -> int:
    """Write a Hugging Face dataset folder; returns the number of shard files."""
    out = Path(out)
    data = out / "data"
    data.mkdir(parents=True, exist_ok=True)
    files = shard_files(catalog, corpus)
    for i, path in enumerate(files):
        target = data / f"train-{i:05d}-of-{len(files):05d}.parquet"
        if target.exists():
            target.unlink()
        try:
            os.link(path, target)
        except OSError:  # another filesystem, or an object store path
            shutil.copyfile(path, target)
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
        f"Exported by `mmdata export --format hf` from `{catalog}`: {len(files)} Parquet",
        "shards in mmdata's image schema (one row per image; captions, gold annotations and",
        "detector regions nested). Load with `datasets.load_dataset(<this folder>)`.",
        "",
    ]
    (out / "README.md").write_text("\n".join(card), encoding="utf-8")
    return len(files)


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
