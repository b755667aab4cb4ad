"""The search, segmentation and revokenization core of vokenization (Tan & Bansal, 2020).

A vokenizer gives every token of a text a *voken*: the image whose key (a unit vector)
has the largest inner product with the token's contextual embedding. This module holds
the parts that need no language model:

- ``KeyIndex``: exact (or, for comparison, approximate) maximum inner-product search
  over the keys, in bounded memory, with one tie rule (the smaller id) and results that
  do not depend on the backend, the chunk size or the number of threads;
- ``segments``: how a sentence longer than the encoder's limit is cut into near-equal
  pieces, with the original's arithmetic (its ``Vokenizer.vokenize_ids``);
- ``revokenize``: moving per-token values (vokens) from one tokenizer's tokens to
  another's by the overlap of their character spans, in one linear pass;
- ``diversity`` and ``score_histogram``: the statistics of the original's
  ``evaluate_diversity.py``, computed from arrays.

torch is imported with the module; faiss only when a faiss backend is built, so the
module works without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal, TypeVar, get_args

import numpy as np
import torch

from mmdata.core.errors import MmdataError

if TYPE_CHECKING:
    from numpy.typing import ArrayLike, NDArray

Backend = Literal["exact", "faiss", "faiss-hnsw"]
#: The backends ``KeyIndex`` accepts: ``exact`` (torch), ``faiss`` (IndexFlatIP, exact),
#: ``faiss-hnsw`` (IndexHNSWFlat with the inner-product metric, approximate).
BACKENDS: Final[tuple[str, ...]] = get_args(Backend)
#: How far a key's norm may be from 1: keys are unit vectors, so that the inner product is
#: the cosine similarity the vokenizer was trained with.
UNIT_TOLERANCE: Final = 1e-3
#: The exact backend's default chunk: as many queries as make this many scores (8 MiB of
#: float32, so the passes over them stay in cache), within [16, 256] queries.
CHUNK_SCORES: Final = 1 << 21
CHUNK_ROWS: Final = (16, 256)
#: Column block of the exact backend's candidate search (``_at_least``).
BLOCK: Final = 256
#: The faiss backends' default chunk of queries. faiss blocks its own work (and switches to
#: a slow non-BLAS loop under 20 queries), so this only bounds the result arrays.
FAISS_CHUNK: Final = 16384
#: The faiss flat backend asks for this many results past ``k``, so that the candidates
#: within the float32 error of the k-th score are usually all among them.
FAISS_EXTRA: Final = 8
#: The score histogram's fixed range: inner products of unit vectors lie in [-1, 1].
SCORE_RANGE: Final = (-1.0, 1.0)

T = TypeVar("T")


class FaissMissingError(MmdataError, ImportError):
    """A faiss backend was asked for and faiss does not import."""


@dataclass(frozen=True)
class HnswParams:
    """The approximate backend's settings (faiss's names). The defaults reach recall@1
    0.97 on 10,000 random 64-d unit keys (tests/models/test_vokens.py); real keys, which
    cluster, are easier."""

    #: neighbours per node in the graph (memory: about 2 x m ids per key)
    m: int = 32
    #: candidate list while building: higher builds slower and a better graph
    ef_construction: int = 40
    #: candidate list while searching: the speed / recall trade-off
    ef_search: int = 64


def _faiss() -> Any:
    """The faiss module, or a ``FaissMissingError`` that says how to install it."""
    try:
        import faiss
    except ImportError as exc:
        raise FaissMissingError(
            "the faiss backends need faiss: pip install faiss-cpu (or mmdata[vokens])"
        ) from exc
    return faiss


def _float_rows(array: ArrayLike, what: str, dim: int | None = None) -> NDArray[np.float32]:
    """``array`` as a C-contiguous float32 [rows, dim] matrix with every row finite.

    Raises:
        ValueError: not 2-d, a wrong width, or a row holding NaN or infinity (named).
    """
    matrix = np.asarray(array)
    if matrix.ndim != 2:
        raise ValueError(f"{what} must be a 2-d array [rows, dim], got shape {matrix.shape}")
    if not (np.issubdtype(matrix.dtype, np.floating) or np.issubdtype(matrix.dtype, np.integer)):
        raise ValueError(f"{what} must hold numbers, got dtype {matrix.dtype}")
    if dim is not None and matrix.shape[1] != dim:
        raise ValueError(f"{what} have {matrix.shape[1]} columns, the keys have {dim}")
    matrix = np.ascontiguousarray(matrix, dtype=np.float32)
    finite = np.isfinite(matrix).all(axis=1)
    if not finite.all():
        row = int(np.argmin(finite))
        raise ValueError(f"{what} row {row} is not finite (NaN or infinity): {matrix[row]!r}")
    return matrix


def _unit_keys(keys: ArrayLike) -> NDArray[np.float32]:
    """The keys, checked: 2-d, at least one row, finite, every row of norm 1 +- 1e-3."""
    matrix = _float_rows(keys, "keys")
    if matrix.shape[0] == 0 or matrix.shape[1] == 0:
        raise ValueError(f"keys must have at least one row and one column, got {matrix.shape}")
    norms = np.linalg.norm(matrix, axis=1)
    off = np.abs(norms - 1.0) > UNIT_TOLERANCE
    if off.any():
        row = int(np.argmax(off))
        raise ValueError(
            f"keys row {row} has norm {norms[row]:.6g}; keys must be unit vectors "
            f"(norm 1 within {UNIT_TOLERANCE}): divide each row by its norm"
        )
    return matrix


def score_margin(dim: int) -> float:
    """The candidate margin for a query of norm 1: ``4 * dim * 2**-24 * (1 +
    UNIT_TOLERANCE)``. A float32 inner product summed in any order (BLAS blocking, FMA,
    threads) is within ``dim * 2**-24 * |q| |k|`` of the true one (Higham, Accuracy and
    Stability of Numerical Algorithms, section 3.1). Every key whose true score could
    reach the true k-th best then has a float32 score within twice that of the float32
    k-th best; the other factor 2 is slack for the rounding of the floor itself.
    Scale by the query's norm."""
    return 4.0 * dim * 2.0**-24 * (1.0 + UNIT_TOLERANCE)


def _at_least(scores: torch.Tensor, floor: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``torch.nonzero(scores >= floor[:, None])`` as (rows, cols), without a full
    comparison and scan: the maxima of blocks of ``BLOCK`` columns (one fast reduction)
    pick the few blocks holding a score at or above the floor, and only those are
    compared. The plain form passes over all scores twice more (compare, then scan), which
    costs about as much as the matmul itself when the candidates are few."""
    rows_n, cols_n = scores.shape
    maxima = [scores.unfold(1, BLOCK, BLOCK).amax(dim=2)] if cols_n >= BLOCK else []
    if cols_n % BLOCK:
        maxima.append(scores[:, cols_n - cols_n % BLOCK :].amax(dim=1, keepdim=True))
    rows, blocks = torch.nonzero(torch.cat(maxima, 1) >= floor[:, None], as_tuple=True)
    cols = blocks[:, None] * BLOCK + torch.arange(BLOCK)
    inside = cols < cols_n
    cols.clamp_(max=cols_n - 1)
    pair, place = torch.nonzero(
        (scores[rows[:, None], cols] >= floor[rows, None]) & inside, as_tuple=True
    )
    return rows[pair], cols[pair, place]


class KeyIndex:
    """Maximum inner-product search over unit keys: each query's ``k`` best keys.

    ``search`` returns ``(scores [m, k] float32, ids [m, k] int64)``: ``scores`` are inner
    products, highest first, and **equal scores are ordered by the smaller id**, also at
    the k-th place (of several keys tying for the last place, the smaller ids are kept).

    A float32 matmul is not a fixed function of a query and a key: MKL sums a product in
    another order at another row or column of the block, for another chunk size or
    thread count, so two copies of one key (an image listed twice) score differently in
    about 1% of cases, and near-ties resolve by accident. So every backend only *finds
    candidates* in float32: the keys whose score is within the float32 error bound, with
    slack (``score_margin``), of the k-th best. The candidates are then rescored in float64
    (exact products, one fixed summation order) and ranked by that score, then by id;
    the float64 score, rounded, is what ``search`` returns. The results are therefore
    the same on ``exact`` and ``faiss``, for any ``chunk`` and any number of threads,
    and copies of a key tie exactly.

    Backends:

    - ``exact``: a torch matmul on the CPU (torch's intra-op threads), the queries in
      chunks of ``chunk`` rows so memory stays near ``chunk x n`` float32 scores;
    - ``faiss``: ``faiss.IndexFlatIP``, also exact, asked for ``k + 8`` results; a row
      whose last result is still within the margin of its k-th (more candidates than
      were returned: many copies of one key) is searched again by the exact path;
    - ``faiss-hnsw``: ``faiss.IndexHNSWFlat`` with the inner-product metric
      (``HnswParams``), approximate: it may miss the best key. Its ``k + 8`` results
      are rescored and ordered the same way; ids it could not fill are -1 (score -inf). It
      is here to measure what an approximate index would save (bench/vokenize.py), not
      for building corpora.

    The index keeps a reference to ``keys`` when they are already float32 and
    C-contiguous (1M x 64 keys are 256 MB): do not modify them afterwards.
    """

    def __init__(
        self,
        keys: ArrayLike,
        backend: Backend = "exact",
        *,
        chunk: int | None = None,
        hnsw: HnswParams | None = None,
    ) -> None:
        """Check the keys and build the backend's index.

        Args:
            keys: [n, d] unit vectors (float32; other float dtypes are converted).
            backend: ``exact``, ``faiss`` or ``faiss-hnsw``.
            chunk: queries per step; the exact backend holds ``chunk x n`` float32
                scores at a time. Default: ``CHUNK_SCORES / n`` within ``CHUNK_ROWS``
                (exact: 256 rows for 8,192 keys or fewer, 16 rows (64 MiB of scores) for
                a million), ``FAISS_CHUNK`` (faiss backends).
            hnsw: the ``faiss-hnsw`` settings (default ``HnswParams()``).

        Raises:
            ValueError: keys not 2-d, not finite, or not unit-norm (the row is named);
                an unknown backend; ``chunk`` below 1.
            FaissMissingError: a faiss backend without faiss installed.
        """
        if backend not in BACKENDS:
            raise ValueError(f"unknown backend {backend!r}: one of {', '.join(BACKENDS)}")
        if chunk is not None and chunk < 1:
            raise ValueError(f"chunk must be at least 1, got {chunk}")
        self.keys = _unit_keys(keys)
        self.backend: Backend = backend
        self.hnsw = hnsw or HnswParams()
        n = self.keys.shape[0]
        low, high = CHUNK_ROWS
        default = min(max(CHUNK_SCORES // n, low), high) if backend == "exact" else FAISS_CHUNK
        self.chunk = chunk or default
        self._torch_keys = torch.from_numpy(self.keys)
        self._faiss_index: Any = None
        if backend != "exact":
            self._faiss_index = self._build_faiss()

    @property
    def size(self) -> int:
        """The number of keys (the voken set's size)."""
        return int(self.keys.shape[0])

    @property
    def dim(self) -> int:
        """The keys' dimension."""
        return int(self.keys.shape[1])

    def _build_faiss(self) -> Any:
        faiss = _faiss()
        if self.backend == "faiss":
            index = faiss.IndexFlatIP(self.dim)
        else:
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw.m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = self.hnsw.ef_construction
            index.hnsw.efSearch = self.hnsw.ef_search
        index.add(self.keys)
        return index

    def search(
        self, queries: ArrayLike, k: int = 1, *, chunk: int | None = None
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """The ``k`` keys with the highest inner product with each query.

        Args:
            queries: [m, d] vectors (the token embeddings; unit norm is not required).
            k: results per query, 1 to the number of keys.
            chunk: queries per step (default: the index's ``chunk``).

        Returns:
            ``(scores, ids)``, each [m, k]: highest score first, equal scores by the
            smaller id.

        Raises:
            ValueError: queries not 2-d, of another width than the keys, or with a row
                that is not finite (named); ``k`` out of range.
        """
        matrix = _float_rows(queries, "queries", self.dim)
        if not 1 <= k <= self.size:
            raise ValueError(f"k must be between 1 and the number of keys {self.size}, got {k}")
        step = chunk or self.chunk
        if step < 1:
            raise ValueError(f"chunk must be at least 1, got {step}")
        scores = np.empty((matrix.shape[0], k), np.float32)
        ids = np.empty((matrix.shape[0], k), np.int64)
        run = self._exact if self.backend == "exact" else self._faiss_search
        for start in range(0, matrix.shape[0], step):
            stop = min(start + step, matrix.shape[0])
            scores[start:stop], ids[start:stop] = run(matrix[start:stop], k)
        return scores, ids

    def _margins(self, queries: NDArray[np.float32]) -> NDArray[np.float32]:
        """Each query's candidate margin: ``score_margin`` times its norm."""
        norms = np.linalg.norm(queries.astype(np.float64), axis=1)
        return (score_margin(self.dim) * norms).astype(np.float32)

    def _exact(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """One chunk by torch: float32 scores, the candidates near the k-th, rescored."""
        with torch.no_grad():
            scores = torch.from_numpy(queries) @ self._torch_keys.T  # [c, n]
            kth = scores.amax(dim=1) if k == 1 else scores.topk(k, dim=1).values[:, -1]
            floor = kth - torch.from_numpy(self._margins(queries))
            rows, cols = _at_least(scores, floor)
        return self._rescored(queries, rows.numpy(), cols.numpy(), k)

    def _faiss_search(
        self, queries: NDArray[np.float32], k: int
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """One chunk by faiss: its results as candidates, rescored (class docstring)."""
        wanted = min(k + FAISS_EXTRA, self.size)
        if self.backend == "faiss-hnsw":  # all it found are candidates (copies of a key)
            _, found = self._faiss_index.search(queries, wanted)
            rows, places = np.nonzero(found >= 0)
            return self._rescored(queries, rows, found[rows, places], k)
        scores, found = self._faiss_index.search(queries, wanted)
        floor = scores[:, k - 1] - self._margins(queries)
        rows, places = np.nonzero(scores >= floor[:, None])
        best = self._rescored(queries, rows, found[rows, places], k)
        # the last result still inside the margin: candidates may lie beyond it
        again = np.flatnonzero(scores[:, -1] >= floor) if wanted < self.size else []
        if len(again):
            best[0][again], best[1][again] = self._exact(queries[again], k)
        return best

    def _rescored(
        self,
        queries: NDArray[np.float32],
        rows: NDArray[np.int64],
        cols: NDArray[np.int64],
        k: int,
    ) -> tuple[NDArray[np.float32], NDArray[np.int64]]:
        """Candidates (query row, key id) scored in float64 and each row's first ``k`` by
        (score desc, id asc); a row with fewer than ``k`` gets -1 ids and -inf scores."""
        products = queries[rows].astype(np.float64) * self.keys[cols].astype(np.float64)
        exact = products.sum(axis=1)  # float64 products of float32 are exact
        order = np.lexsort((cols, -exact, rows))
        rows, cols, exact = rows[order], cols[order], exact[order]
        counts = np.bincount(rows, minlength=len(queries))
        rank = np.arange(len(rows)) - np.repeat(np.cumsum(counts) - counts, counts)
        keep = rank < k
        scores = np.full((len(queries), k), -np.inf, np.float32)
        ids = np.full((len(queries), k), -1, np.int64)
        scores[rows[keep], rank[keep]] = exact[keep]
        ids[rows[keep], rank[keep]] = cols[keep]
        return scores, ids


def segments(length: int, upper_bound: int) -> list[tuple[int, int]]:
    """How the original vokenizer cuts a sentence of ``length`` tokens for its encoder.

    A sentence of at most ``upper_bound`` tokens is one segment (an empty one included:
    the original still encodes it, as ``[CLS] [SEP]``). A longer one is cut into pieces
    of ``tokens_per_seg = int(length / ceil(length / upper_bound))`` tokens from the
    start, so that no piece is very short, and the remainder, when the division leaves
    one, becomes a shorter last piece (129 tokens at 128: 64, 64, 1). These are the
    original's ranges exactly (``Vokenizer.vokenize_ids``); each is encoded with its own
    special tokens, so the encoder sees at most ``upper_bound + 2`` ids, and the
    per-token results of the pieces, without their special tokens, join back in order.

    Returns:
        ``[(start, stop), ...]``: half-open token ranges covering ``0..length`` in order.

    Raises:
        ValueError: a negative length or an upper bound below 1.
    """
    if length < 0 or upper_bound < 1:
        raise ValueError(f"need length >= 0 and upper_bound >= 1, got {length}, {upper_bound}")
    if length <= upper_bound:
        return [(0, length)]
    # int(a / b) in the original; equal to a // b below 2**53 tokens
    per = length // math.ceil(length / upper_bound)
    return [(start, min(start + per, length)) for start in range(0, length, per)]


def _spans_in_order(spans: Sequence[tuple[int, int]], what: str) -> list[int]:
    """The indices of the non-empty spans, after checking that every span has
    ``start <= end`` and that the non-empty ones are sorted and do not overlap."""
    kept: list[int] = []
    for index, (start, end) in enumerate(spans):
        if start > end:
            raise ValueError(f"{what} span {index} ({start}, {end}) ends before it starts")
        if start == end:
            continue
        if kept and spans[kept[-1]][1] > start:
            before = kept[-1]
            raise ValueError(
                f"{what} span {index} ({start}, {end}) starts before span {before} "
                f"{tuple(spans[before])} ends: the spans of one tokenization must be "
                "sorted by start and not overlap"
            )
        kept.append(index)
    return kept


def revokenize(
    src_spans: Sequence[tuple[int, int]],
    src_values: Sequence[T],
    dst_spans: Sequence[tuple[int, int]],
) -> list[T | None]:
    """Give each token of another tokenization the value (voken) of its best source token.

    The vokenizer works in its own tokenizer's tokens; a model trained with another
    tokenizer needs vokens for its tokens. Each destination span ``[start, end)`` (a
    character range in the same text) gets the value of the source span with the
    largest intersection over union (IoU) with it; of equal IoUs the earlier source
    span wins; a destination overlapping no source span gets ``None``.

    Zero-width spans (``start == end``: the special tokens' ``(0, 0)`` of a Hugging Face
    offset mapping) overlap nothing: a zero-width destination gets ``None`` and a
    zero-width source is never chosen. They may stand anywhere in the lists; the other
    spans of each list must be sorted by start and must not overlap (a tokenization's
    are), which lets one pass of two pointers do the work in O(len(src) + len(dst)).

    Unlike the original's ``batch_calculate_alignment``, which always keeps a candidate,
    an unmatched destination stays ``None`` rather than taking a neighbour's voken. IoUs
    are compared exactly (integer cross-products), so ties are real ties.

    Raises:
        ValueError: ``src_values`` of another length than ``src_spans``; a span ending
            before it starts; non-empty spans out of order or overlapping (named).
    """
    if len(src_values) != len(src_spans):
        raise ValueError(f"{len(src_spans)} source spans but {len(src_values)} source values")
    sources = [(*src_spans[i], i) for i in _spans_in_order(src_spans, "source")]
    targets = _spans_in_order(dst_spans, "destination")
    result: list[T | None] = [None] * len(dst_spans)
    first = 0  # the first source span ending after the current target's start
    for target in targets:
        start, end = dst_spans[target]
        while first < len(sources) and sources[first][1] <= start:
            first += 1
        best, best_inter, best_union = -1, 0, 1
        scan = first
        while scan < len(sources) and sources[scan][0] < end:
            src_start, src_end, index = sources[scan]
            inter = min(src_end, end) - max(src_start, start)  # > 0: the spans overlap
            union = (src_end - src_start) + (end - start) - inter
            if inter * best_union > best_inter * union:  # strictly better: earlier wins ties
                best, best_inter, best_union = index, inter, union
            scan += 1
        if best >= 0:
            result[target] = src_values[best]
    return result


@dataclass(frozen=True)
class VokenDiversity:
    """What the original's ``evaluate_diversity.py`` prints (its names in quotes).

    For each token type (a distinct token id or string), count how often each voken was
    given to it; the per-type figures are averaged over the types.
    """

    #: "With %d tokens": the number of token types
    token_types: int
    #: "Average of Num Images": distinct vokens per token type
    vokens_per_type: float
    #: "Average of Max Cnt": the count of a type's most frequent voken
    max_count: float
    #: "Average of Avg Cnt": a type's tokens divided by its distinct vokens
    mean_count: float
    #: "Average of Std Cnt": the population standard deviation of a type's voken counts
    std_count: float
    #: "Cover %d images": distinct vokens given to any token
    vokens_used: int
    #: ``vokens_used / voken_set_size``, when the voken set's size is given
    coverage: float | None


def diversity(
    tokens: ArrayLike, vokens: ArrayLike, voken_set_size: int | None = None
) -> VokenDiversity:
    """The vokens' diversity per token type and their coverage of the voken set.

    Args:
        tokens: each token's id or string, 1-d, the corpus's tokens in any order. The
            original leaves out each sentence's ``[CLS]`` and ``[SEP]``: pass only the
            text's tokens to get its figures.
        vokens: each token's voken id (top 1), the same length.
        voken_set_size: the number of keys, for ``coverage``.

    Raises:
        ValueError: inputs not 1-d, of different lengths, or empty; a voken set smaller
            than the vokens used.
    """
    token_array, voken_array = np.asarray(tokens), np.asarray(vokens)
    if token_array.ndim != 1 or token_array.shape != voken_array.shape:
        raise ValueError(
            f"tokens and vokens must be 1-d of one length, got {token_array.shape} "
            f"and {voken_array.shape}"
        )
    if token_array.size == 0:
        raise ValueError("no tokens")
    _, type_of = np.unique(token_array, return_inverse=True)
    voken_ids, voken_of = np.unique(voken_array, return_inverse=True)
    pairs, counts = np.unique(
        type_of.astype(np.int64) * len(voken_ids) + voken_of, return_counts=True
    )
    pair_type = pairs // len(voken_ids)  # sorted: each type's pairs are one run
    starts = np.flatnonzero(np.r_[True, pair_type[1:] != pair_type[:-1]])
    distinct = np.diff(np.r_[starts, len(pairs)])
    mean = np.add.reduceat(counts, starts) / distinct
    spread = np.add.reduceat((counts - np.repeat(mean, distinct)) ** 2, starts) / distinct
    used = len(voken_ids)
    if voken_set_size is not None and voken_set_size < used:
        raise ValueError(f"{used} distinct vokens used, more than the set's {voken_set_size}")
    return VokenDiversity(
        token_types=len(starts),
        vokens_per_type=float(distinct.mean()),
        max_count=float(np.maximum.reduceat(counts, starts).mean()),
        mean_count=float(mean.mean()),
        std_count=float(np.sqrt(spread).mean()),
        vokens_used=used,
        coverage=None if voken_set_size is None else used / voken_set_size,
    )


def score_histogram(
    scores: ArrayLike, bins: int = 20
) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """The top-1 scores' histogram over the fixed range [-1, 1] (``np.histogram``).

    Not in the original; fixed edges make histograms of two runs or two models
    comparable bin by bin. Scores a rounding step outside the range (1.0000001) are
    counted in the end bins.

    Returns:
        ``(counts [bins], edges [bins + 1])``.

    Raises:
        ValueError: a score that is NaN or infinite; ``bins`` below 1.
    """
    values = np.asarray(scores, dtype=np.float64).ravel()
    if bins < 1:
        raise ValueError(f"bins must be at least 1, got {bins}")
    if not np.isfinite(values).all():
        raise ValueError("scores must be finite (a NaN or infinite score was given)")
    counts, edges = np.histogram(np.clip(values, *SCORE_RANGE), bins=bins, range=SCORE_RANGE)
    return counts.astype(np.int64), edges
