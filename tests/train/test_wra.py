"""UNITER's WRA loss: IPOT plan marginals, pad invariance, gradients, and a loop reference."""

from __future__ import annotations

import math

import pytest
import torch

from mmdata.train.wra import cost_matrix_cosine, ipot, optimal_transport_dist, wra_loss


def _pads(lens: list[int], size: int) -> torch.Tensor:
    """(B, size) bool mask, True past each example's length."""
    return torch.arange(size)[None, :] >= torch.tensor(lens)[:, None]


def _plan(txt, img, txt_pad, img_pad) -> tuple[torch.Tensor, torch.Tensor]:
    """(masked cost, IPOT plan) exactly as optimal_transport_dist builds them."""
    joint = txt_pad[:, :, None] | img_pad[:, None, :]
    C = cost_matrix_cosine(txt, img).masked_fill(joint, 0)
    T = ipot(C, (~txt_pad).sum(1), txt_pad, (~img_pad).sum(1), img_pad, joint)
    return C, T


def _ipot_loop(C: list[list[float]], beta: float, iteration: int, k: int) -> list[list[float]]:
    """IPOT for one unpadded (n, m) cost, written out with plain loops (UNITER's update order)."""
    n, m = len(C), len(C[0])
    A = [[math.exp(-C[i][j] / beta) for j in range(m)] for i in range(n)]
    T = [[1.0] * m for _ in range(n)]
    sigma = [1.0 / n] * n
    delta = [0.0] * m
    for _ in range(iteration):
        Q = [[A[i][j] * T[i][j] for j in range(m)] for i in range(n)]
        for _ in range(k):
            delta = [1.0 / (m * sum(sigma[i] * Q[i][j] for i in range(n))) for j in range(m)]
            sigma = [1.0 / (n * sum(Q[i][j] * delta[j] for j in range(m))) for i in range(n)]
        T = [[sigma[i] * Q[i][j] * delta[j] for j in range(m)] for i in range(n)]
    return T


def test_cost_matrix_is_one_minus_cosine():
    g = torch.Generator().manual_seed(0)
    x, y = torch.randn(2, 3, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    expected = 1 - torch.nn.functional.cosine_similarity(x[:, :, None], y[:, None], dim=-1)
    torch.testing.assert_close(cost_matrix_cosine(x, y), expected, atol=1e-6, rtol=0)


def test_plan_marginals_uniform_over_real_tokens_and_zero_on_pads():
    g = torch.Generator().manual_seed(1)
    n_real, m_real = [9, 5, 9, 2], [7, 7, 3, 6]
    txt, img = torch.randn(4, 9, 16, generator=g), torch.randn(4, 7, 16, generator=g)
    txt_pad, img_pad = _pads(n_real, 9), _pads(m_real, 7)
    _, T = _plan(txt, img, txt_pad, img_pad)
    rows, cols = T.sum(2), T.sum(1)
    for b in range(4):
        n, m = n_real[b], m_real[b]
        torch.testing.assert_close(rows[b, :n], torch.full((n,), 1 / n), atol=1e-3, rtol=0)
        torch.testing.assert_close(cols[b, :m], torch.full((m,), 1 / m), atol=1e-3, rtol=0)
        assert torch.all(T[b, n:] == 0) and torch.all(T[b, :, m:] == 0)
        assert T[b].sum().item() == pytest.approx(1.0, abs=1e-5)
    assert torch.all(T >= 0)


def test_identical_embeddings_give_zero_distance_and_permutation_plan():
    g = torch.Generator().manual_seed(2)
    txt = torch.randn(1, 6, 32, generator=g)
    perm = torch.randperm(6, generator=g)
    img = txt[:, perm]  # region j is word perm[j]
    pad = torch.zeros(1, 6, dtype=torch.bool)
    _, T = _plan(txt, img, pad, pad)
    assert optimal_transport_dist(txt, img, pad, pad).item() == pytest.approx(0.0, abs=1e-4)
    match = torch.zeros(6, 6)
    match[perm, torch.arange(6)] = 1 / 6
    torch.testing.assert_close(T[0], match, atol=1e-4, rtol=0)


def test_orthogonal_embeddings_give_distance_one():
    eye = torch.eye(8)
    txt, img = eye[None, :5], eye[None, 5:]  # words e0..e4, regions e5..e7
    dist = optimal_transport_dist(
        txt, img, torch.zeros(1, 5, dtype=torch.bool), torch.zeros(1, 3, dtype=torch.bool)
    )
    assert dist.item() == pytest.approx(1.0, abs=1e-5)


def test_junk_padding_leaves_distance_unchanged():
    g = torch.Generator().manual_seed(3)
    n_real, m_real = [4, 6, 3], [5, 2, 7]
    txt, img = torch.randn(3, 9, 16, generator=g), torch.randn(3, 10, 16, generator=g)
    dist = optimal_transport_dist(txt, img, _pads(n_real, 9), _pads(m_real, 10))
    for b in range(3):
        n, m = n_real[b], m_real[b]
        alone = optimal_transport_dist(
            txt[b : b + 1, :n],
            img[b : b + 1, :m],
            torch.zeros(1, n, dtype=torch.bool),
            torch.zeros(1, m, dtype=torch.bool),
        )
        assert dist[b].item() == pytest.approx(alone.item(), abs=1e-5)
    # different junk (large, and aligned with real tokens) in the padded slots changes nothing
    txt2, img2 = txt.clone(), img.clone()
    txt2[_pads(n_real, 9)] = 100 * torch.randn(int(_pads(n_real, 9).sum()), 16, generator=g)
    img2[_pads(m_real, 10)] = img[0, 0] * 50
    dist2 = optimal_transport_dist(txt2, img2, _pads(n_real, 9), _pads(m_real, 10))
    torch.testing.assert_close(dist2, dist, atol=1e-5, rtol=0)


def test_gradient_reaches_inputs_through_cost_only():
    g = torch.Generator().manual_seed(4)
    txt = torch.randn(2, 5, 8, generator=g, requires_grad=True)
    img = torch.randn(2, 4, 8, generator=g, requires_grad=True)
    txt_pad, img_pad = _pads([5, 3], 5), _pads([4, 2], 4)
    optimal_transport_dist(txt, img, txt_pad, img_pad).sum().backward()
    for t in (txt, img):
        assert t.grad is not None and torch.isfinite(t.grad).all() and t.grad.abs().sum() > 0
    # pads are outside the loss
    assert torch.all(txt.grad[1, 3:] == 0) and torch.all(img.grad[1, 2:] == 0)

    C, T = _plan(txt, img, txt_pad, img_pad)
    assert not T.requires_grad and T.grad_fn is None  # the plan is a constant
    # so the gradient is that of sum(C * T) with T held fixed
    gt, gi = torch.autograd.grad((C * T).sum(), (txt, img))
    torch.testing.assert_close(txt.grad, gt, atol=1e-6, rtol=0)
    torch.testing.assert_close(img.grad, gi, atol=1e-6, rtol=0)


def test_low_precision_inputs_computed_in_float32():
    g = torch.Generator().manual_seed(5)
    txt = torch.randn(2, 5, 8, generator=g).bfloat16().requires_grad_()
    img = torch.randn(2, 4, 8, generator=g).bfloat16().requires_grad_()
    pad_t, pad_i = _pads([5, 4], 5), _pads([4, 3], 4)
    dist = optimal_transport_dist(txt, img, pad_t, pad_i)
    assert dist.dtype == torch.float32
    ref = optimal_transport_dist(txt.detach().float(), img.detach().float(), pad_t, pad_i)
    torch.testing.assert_close(dist, ref, atol=1e-6, rtol=0)
    dist.sum().backward()
    assert txt.grad.dtype == torch.bfloat16 and torch.isfinite(txt.grad.float()).all()


def test_ipot_matches_loop_reference():
    g = torch.Generator().manual_seed(6)
    txt, img = torch.randn(2, 6, 8, generator=g), torch.randn(2, 5, 8, generator=g)
    txt_pad, img_pad = _pads([6, 4], 6), _pads([5, 3], 5)
    C, T = _plan(txt, img, txt_pad, img_pad)
    for b, (n, m) in enumerate([(6, 5), (4, 3)]):  # unpadded, and the real block of a padded one
        expected = _ipot_loop(C[b, :n, :m].tolist(), beta=0.5, iteration=50, k=1)
        torch.testing.assert_close(T[b, :n, :m], torch.tensor(expected), atol=1e-5, rtol=0)
    # k > 1 runs more Sinkhorn steps per proximal iteration: same algorithm, same answer
    T3 = ipot(C[:1], torch.tensor([6]), txt_pad[:1], torch.tensor([5]), img_pad[:1],
              torch.zeros(1, 6, 5, dtype=torch.bool), iteration=20, k=3)  # fmt: skip
    expected = _ipot_loop(C[0].tolist(), beta=0.5, iteration=20, k=3)
    torch.testing.assert_close(T3[0], torch.tensor(expected), atol=1e-5, rtol=0)


def test_wra_loss_lower_for_matched_pairs():
    g = torch.Generator().manual_seed(7)
    txt = torch.randn(4, 6, 16, generator=g)
    matched = txt[:, torch.randperm(6, generator=g)[:5]]  # regions are a subset of the words
    mismatched = torch.randn(4, 5, 16, generator=g)
    txt_pad, img_pad = _pads([6, 5, 6, 4], 6), torch.zeros(4, 5, dtype=torch.bool)
    pos = torch.ones(4, dtype=torch.bool)
    good = wra_loss(txt, matched, txt_pad, img_pad, pos)
    bad = wra_loss(txt, mismatched, txt_pad, img_pad, pos)
    # about 0.24 vs 0.74: unpartnered words keep the matched case above 0
    assert good.item() < bad.item() - 0.3


def test_wra_loss_is_uniters_and_handles_one_sided_batches():
    g = torch.Generator().manual_seed(8)
    txt = torch.randn(5, 6, 8, generator=g, requires_grad=True)
    img = torch.randn(5, 4, 8, generator=g)
    txt_pad, img_pad = _pads([6, 3, 5, 6, 2], 6), _pads([4, 4, 2, 3, 1], 4)
    dist = optimal_transport_dist(txt, img, txt_pad, img_pad).detach()
    labels = torch.tensor([1, 0, 1, 1, 0])
    loss = wra_loss(txt, img, txt_pad, img_pad, labels)
    expected = (dist[labels == 1].sum() - dist[labels == 0].sum()) / len(labels)
    assert loss.dtype == torch.float32 and loss.dim() == 0
    assert loss.item() == pytest.approx(expected.item(), abs=1e-6)

    no_neg = wra_loss(txt, img, txt_pad, img_pad, torch.ones(5, dtype=torch.bool))
    assert no_neg.item() == pytest.approx(dist.mean().item(), abs=1e-6)
    no_neg.backward()
    assert torch.isfinite(txt.grad).all()
    no_pos = wra_loss(txt, img, txt_pad, img_pad, torch.zeros(5, dtype=torch.bool))
    assert no_pos.item() == pytest.approx(-dist.mean().item(), abs=1e-6)


def test_fully_padded_example_gives_zero_not_nan():
    g = torch.Generator().manual_seed(9)
    txt, img = torch.randn(2, 3, 8, generator=g), torch.randn(2, 4, 8, generator=g)
    dist = optimal_transport_dist(txt, img, _pads([3, 2], 3), _pads([4, 0], 4))
    assert torch.isfinite(dist).all() and dist[1].item() == 0.0 and dist[0].item() > 0
