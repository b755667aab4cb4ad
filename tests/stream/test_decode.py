"""Decode hooks: the Arrow (row group) path gives exactly what the per-value path gives."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest
import torch

from mmdata.core.schema import REGIONS
from mmdata.models.regions.rows import region_row
from mmdata.stream.decode import region_tensors


def _row(rng: np.random.Generator, n: int, soft: bool, attributes: bool) -> dict:
    xy = rng.uniform(0, 100, (n, 2)).astype(np.float32)
    return region_row(
        extractor_id="test@1",
        width=200,
        height=150,
        boxes=np.concatenate([xy, xy + 20], 1),
        features=rng.standard_normal((n, 6)).astype(np.float16),
        object_ids=rng.integers(1, 1601, n),
        object_conf=rng.uniform(0, 1, n),
        object_names=["thing"] * n,
        attribute_ids=rng.integers(0, 400, n) if attributes else None,
        class_probs=rng.dirichlet(np.ones(5), n).astype(np.float32) if soft else None,
    )


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_arrow_path_equals_the_per_value_path(dtype):
    rng = np.random.default_rng(0)
    rows = [
        _row(rng, 3, soft=True, attributes=True),
        None,
        _row(rng, 7, soft=False, attributes=False),  # more boxes than max_boxes
        _row(rng, 0, soft=False, attributes=True),
        _row(rng, 4, soft=True, attributes=False),
    ]
    # sliced, as a row group read and cut to a sample range is
    column = pa.array([_row(rng, 2, True, True), *rows], type=REGIONS).slice(1)
    for soft in (False, True):
        hook = region_tensors(max_boxes=5, dtype=dtype, soft_labels=soft, tags=soft)
        by_arrow = hook.arrow(column)
        by_value = [hook(v) for v in column.to_pylist()]
        assert len(by_arrow) == len(rows)
        for got, want in zip(by_arrow, by_value):
            assert got.keys() == want.keys()
            for key in want:
                if key == "tags":
                    assert got[key] == want[key]
                    continue
                assert got[key].dtype == want[key].dtype, key
                assert torch.equal(got[key], want[key]), key
    first = region_tensors(max_boxes=5, dtype=dtype, soft_labels=True).arrow(column)
    assert first[0]["mask"].tolist() == [True] * 3 + [False] * 2
    assert first[0]["features"].dtype == dtype
    assert first[0]["class_probs"].shape == (5, 5)
    assert not first[1]["mask"].any()  # a row without regions: all padding
    assert first[2]["mask"].all()  # 7 boxes cut to the best 5
    stored = torch.from_numpy(np.frombuffer(rows[0]["features_f16"], "<f2").reshape(3, 6).copy())
    assert torch.equal(first[0]["features"][:3], stored.to(dtype))
