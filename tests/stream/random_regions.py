"""A stage that tests load through a recipe's ``imports``: seeded random regions in place
of a detector's (a corpus with regions in well under a second on CPU)."""

from __future__ import annotations

import zlib

import numpy as np
import pyarrow as pa

from mmdata.core.batch import set_columns
from mmdata.core.registry import STAGES
from mmdata.core.schema import REGIONS
from mmdata.core.stage import Stage
from mmdata.models.regions.rows import region_row


@STAGES.register("test_random_regions")
class RandomRegions(Stage):
    """Every fifth image (by a hash of its id) gets no regions, every seventh zero boxes,
    the others 1-5 boxes with ``dim`` features and soft labels over ``classes`` classes."""

    reads = ("width_px", "height_px")
    writes = ("regions",)

    def __init__(self, *, dim: int = 16, classes: int = 5) -> None:
        self.dim, self.classes = dim, classes

    def process(self, table: pa.Table) -> pa.Table:
        rows = []
        for image_id, width, height in zip(
            table.column("image_id").to_pylist(),
            table.column("width_px").to_pylist(),
            table.column("height_px").to_pylist(),
        ):
            seed = zlib.crc32(image_id.encode())
            if seed % 5 == 0 or width is None or height is None:
                rows.append(None)
                continue
            rng = np.random.default_rng(seed)
            n = 0 if seed % 7 == 0 else int(rng.integers(1, 6))
            size = np.array([width, height])
            xy = rng.uniform(0, 0.5, (n, 2)) * size
            boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.5, (n, 2)) * size], axis=1)
            rows.append(
                region_row(
                    extractor_id="test-random",
                    width=width,
                    height=height,
                    boxes=boxes,
                    features=rng.standard_normal((n, self.dim)),
                    object_ids=rng.integers(1, self.classes, n),
                    object_conf=rng.uniform(0.2, 1.0, n),
                    object_names=[f"class{i}" for i in range(n)],
                    class_probs=rng.dirichlet(np.ones(self.classes), n),
                )
            )
        return set_columns(table, {"regions": pa.array(rows, REGIONS)})
