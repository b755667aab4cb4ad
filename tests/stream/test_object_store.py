"""Shards on an object store: a recipe writes to S3 (moto's server on 127.0.0.1) and
ShardStream reads them back through pyarrow's S3 filesystem; SQL sees them through the
catalog's connections; the store going away in the middle of a run fails it clearly, and
the next run completes; of two writers of one S3 output, one holds the run lease."""

from __future__ import annotations

import functools
import json
import subprocess
import sys
import textwrap
import threading
import time

import pyarrow.fs as pafs
import pytest

from mmdata.catalog.store import Catalog
from mmdata.commands.check import check
from mmdata.commands.cli import main
from mmdata.core import io
from mmdata.demo import data as demo
from mmdata.engine import recipe as recipes
from mmdata.engine import runlock
from mmdata.engine.run import run_recipe
from mmdata.stream import ShardStream
from tests.conftest import write_recipe

moto_server = pytest.importorskip("moto.server")


class S3Server:
    """moto's S3 server on 127.0.0.1, which can go away and come back on the same port
    (moto keeps the buckets in this process, so they survive a restart)."""

    def __init__(self) -> None:
        self.port = 0
        self.start()

    def start(self) -> None:
        self._server = moto_server.ThreadedMotoServer(
            ip_address="127.0.0.1", port=self.port, verbose=False
        )
        self._server.start()
        self.port = self._server.get_host_and_port()[1]

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def s3_server(monkeypatch):
    """A local S3 server holding a bucket named ``bucket``; pyarrow finds it by
    AWS_ENDPOINT_URL."""
    server = S3Server()
    host, port = "127.0.0.1", server.port
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
    yield server
    io._filesystem_for.cache_clear()
    server.stop()


@pytest.fixture
def s3_bucket(s3_server):
    return "s3://bucket"


def _spec(tmp_path, output: str) -> dict:
    data = demo.generate(tmp_path / "data", num_images=12)
    return {
        "name": "remote",
        "source": {"coco": {"captions": data["captions"], "images": data["images"]}},
        "stages": [{"read_images": {"keep_bytes": False}}],
        "output": output,
        "catalog": str(tmp_path / "catalog.duckdb"),
        "on_error": "record",
        "shard_rows": 5,
    }


def test_a_corpus_on_s3_is_written_listed_and_streamed(s3_bucket, tmp_path):
    spec = _spec(tmp_path, f"{s3_bucket}/corpus")
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

    # SQL over the S3 shards, beside the local corpus, through the catalog's connections
    catalog = Catalog(tmp_path / "catalog.duckdb")
    per_corpus = "SELECT corpus, count(*), count(DISTINCT image_id) FROM {} GROUP BY ALL ORDER BY 1"
    (local_n, remote_n) = catalog.query(per_corpus.format("images"))[1]
    assert local_n[0] == "local" and remote_n[0] == "remote"
    assert local_n[1:] == remote_n[1:] and remote_n[1] == remote_n[2] > 0
    captions = "SELECT image_id, caption_id, text FROM captions WHERE corpus = ? ORDER BY 1, 2"
    assert catalog.query(captions, ["remote"])[1] == catalog.query(captions, ["local"])[1]
    stats = "SELECT images FROM corpus_stats WHERE corpus = 'remote'"
    assert catalog.query(stats)[1] == [(remote_n[1],)]
    wanted = catalog.query("SELECT min(image_id) FROM images WHERE corpus = 'remote'")[1][0][0]
    source = catalog.images_holding([wanted], "remote")
    assert catalog.query(f"SELECT corpus, image_id FROM {source} WHERE image_id = ?", [wanted])[
        1
    ] == [("remote", wanted)]
    assert (
        main(
            [
                "sql",
                "SELECT count(*) AS n FROM captions WHERE corpus = 'remote'",
                "--catalog",
                str(tmp_path / "catalog.duckdb"),
            ]
        )
        == 0
    )


def _one_sdk_attempt(server: S3Server, monkeypatch) -> None:
    """The AWS SDK's own retries take 12 s per call against a closed port; with one SDK
    attempt per call the test sees mmdata's retries alone."""
    quick = pafs.S3FileSystem(
        endpoint_override=f"127.0.0.1:{server.port}",
        scheme="http",
        region="us-east-1",
        retry_strategy=pafs.AwsStandardS3RetryStrategy(max_attempts=1),
    )
    monkeypatch.setattr(io, "_filesystem_for", functools.lru_cache(lambda root: quick))


def test_the_store_going_away_mid_run_fails_clearly_and_the_next_run_completes(
    s3_server, tmp_path, monkeypatch, capsys
):
    path = write_recipe(tmp_path / "r.yaml", _spec(tmp_path, "s3://bucket/corpus"))
    write_bytes = io.write_bytes

    def store_goes_away(uri: str, data: bytes) -> None:
        if "/_staging/00001-" in uri:  # shard 0 is written and listed; then the store stops
            s3_server.stop()
        write_bytes(uri, data)

    monkeypatch.setattr(io, "RETRY_BASE_S", 0.05)
    monkeypatch.setattr(runlock, "LEASE_TTL_S", 1.0)
    _one_sdk_attempt(s3_server, monkeypatch)
    monkeypatch.setattr(io, "write_bytes", store_goes_away)
    assert main(["run", str(path), "--executor", "local", "-q"]) != 0
    err = capsys.readouterr().err.strip()
    # one line naming the object and the store's own error, after the retries ran out
    assert len(err.splitlines()) == 1, err
    assert "s3://bucket/corpus/_staging/00001-" in err and "failed after 4 attempts" in err
    catalog = Catalog(tmp_path / "catalog.duckdb")
    assert catalog.query("SELECT shard_index FROM shards WHERE kind = 'data'")[1] == [(0,)]
    assert catalog.query("SELECT status FROM runs")[1] == [("failed",)]

    s3_server.start()  # the store is back, on the same endpoint
    monkeypatch.setattr(io, "write_bytes", write_bytes)
    time.sleep(runlock.LEASE_TTL_S)  # the failed run could not delete its lease: it lapses
    assert main(["run", str(path), "--executor", "local", "-q"]) == 0
    assert "(2 written now, 1 already done)" in capsys.readouterr().out
    # (SQL over the rows themselves needs DuckDB's httpfs, which is offline here)
    shards = "SELECT shard_index, input_rows FROM shards WHERE kind = 'data' ORDER BY 1"
    assert catalog.query(shards)[1] == [(0, 5), (1, 5), (2, 2)]  # every input row once
    assert check(catalog).problems == []  # each object's size, sha256 and row count


def test_a_store_that_blinks_is_retried_and_the_run_completes(s3_server, tmp_path, monkeypatch):
    path = write_recipe(tmp_path / "r.yaml", _spec(tmp_path, "s3://bucket/corpus"))
    write_bytes = io.write_bytes
    blinked = []

    def store_blinks(uri: str, data: bytes) -> None:
        if "/_staging/00001-" in uri and not blinked:  # down for about 0.3 s, then back
            s3_server.stop()
            threading.Timer(0.3, s3_server.start).start()
            blinked.append(uri)
        write_bytes(uri, data)

    monkeypatch.setattr(io, "RETRY_BASE_S", 0.4)
    _one_sdk_attempt(s3_server, monkeypatch)
    monkeypatch.setattr(io, "write_bytes", store_blinks)
    assert main(["run", str(path), "--executor", "local", "-q"]) == 0
    assert blinked
    catalog = Catalog(tmp_path / "catalog.duckdb")
    assert catalog.query("SELECT status FROM runs")[1] == [("finished",)]
    assert check(catalog).problems == []


def _hold_lease(output: str, seconds: float) -> subprocess.Popen:
    """Another process that holds the run lease of ``output`` for ``seconds``."""
    script = textwrap.dedent(f"""
        import time
        from mmdata.engine.runlock import corpus_lock
        with corpus_lock({output!r}, "remote"):
            print("held", flush=True)
            time.sleep({seconds})
    """)
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    return proc


def test_two_writers_of_one_s3_output_one_holds_the_lease(s3_server, tmp_path, capsys):
    path = write_recipe(tmp_path / "r.yaml", _spec(tmp_path, "s3://bucket/corpus"))
    holder = _hold_lease("s3://bucket/corpus", 60)
    try:
        assert main(["run", str(path), "--executor", "local", "-q"]) != 0
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "is running a recipe into s3://bucket/corpus" in err
        assert f"pid {holder.pid}" in err
    finally:
        holder.kill()
        holder.wait()
    # the holder was killed without releasing: its lease lapses, then a run takes it over
    import boto3

    lease = json.loads(
        boto3.client("s3").get_object(Bucket="bucket", Key="corpus/.mmdata-run.lock")["Body"].read()
    )
    assert lease["expires"] > time.time()  # still held: a run now would be refused
    assert main(["run", str(path), "--executor", "local", "-q"]) != 0
    capsys.readouterr()
    boto3.client("s3").put_object(  # as if its TTL had passed
        Bucket="bucket",
        Key="corpus/.mmdata-run.lock",
        Body=json.dumps({"holder": lease["holder"], "expires": time.time() - 1}).encode(),
    )
    assert main(["run", str(path), "--executor", "local", "-q"]) == 0
    assert "(3 written now, 0 already done)" in capsys.readouterr().out
    objects = boto3.client("s3").list_objects_v2(Bucket="bucket", Prefix="corpus/.mmdata")
    assert objects.get("KeyCount", 0) == 0  # the run released its lease


def test_of_two_takers_of_a_lapsed_lease_exactly_one_wins(s3_server, monkeypatch):
    import boto3

    boto3.client("s3").put_object(
        Bucket="bucket",
        Key="c/.mmdata-run.lock",
        Body=json.dumps({"holder": "crashed", "expires": time.time() - 5}).encode(),
    )
    barrier = threading.Barrier(2)
    original = runlock._s3_client
    outcomes: list[str] = []

    def racing_client():  # both takers read the lapsed lease before either writes
        client = original()
        get = client.get_object

        def get_then_wait(**kwargs):
            got = get(**kwargs)
            barrier.wait(10)
            return got

        client.get_object = get_then_wait
        return client

    monkeypatch.setattr(runlock, "_s3_client", racing_client)
    held = threading.Event()

    def taker() -> None:
        try:
            with runlock.corpus_lock("s3://bucket/c", "c"):
                outcomes.append("held")
                held.wait(10)
        except runlock.CorpusBusyError:
            outcomes.append("busy")
            held.set()

    threads = [threading.Thread(target=taker) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert sorted(outcomes) == ["busy", "held"]
