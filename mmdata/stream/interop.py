"""A corpus for other ecosystems: its shard files, Hugging Face datasets, webdataset tars.

- ``shard_files``: the data shards the catalog lists, in order (what any Parquet reader
  takes: ``datasets.load_dataset("parquet", data_files=...)``, ``ray.data.read_parquet``,
  ``pyarrow.dataset``; Ray's loader is ``mmdata.executors.ray_data.ray_dataset``).
- ``hf_dataset``: ``datasets.load_dataset("parquet", ...)`` on those files (needs the
  ``datasets`` package; mmdata does not depend on it).
- ``export_hf``: a folder ``load_dataset(folder)`` reads: the shards under ``data/`` (hard
  links where the filesystem allows, else copies) and a dataset card naming them.
- ``export_webdataset``: one tar per shard, one webdataset sample per image: ``.jpg``
  (or the image's format), ``.json`` (ids, size, captions with their scene graphs, gold,
  region metadata), ``.txt`` (the first caption), ``.features.npy`` (region features).
"""

from __future__ import annotations

import io
import json
import os
import re
import shutil
import tarfile
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
