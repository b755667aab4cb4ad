"""Shards on an object store: a recipe writes to S3 (moto's server on 127.0.0.1) and
ShardStream reads them back through pyarrow's S3 filesystem."""

from __future__ import annotations

import pytest

from mmdata import demo, io
from mmdata import recipe as recipes
from mmdata.catalog import Catalog
from mmdata.run import run_recipe
from mmdata.stream import ShardStream
from tests.conftest import write_recipe

moto_server = pytest.importorskip("moto.server")


@pytest.fixture
def s3_bucket(monkeypatch):
    """A bucket named ``bucket`` on a local S3 server; pyarrow finds it by AWS_ENDPOINT_URL."""
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    for key, value in {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(key, value)
    import boto3

    boto3.client("s3", endpoint_url=endpoint).create_bucket(Bucket="bucket")
    io._filesystem_for.cache_clear()  # a filesystem made for another endpoint must not serve
    yield "s3://bucket"
    io._filesystem_for.cache_clear()
    server.stop()


def test_a_corpus_on_s3_is_written_listed_and_streamed(s3_bucket, tmp_path):
    data = demo.generate(tmp_path / "data", num_images=12)
    spec = {
        "name": "remote",
        "source": {"coco": {"captions": data["captions"], "images": data["images"]}},
        "stages": [{"read_images": {"keep_bytes": False}}],
        "output": f"{s3_bucket}/corpus",
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 5,
    }
    result = run_recipe(
        recipes.load(write_recipe(tmp_path / "r.yaml", spec)), "local", progress=False
    )
    assert result.shards_written == 3
    _, rows = Catalog(tmp_path / "catalog.duckdb").query(
        "SELECT path, rows FROM shards WHERE corpus = 'remote' AND kind = 'data'"
    )
    assert [p for p, _ in rows] and all(p.startswith("s3://bucket/corpus/") for p, _ in rows)
    ds = ShardStream(
        str(tmp_path / "catalog.duckdb"), "remote", columns=["caption_id"], unit="caption"
    )
    got = [s["caption_id"] for s in ds]
    local = tmp_path / "local.yaml"
    spec.update(name="local", output=str(tmp_path / "local"))
    run_recipe(recipes.load(write_recipe(local, spec)), "local", progress=False)
    want = ShardStream(
        str(tmp_path / "catalog.duckdb"), "local", columns=["caption_id"], unit="caption"
    )
    assert sorted(got) == sorted(s["caption_id"] for s in want) and len(got) == len(set(got))
