"""A corpus as a Ray Dataset: the one module outside mmdata.engine.executors that imports Ray
(when called), as tests/test_layering.py allows."""

from __future__ import annotations

from typing import Any

from mmdata.core.io import resolve
from mmdata.exports.interop import shard_files


def ray_dataset(catalog: str, corpus: str, **kwargs: Any) -> Any:
    """``ray.data.read_parquet`` on the corpus's data shards (one row per image).

    The shards' pyarrow filesystem is passed along, so Ray does not guess one (its
    guess goes through fsspec's HTTP support, which needs aiohttp, even for local files).
    """
    import ray.data

    files = shard_files(catalog, corpus)
    filesystem, _ = resolve(files[0])
    paths = [resolve(f)[1] for f in files]
    return ray.data.read_parquet(paths, filesystem=filesystem, **kwargs)
