"""UNITER's word-region alignment (WRA) loss: optimal transport between words and regions.

Chen et al., "UNITER: UNiversal Image-TExt Representation Learning" (ECCV 2020), section 3.2:
the transport plan between contextualised word outputs and region outputs is found with IPOT
(Xie et al., "A Fast Proximal Point Method for Computing Exact Wasserstein Distance", 2018)
over the cosine distance, beta = 0.5, 50 iterations, k = 1, and the distance is sum(T * C).
Follows the semantics of UNITER's ``model/ot.py`` (same update order, same pad handling);
the plan here is laid out like the cost, (B, words, regions).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

# the smallest positive float32: keeps reciprocals finite when a whole side is padding
_TINY = torch.finfo(torch.float32).tiny


def cost_matrix_cosine(x: Tensor, y: Tensor, eps: float = 1e-5) -> Tensor:
    """Cosine distance ``1 - cos(x_i, y_j)`` for every pair: (B, n, d), (B, m, d) -> (B, n, m)."""
    if x.dim() != 3 or y.dim() != 3 or x.shape[0] != y.shape[0] or x.shape[2] != y.shape[2]:
        raise ValueError(f"expected (B, n, d), (B, m, d); got {tuple(x.shape)}, {tuple(y.shape)}")
    x = F.normalize(x.float(), p=2, dim=-1, eps=eps)
    y = F.normalize(y.float(), p=2, dim=-1, eps=eps)
    return 1 - x @ y.transpose(1, 2)


def _scaling(denom: Tensor, pad: Tensor) -> Tensor:
    """``1 / denom`` on real positions, 0 on pads (so pads never receive mass)."""
    return torch.where(pad, 0.0, 1 / denom.clamp_min(_TINY))


@torch.no_grad()
def ipot(
    C: Tensor,
    x_len: Tensor,
    x_pad: Tensor,
    y_len: Tensor,
    y_pad: Tensor,
    joint_pad: Tensor,
    beta: float = 0.5,
    iteration: int = 50,
    k: int = 1,
) -> Tensor:
    """IPOT transport plan (B, n, m) for cost ``C`` (B, n, m); no gradient flows through it.

    ``x_len``/``y_len`` (B,) count the real rows/columns, ``x_pad`` (B, n) / ``y_pad`` (B, m) are
    True on padding and ``joint_pad`` (B, n, m) is their union. The marginals are uniform over
    the real entries only (1/x_len per real row, 1/y_len per real column); pads get 0.
    The row (x) marginal is the last one projected, so it holds exactly after every iteration;
    the column (y) marginal converges.
    """
    C = C.float()
    x_len = x_len.float().clamp_min(1)[:, None]
    y_len = y_len.float().clamp_min(1)[:, None]
    real = ~joint_pad
    # the proximal kernel exp(-C / beta); zero on pads so pad rows/columns stay empty
    A = torch.exp(-C / beta) * real
    T = real.float()  # T^(1) = 1 1^T on the real block
    sigma = (~x_pad).float() / x_len  # (B, n) row scaling
    for _ in range(iteration):
        Q = A * T
        for _ in range(k):
            # Sinkhorn steps on the proximal problem: columns first, then rows (UNITER's order)
            delta = _scaling(y_len * (sigma[:, None, :] @ Q).squeeze(1), y_pad)  # (B, m)
            sigma = _scaling(x_len * (Q @ delta[:, :, None]).squeeze(2), x_pad)  # (B, n)
        T = sigma[:, :, None] * Q * delta[:, None, :]
    return T.masked_fill(joint_pad, 0)


def optimal_transport_dist(
    txt: Tensor,
    img: Tensor,
    txt_pad: Tensor,
    img_pad: Tensor,
    beta: float = 0.5,
    iteration: int = 50,
    k: int = 1,
) -> Tensor:
    """OT distance ``sum(T * C)`` (B,) float32 between words (B, n, d) and regions (B, m, d).

    ``txt_pad`` (B, n) / ``img_pad`` (B, m) are True on padding. The plan is detached, so the
    gradient reaches ``txt`` and ``img`` only through the cost (as in UNITER).
    """
    txt_pad, img_pad = txt_pad.bool(), img_pad.bool()
    if txt_pad.shape != txt.shape[:2] or img_pad.shape != img.shape[:2]:
        raise ValueError("pad masks must be (B, n) and (B, m) like the embeddings")
    joint_pad = txt_pad[:, :, None] | img_pad[:, None, :]
    # computed in float32 whatever the input dtype: exp(-C / beta) and the reciprocals
    # are too coarse in bf16/fp16
    cost = cost_matrix_cosine(txt, img).masked_fill(joint_pad, 0)
    txt_len = (~txt_pad).sum(1)
    img_len = (~img_pad).sum(1)
    T = ipot(cost.detach(), txt_len, txt_pad, img_len, img_pad, joint_pad, beta, iteration, k)
    return (cost * T).sum(dim=(1, 2))


def wra_loss(
    txt: Tensor, img: Tensor, txt_pad: Tensor, img_pad: Tensor, is_positive: Tensor
) -> Tensor:
    """Scalar WRA loss as UNITER trains it: the OT distances of positive pairs minus
    those of negative pairs, summed and divided by the number of pairs.

    ``is_positive`` (B,) is bool or 0/1. A side with no pairs contributes 0. The caller applies
    UNITER's weight (0.1).
    """
    dist = optimal_transport_dist(txt, img, txt_pad, img_pad)
    pos = is_positive.to(device=dist.device).bool().float()
    neg = 1 - pos
    # masked sums over clamped counts: an empty side gives 0 with no host sync or NaN
    # UNITER's pretrain.py: (sum over positives - sum over negatives) / all pairs
    return ((dist * pos).sum() - (dist * neg).sum()) / (pos.sum() + neg.sum()).clamp_min(1)
