"""mmdata.core.io's retries: transient errors are retried with backoff, permanent ones fail at
once, and errors that outlive the retries become one StorageError naming the file."""

from __future__ import annotations

import errno

import pytest

from mmdata.core import io
from mmdata.core.errors import MmdataError, StorageError


def _failing(errors: list[OSError]):
    calls = []

    def action() -> str:
        calls.append(1)
        if errors:
            raise errors.pop(0)
        return "done"

    return action, calls


@pytest.fixture(autouse=True)
def no_waiting(monkeypatch):
    monkeypatch.setattr(io, "RETRY_BASE_S", 0.0)


def test_a_transient_error_is_retried_until_it_passes():
    action, calls = _failing([OSError(errno.ECONNRESET, "reset"), OSError("AWS Error 503")])
    assert io.with_retries(action, "write s3://b/x") == "done"
    assert len(calls) == 3


@pytest.mark.parametrize("code", [errno.ENOSPC, errno.EDQUOT, errno.EROFS])
def test_a_full_or_read_only_filesystem_fails_at_once(code):
    action, calls = _failing([OSError(code, "no")] * io.RETRY_ATTEMPTS)
    with pytest.raises(OSError) as info:
        io.with_retries(action, "write /x")
    assert info.value.errno == code and len(calls) == 1


def test_an_error_that_outlives_the_retries_is_one_storage_error():
    action, calls = _failing([OSError(errno.ECONNREFUSED, "refused")] * io.RETRY_ATTEMPTS)
    with pytest.raises(StorageError) as info:
        io.with_retries(action, "write s3://b/x")
    assert len(calls) == io.RETRY_ATTEMPTS
    assert isinstance(info.value, MmdataError) and isinstance(info.value, OSError)
    assert info.value.errno == errno.ECONNREFUSED
    assert str(info.value).startswith("write s3://b/x failed after 4 attempts: ")


def test_a_failed_write_through_written_whole_leaves_no_partial_file(tmp_path):
    from mmdata.core.io import written_whole

    target = tmp_path / "out.tsv"
    with pytest.raises(RuntimeError), written_whole(target) as partial:
        partial.write_text("half")
        raise RuntimeError("the export failed")
    assert list(tmp_path.iterdir()) == []  # neither the file nor its .partial


def test_an_export_removes_what_a_killed_export_left(tmp_path):
    from mmdata.catalog.store import Catalog
    from mmdata.engine.sink import write_listed_shard
    from mmdata.exports.interop import export_webdataset
    from tests.test_catalog_scale import _table

    catalog = Catalog(tmp_path / "catalog.duckdb")
    run_id, _ = catalog.begin_run("c", "t", "h", str(tmp_path / "c"), "local")
    catalog.commit_shards("c", run_id, [write_listed_shard(str(tmp_path / "c"), 0, _table(0))])
    out = tmp_path / "wds"
    out.mkdir()
    (out / "c-00007.tar.partial").write_bytes(b"a killed export's half tar")
    assert export_webdataset(catalog.path, "c", out) == 3
    assert sorted(p.name for p in out.iterdir()) == ["c-00000.tar", "sizes.json"]
