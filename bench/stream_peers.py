"""The peers of bench/stream.py: MosaicML Streaming (MDS shards) and webdataset (tars).

Both store one record per image (its captions, and its region tensors as
``region_tensors(boxes, dtype=float16)`` makes them: features, boxes, classes, attributes,
mask), each written by its own library's writer from the mmdata corpus's shards, and both
expand a record into one sample per caption in the loader pipeline, the image's tensors
shared by its captions as mmdata shares them. Storing the 36 x 2048 features once per
caption would take 20x the disk (58 GB at the default size). The samples are the ones
mmdata yields (tests/stream/test_stream_peers.py checks the multisets are equal).

Shuffling: mmdata holds ``shuffle_buffer`` caption samples per rank; each peer holds
``shuffle_buffer / workers`` caption samples per dataloader worker (the same total), after
its own record-level shuffle (MDS: StreamingDataset(shuffle=True), its default py1e
algorithm over all records; webdataset: shard order, ``shardshuffle=True``).
"""

from __future__ import annotations

import json
import random
import time
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import IterableDataset

#: the per-image arrays a peer stores (region_tensors' fields) and their stored dtypes;
#: MDS has no bool ndarray, so the mask is stored as uint8 and viewed back as bool
FIELDS = {
    "features": "float16",
    "boxes": "float32",
    "classes": "int64",
    "attributes": "int64",
    "mask": "uint8",
}
IMAGES_PER_TAR = 1000  # as mmdata's shards


def image_records(catalog: str, corpus: str, boxes: int) -> Iterator[dict[str, Any]]:
    """The corpus's images in shard order, as the peers store them: ``captions`` (a list
    of [caption_id, text]) and each region field as a numpy array, decoded by mmdata's
    own hook so the tensors are the ones ShardStream yields."""
    import pyarrow.parquet as pq

    from mmdata.catalog.store import Catalog
    from mmdata.stream.decode import region_tensors

    hook = region_tensors(boxes, dtype=torch.float16)
    _, rows = Catalog(catalog).query(
        "SELECT path FROM shards WHERE corpus = ? AND kind = 'data' AND layer = 'base' "
        "ORDER BY shard_index",
        [corpus],
    )
    for (path,) in rows:
        parquet = pq.ParquetFile(path)
        for group in range(parquet.num_row_groups):
            table = parquet.read_row_group(group, columns=["captions", "regions"])
            regions = hook.arrow(table.column("regions"))
            for caps, tensors in zip(table.column("captions").to_pylist(), regions):
                record: dict[str, Any] = {
                    "captions": [[c["caption_id"], c["text"]] for c in caps or []]
                }
                for name, dtype in FIELDS.items():
                    record[name] = tensors[name].numpy().astype(dtype, copy=False)
                yield record


def folder_bytes(folder: Path) -> int:
    """Bytes of the files under ``folder``."""
    return sum(p.stat().st_size for p in folder.rglob("*") if p.is_file())


# ---- writers: each library's own ---------------------------------------------------------


def seconds_in_writer(
    write: Callable[[Any], object], close: Callable[[], object], items: Iterable
) -> float:
    """Seconds spent in ``write`` for each item and in ``close``: the writer's own time,
    not the time spent building the items."""
    spent = 0.0
    for item in items:
        started = time.perf_counter()
        write(item)
        spent += time.perf_counter() - started
    started = time.perf_counter()
    close()
    return spent + time.perf_counter() - started


def write_mds(folder: Path, records: Iterable[dict[str, Any]], boxes: int) -> float:
    """``records`` as MDS shards in ``folder`` (MDSWriter, no compression: the features
    are float16 noise). Static ``ndarray:dtype:shape`` columns, which MDS's docs name as
    the compact and fast encoding (no per-sample dtype or shape header). Returns the
    seconds spent in the writer."""
    from streaming import MDSWriter

    shapes = {"features": f"{boxes},2048", "boxes": f"{boxes},7"}
    columns = {"captions": "json"}
    for name, dtype in FIELDS.items():
        columns[name] = f"ndarray:{dtype}:{shapes.get(name, str(boxes))}"
    writer = MDSWriter(out=str(folder), columns=columns, compression=None, size_limit=1 << 26)
    return seconds_in_writer(writer.write, writer.finish, records)


def write_wds(folder: Path, records: Iterable[dict[str, Any]]) -> float:
    """``records`` as webdataset tars in ``folder`` (ShardWriter, 1,000 images a tar),
    arrays as raw little-endian bytes (``.f16``-style extensions, read back with
    np.frombuffer: no .npy header to parse). Returns the seconds spent in the writer."""
    import webdataset as wds

    folder.mkdir(parents=True, exist_ok=True)
    writer = wds.ShardWriter(
        str(folder / "shard-%06d.tar"), maxcount=IMAGES_PER_TAR, encoder=False, verbose=0
    )
    samples = (
        {
            "__key__": f"{index:08d}",
            "json": json.dumps(record["captions"]).encode(),
            **{f"{name}.bin": record[name].tobytes() for name in FIELDS},
        }
        for index, record in enumerate(records)
    )
    return seconds_in_writer(writer.write, writer.close, samples)


# ---- readers: the same caption samples ---------------------------------------------------


def region_dict(arrays: dict[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Stored arrays -> the tensors region_tensors gives (one copy out of the read-only
    record buffer, as mmdata copies into its tensors)."""
    out = {name: torch.from_numpy(np.array(arrays[name])) for name in FIELDS}
    out["mask"] = out["mask"].bool()
    return out


def captions_of(captions: list[list[str]], regions: dict[str, torch.Tensor]) -> Iterator[dict]:
    """One sample per caption, all sharing the image's tensors."""
    for caption_id, text in captions:
        yield {"caption_id": caption_id, "text": text, "regions": regions}


def shuffled(samples: Iterator[dict], size: int, rng: random.Random) -> Iterator[dict]:
    """A shuffle buffer of ``size`` samples (for MDS's caption samples; webdataset uses its
    own ``.shuffle``)."""
    if size <= 1:
        yield from samples
        return
    pool: list[dict] = []
    for sample in samples:
        if len(pool) < size:
            pool.append(sample)
            continue
        j = rng.randrange(size)
        yield pool[j]
        pool[j] = sample
    rng.shuffle(pool)
    yield from pool


class MDSCaptions(IterableDataset):
    """Caption samples from MDS shards: a StreamingDataset over image records (shuffled
    by MDS), expanded to captions and shuffled in a caption buffer of ``buffer``."""

    def __init__(self, folder: Path, buffer: int, batch_size: int, seed: int = 0) -> None:
        super().__init__()
        from streaming import StreamingDataset

        # batch_size is the records per device batch MDS partitions by (it asks for it)
        self.images = StreamingDataset(
            local=str(folder), shuffle=buffer > 0, batch_size=batch_size,
            shuffle_seed=seed + 9176,
        )  # fmt: skip
        self.buffer, self.seed = buffer, seed

    def __iter__(self) -> Iterator[dict]:
        from torch.utils.data import get_worker_info

        info = get_worker_info()
        rng = random.Random(f"{self.seed}/{info.id if info else 0}")

        def expand() -> Iterator[dict]:
            for record in self.images:
                arrays = {name: record[name] for name in FIELDS}
                yield from captions_of(record["captions"], region_dict(arrays))

        yield from shuffled(expand(), self.buffer, rng)


def _wds_decode(sample: dict[str, Any]) -> dict[str, Any]:
    arrays = {name: np.frombuffer(sample[f"{name}.bin"], FIELDS[name]) for name in FIELDS}
    boxes = len(arrays["mask"])
    arrays["features"] = arrays["features"].reshape(boxes, -1)
    arrays["boxes"] = arrays["boxes"].reshape(boxes, 7)
    return {"captions": json.loads(sample["json"]), "regions": region_dict(arrays)}


def _wds_expand(records: Iterator[dict]) -> Iterator[dict]:
    for record in records:
        yield from captions_of(record["captions"], record["regions"])


def wds_dataset(folder: Path, buffer: int) -> IterableDataset:
    """Caption samples from webdataset tars: shards split over workers (and shuffled),
    records decoded, expanded to captions, shuffled by ``.shuffle(buffer)``."""
    import webdataset as wds

    urls = sorted(str(p) for p in folder.glob("shard-*.tar"))
    pipeline = wds.WebDataset(urls, shardshuffle=True if buffer > 0 else None)
    return pipeline.map(_wds_decode).compose(_wds_expand).shuffle(buffer)


# ---- making the peer corpora (cached) ----------------------------------------------------


def make_peer(name: str, folder: Path, catalog: str, corpus: str, boxes: int) -> dict:
    """Write peer ``name`` ("mds" or "wds") into ``folder`` from the mmdata corpus unless
    a finished copy is there; returns {"write_s", "bytes"} (write_s: seconds in the
    writer, not reading the source)."""
    marker = folder / "done.json"
    source = Path(catalog).parent / "done.json"
    spec = json.loads(source.read_text())["spec"] if source.exists() else None
    if marker.exists():
        done = json.loads(marker.read_text())
        if done.get("spec") == spec:
            return done
    if folder.exists():
        for old in sorted(folder.rglob("*"), reverse=True):
            old.unlink() if old.is_file() else old.rmdir()
    records = image_records(catalog, corpus, boxes)
    if name == "mds":
        seconds = write_mds(folder, records, boxes)
    else:
        seconds = write_wds(folder, records)
    done = {"spec": spec, "write_s": seconds, "bytes": folder_bytes(folder)}
    marker.write_text(json.dumps(done))
    return done
