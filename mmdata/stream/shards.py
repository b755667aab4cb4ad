"""The shard list of a corpus, resolved once from a read-only catalog connection."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from mmdata.catalog.store import Catalog
from mmdata.core.errors import MmdataError


class StreamError(MmdataError, RuntimeError):
    """A corpus cannot be streamed as asked; the message names the shard or the option."""


@dataclass(frozen=True)
class ShardInfo:
    """One base data shard and, aligned with it, the same shard of each asked layer."""

    corpus: str
    index: int
    path: str
    rows: int
    layers: tuple[tuple[str, str, int], ...] = ()  # (layer, path, rows)


def resolve_shards(catalog: str, corpus: str, layers: Sequence[str] = ()) -> list[ShardInfo]:
    """Data shards of ``corpus`` in index order, each with its layers' aligned shards."""
    cat = Catalog(catalog)
    _, found = cat.query("SELECT name FROM corpora WHERE name = ?", [corpus])
    if not found:
        _, names = cat.query("SELECT name FROM corpora ORDER BY name")
        listed = ", ".join(n for (n,) in names) or "none"
        raise StreamError(f"{catalog}: no corpus {corpus!r} (corpora: {listed})")
    _, rows = cat.query(
        "SELECT layer, shard_index, path, rows FROM shards "
        "WHERE corpus = ? AND kind = 'data' ORDER BY shard_index, layer",
        [corpus],
    )
    base = {i: (p, n) for layer, i, p, n in rows if layer == "base"}
    by_layer = {(layer, i): (p, n) for layer, i, p, n in rows if layer != "base"}
    shards = []
    for index in sorted(base):
        path, count = base[index]
        aligned = []
        for layer in layers:
            if (layer, index) not in by_layer:
                raise StreamError(
                    f"{catalog}: corpus {corpus!r} has no shard {index} in layer {layer!r}"
                )
            lpath, lrows = by_layer[(layer, index)]
            if lrows != count:
                raise StreamError(
                    f"{lpath}: layer {layer!r} shard {index} has {lrows} rows, base has {count}"
                )
            aligned.append((layer, lpath, lrows))
        shards.append(ShardInfo(corpus, index, path, count, tuple(aligned)))
    return shards
