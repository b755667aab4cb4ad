"""Base classes for the steps of a recipe: Source, Stage and Filter.

A stage turns an Arrow table into an Arrow table with the same rows and never imports
Ray; executors decide where it runs. A Filter only says which rows to drop and why; the
base class marks them, and the sink counts them by reason and keeps them as rejects.
Arguments are keyword-only parameters of ``__init__`` with type hints: that signature is
what recipes are checked against (see mmdata.core.args).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, ClassVar

import pyarrow as pa
import pyarrow.compute as pc

from mmdata.core.batch import mark
from mmdata.core.schema import STATUS_REJECTED

#: The column a stage's ``prepare`` fills for its ``process`` (see ``Stage.prepare``).
PREPARED = "_prepared"


class OnError(StrEnum):
    """A recipe's ``on_error``: stop at the first error row (naming it), or keep error
    rows as rejects with their reason."""

    RAISE = "raise"
    RECORD = "record"


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs, and how it is batched.

    Attributes:
        num_cpus: CPUs per task or actor.
        num_gpus: GPUs per task or actor; a stage with GPUs runs as an actor pool.
        batch_size: rows per ``process`` call; None means one whole partition.
        concurrency: size of the actor pool for stateful stages (None: autoscale).
        custom: Ray custom resources per task or actor (``{"nodeB": 1}``): the stage runs
            only on nodes started with them (``ray start --resources``). The local
            executor ignores them.
    """

    num_cpus: float = 1.0
    num_gpus: float = 0.0
    batch_size: int | None = None
    concurrency: int | None = None
    custom: Mapping[str, float] = field(default_factory=dict, hash=False)


@dataclass(frozen=True)
class Partition:
    """One unit of source work; its index is the index of the shard it becomes."""

    index: int
    spec: Mapping[str, Any] = field(default_factory=dict)


class Source(ABC):
    """Reads raw annotations or URL lists and yields rows in the image schema.

    Subclasses declare ``writes`` (the columns they fill), take their arguments as
    keyword-only ``__init__`` parameters, and implement ``partitions`` and ``read``.
    ``partitions`` must be deterministic: a re-run skips partitions whose shard the
    catalog lists, so the same index must always mean the same input rows.
    """

    name: ClassVar[str] = ""
    writes: ClassVar[tuple[str, ...]] = ()

    @abstractmethod
    def partitions(self, rows_per_partition: int) -> list[Partition]:
        """The work units, each at most ``rows_per_partition`` input rows."""

    @abstractmethod
    def read(self, partition: Partition) -> pa.Table:
        """The rows of ``partition``. Bad records become rows with status and reason."""


class Stage(ABC):
    """Turns a table into a table with the same rows, in the same order.

    ``process`` sees only rows whose status is ok. To reject a row because of bad data,
    mark it with ``mmdata.core.batch.mark(..., STATUS_ERROR, reason, detail)``; the executor
    raises or records according to the recipe's ``on_error``. A subclass that lacks
    ``process`` cannot be built, so ``mmdata validate`` names it.
    """

    name: ClassVar[str] = ""
    reads: ClassVar[tuple[str, ...]] = ()
    writes: ClassVar[tuple[str, ...]] = ()
    #: True when setup() loads something expensive: the Ray executor then keeps the
    #: stage alive in an actor pool instead of re-creating it per task.
    stateful: ClassVar[bool] = False
    #: True when the stage must see every row of the run in one worker (dedup across
    #: the whole run): the Ray executor runs it as a single actor, and ``resume`` tells
    #: it what earlier runs of the corpus already committed.
    run_wide: ClassVar[bool] = False
    default_resources: ClassVar[Resources] = Resources()
    #: Optional packages the stage imports when it runs, as ``{module: how to install}``:
    #: a recipe naming the stage is refused at validation when one is missing, not in a
    #: worker at ``setup()``.
    requires: ClassVar[Mapping[str, str]] = {}
    #: The columns the stage adds to a *layer* (a recipe with ``layer_of:``), with their
    #: Arrow types: ``(pa.field("caption_chars", pa.list_(pa.int32())),)``. ``process``
    #: fills them (they arrive as nulls); the layer's files store them next to
    #: ``image_id``. A stage that declares some runs only in layer recipes.
    layer_fields: ClassVar[tuple[pa.Field, ...]] = ()

    def setup(self) -> None:  # noqa: B027 - an optional hook, empty by default
        """Load models or open files; called once per worker before ``process``."""

    def resume(self, done_shards: list[str]) -> None:  # noqa: B027 - optional hook
        """Called after ``setup`` with the corpus's committed data shards (oldest first).

        A run-wide stage loads its state from them, so a re-run after a crash treats
        rows committed before the crash as already seen.
        """

    def prepare(self, table: pa.Table) -> pa.Table:
        """CPU work that needs no model (decoding, resizing), done before ``process``.

        A stage that overrides it returns the rows with a binary ``PREPARED`` column for
        its ``process`` to read. The Ray executor runs ``prepare`` as plain CPU tasks ahead
        of the stage's actors, so a GPU actor only runs the model; it is called on a
        stage built without ``setup()``. ``PREPARED`` is dropped after ``process``.
        """
        return table

    @abstractmethod
    def process(self, table: pa.Table) -> pa.Table:
        """Transform ``table``; must return the same rows in the same order."""


class Filter(Stage):
    """A stage that only drops rows. Implement ``drop_masks``."""

    @abstractmethod
    def drop_masks(self, table: pa.Table) -> Mapping[str, pa.Array | tuple[pa.Array, pa.Array]]:
        """Map each reason to a boolean mask of rows to drop for it.

        A value may also be ``(mask, detail)`` with one detail string per row. When a
        row matches several reasons, the first one listed is recorded.
        """

    def process(self, table: pa.Table) -> pa.Table:
        for reason, value in self.drop_masks(table).items():
            mask, detail = value if isinstance(value, tuple) else (value, None)
            table = mark(table, mask, STATUS_REJECTED, reason, detail)
        return table


def format_detail(template: str, **columns: pa.Array) -> pa.Array:
    """Per-row detail strings: ``template`` with ``{name}`` filled from ``columns``."""
    parts = []
    rest = template
    for name, column in columns.items():
        before, _, rest = rest.partition("{" + name + "}")
        parts.extend([before, pc.cast(column, pa.string())])
    parts.append(rest)
    return pc.binary_join_element_wise(*parts, "")
