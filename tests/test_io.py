"""mmdata.io's retries: transient errors are retried with backoff, permanent ones fail at
once, and errors that outlive the retries become one StorageError naming the file."""

from __future__ import annotations

import errno

import pytest

from mmdata import io
from mmdata.errors import MmdataError, StorageError


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
