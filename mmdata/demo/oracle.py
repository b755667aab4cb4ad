"""A corpus whose regions carry signal, for proving that a trainer learns on a CPU.

The demo's detector weights are random (none can be downloaded here), so its region
features say almost nothing about the shapes the captions describe. This corpus stands
in for a trained detector: the demo's generated shape scenes (the same generator and
captions), with one region per shape at its gold box, whose feature is an oracle code
of the shape's colour, kind and size plus noise, and soft labels that put most of the
mass on the shape's kind. It is written as shards and listed in the catalog as a recipe
run would be, and a re-run writes only the shards that are not listed yet.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from mmdata.catalog.store import Catalog
from mmdata.core.schema import IMAGE_SCHEMA, conform
from mmdata.demo import data as demo
from mmdata.engine.run import write_listed_corpus
from mmdata.models.regions.rows import region_row

CORPUS = "demo_oracle"
DIM = 64  # feature size
CLASSES = 8  # background, circle, square, triangle, and unused detector classes
NOISE = 0.3  # std of the noise added to each oracle code (codes have norm about 14)
PER_SHARD = 60


def _image(i: int, rng: random.Random, np_rng: np.random.Generator, basis: np.ndarray) -> dict:
    colours, kinds = list(demo.COLOURS), list(demo.SHAPES)
    shapes = demo._shapes(rng, 320, 240)
    boxes, feats, ids, probs = [], [], [], []
    for s in shapes:
        x, y, w, h = s.box_xywh
        boxes.append([x, y, x + w, y + h])
        code = (
            basis[colours.index(s.colour)]
            + basis[len(colours) + kinds.index(s.kind)]
            + basis[-2 if s.size == "small" else -1]
        )
        feats.append(code + NOISE * np_rng.standard_normal(DIM).astype(np.float32))
        ids.append(demo.SHAPES[s.kind])
        soft = np_rng.dirichlet(np.ones(CLASSES)) * 0.4
        soft[ids[-1]] += 0.6
        probs.append(soft)
    return {
        "image_id": f"{CORPUS}:{i}",
        "source": CORPUS,
        "width_px": 320,
        "height_px": 240,
        "status": "ok",
        "captions": [
            {"caption_id": f"{i}-{c}", "text": t, "scene_graph": None}
            for c, t in enumerate(demo._captions(rng, shapes))
        ],
        "regions": region_row(
            extractor_id="oracle@demo-shapes",
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


def build(catalog: str | Path, output: str | Path, images: int = 240, seed: int = 0) -> str:
    """Write corpus ``demo_oracle`` under ``output`` and list it in ``catalog``; returns
    the catalog's path. Images are made in order from ``seed``, so a re-run makes the
    same rows and writes only the shards the catalog does not list."""
    rng, np_rng = random.Random(seed), np.random.default_rng(seed)
    basis = np_rng.standard_normal((len(demo.COLOURS) + len(demo.SHAPES) + 2, DIM))
    basis = basis.astype(np.float32)
    rows = [_image(i, rng, np_rng, basis) for i in range(images)]
    cat = Catalog(catalog)
    spec: dict[str, Any] = {"corpus": CORPUS, "images": images, "seed": seed, "dim": DIM}
    write_listed_corpus(
        cat,
        CORPUS,
        str(output),
        spec,
        shards=-(-images // PER_SHARD),
        table_of=lambda i: conform(
            pa.Table.from_pylist(rows[i * PER_SHARD : (i + 1) * PER_SHARD], schema=IMAGE_SCHEMA)
        ),
    )
    return str(cat.path)
