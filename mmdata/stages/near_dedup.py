"""Drop images whose perceptual hash is within a few bits of one already in the corpus."""

from __future__ import annotations

import io
from collections.abc import Mapping

import imagehash
import pyarrow as pa
from PIL import Image

from mmdata.core.batch import WORK_SCHEMA, set_columns
from mmdata.core.registry import STAGES
from mmdata.stages.dedup_index import DedupFilter, HammingIndex

HASH_SIDE = 8  # 8x8 DCT bits: the 64-bit pHash everyone compares with


def phash_hex(data: bytes) -> str:
    """The 64-bit pHash (imagehash) of an encoded image, as 16 hex digits."""
    image = Image.open(io.BytesIO(data))
    # pHash looks at a 32x32 thumbnail: let JPEG decode at 1/8 scale instead of full size.
    image.draft("L", (HASH_SIDE * 8, HASH_SIDE * 8))
    return str(imagehash.phash(image, hash_size=HASH_SIDE))


@STAGES.register("near_dedup")
class NearDedup(DedupFilter):
    """Keep the first of every group of images within ``max_distance`` bits of pHash.

    Catches re-encodes, resizes and small edits of one picture that exact_dedup misses.
    Fills ``phash`` (from ``image_bytes``) where it is empty, so it can also be queried.
    """

    reads = ("image_bytes",)
    writes = ("phash",)
    key_column = "phash"
    reason = "near_duplicate"

    def __init__(self, *, max_distance: int = 4) -> None:
        """Args:
        max_distance: largest Hamming distance, in bits of 64, that counts as the same
            image (0 = identical hashes; 4 is strict, 10 starts merging similar scenes).
        """
        if not 0 <= max_distance <= 16:
            raise ValueError(f"max_distance must be in 0..16, got {max_distance}")
        super().__init__()
        self.index = HammingIndex(max_distance)

    def key(self, value: object) -> int | None:
        return int(value, 16) if isinstance(value, str) and value else None

    def remember(self, values: list) -> None:
        for key in map(self.key, values):
            if key is not None:
                self.index.add(key)

    def process(self, table: pa.Table) -> pa.Table:
        hashes, problems = [], []
        for stored, data in zip(
            table.column("phash").to_pylist(), table.column("image_bytes").to_pylist()
        ):
            value, problem = _hash(stored, data)
            hashes.append(value)
            problems.append(problem)
        table = set_columns(table, {"phash": pa.array(hashes, WORK_SCHEMA.field("phash").type)})
        self._problems = problems
        return super().process(table)

    def drop_masks(self, table: pa.Table) -> Mapping[str, tuple[pa.Array, pa.Array]]:
        problems = self._problems
        unhashable = (pa.array([p is not None for p in problems]), pa.array(problems, pa.string()))
        mask, details = [], []
        for value in table.column("phash").to_pylist():
            key = self.key(value)
            match = self.index.nearest(key) if key is not None else None
            if key is not None and match is None:
                self.index.add(key)
            mask.append(match is not None)
            details.append(_detail(value, match, self.index.max_distance) if match else None)
        return {
            "unhashable_image": unhashable,
            self.reason: (pa.array(mask), pa.array(details, pa.string())),
        }


def _hash(stored: str | None, data: bytes | None) -> tuple[str | None, str | None]:
    if stored:
        return stored, None
    if data is None:
        return None, "row has neither phash nor image_bytes"
    try:
        return phash_hex(data), None
    except (OSError, ValueError, SyntaxError) as exc:
        return None, f"cannot hash image: {type(exc).__name__}: {exc}"


def _detail(value: str, match: tuple[int, int], max_distance: int) -> str:
    other, distance = match
    return f"phash {value} is {distance} bits from {other:016x} (max_distance {max_distance})"
