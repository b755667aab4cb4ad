"""The WordPiece tokenizer: training, loading user vocabs, offsets, spans, truncation."""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from mmdata.core.errors import MmdataError
from mmdata.models.wordpiece import SPECIAL_TOKENS, WORDPIECE_FILE, Tokenizer, train_wordpiece

SIZES = ["small", "large", "tiny", "big"]
COLORS = ["red", "blue", "green", "yellow"]
SHAPES = ["circle", "square", "triangle"]
RELATIONS = ["left of", "right of", "above", "below"]


def _captions(n: int = 200, seed: int = 0) -> list[str]:
    rng = random.Random(seed)
    return [
        f"a {rng.choice(SIZES)} {rng.choice(COLORS)} {rng.choice(SHAPES)} "
        f"{rng.choice(RELATIONS)} a {rng.choice(SIZES)} {rng.choice(COLORS)} {rng.choice(SHAPES)}"
        for _ in range(n)
    ]


@pytest.fixture(scope="module")
def vocab(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return train_wordpiece(_captions(), vocab_size=200, out_dir=tmp_path_factory.mktemp("tok"))


@pytest.fixture(scope="module")
def tok(vocab: Path) -> Tokenizer:
    return Tokenizer(vocab)


def _piece(tok: Tokenizer, i: int) -> str:
    token = tok.id_to_token(i)
    assert token is not None
    return token.removeprefix("##")


def test_trained_vocab_starts_with_specials_and_keeps_common_words_whole(vocab, tok):
    lines = vocab.read_text(encoding="utf-8").splitlines()
    assert vocab.name == WORDPIECE_FILE
    assert lines[:5] == SPECIAL_TOKENS
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (0, 1, 2, 3, 4)
    assert tok.vocab_size == len(lines)
    for word in ["small", "red", "circle", "left", "square", "triangle"]:
        assert word in lines
        ids, _ = tok.encode(word, max_tokens=8)
        assert ids == [lines.index(word)]


def test_offsets_slice_the_original_text_back(tok):
    text = "A  Small RED circle  left of a BIG square"
    ids, offsets = tok.encode(text, max_tokens=64)
    assert len(ids) == len(offsets)
    assert [text[s:e].lower() for s, e in offsets] == [_piece(tok, i) for i in ids]
    assert [text[s:e] for s, e in offsets][:4] == ["A", "Small", "RED", "circle"]


def test_unseen_words_split_into_subpieces_or_unk(tok):
    ids, offsets = tok.encode("greenblue zebra", max_tokens=32)
    tokens = [tok.id_to_token(i) for i in ids]
    # 'greenblue' never occurs whole: it becomes 'green' plus continuation pieces.
    assert tokens[0] == "green" and len(tokens) > 2
    assert all(t.startswith("##") for t in tokens[1:-1])
    assert "".join(t.removeprefix("##") for t in tokens[:-1]) == "greenblue"
    assert offsets[0] == (0, 5) and offsets[-2][1] == 9
    # 'z' never occurs in training, so the whole word is unknown.
    assert tokens[-1] == "[UNK]" and offsets[-1] == (10, 15)


def test_span_maps_to_its_pieces(tok):
    text = "a large bluegreen above a tiny circle"
    ids, offsets = tok.encode(text, max_tokens=64)
    start = text.index("bluegreen")
    span = tok.pieces_in_span(offsets, start, start + len("bluegreen"))
    assert "".join(_piece(tok, ids[i]) for i in span) == "bluegreen"
    assert [tok.id_to_token(ids[i]) for i in span][0] == "blue"
    assert span == list(range(span[0], span[-1] + 1)) and span[0] == 2
    # A span inside one piece still selects that piece; an empty span selects nothing.
    assert tok.pieces_in_span(offsets, start + 1, start + 2) == [span[0]]
    assert tok.pieces_in_span(offsets, start, start) == []


def test_truncation(tok):
    text = " ".join(_captions(5))
    full, _ = tok.encode(text, max_tokens=10_000)
    ids, offsets = tok.encode(text, max_tokens=7)
    assert len(full) > 7 and ids == full[:7] and len(offsets) == 7
    assert (
        tok.encode_words(["red", "circle", "blue"], max_tokens=2) == tok.encode("red circle", 9)[0]
    )
    assert tok.encode_batch([text], max_tokens=7) == [(ids, offsets)]


def test_encode_batch_matches_encode(tok):
    texts = [*_captions(4, seed=1), "", "zebra"]
    assert tok.encode_batch(texts, max_tokens=5) == [tok.encode(t, 5) for t in texts]
    assert tok.encode_batch([], max_tokens=5) == []


def test_encode_words_splits_phrases_like_text_and_decode_joins_pieces(tok):
    ids = tok.encode_words(["Small circle", "bluegreen"], max_tokens=16)
    assert ids == tok.encode("small circle bluegreen", 16)[0]
    assert tok.decode(ids) == "small circle bluegreen"
    assert tok.decode([tok.cls_id, *ids[:1], tok.mask_id]) == "[CLS] small [MASK]"


def test_user_vocab_ids_are_looked_up(tmp_path):
    path = tmp_path / "vocab.txt"
    path.write_text("\n".join(["[UNK]", "hello", "[PAD]", "[CLS]", "[SEP]", "[MASK]", "##s"]))
    tok = Tokenizer(path)
    assert (tok.pad_id, tok.unk_id, tok.cls_id, tok.sep_id, tok.mask_id) == (2, 0, 3, 4, 5)
    assert tok.encode("Hellos there", 8) == ([1, 6, 0], [(0, 5), (5, 6), (7, 12)])


def test_user_vocab_missing_mask_names_file(tmp_path):
    path = tmp_path / "user_vocab.txt"
    path.write_text("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "hello"]) + "\n")
    with pytest.raises(MmdataError, match=r"user_vocab\.txt.*\[MASK\]"):
        Tokenizer(path)


@pytest.mark.parametrize("content", [None, "", "\n\n"])
def test_missing_or_empty_vocab_names_file(tmp_path, content):
    path = tmp_path / "nothing.txt"
    if content is not None:
        path.write_text(content)
    with pytest.raises(MmdataError, match=r"nothing\.txt"):
        Tokenizer(path)


def test_retrain_replaces_vocab_atomically(tmp_path):
    first = train_wordpiece(_captions(50), vocab_size=60, out_dir=tmp_path)
    before = first.read_text()
    second = train_wordpiece(
        [*_captions(200), *["zebra zoo zigzag"] * 20], vocab_size=200, out_dir=tmp_path
    )
    assert second == first
    after = second.read_text()
    assert after != before and "zebra" in after.splitlines()
    assert sorted(p.name for p in tmp_path.iterdir()) == [WORDPIECE_FILE]
    assert Tokenizer(second).encode("zebra", 4)[0] == [after.splitlines().index("zebra")]
