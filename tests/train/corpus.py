"""A small corpus whose regions carry signal: the demo's generated shape scenes, with
gold-box features (each box's feature encodes its shape's colour, kind and size, plus
noise) and a detector's soft labels (most of the mass on the shape's kind), written as
shards and listed in a catalog, as a recipe run would."""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import numpy as np
import pyarrow as pa

from mmdata import demo
from mmdata.catalog import Catalog
from mmdata.regions.rows import region_row
from mmdata.schema import IMAGE_SCHEMA, conform
from mmdata.sink import FinishedShard, encode_parquet

DIM = 64
CLASSES = 8  # background, circle, square, triangle, and unused detector classes


def build(folder: Path, images: int = 240, seed: int = 0) -> Path:
    """The corpus ``shapes`` in ``folder``/catalog.duckdb."""
    rng = random.Random(seed)
    np_rng = np.random.default_rng(seed)
    colours, kinds = list(demo.COLOURS), list(demo.SHAPES)
    basis = np_rng.standard_normal((len(colours) + len(kinds) + 2, DIM)).astype(np.float32)
    rows = []
    for i in range(images):
        shapes = demo._shapes(rng, 320, 240)
        captions = demo._captions(rng, shapes)
        boxes, feats, ids, probs = [], [], [], []
        for s in shapes:
            x, y, w, h = s.box_xywh
            boxes.append([x, y, x + w, y + h])
            code = (
                basis[colours.index(s.colour)]
                + basis[len(colours) + kinds.index(s.kind)]
                + basis[-2 if s.size == "small" else -1]
            )
            feats.append(code + 0.3 * np_rng.standard_normal(DIM).astype(np.float32))
            ids.append(demo.SHAPES[s.kind])
            soft = np_rng.dirichlet(np.ones(CLASSES)) * 0.4
            soft[ids[-1]] += 0.6
            probs.append(soft)
        rows.append(
            {
                "image_id": f"shapes:{i}",
                "source": "shapes",
                "width_px": 320,
                "height_px": 240,
                "status": "ok",
                "captions": [
                    {"caption_id": f"{i}-{c}", "text": t, "scene_graph": None}
                    for c, t in enumerate(captions)
                ],
                "regions": region_row(
                    extractor_id="gold@shapes",
                    width=320,
                    height=240,
                    boxes=np.array(boxes, np.float32),
                    features=np.stack(feats),
                    object_ids=np.array(ids),
                    object_conf=np.ones(len(ids)),
                    object_names=[s.kind for s in shapes],
                    class_probs=np.stack(probs),
                    boxes_given=True,
                ),
            }
        )
    catalog = Catalog(folder / "catalog.duckdb")
    text = json.dumps({"images": images, "seed": seed})
    run_id, _ = catalog.begin_run(
        "shapes", text, hashlib.sha256(text.encode()).hexdigest(), str(folder / "corpus"), "test"
    )
    finished = []
    for index, first in enumerate(range(0, images, 60)):
        table = conform(pa.Table.from_pylist(rows[first : first + 60], schema=IMAGE_SCHEMA))
        path = folder / "corpus" / f"shard-{index:05d}.parquet"
        path.parent.mkdir(parents=True, exist_ok=True)
        data = encode_parquet(table, IMAGE_SCHEMA)
        path.write_bytes(data)
        file = {
            "kind": "data",
            "path": str(path),
            "rows": table.num_rows,
            "bytes": len(data),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        finished.append(FinishedShard(index, table.num_rows, [file], []))
    catalog.commit_shards("shapes", run_id, finished)
    catalog.end_run(run_id, "finished")
    return folder / "catalog.duckdb"
