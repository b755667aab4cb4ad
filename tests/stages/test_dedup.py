"""url_dedup, exact_dedup, near_dedup: across batches, and refilled from committed shards."""

from __future__ import annotations

import hashlib
import io

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mmdata.demo.webserver import generated_jpeg
from mmdata.stages.dedup_index import HammingIndex
from mmdata.stages.exact_dedup import ExactDedup
from mmdata.stages.near_dedup import NearDedup, phash_hex
from mmdata.stages.url_dedup import UrlDedup, normalise_url
from tests.stages.helpers import work_batch


def reasons(table: pa.Table) -> list:
    return table.column("reason").to_pylist()


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def test_url_dedup_across_batches_and_normalised():
    stage = UrlDedup()
    first = stage.process(work_batch(url=["http://A.com/x.jpg", "http://a.com/y.jpg"]))
    second = stage.process(
        work_batch(url=["HTTP://a.COM/x.jpg#frag", "http://a.com/Y.jpg", "http://a.com/y.jpg"])
    )
    assert reasons(first) == [None, None]
    assert reasons(second) == ["duplicate_url", None, "duplicate_url"]
    assert "seen earlier" in second.column("_detail")[0].as_py()
    assert normalise_url(" HTTPS://Ex.ORG/P?q=1#top ") == "https://ex.org/P?q=1"


def test_url_dedup_within_one_batch_keeps_the_first():
    out = UrlDedup(normalise=False).process(work_batch(url=["u1", "u2", "u1", None]))
    assert reasons(out) == [None, None, "duplicate_url", None]


def test_exact_dedup_and_rows_without_a_sha256():
    stage = ExactDedup()
    out = stage.process(work_batch(sha256=[sha("a"), sha("b"), sha("a"), None]))
    assert reasons(out) == [None, None, "duplicate_image", "unknown_sha256"]
    out = stage.process(work_batch(sha256=[sha("b"), sha("c")]))
    assert reasons(out) == ["duplicate_image", None]


def test_resume_refills_the_index_from_committed_shards(tmp_path):
    shard = tmp_path / "shard-00000.parquet"
    pq.write_table(pa.table({"sha256": [sha("a"), sha("b")], "url": ["u1", "u2"]}), shard)
    exact, urls = ExactDedup(), UrlDedup()
    exact.resume([str(shard)])
    urls.resume([str(shard)])
    assert reasons(exact.process(work_batch(sha256=[sha("b"), sha("z")]))) == [
        "duplicate_image",
        None,
    ]
    assert reasons(urls.process(work_batch(url=["u1", "u9"]))) == ["duplicate_url", None]


def jpeg(data: bytes, quality: int, size: tuple[int, int] | None = None) -> bytes:
    image = Image.open(io.BytesIO(data))
    if size:
        image = image.resize(size)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=quality)
    return out.getvalue()


def test_near_dedup_catches_re_encodes_and_resizes_not_other_pictures():
    original = generated_jpeg(1)
    variants = [original, jpeg(original, 40), jpeg(original, 90, (160, 120)), generated_jpeg(2)]
    out = NearDedup(max_distance=6).process(work_batch(image_bytes=variants))
    assert reasons(out) == [None, "near_duplicate", "near_duplicate", None]
    hashes = out.column("phash").to_pylist()
    assert all(len(h) == 16 for h in hashes)
    assert "bits from" in out.column("_detail")[1].as_py()


def test_near_dedup_across_batches_uses_stored_phash_and_resume(tmp_path):
    original = generated_jpeg(3)
    shard = tmp_path / "shard-00000.parquet"
    pq.write_table(pa.table({"phash": [phash_hex(original)]}), shard)
    stage = NearDedup()
    stage.resume([str(shard)])
    out = stage.process(work_batch(image_bytes=[jpeg(original, 50), generated_jpeg(4)]))
    assert reasons(out) == ["near_duplicate", None]


def test_near_dedup_rejects_rows_it_cannot_hash():
    out = NearDedup().process(work_batch(image_bytes=[b"not an image", None]))
    assert reasons(out) == ["unhashable_image", "unhashable_image"]


@pytest.mark.parametrize("max_distance", [0, 3, 4, 10])
def test_hamming_index_finds_every_hash_in_range(max_distance):
    import random

    rng = random.Random(max_distance)
    index = HammingIndex(max_distance)
    stored = [rng.getrandbits(64) for _ in range(300)]
    for value in stored:
        index.add(value)
    for value in stored[:50]:
        flipped = value
        for bit in rng.sample(range(64), max_distance):
            flipped ^= 1 << bit
        match = index.nearest(flipped)
        assert match is not None and match[1] <= max_distance
        far = value
        for bit in rng.sample(range(64), 32):
            far ^= 1 << bit
        found = index.nearest(far)
        assert found is None or (found[0] ^ far).bit_count() <= max_distance


def test_near_dedup_checks_max_distance():
    with pytest.raises(ValueError, match="max_distance"):
        NearDedup(max_distance=40)
