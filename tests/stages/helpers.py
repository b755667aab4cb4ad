"""Build working batches the way executors hand them to stages."""

from __future__ import annotations

import pyarrow as pa

from mmdata.core.batch import to_work
from mmdata.core.schema import CAPTION


def work_batch(**columns: list) -> pa.Table:
    n = len(next(iter(columns.values())))
    columns.setdefault("image_id", [f"t:{i}" for i in range(n)])
    if "captions" in columns:
        columns["captions"] = pa.array(columns["captions"], pa.list_(CAPTION))
    return to_work(pa.table(columns), shard=0)


def caption(cid: str, text: str) -> dict:
    return {"caption_id": cid, "text": text, "scene_graph": None}
