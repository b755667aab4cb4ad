"""Commits finished shards to the catalog off the loop that receives executor output.

One commit per shard made the driver wait on DuckDB for every shard (issue 18). Here the
driver hands each finished shard to a thread that lists everything queued in one
transaction, at most one transaction per ``interval_s`` (the first at once) and at most
``MAX_COMMIT_SHARE`` of the time in transactions. Exactly-once
is unchanged: a shard is done when the catalog lists it, a crash loses only shards placed
but not yet listed, and the next run redoes those (their files are overwritten).
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable

from mmdata.catalog.store import Catalog
from mmdata.core import faults
from mmdata.core.shards import FinishedShard

#: At most one catalog transaction this often: short enough that a crash redoes little,
#: long enough that a run of small shards spends a few percent of its time committing.
COMMIT_INTERVAL_S = float(os.environ.get("MMDATA_COMMIT_INTERVAL_S", "0.5"))
#: ... and never more than this share of the time in transactions: after a transaction
#: of d seconds the next waits at least d / MAX_COMMIT_SHARE (a catalog on a slow disk
#: commits less often, in bigger batches, instead of holding the GIL and the disk).
MAX_COMMIT_SHARE = 0.03
#: ... but never wait longer than this: a crash redoes at most this much finished work.
MAX_GAP_S = 5.0
#: ... and at most this many shards in one (the crash tests set 1 or 2 to pin where a
#: kill between transactions falls).
COMMIT_MAX_SHARDS = int(os.environ.get("MMDATA_COMMIT_MAX_SHARDS", "10000"))


class ShardCommitter:
    """``submit`` finished shards; ``close`` lists what is left and returns the count.

    An error in a commit is raised by the next ``submit`` or by ``close``.
    """

    def __init__(
        self,
        catalog: Catalog,
        corpus: str,
        run_id: int,
        on_commit: Callable[[list[FinishedShard]], None] | None = None,
        interval_s: float = COMMIT_INTERVAL_S,
        max_shards: int = COMMIT_MAX_SHARDS,
        layer: str = "base",
    ) -> None:
        self.catalog, self.corpus, self.run_id = catalog, corpus, run_id
        self.layer = layer  # 'base', or the layer a layer run writes
        self.on_commit = on_commit
        self.interval_s = interval_s
        self.max_shards = max(1, max_shards)
        self.committed = 0
        self.commits = 0
        self.busy_s = 0.0  # time inside catalog transactions (on this thread)
        self._queue: list[FinishedShard] = []
        self._closing = False
        self._error: BaseException | None = None
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._loop, name="shard-committer", daemon=True)
        self._thread.start()

    def submit(self, shard: FinishedShard) -> None:
        with self._cond:
            self._raise_error()
            self._queue.append(shard)
            self._cond.notify()

    def close(self) -> int:
        """Commit everything submitted, stop the thread; raises a commit's error."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        self._thread.join()
        self._raise_error()
        return self.committed

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _loop(self) -> None:
        last, gap = -float("inf"), self.interval_s
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                # wait out the gap unless closing; shards queue up meanwhile
                while not self._closing and time.monotonic() - last < gap:
                    self._cond.wait(gap - (time.monotonic() - last))
                batch = self._queue[: self.max_shards]
                self._queue = self._queue[self.max_shards :]
                if not batch:
                    return  # closing and nothing left
            last = time.monotonic()
            try:
                faults.point("before_commit")
                self.catalog.commit_shards(self.corpus, self.run_id, batch, self.layer)
                faults.point("after_commit")
            except BaseException as exc:  # noqa: BLE001 - handed to the driver thread
                with self._cond:
                    self._error = exc
                    self._queue = []
                return
            finally:
                took = time.monotonic() - last
                self.busy_s += took
                gap = min(max(self.interval_s, took / MAX_COMMIT_SHARE), MAX_GAP_S)
            self.committed += len(batch)
            self.commits += 1
            if self.on_commit is not None:
                self.on_commit(batch)
