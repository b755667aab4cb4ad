"""A vokens layer in the files the original Vokenization trainer reads (``vlm/``).

What the original (github.com/airsplay/vokenization) writes and reads, from its code:

- ``tokenization/tokenize_dataset.py`` tokenizes a text file ``<fname>`` with tokenizer
  ``<tok>`` (``AutoTokenizer.from_pretrained(<tok>)``, no special tokens), drops lines
  that tokenize to nothing, and writes ``<fname>.<tok>.line``: a text file of token
  offsets, one per line, each line's first token in the concatenated stream, then one
  more, the total (so N lines give N + 1 numbers). With ``--lines-are-sents`` the same
  file is called ``<fname>.<tok>.sent``.
- ``tokenization/to_hdf5.py`` writes ``<fname>.<tok>.hdf5``, dataset ``tokens``: int32,
  shape ``(num_tokens,)``, every token id of the file concatenated (resizable,
  ``maxshape=(None,)``).
- ``vokenization/vokenize_corpus_mp.py`` vokenizes each sentence of ``<fname>.<tok>.sent``
  (its ``[CLS]``/``[SEP]`` outputs dropped) and writes, in ``--output``,
  ``<fname>.<suffix>.hdf5``, dataset ``vokens``: int32, shape ``(num_tokens,)``, one voken
  id per token of ``tokens``; and ``<fname>.<suffix>.ids``: one line per voken id, the
  image ``<image set>/<image id>`` (``Vokenizer.dump_img_ids``). Its ``<suffix>`` is the
  image sets joined by ``_``, with ``.<count>`` unless there are 50000 images.
- ``vlm/data.py`` ``CoLDataset(file_path, tokenizer_name, ..., voken_dir, suffix)`` opens
  ``file_path + "." + tokenizer_name + ".hdf5"`` (``tokens``), and
  ``<voken_dir>/<basename(file_path)>.<suffix>.hdf5`` (``vokens``, asserting
  ``len(vokens) == len(tokens)``) and ``.ids`` (its line count is the voken classifier's
  size). It cuts ``tokens`` into fixed blocks of ``block_size``; the line file is not
  read by the trainer (the vokenizer reads it to find sentences). A ``voken_dir`` whose
  path contains ``sent`` switches on its sentence-level handling, which changes only
  negative vokens (none here).
- ``vlm/run_vlm_distributed.py`` loads the tokenizer with
  ``BertTokenizer.from_pretrained(--tokenizer_name)`` and asserts that the model config's
  ``vocab_size`` equals the tokenizer's size.

``export_vokenization`` writes, in ``out``, for corpus ``<corpus>`` and the vokenizer
``vokenizer@<hex>`` (tokenizer name ``<tok>`` = ``vokenizer-<hex>``) whose keys layer is
``<keys>``:

- ``<corpus>.<tok>.hdf5``: ``tokens``, int32: the ids (the vokenizer's vocab.txt line
  numbers) of the layer's WordPiece tokens, in the corpus's order (shards by index, rows
  in order, captions in order);
- ``<corpus>.<tok>.line``: the offsets of each caption that has tokens, then the total;
  captions without tokens are dropped, as the original drops empty lines;
- ``<corpus>.<keys>.hdf5``: ``vokens``, int32, aligned 1:1 with ``tokens``;
- ``<corpus>.<keys>.ids``: ``corpus/image_id`` per voken id, in voken id order (the
  ``voken_set`` of the keys layer and the vokenizer);
- ``<tok>/vocab.txt`` and ``<tok>/tokenizer_config.json``: the vokenizer's vocabulary as
  a folder ``BertTokenizer.from_pretrained`` loads, so ``--tokenizer_name <tok>`` run from
  ``out`` names both the files and the tokenizer.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from mmdata.catalog.store import Catalog
from mmdata.core.io import PARTIAL_SUFFIX, remove_partials, resolve, written_whole
from mmdata.core.progress import Progress
from mmdata.exports.regions import ExportError
from mmdata.stream.shards import StreamError, resolve_shards

#: Tokens gathered before they are appended to the hdf5 datasets.
_FLUSH = 1 << 16


def _h5py() -> Any:
    try:
        import h5py
    except ImportError:
        raise ExportError(
            "--format vokenization-hdf5 needs h5py: pip install h5py (or mmdata[vokens])"
        ) from None
    return h5py


def _read_vocab(path: Path) -> dict[str, int]:
    """vocab.txt as token -> id, by the rule the WordPiece tokenizer uses (the line number
    is the id, trailing whitespace dropped, a later duplicate wins)."""
    from mmdata.models.wordpiece import _read_vocab as read

    return read(path)


def names(corpus: str, vokenizer_id: str, keys_layer: str) -> dict[str, str]:
    """The exported file names: ``tok`` (tokenizer name), ``tokens``, ``line``,
    ``vokens``, ``ids``."""
    tok = vokenizer_id.replace("@", "-")
    return {
        "tok": tok,
        "tokens": f"{corpus}.{tok}.hdf5",
        "line": f"{corpus}.{tok}.line",
        "vokens": f"{corpus}.{keys_layer}.hdf5",
        "ids": f"{corpus}.{keys_layer}.ids",
    }


def _check_layer(catalog: str, corpus: str, layer: str) -> None:
    cat = Catalog(catalog)
    _, found = cat.query("SELECT layer FROM layers WHERE corpus = ? ORDER BY layer", [corpus])
    listed = [name for (name,) in found]
    if layer not in listed:
        raise ExportError(
            f"{catalog}: corpus {corpus!r} has no layer {layer!r} "
            f"(layers: {', '.join(listed) or 'none'})"
        )


def _append(dataset: Any, values: list[int]) -> None:
    if values:
        at = dataset.shape[0]
        dataset.resize((at + len(values),))
        dataset[at:] = np.asarray(values, dtype=np.int32)


def export_vokenization(
    catalog: str,
    corpus: str,
    layer: str,
    vokenizer: str | Path,
    out: str | Path,
    progress: bool | str = False,
) -> int:
    """Write ``corpus``'s vokens layer ``layer`` in the original trainer's files (see the
    module docstring) in folder ``out``; returns the number of tokens."""
    h5py = _h5py()
    from mmdata.models.vokenizer import VokenizerError, load_vokenizer

    try:
        model, tokenizer, ident = load_vokenizer(vokenizer)
    except VokenizerError as exc:
        raise ExportError(str(exc)) from None
    vocab_file = tokenizer.path
    vocab = _read_vocab(vocab_file)
    _check_layer(catalog, corpus, layer)
    try:
        shards = resolve_shards(catalog, corpus, [layer])
    except StreamError as exc:
        raise ExportError(str(exc)) from None
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    remove_partials(out)
    tok = names(corpus, ident, "")["tok"]
    # The vokens file's name needs the keys layer, known only from the data: write under
    # partial names (remove_partials clears what a killed export left), rename at the end.
    tmp_tokens, tmp_line, tmp_vokens = (
        out / f"{corpus}.{kind}{PARTIAL_SUFFIX}" for kind in ("tokens", "line", "vokens")
    )
    keys_layer: str | None = None
    total, top = 0, -1
    try:
        with (
            h5py.File(tmp_tokens, "w") as tfile,
            h5py.File(tmp_vokens, "w") as vfile,
            open(tmp_line, "w", encoding="utf-8") as lines,
            Progress(len(shards), "shard", progress, desc="vokenization-hdf5") as bar,
        ):
            tokens = tfile.create_dataset(
                "tokens", (0,), maxshape=(None,), dtype="int32", chunks=(_FLUSH,)
            )
            vokens = vfile.create_dataset(
                "vokens", (0,), maxshape=(None,), dtype="int32", chunks=(_FLUSH,)
            )
            ids: list[int] = []
            vids: list[int] = []
            for shard in shards:
                ((_, path, _),) = shard.layers
                fs, local = resolve(path)
                try:
                    parquet = pq.ParquetFile(local, filesystem=fs)
                except (OSError, ValueError) as exc:
                    raise ExportError(f"{path}: cannot read layer shard: {exc}") from None
                if "vokens" not in parquet.schema_arrow.names:
                    raise ExportError(f"layer {layer!r} holds no vokens ({path})")
                rows = 0
                with parquet:
                    for batch in parquet.iter_batches(batch_size=256, columns=["vokens"]):
                        rows += batch.num_rows
                        for captions in batch.column(0).to_pylist():
                            for caption in captions or ():
                                if caption["vokenizer_id"] != ident:
                                    raise ExportError(
                                        f"layer {layer!r} caption {caption['caption_id']!r} "
                                        f"was vokenized by {caption['vokenizer_id']}, the "
                                        f"vokenizer {vokenizer} is {ident}"
                                    )
                                if keys_layer is None:
                                    keys_layer = caption["keys_layer"]
                                elif caption["keys_layer"] != keys_layer:
                                    raise ExportError(
                                        f"layer {layer!r} mixes keys layers {keys_layer!r} "
                                        f"and {caption['keys_layer']!r}"
                                    )
                                words = caption["tokens"] or []
                                if not words:
                                    continue  # the original drops lines without tokens
                                lines.write(f"{total}\n")
                                for word in words:
                                    if word not in vocab:
                                        raise ExportError(
                                            f"layer {layer!r} caption "
                                            f"{caption['caption_id']!r}: token {word!r} is not "
                                            f"in {vocab_file}"
                                        )
                                    ids.append(vocab[word])
                                if len(caption["voken_ids"] or ()) != len(words):
                                    raise ExportError(
                                        f"layer {layer!r} caption {caption['caption_id']!r}: "
                                        f"{len(words)} tokens but "
                                        f"{len(caption['voken_ids'] or ())} voken ids"
                                    )
                                vids += caption["voken_ids"]
                                total += len(words)
                                top = max(top, max(caption["voken_ids"]))
                        if len(ids) >= _FLUSH:
                            _append(tokens, ids)
                            _append(vokens, vids)
                            ids, vids = [], []
                bar.update(1, rows=rows)
            _append(tokens, ids)
            _append(vokens, vids)
            lines.write(f"{total}\n")
        if keys_layer is None:
            raise ExportError(f"layer {layer!r} of corpus {corpus!r} holds no vokens")
        _, found = Catalog(catalog).query(
            "SELECT corpus, image_id FROM voken_set WHERE layer = ? AND vokenizer_id = ? "
            "ORDER BY voken_id",
            [keys_layer, ident],
        )
        if top >= len(found):
            raise ExportError(
                f"layer {layer!r} uses voken id {top}, but the voken set of keys layer "
                f"{keys_layer!r} and {ident} has {len(found)} images"
            )
        named = names(corpus, ident, keys_layer)
        with written_whole(out / named["ids"]) as partial:
            partial.write_text("".join(f"{c}/{i}\n" for c, i in found), encoding="utf-8")
        folder = out / tok
        folder.mkdir(exist_ok=True)
        remove_partials(folder)
        with written_whole(folder / "vocab.txt") as partial:
            partial.write_bytes(vocab_file.read_bytes())
        config = {"do_lower_case": model.config.lowercase, "mmdata_vokenizer_id": ident}
        with written_whole(folder / "tokenizer_config.json") as partial:
            partial.write_text(json.dumps(config, indent=1) + "\n", encoding="utf-8")
        tmp_tokens.replace(out / named["tokens"])
        tmp_line.replace(out / named["line"])
        tmp_vokens.replace(out / named["vokens"])
    finally:
        for tmp in (tmp_tokens, tmp_line, tmp_vokens):
            tmp.unlink(missing_ok=True)
    return total
