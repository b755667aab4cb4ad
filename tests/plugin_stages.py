"""Stages that tests load through a recipe's ``imports`` (as a user's plugin would)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pyarrow as pa

from mmdata.core.registry import STAGES
from mmdata.core.stage import Filter, Stage


@STAGES.register("test_needs_phash")
class NeedsPhash(Stage):
    """Reads a column that no built-in source provides."""

    reads = ("phash",)

    def process(self, table: pa.Table) -> pa.Table:
        return table


@STAGES.register("test_sleep")
class Sleep(Stage):
    """Sleeps per batch, so a crash test can kill a run in the middle."""

    def __init__(self, *, seconds: float = 0.1) -> None:
        self.seconds = seconds

    def process(self, table: pa.Table) -> pa.Table:
        time.sleep(self.seconds)
        return table


@STAGES.register("test_explode")
class Explode(Stage):
    """Raises on every batch: for the on_error policy."""

    def process(self, table: pa.Table) -> pa.Table:
        raise RuntimeError("boom")


@STAGES.register("test_blocklist")
class Blocklist(Filter):
    """Stateful: loads a list of image ids in setup() (so Ray runs it in an actor pool)."""

    stateful = True

    def __init__(self, *, ids_file: str) -> None:
        self.ids_file = ids_file
        self.ids: set[str] | None = None

    def setup(self) -> None:
        with open(self.ids_file) as handle:
            self.ids = {line.strip() for line in handle if line.strip()}

    def drop_masks(self, table: pa.Table) -> dict:
        assert self.ids is not None, "setup() was not called"
        return {
            "blocklisted": pa.array([i in self.ids for i in table.column("image_id").to_pylist()])
        }


@STAGES.register("test_note_items")
class NoteItems(Stage):
    """Records one dropped item (kind ``note``) per row and keeps the row: item rejects
    on rows that a later stage may reject (mmdata retry's stats)."""

    def process(self, table: pa.Table) -> pa.Table:
        from mmdata.core.batch import ITEM_REJECT, item_reject, set_columns

        notes = [
            (earlier or []) + [item_reject("note", f"{image_id}#note", "noted", "a test note")]
            for image_id, earlier in zip(
                table.column("image_id").to_pylist(), table.column("_item_rejects").to_pylist()
            )
        ]
        return set_columns(table, {"_item_rejects": pa.array(notes, pa.list_(ITEM_REJECT))})


@STAGES.register("test_where")
class Where(Stage):
    """Records where each batch ran (Ray node id, pid, image ids) in ``log_dir``, one JSON
    line when a batch begins and one when it ends, with an optional sleep between: the
    cluster test asks where a pinned stage ran, and kills a node in the middle of a batch.
    (A test stage may ask Ray where it is; mmdata's own stages never import Ray.)"""

    def __init__(self, *, log_dir: str, seconds: float = 0.0) -> None:
        self.log_dir, self.seconds = log_dir, seconds

    def process(self, table: pa.Table) -> pa.Table:
        record = {"node": _ray_node_id(), "pid": os.getpid(), "time": time.time()}
        record["ids"] = table.column("image_id").to_pylist()
        path = Path(self.log_dir) / f"where-{os.getpid()}.jsonl"
        path.parent.mkdir(parents=True, exist_ok=True)
        with path.open("a") as log:
            log.write(json.dumps({**record, "event": "begin"}) + "\n")
        time.sleep(self.seconds)
        with path.open("a") as log:
            log.write(json.dumps({**record, "event": "end", "time": time.time()}) + "\n")
        return table


def _ray_node_id() -> str | None:
    """The Ray node this process runs on; None outside Ray (the local executor)."""
    import ray

    return ray.get_runtime_context().get_node_id() if ray.is_initialized() else None


@STAGES.register("test_forgets_process")
class ForgetsProcess(Stage):
    """A plugin whose author forgot ``process``: refused when the recipe is checked."""

    def proces(self, table: pa.Table) -> pa.Table:  # the typo that loses the method
        return table


@STAGES.register("test_needs_missing_package")
class NeedsMissingPackage(Stage):
    """Declares an optional package that is not installed."""

    requires = {"mmdata_no_such_package": "pip install mmdata-no-such-package"}

    def process(self, table: pa.Table) -> pa.Table:
        return table


@STAGES.register("test_caption_chars")
class CaptionChars(Stage):
    """A layer stage: each row's caption lengths, in characters."""

    reads = ("captions",)
    layer_fields = (pa.field("caption_chars", pa.list_(pa.int32())),)

    def process(self, table: pa.Table) -> pa.Table:
        chars = [
            [len(c["text"]) for c in captions or []]
            for captions in table.column("captions").to_pylist()
        ]
        position = table.schema.get_field_index("caption_chars")
        return table.set_column(position, "caption_chars", pa.array(chars))  # int64: cast


@STAGES.register("test_chars_total")
class CharsTotal(Stage):
    """A layer stage reading an earlier stage's field: the total of ``caption_chars``;
    rows whose image id ends in ``error_suffix`` become error rows (they keep their place)."""

    reads = ("image_id", "caption_chars")
    layer_fields = (pa.field("chars_total", pa.int64()),)

    def __init__(self, *, error_suffix: str = "7") -> None:
        self.error_suffix = error_suffix

    def process(self, table: pa.Table) -> pa.Table:
        from mmdata.core.batch import mark
        from mmdata.core.schema import STATUS_ERROR

        totals = [sum(c or []) for c in table.column("caption_chars").to_pylist()]
        position = table.schema.get_field_index("chars_total")
        table = table.set_column(position, "chars_total", pa.array(totals, pa.int64()))
        bad = [i.endswith(self.error_suffix) for i in table.column("image_id").to_pylist()]
        return mark(
            table, pa.array(bad), STATUS_ERROR, "unlucky_id", pa.array(["ends in 7"] * len(bad))
        )
