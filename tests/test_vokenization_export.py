"""``mmdata export --format vokenization-hdf5``: a vokens layer in the files the original
Vokenization trainer (vlm/data.py's CoLDataset) reads, checked against the catalog's views
and against that reader's semantics, restated here (the original is not imported)."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from mmdata.catalog.store import Catalog
from mmdata.commands.cli import main
from mmdata.demo import oracle as demo_oracle
from mmdata.exports.regions import ExportError
from mmdata.exports.vokenization import export_vokenization, names
from tests.test_vokenize import vokenized  # noqa: F401  (the module-scoped fixture)

h5py = pytest.importorskip("h5py")

CORPUS = demo_oracle.CORPUS


@pytest.fixture(scope="module")
def exported(vokenized, tmp_path_factory) -> dict:  # noqa: F811
    out = tmp_path_factory.mktemp("vokenization-hdf5")
    vokenizer = vokenized["root"] / "vokenizer"
    count = export_vokenization(str(vokenized["catalog"]), CORPUS, "vokens", vokenizer, out)
    return {**vokenized, "out": out, "count": count, "vokenizer": vokenizer}


def _vocab(vokenizer: Path) -> dict[str, int]:
    lines = (vokenizer / "vocab.txt").read_text(encoding="utf-8").splitlines()
    return {line.rstrip(): i for i, line in enumerate(lines)}


def _captions_in_order(catalog: Path) -> list[tuple[str, str, list[str], list[int]]]:
    """(image_id, caption_id, tokens, voken ids) per caption with tokens: the order from
    the base shards (by index, rows, captions), the contents from the ``vokens`` view."""
    cat = Catalog(catalog)
    _, paths = cat.query(
        "SELECT path FROM shards WHERE corpus = ? AND layer = 'base' AND kind = 'data' "
        "ORDER BY shard_index",
        [CORPUS],
    )
    _, rows = cat.query(
        "SELECT image_id, caption_id, list(token ORDER BY token_index), "
        "list(voken_id ORDER BY token_index) FROM vokens WHERE layer = 'vokens' GROUP BY ALL"
    )
    by_caption = {(i, c): (t, v) for i, c, t, v in rows}
    ordered = []
    for (path,) in paths:
        table = pq.read_table(path, columns=["image_id", "captions"]).to_pylist()
        for row in table:
            for caption in row["captions"] or ():
                key = (row["image_id"], caption["caption_id"])
                if key in by_caption:
                    ordered.append((*key, *by_caption[key]))
    assert len(ordered) == len(by_caption)
    return ordered


def test_tokens_vokens_lines_and_ids_match_the_views(exported):
    catalog, out = exported["catalog"], exported["out"]
    _, ((keys_layer, ident),) = Catalog(catalog).query(
        "SELECT DISTINCT keys_layer, vokenizer_id FROM vokens WHERE layer = 'vokens'"
    )
    assert ident == exported["id"]
    named = names(CORPUS, ident, keys_layer)
    assert named["tok"] == ident.replace("@", "-")
    with h5py.File(out / named["tokens"], "r") as f, h5py.File(out / named["vokens"], "r") as g:
        tokens, vokens = f["tokens"], g["vokens"]
        assert tokens.dtype == "int32" and vokens.dtype == "int32"
        tokens, vokens = tokens[:].tolist(), vokens[:].tolist()
    view_rows = Catalog(catalog).query("SELECT count(*) FROM vokens WHERE layer = 'vokens'")[1]
    assert len(tokens) == len(vokens) == view_rows[0][0] == exported["count"]

    captions = _captions_in_order(catalog)
    vocab = _vocab(exported["vokenizer"])
    assert tokens == [vocab[t] for _, _, words, _ in captions for t in words]
    assert vokens == [v for _, _, _, ids in captions for v in ids]
    offsets = [int(x) for x in (out / named["line"]).read_text().splitlines()]
    assert len(offsets) == len(captions) + 1 and offsets[0] == 0
    assert [b - a for a, b in zip(offsets, offsets[1:])] == [len(w) for _, _, w, _ in captions]

    _, voken_set = Catalog(catalog).query(
        "SELECT corpus || '/' || image_id FROM voken_set WHERE layer = ? AND vokenizer_id = ? "
        "ORDER BY voken_id",
        [keys_layer, ident],
    )
    assert (out / named["ids"]).read_text().splitlines() == [n for (n,) in voken_set]
    assert (out / named["tok"] / "vocab.txt").read_bytes() == (
        exported["vokenizer"] / "vocab.txt"
    ).read_bytes()
    config = json.loads((out / named["tok"] / "tokenizer_config.json").read_text())
    assert config["mmdata_vokenizer_id"] == ident
    assert not list(out.glob("*.partial"))


def test_the_original_readers_semantics_hold(exported):
    """CoLDataset and vokenize_corpus_mp.py, restated: the token file is
    ``<file_path>.<tokenizer_name>.hdf5``; the vokens are
    ``<voken_dir>/<basename(file_path)>.<suffix>.hdf5`` with as many entries as tokens; the
    voken classes are the ``.ids`` lines, stripped, each ``<set>/<id>`` (get_voken_feats
    splits on the one slash); the line file is read as ``int`` per line, line ``i`` being
    ``tokens[starts[i]:starts[i + 1]]``, its last number the token count; the blocks are
    ``tokens[s:s + block_size]`` for s in ``range(0, n, block_size)`` minus the last."""
    out, catalog = exported["out"], exported["catalog"]
    keys_layer = "voken_keys"  # the shipped recipes' keys layer
    tokenizer_name = exported["id"].replace("@", "-")
    file_path = os.path.join(str(out), CORPUS)  # --train_data_file
    voken_dir, suffix = str(out), keys_layer  # --voken_dir, --voken_suffix

    token_path = file_path + "." + tokenizer_name + ".hdf5"
    assert os.path.isfile(token_path)
    dset_fname = os.path.split(file_path)[-1]
    voken_path = os.path.join(voken_dir, f"{dset_fname}.{suffix}.hdf5")
    voken_ids_path = os.path.join(voken_dir, f"{dset_fname}.{suffix}.ids")
    with h5py.File(token_path, "r") as th, h5py.File(voken_path, "r") as vh:
        tokens, vokens = th["tokens"], vh["vokens"]
        assert len(vokens) == len(tokens)
        voken_ids = [x.strip() for x in open(voken_ids_path).readlines()]
        assert all(len(v.split("/")) == 2 for v in voken_ids)
        assert max(vokens[:]) < len(voken_ids) and min(vokens[:]) >= 0

        with open(f"{file_path}.{tokenizer_name}.line") as f:
            line_starts = list(map(int, f.readlines()))
        assert line_starts[-1] == len(tokens)
        id_to_token = (Path(voken_dir) / tokenizer_name / "vocab.txt").read_text().splitlines()
        captions = _captions_in_order(catalog)
        for i in range(3):  # the first lines decode to the first captions' tokens
            line = tokens[line_starts[i] : line_starts[i + 1]]
            assert [id_to_token[t] for t in line] == captions[i][2]
            assert list(vokens[line_starts[i] : line_starts[i + 1]]) == captions[i][3]

        block_size = 16
        starts = list(range(0, len(tokens), block_size))
        batches = list(zip(starts[:-1], starts[1:]))
        assert batches and all(e - s == block_size for s, e in batches)
        s, e = batches[-1]
        assert len(tokens[s:e]) == len(vokens[s:e]) == block_size


def test_bert_tokenizer_loads_the_vocab_folder(exported):
    """run_vlm_distributed.py loads ``BertTokenizer.from_pretrained(--tokenizer_name)``:
    the exported folder gives the same ids for the first captions (to_hdf5.py's check)."""
    transformers = pytest.importorskip("transformers")
    tok = exported["id"].replace("@", "-")
    tokenizer = transformers.BertTokenizer.from_pretrained(str(exported["out"] / tok))
    _, texts = Catalog(exported["catalog"]).query(
        "SELECT image_id, caption_id, text FROM captions WHERE corpus = ?", [CORPUS]
    )
    text_of = {(i, c): t for i, c, t in texts}
    vocab = _vocab(exported["vokenizer"])
    for image_id, caption_id, words, _ in _captions_in_order(exported["catalog"])[:10]:
        ids = tokenizer.convert_tokens_to_ids(tokenizer.tokenize(text_of[image_id, caption_id]))
        assert ids == [vocab[w] for w in words]


def test_the_cli_writes_the_same_files(exported, tmp_path, capsys):
    out = tmp_path / "cli"
    args = ["export", "--format", "vokenization-hdf5", "--catalog", str(exported["catalog"])]
    args += ["--corpus", CORPUS, "--layer", "vokens", "--vokenizer", str(exported["vokenizer"])]
    assert main([*args, "--out", str(out), "-q", "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert summary["tokens"] == exported["count"]
    for path in exported["out"].rglob("*"):
        if path.is_file() and path.suffix != ".hdf5":
            assert (out / path.relative_to(exported["out"])).read_bytes() == path.read_bytes()


def test_errors_name_what_is_wrong(exported, tmp_path):
    catalog, vokenizer = str(exported["catalog"]), exported["vokenizer"]
    with pytest.raises(ExportError, match="no layer 'nope'.*layers: .*vokens"):
        export_vokenization(catalog, CORPUS, "nope", vokenizer, tmp_path / "a")
    with pytest.raises(ExportError, match="layer 'voken_keys' holds no vokens"):
        export_vokenization(catalog, CORPUS, "voken_keys", vokenizer, tmp_path / "b")
    with pytest.raises(ExportError, match="not a saved vokenizer"):
        export_vokenization(catalog, CORPUS, "vokens", tmp_path / "none", tmp_path / "c")

    other = tmp_path / "other"  # the same model with one vocabulary line changed
    shutil.copytree(vokenizer, other)
    from mmdata.models.vokenizer import load_vokenizer, save_vokenizer

    model, _, _ = load_vokenizer(vokenizer)
    words = (vokenizer / "vocab.txt").read_text(encoding="utf-8").splitlines()
    seen = {t for (t,) in Catalog(catalog).query("SELECT DISTINCT token FROM vokens")[1]}
    dropped = next(w for w in words if w in seen and not w.startswith("["))
    vocab = tmp_path / "vocab.txt"
    renamed = [w + "_x" if w == dropped else w for w in words]
    vocab.write_text("".join(f"{w}\n" for w in renamed), encoding="utf-8")
    save_vokenizer(model, vocab, other)
    with pytest.raises(ExportError, match="was vokenized by vokenizer@.*is vokenizer@"):
        export_vokenization(catalog, CORPUS, "vokens", other, tmp_path / "d")
    assert not list((tmp_path / "d").glob("*"))  # nothing left behind


def test_a_token_outside_the_vocabulary_is_named(exported, tmp_path, monkeypatch):
    import mmdata.exports.vokenization as module

    real = module._read_vocab

    def without_red(path):
        return {t: i for t, i in real(path).items() if t != "red"}

    monkeypatch.setattr(module, "_read_vocab", without_red)
    with pytest.raises(ExportError, match="token 'red' is not in .*vocab.txt"):
        export_vokenization(
            str(exported["catalog"]), CORPUS, "vokens", exported["vokenizer"], tmp_path
        )
    assert not list(tmp_path.glob("*"))


def test_cli_flags_belong_to_their_format(exported, tmp_path, capsys):
    base = ["export", "--catalog", str(exported["catalog"]), "--out", str(tmp_path / "x")]
    assert main([*base, "--format", "hf", "--corpus", CORPUS, "--layer", "vokens"]) == 2
    assert "--layer is for --format vokenization-hdf5" in capsys.readouterr().err
    assert main([*base, "--format", "vokenization-hdf5", "--corpus", CORPUS]) == 2
    assert "needs --layer --vokenizer" in capsys.readouterr().err
