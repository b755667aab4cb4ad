"""Every token of every caption (or text line) gets its voken: a layer.

As the original's ``vokenize_corpus_mp.py``: the vokenizer embeds each token in its
sentence, and the token's voken is the image of the voken set whose key has the highest
inner product with it (exact search; FAISS's flat index where installed gives the same
ids). Texts longer than the encoder takes are cut into near-equal segments
(mmdata.models.vokens.segments, the original's arithmetic), each encoded with its own
[CLS] and [SEP], and the results joined back. The voken set is the ``voken_keys`` layer
named by ``keys_layer`` in ``keys_catalog``: its rows with this vokenizer's keys, ordered
by (corpus, image_id); voken id ``i`` is its ``i``-th row (the ``voken_set`` view).

Each caption's tokens are the vokenizer's WordPiece pieces with their character spans in
the caption's text, so a trainer with another tokenizer can take them over by span
(mmdata.models.vokens.revokenize).
"""

from __future__ import annotations

from typing import Any, Literal

import pyarrow as pa

from mmdata.core.args import InputPath
from mmdata.core.registry import STAGES
from mmdata.core.stage import Resources, Stage

#: One caption's vokens (the layer field holds a list of them, one per caption).
CAPTION_VOKENS = pa.struct(
    [
        ("caption_id", pa.string()),
        ("vokenizer_id", pa.string()),
        ("keys_layer", pa.string()),  # the layer holding the voken set (voken_set.layer)
        ("tokens", pa.list_(pa.string())),
        ("starts", pa.list_(pa.int32())),
        ("ends", pa.list_(pa.int32())),
        ("voken_ids", pa.list_(pa.int32())),
        ("scores", pa.list_(pa.float32())),
        ("topk_ids", pa.list_(pa.list_(pa.int32()))),  # null unless topk > 1
    ]
)
#: Segments encoded per forward pass.
SEGMENTS_PER_PASS = 256


class VokenSetError(ValueError):
    """The voken set cannot be loaded (the message names the catalog and the layer)."""


def load_voken_set(catalog: str, layer: str, vokenizer_id: str) -> Any:
    """The voken set's keys [n, dim] float32, row ``i`` the key of voken id ``i``: the
    ``voken_set`` view numbers the images (one numbering, shared with every query), the
    keys come from layer ``layer``."""
    import numpy as np

    from mmdata.catalog.store import Catalog, CatalogError, layer_view

    sql = (
        f"SELECT k.voken_key.key FROM voken_set s JOIN {layer_view(layer)} k "
        "USING (corpus, image_id) WHERE s.layer = ? AND s.vokenizer_id = ? "
        "AND k.voken_key.vokenizer_id = s.vokenizer_id ORDER BY s.voken_id"
    )
    try:
        _, rows = Catalog(catalog).query(sql, [layer, vokenizer_id])
    except CatalogError as exc:
        raise VokenSetError(
            f"{catalog}: cannot read the voken keys of layer {layer!r}: {exc}"
        ) from None
    if not rows:
        raise VokenSetError(
            f"{catalog}: layer {layer!r} holds no keys of {vokenizer_id} (run a voken_keys "
            "layer with this vokenizer first)"
        )
    return np.asarray([key for (key,) in rows], dtype=np.float32)


@STAGES.register("vokenize")
class Vokenize(Stage):
    """Write ``vokens``: per caption, its tokens, their character spans, each token's
    voken id and score (and, with ``topk`` > 1, the ``topk`` best voken ids)."""

    reads = ("captions",)
    layer_fields = (pa.field("vokens", pa.list_(CAPTION_VOKENS)),)
    stateful = True
    default_resources = Resources(num_cpus=1.0, batch_size=256)

    def __init__(
        self,
        *,
        vokenizer: InputPath,
        keys_catalog: InputPath,
        keys_layer: str = "voken_keys",
        backend: Literal["exact", "faiss"] = "exact",
        topk: int = 1,
        upper_bound: int | None = None,
        device: str = "auto",
    ) -> None:
        """Args:
        vokenizer: a saved vokenizer folder (``mmdata train-vokenizer --out``).
        keys_catalog: the catalog holding the voken set's keys layer.
        keys_layer: that layer's name (a ``voken_keys`` layer run with this vokenizer).
        backend: exact (torch) or faiss (IndexFlatIP; ``pip install faiss-cpu``).
        topk: also keep the ``topk`` best voken ids per token (1: only the best).
        upper_bound: tokens per encoded segment (default: 128, or what the vokenizer's
            positions allow).
        device: auto (cuda when available), cpu, cuda or cuda:N.
        """
        if topk < 1:
            raise ValueError(f"topk must be >= 1, got {topk}")
        if upper_bound is not None and upper_bound < 1:
            raise ValueError(f"upper_bound must be >= 1, got {upper_bound}")
        self.vokenizer, self.keys_catalog = str(vokenizer), str(keys_catalog)
        self.keys_layer, self.backend, self.topk = keys_layer, backend, topk
        self.upper_bound, self.device = upper_bound, device
        self._model: Any = None

    def setup(self) -> None:
        """Load the vokenizer and index the voken set once per worker."""
        if self._model is not None:
            return
        from mmdata.core.devices import resolve_device
        from mmdata.models.vokenizer import load_vokenizer
        from mmdata.models.vokens import KeyIndex

        model, self._tokenizer, self._id = load_vokenizer(
            self.vokenizer, resolve_device(self.device)
        )
        keys = load_voken_set(self.keys_catalog, self.keys_layer, self._id)
        self._index = KeyIndex(keys, self.backend)
        limit = model.text.max_positions - 2  # [CLS] and [SEP]
        self._upper = min(self.upper_bound or 128, limit)
        self._model = model

    def process(self, table: pa.Table) -> pa.Table:
        self.setup()
        rows = table.column("captions").to_pylist()
        texts = [(r, c) for r, captions in enumerate(rows) for c in (captions or [])]
        encoded = self._tokenizer.encode_batch([c["text"] or "" for _, c in texts], 1 << 30)
        results = self.vokenize_pieces([ids for ids, _ in encoded])
        out: list[list[dict]] = [[] for _ in rows]
        for (row, caption), (ids, offsets), (best, scores, top) in zip(texts, encoded, results):
            out[row].append(
                {
                    "caption_id": caption["caption_id"],
                    "vokenizer_id": self._id,
                    "keys_layer": self.keys_layer,
                    "tokens": [self._tokenizer.id_to_token(i) or "" for i in ids],
                    "starts": [s for s, _ in offsets],
                    "ends": [e for _, e in offsets],
                    "voken_ids": best,
                    "scores": scores,
                    "topk_ids": top if self.topk > 1 else None,
                }
            )
        position = table.schema.get_field_index("vokens")
        column = pa.array(out, pa.list_(CAPTION_VOKENS))
        return table.set_column(position, "vokens", column)

    def vokenize_pieces(
        self, texts: list[list[int]]
    ) -> list[tuple[list[int], list[float], list[list[int]]]]:
        """Per text (WordPiece ids, no specials): each piece's voken id, score and top-k
        ids. Long texts go through ``segments`` and are joined back."""
        import numpy as np
        import torch

        from mmdata.models.vokens import segments

        pieces: list[tuple[int, int, int]] = []  # (text, start, stop) of each segment
        for t, ids in enumerate(texts):
            pieces += [(t, a, b) for a, b in segments(len(ids), self._upper)]
        device = next(self._model.parameters()).device
        vectors: list[np.ndarray] = [
            np.zeros((len(ids), self._index.dim), np.float32) for ids in texts
        ]
        tok = self._tokenizer
        for start in range(0, len(pieces), SEGMENTS_PER_PASS):
            chunk = pieces[start : start + SEGMENTS_PER_PASS]
            width = max(b - a for _, a, b in chunk) + 2
            batch = torch.full((len(chunk), width), tok.pad_id, dtype=torch.long)
            for j, (t, a, b) in enumerate(chunk):
                batch[j, : b - a + 2] = torch.tensor([tok.cls_id, *texts[t][a:b], tok.sep_id])
            with torch.inference_mode():
                out = self._model.encode_text(batch.to(device), (batch != tok.pad_id).to(device))
            out = out.float().cpu().numpy()
            for j, (t, a, b) in enumerate(chunk):
                vectors[t][a:b] = out[j, 1 : b - a + 1]  # drop [CLS]; [SEP] is past b - a
        flat = np.concatenate(vectors) if vectors else np.zeros((0, self._index.dim), np.float32)
        scores, ids = (
            self._index.search(flat, self.topk) if len(flat) else (flat[:, :0], flat[:, :0])
        )
        results, at = [], 0
        for text in texts:
            n = len(text)
            best = ids[at : at + n]
            results.append(
                (
                    best[:, 0].astype(int).tolist(),
                    scores[at : at + n, 0].astype(float).tolist(),
                    best.astype(int).tolist(),
                )
            )
            at += n
        return results
