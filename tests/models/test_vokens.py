"""mmdata.models.vokens: key search (exact, faiss, HNSW) with one tie rule, the original
vokenizer's sentence cut, revokenization by character-span IoU, diversity statistics."""

from __future__ import annotations

import math
import subprocess
import sys
from collections import defaultdict

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from mmdata.models import vokens
from mmdata.models.vokens import (
    FaissMissingError,
    KeyIndex,
    diversity,
    revokenize,
    score_histogram,
    segments,
)

try:
    import faiss  # noqa: F401

    HAVE_FAISS = True
except ImportError:
    HAVE_FAISS = False
needs_faiss = pytest.mark.skipif(
    not HAVE_FAISS, reason="faiss not installed (pip install faiss-cpu)"
)
EXACT_BACKENDS = ["exact", pytest.param("faiss", marks=needs_faiss)]


def unit(rows: np.ndarray) -> np.ndarray:
    return (rows / np.linalg.norm(rows, axis=1, keepdims=True)).astype(np.float32)


def random_unit(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    return unit(np.random.default_rng(seed).standard_normal((n, d)))


def brute_force(keys: np.ndarray, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Every score in float64, each row sorted by (score desc, id asc): the rule itself."""
    scores = queries.astype(np.float64) @ keys.astype(np.float64).T
    ids = np.broadcast_to(np.arange(len(keys)), scores.shape)
    order = np.lexsort((ids, -scores), axis=-1)[:, :k]
    return np.take_along_axis(scores, order, -1), order


def sign_vectors(n: int, d: int = 64, seed: int = 0) -> np.ndarray:
    """Unit vectors of entries +-1/8: every inner product is a multiple of 1/64, exact in
    float32 whatever the summation order, so equal scores are real ties."""
    rng = np.random.default_rng(seed)
    return (rng.choice([-1.0, 1.0], size=(n, d)) / math.sqrt(d)).astype(np.float32)


# ---- search ----------------------------------------------------------------------


@pytest.mark.parametrize("k", [1, 10])
def test_exact_search_matches_brute_force(k):
    keys, queries = random_unit(1000), random_unit(500, seed=1)
    scores, ids = KeyIndex(keys).search(queries, k)
    want_scores, want_ids = brute_force(keys, queries, k)
    assert scores.dtype == np.float32 and ids.dtype == np.int64
    assert scores.shape == ids.shape == (500, k)
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_allclose(scores, want_scores, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 0).all()  # highest first


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
@pytest.mark.parametrize("k", [1, 3, 7])
def test_ties_go_to_the_smaller_id(backend, k):
    """Exact ties between distinct keys (sign vectors: many equal scores), at the k-th
    place too: the kept ids and their order are the rule's on both exact backends."""
    keys, queries = sign_vectors(300), sign_vectors(200, seed=1)
    scores, ids = KeyIndex(keys, backend).search(queries, k)
    want_scores, want_ids = brute_force(keys, queries, k)
    every = queries.astype(np.float64) @ keys.astype(np.float64).T
    tied_at_the_cut = (every >= want_scores[:, -1:]).sum(axis=1) > k
    assert tied_at_the_cut.mean() > 0.3  # the case is exercised
    np.testing.assert_array_equal(ids, want_ids)
    np.testing.assert_array_equal(scores, want_scores.astype(np.float32))


@pytest.mark.parametrize(
    "backend", [*EXACT_BACKENDS, pytest.param("faiss-hnsw", marks=needs_faiss)]
)
def test_duplicate_keys_rank_by_id(backend):
    """Random duplicates (which a float32 matmul does not score alike at different
    columns): every copy is returned, smallest id first, on every backend."""
    keys = random_unit(3000)
    copies = [5, 1200, 2999]
    keys[copies] = keys[700]
    queries = np.concatenate([keys[[700]], random_unit(400, seed=2)])
    index = KeyIndex(keys, backend)
    scores, ids = index.search(queries, 6)
    top1 = index.search(queries, 1)[1][:, 0]
    if backend == "faiss-hnsw":  # approximate: what it found of the copies, in id order
        found = [i for i in ids[0] if i in {5, 700, 1200, 2999}]
        assert found == sorted(found) and len(found) >= 1
        return
    assert ids[0, :4].tolist() == [5, 700, 1200, 2999]
    assert len(set(scores[0, :4].tolist())) == 1
    assert top1[0] == 5
    np.testing.assert_array_equal(ids, brute_force(index.keys, queries, 6)[1])


@needs_faiss
@pytest.mark.parametrize("k", [1, 10])
def test_faiss_flat_agrees_with_exact(k):
    """Both rescore their float32 candidates in float64: the same ids and the same
    scores, bit for bit (near-ties included), also with many copies of some keys."""
    keys, queries = random_unit(1000), random_unit(2000, seed=3)
    keys[100:120] = keys[7]  # 21 copies: more than faiss's k + 8 results
    queries[:50] = keys[7] + 0.01 * random_unit(50, seed=6)
    exact = KeyIndex(keys).search(queries, k)
    flat = KeyIndex(keys, "faiss").search(queries, k)
    np.testing.assert_array_equal(flat[1], exact[1])
    np.testing.assert_array_equal(flat[0], exact[0])
    assert exact[1][0, :k].tolist() == [7, *range(100, 100 + k - 1)]


@needs_faiss
def test_hnsw_recall_at_1_with_default_params():
    keys, queries = random_unit(10_000), random_unit(2000, seed=4)
    truth = KeyIndex(keys).search(queries, 1)[1][:, 0]
    found = KeyIndex(keys, "faiss-hnsw").search(queries, 1)[1][:, 0]
    recall = float((found == truth).mean())
    print(f"faiss-hnsw recall@1 on 10,000 random 64-d unit keys: {recall:.4f}")
    assert recall >= 0.9


@pytest.mark.parametrize("backend", EXACT_BACKENDS)
def test_chunked_search_equals_unchunked(backend):
    keys, queries = random_unit(800), random_unit(301, seed=5)
    index = KeyIndex(keys, backend)
    whole = index.search(queries, 3, chunk=10_000)
    for chunk in (1, 2, 5, 7, 8, 300):  # float32 matmuls of these sizes differ in the last bit
        part = index.search(queries, 3, chunk=chunk)
        np.testing.assert_array_equal(part[0], whole[0])
        np.testing.assert_array_equal(part[1], whole[1])
    assert KeyIndex(keys, backend, chunk=7).search(queries, 3)[1].tolist() == whole[1].tolist()


def test_results_do_not_depend_on_threads():
    keys, queries = random_unit(5000), random_unit(700, seed=7)
    index, threads = KeyIndex(keys), torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = index.search(queries, 4)
        torch.set_num_threads(max(2, threads))
        many = index.search(queries, 4)
    finally:
        torch.set_num_threads(threads)
    np.testing.assert_array_equal(one[0], many[0])
    np.testing.assert_array_equal(one[1], many[1])


def test_default_chunk_bounds_memory():
    assert KeyIndex(random_unit(1000)).chunk == 256
    assert KeyIndex(random_unit(50_000, d=8)).chunk == vokens.CHUNK_SCORES // 50_000
    assert KeyIndex(random_unit(300_000, d=2)).chunk == 16


@pytest.mark.parametrize("n", [1, 255, 256, 257, 1000])
def test_candidates_by_blocks_are_all_scores_above_the_floor(n):
    scores = torch.from_numpy(np.random.default_rng(n).standard_normal((9, n), np.float32))
    scores[3] = 0.5  # a row of ties
    floor = scores.amax(dim=1) - torch.tensor([0.0, 0.1, 1.0, 0.0, 0.2, 3.0, 0.0, 0.5, 10.0])
    rows, cols = vokens._at_least(scores, floor)
    want = torch.nonzero(scores >= floor[:, None], as_tuple=True)
    assert sorted(zip(rows.tolist(), cols.tolist())) == sorted(zip(*(w.tolist() for w in want)))


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda k: k.__setitem__(17, k[17] * 1.01), "keys row 17 has norm 1.01"),
        (lambda k: k.__setitem__((3, 5), np.nan), "keys row 3 is not finite"),
        (lambda k: k.__setitem__((9, 0), np.inf), "keys row 9 is not finite"),
        (lambda k: k.__setitem__(4, 0.0), "keys row 4 has norm 0"),
    ],
)
def test_bad_keys_are_refused_naming_the_row(change, message):
    keys = random_unit(20)
    change(keys)
    with pytest.raises(ValueError, match=message):
        KeyIndex(keys)


def test_bad_shapes_and_arguments_are_refused():
    keys = random_unit(20, d=8)
    with pytest.raises(ValueError, match="2-d"):
        KeyIndex(keys[0])
    with pytest.raises(ValueError, match="at least one row"):
        KeyIndex(keys[:0])
    with pytest.raises(ValueError, match="unknown backend 'gpu'"):
        KeyIndex(keys, "gpu")  # type: ignore[arg-type]
    index = KeyIndex(keys, chunk=5)
    queries = random_unit(4, d=8)
    queries[2, 1] = np.nan
    with pytest.raises(ValueError, match="queries row 2 is not finite"):
        index.search(queries)
    with pytest.raises(ValueError, match="queries have 9 columns, the keys have 8"):
        index.search(random_unit(3, d=9))
    with pytest.raises(ValueError, match="k must be between 1 and the number of keys 20"):
        index.search(random_unit(3, d=8), k=21)
    scores, ids = index.search(np.zeros((0, 8), np.float32), k=2)
    assert scores.shape == ids.shape == (0, 2)
    assert index.search(random_unit(3, d=8), k=20)[1].shape == (3, 20)  # k = n


def test_faiss_is_imported_lazily_and_missing_faiss_says_how_to_install(monkeypatch):
    code = "import sys, mmdata.models.vokens; print('faiss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    monkeypatch.setitem(sys.modules, "faiss", None)  # import faiss now raises ImportError
    with pytest.raises(FaissMissingError, match="pip install faiss-cpu"):
        KeyIndex(random_unit(10), "faiss")
    assert KeyIndex(random_unit(10)).search(random_unit(2, seed=1))[1].shape == (2, 1)


# ---- segments ----------------------------------------------------------------------


def original_cut(length: int, upper_bound: int) -> list[list[int]]:
    """The arithmetic of the original's Vokenizer.vokenize_ids, restated on a list of
    token positions: a sentence over the bound keeps its first tokens_per_seg tokens, and
    the rest is sliced off tokens_per_seg at a time until nothing is left."""
    tokens = list(range(length))
    if len(tokens) <= upper_bound:
        return [tokens]
    num_segments = math.ceil(len(tokens) / upper_bound)
    tokens_per_seg = int(len(tokens) / num_segments)
    pieces, remaining = [tokens[:tokens_per_seg]], tokens[tokens_per_seg:]
    while len(remaining) > 0:
        pieces.append(remaining[:tokens_per_seg])
        remaining = remaining[tokens_per_seg:]
    return pieces


LENGTHS = {
    "0": lambda ub: 0,
    "1": lambda ub: 1,
    "ub": lambda ub: ub,
    "ub+1": lambda ub: ub + 1,
    "2ub+3": lambda ub: 2 * ub + 3,
    "1000": lambda ub: 1000,
}


@pytest.mark.parametrize("upper_bound", [128, 8, 3, 1])
@pytest.mark.parametrize("length", list(LENGTHS))
def test_segments_are_the_originals(length, upper_bound):
    n = LENGTHS[length](upper_bound)
    want = [(p[0], p[-1] + 1) if p else (0, 0) for p in original_cut(n, upper_bound)]
    assert segments(n, upper_bound) == want


def test_segments_examples():
    assert segments(18, 8) == [(0, 6), (6, 12), (12, 18)]  # the original's comment
    assert segments(129, 128) == [(0, 64), (64, 128), (128, 129)]  # a short last piece
    assert segments(0, 128) == [(0, 0)]
    with pytest.raises(ValueError):
        segments(-1, 128)
    with pytest.raises(ValueError):
        segments(10, 0)


@given(st.integers(0, 5000), st.integers(1, 300))
def test_segments_cover_the_sentence_within_the_bound(length, upper_bound):
    cut = segments(length, upper_bound)
    assert cut[0][0] == 0 and cut[-1][1] == length
    assert all(a[1] == b[0] for a, b in zip(cut, cut[1:]))
    assert all(stop - start <= upper_bound for start, stop in cut)
    assert all(stop > start for start, stop in cut) or length == 0
    assert cut == [(p[0], p[-1] + 1) if p else (0, 0) for p in original_cut(length, upper_bound)]


# ---- revokenize --------------------------------------------------------------------


def tokenizations(text_length: int) -> st.SearchStrategy[list[tuple[int, int]]]:
    """Random tokenizations of a text: sorted, non-overlapping, non-empty spans with gaps
    (whitespace) between some of them."""
    cuts = st.lists(st.integers(0, text_length), unique=True).map(sorted)

    def spans(points: list[int], keep: list[bool]) -> list[tuple[int, int]]:
        edges = [0, *points, text_length]
        pieces = [(a, b) for a, b in zip(edges, edges[1:]) if b > a]
        return [p for p, k in zip(pieces, keep) if k]

    return cuts.flatmap(
        lambda points: st.lists(
            st.booleans(), min_size=len(points) + 1, max_size=len(points) + 1
        ).map(lambda keep: spans(points, keep))
    )


def revokenize_slowly(src, values, dst):
    """Every pair compared, IoU as a fraction: the rule without the two pointers."""
    from fractions import Fraction

    out = []
    for start, end in dst:
        best, best_iou = None, Fraction(0)
        for (s, e), value in zip(src, values):
            inter = max(0, min(e, end) - max(s, start))
            if inter and Fraction(inter, (e - s) + (end - start) - inter) > best_iou:
                best, best_iou = value, Fraction(inter, (e - s) + (end - start) - inter)
        out.append(best)
    return out


@settings(max_examples=200)
@given(st.integers(1, 200).flatmap(tokenizations))
def test_revokenize_identity(spans):
    values = [f"v{i}" for i in range(len(spans))]
    assert revokenize(spans, values, spans) == values


@settings(max_examples=300)
@given(st.integers(1, 120).flatmap(lambda n: st.tuples(tokenizations(n), tokenizations(n))))
def test_revokenize_is_the_best_iou_with_earlier_winning_ties(pair):
    src, dst = pair
    values = list(range(len(src)))
    assert revokenize(src, values, dst) == revokenize_slowly(src, values, dst)


def test_revokenize_hand_example():
    # "unbelievable tale": the vokenizer's tokens, with a BERT-style offset mapping whose
    # special tokens have empty spans
    cls, sep = (0, 0), (0, 0)
    un_believ_able = [cls, (0, 2), (2, 8), (8, 12), (13, 17), sep]
    vokens_a = [None, "v-un", "v-believ", "v-able", "v-tale", None]
    unbeliev_able = [cls, (0, 8), (8, 12), (13, 17), sep]
    # unbeliev: IoU 2/8 with un, 6/8 with believ; specials overlap nothing
    assert revokenize(un_believ_able, vokens_a, unbeliev_able) == [
        None,
        "v-believ",
        "v-able",
        "v-tale",
        None,
    ]
    # the other way: un (2/8) and believ (6/8) both lie inside unbeliev
    vokens_b = [None, "v-unbeliev", "v-able", "v-tale", None]
    assert revokenize(unbeliev_able, vokens_b, un_believ_able) == [
        None,
        "v-unbeliev",
        "v-unbeliev",
        "v-able",
        "v-tale",
        None,
    ]
    # ties: unbeliev against "unbe liev able" is 4/8 with unbe and 4/8 with liev, and the
    # whole word against it is 4/12 with each of the three: the earlier source wins
    unbe_liev_able = [(0, 4), (4, 8), (8, 12)]
    assert revokenize(unbe_liev_able, ["unbe", "liev", "able"], [(0, 8), (8, 12)]) == [
        "unbe",
        "able",
    ]
    assert revokenize(unbe_liev_able, ["unbe", "liev", "able"], [(0, 12)]) == ["unbe"]
    assert revokenize(unbe_liev_able, ["unbe", "liev", "able"], [(2, 6)]) == ["unbe"]
    # the space between the words overlaps nothing; a span across it takes the larger part
    assert revokenize(un_believ_able, vokens_a, [(12, 13)]) == [None]
    assert revokenize(un_believ_able, vokens_a, [(11, 15)]) == ["v-tale"]  # 1/5 < 2/6


def test_revokenize_refuses_bad_spans():
    with pytest.raises(ValueError, match="2 source spans but 1 source values"):
        revokenize([(0, 1), (1, 2)], ["a"], [(0, 1)])
    with pytest.raises(ValueError, match=r"source span 1 \(3, 2\) ends before it starts"):
        revokenize([(0, 1), (3, 2)], ["a", "b"], [(0, 1)])
    with pytest.raises(ValueError, match=r"destination span 1 \(2, 5\) starts before span 0"):
        revokenize([(0, 1)], ["a"], [(0, 4), (2, 5)])
    with pytest.raises(ValueError, match="sorted by start and not overlap"):
        revokenize([(5, 8), (0, 3)], ["a", "b"], [(0, 1)])
    assert revokenize([], [], [(0, 3), (3, 3)]) == [None, None]


# ---- diversity ---------------------------------------------------------------------


def test_diversity_hand_example():
    tokens = ["the", "cat", "the", "cat", "the", "dog"]
    voken_ids = [1, 2, 1, 3, 4, 2]
    # the: {1: 2, 4: 1}; cat: {2: 1, 3: 1}; dog: {2: 1}
    got = diversity(tokens, voken_ids, voken_set_size=10)
    assert got.token_types == 3
    assert got.vokens_per_type == pytest.approx(5 / 3)
    assert got.max_count == pytest.approx(4 / 3)
    assert got.mean_count == pytest.approx((1.5 + 1 + 1) / 3)
    assert got.std_count == pytest.approx(0.5 / 3)
    assert got.vokens_used == 4
    assert got.coverage == pytest.approx(0.4)
    assert diversity([7, 7], [0, 0]).coverage is None
    with pytest.raises(ValueError, match="1-d of one length"):
        diversity([1, 2], [1])
    with pytest.raises(ValueError, match="more than the set's 3"):
        diversity([1, 2, 3, 4], [0, 1, 2, 3], voken_set_size=3)


@settings(max_examples=50)
@given(st.lists(st.tuples(st.integers(0, 12), st.integers(0, 30)), min_size=1, max_size=300))
def test_diversity_is_the_originals_analysis(pairs):
    """The original's per-token dictionaries of counts, averaged the way it prints them."""
    counts: dict[int, dict[int, int]] = defaultdict(lambda: defaultdict(int))
    for token, voken in pairs:
        counts[token][voken] += 1
    per_type = np.array(
        [
            (len(c), max(c.values()), np.mean(list(c.values())), np.std(list(c.values())))
            for c in counts.values()
        ]
    )
    got = diversity([t for t, _ in pairs], [v for _, v in pairs])
    want = per_type.mean(axis=0)
    assert (got.vokens_per_type, got.max_count, got.mean_count, got.std_count) == pytest.approx(
        tuple(want)
    )
    assert got.vokens_used == len({v for _, v in pairs})


def test_score_histogram_has_fixed_edges():
    counts, edges = score_histogram([-1.0, -0.95, 0.0, 0.5, 1.0000001])
    assert len(edges) == 21 and edges[0] == -1.0 and edges[-1] == 1.0
    assert counts.sum() == 5
    assert counts[0] == 2 and counts[10] == 1 and counts[15] == 1 and counts[19] == 1
    with pytest.raises(ValueError, match="finite"):
        score_histogram([0.1, np.nan])
