"""WordPiece tokenization for the pretraining loop: train a BERT-format vocab.txt on captions,
or load any BERT vocab.txt (ours or e.g. bert-base-uncased's), and encode text with character
offsets into the original string so scene-graph spans can be mapped onto word pieces."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from tokenizers import Tokenizer as _HFTokenizer
from tokenizers import decoders, models, normalizers, pre_tokenizers, trainers

from mmdata.core.errors import MmdataError
from mmdata.core.io import written_whole

WORDPIECE_FILE = "vocab.txt"
SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
_UNK = "[UNK]"
_PREFIX = "##"


def _bert_pipeline(model: models.Model, lowercase: bool) -> _HFTokenizer:
    tok = _HFTokenizer(model)
    # bert-base-uncased strips accents exactly when it lowercases; cased vocabs keep them.
    tok.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece(prefix=_PREFIX)
    return tok


def train_wordpiece(
    texts: Iterable[str], vocab_size: int, out_dir: str | Path, min_frequency: int = 2
) -> Path:
    """Train a lowercasing BERT-style WordPiece vocab on ``texts`` and write
    ``out_dir/vocab.txt`` atomically; the special tokens get ids 0..4. Returns its path."""
    if vocab_size <= len(SPECIAL_TOKENS):
        raise ValueError(f"vocab_size must exceed {len(SPECIAL_TOKENS)}, got {vocab_size}")
    tok = _bert_pipeline(models.WordPiece(unk_token=_UNK, continuing_subword_prefix=_PREFIX), True)
    trainer = trainers.WordPieceTrainer(
        vocab_size=vocab_size,
        min_frequency=min_frequency,
        special_tokens=SPECIAL_TOKENS,
        continuing_subword_prefix=_PREFIX,
        show_progress=False,
    )
    tok.train_from_iterator(iter(texts), trainer)
    by_id = sorted(tok.get_vocab().items(), key=lambda kv: kv[1])
    # vocab.txt encodes ids as line numbers, so the trained ids must be exactly 0..n-1.
    if [i for _, i in by_id] != list(range(len(by_id))):
        raise AssertionError("trained WordPiece ids are not contiguous")
    if [t for t, _ in by_id[: len(SPECIAL_TOKENS)]] != SPECIAL_TOKENS:
        raise AssertionError("trained WordPiece vocab does not start with the special tokens")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / WORDPIECE_FILE
    with written_whole(path) as partial:
        partial.write_text("".join(f"{t}\n" for t, _ in by_id), encoding="utf-8")
    return path


def _read_vocab(path: Path) -> dict[str, int]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise MmdataError(f"WordPiece vocab {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise MmdataError(f"cannot read WordPiece vocab {path}: {exc}") from exc
    # Same rule as tokenizers' WordPiece.read_file: the line number is the id, trailing
    # whitespace is not part of the token; a later duplicate wins.
    vocab = {line.rstrip(): i for i, line in enumerate(lines)}
    vocab.pop("", None)
    if not vocab:
        raise MmdataError(f"WordPiece vocab {path} is empty")
    missing = [t for t in SPECIAL_TOKENS if t not in vocab]
    if missing:
        raise MmdataError(f"WordPiece vocab {path} lacks special tokens {' '.join(missing)}")
    return vocab


class Tokenizer:
    """A WordPiece tokenizer from a BERT vocab.txt. Encodings carry no special tokens:
    callers add [CLS]/[SEP] themselves."""

    def __init__(self, vocab_file: str | Path, lowercase: bool = True) -> None:
        self.path = Path(vocab_file)
        vocab = _read_vocab(self.path)
        # Ids are line numbers, so the embedding table needs max id + 1 rows even if a
        # duplicate line left a hole.
        self.vocab_size: int = max(vocab.values()) + 1
        self.pad_id, self.unk_id, self.cls_id, self.sep_id, self.mask_id = (
            vocab[t] for t in SPECIAL_TOKENS
        )
        # The specials stay plain vocab entries, not added tokens: a caption that happens to
        # contain the text "[MASK]" must not turn into the mask id.
        self._tok = _bert_pipeline(
            models.WordPiece(vocab=vocab, unk_token=_UNK, continuing_subword_prefix=_PREFIX),
            lowercase,
        )

    def __repr__(self) -> str:
        return f"Tokenizer({str(self.path)!r}, vocab_size={self.vocab_size})"

    def encode(self, text: str, max_tokens: int) -> tuple[list[int], list[tuple[int, int]]]:
        """Piece ids of ``text`` (no specials), truncated to ``max_tokens``, with each piece's
        (start, end) character offsets in the original ``text``."""
        enc = self._tok.encode(text, add_special_tokens=False)
        return enc.ids[:max_tokens], enc.offsets[:max_tokens]

    def encode_batch(
        self, texts: list[str], max_tokens: int
    ) -> list[tuple[list[int], list[tuple[int, int]]]]:
        """``encode`` over many texts at once, through the library's parallel batch encoder."""
        if not texts:
            return []
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return [(e.ids[:max_tokens], e.offsets[:max_tokens]) for e in encs]

    def encode_words(self, words: list[str], max_tokens: int) -> list[int]:
        """Piece ids of a list of words or phrases (e.g. "traffic light"), no specials,
        truncated to ``max_tokens``."""
        if not words:
            return []
        # Pre-tokenized input still goes through the normalizer and pre-tokenizer per
        # item, so multi-word tag names split exactly as they would in running text.
        enc = self._tok.encode(list(words), is_pretokenized=True, add_special_tokens=False)
        return enc.ids[:max_tokens]

    def decode(self, ids: list[int]) -> str:
        """Text of ``ids`` with '##' pieces joined; special tokens are shown, not dropped."""
        return self._tok.decode(list(ids), skip_special_tokens=False)

    def id_to_token(self, token_id: int) -> str | None:
        """The vocab entry for ``token_id`` (None if out of range)."""
        return self._tok.id_to_token(token_id)

    @staticmethod
    def pieces_in_span(offsets: list[tuple[int, int]], start: int, end: int) -> list[int]:
        """Indices of the pieces whose offsets overlap the character span [start, end)."""
        return [i for i, (s, e) in enumerate(offsets) if s < end and e > start]
