"""Gradient normalisation for one-task-per-batch training.

With one objective per batch, AdamW's moment estimates are shared by every task, so the
tasks with the largest gradients (MRC, SGP, tags and MLM: norms of 3-8 at initialisation,
against 0.3-0.6 for ITM and 0.02-0.04 for the contrastive loss) set the scale every other
task's update is divided by, and in a short run the small-gradient tasks (ITM and Oscar's
polluted tags, two-way classifiers on the pooled output) stay at chance.
Scaling each step's gradient to unit norm before the optimizer gives every task's batch a
step of the same size. Measured on the shapes corpus (docs/benchmarks.md): ITM accuracy
0.53 without, 0.76-0.78 with, in 1,200 tiny steps over eight objectives.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch


def normalise_gradients(parameters: Iterable[torch.nn.Parameter]) -> float:
    """Scales the gradients in place to unit total norm; returns the norm they had (a
    non-finite or zero norm is left as it is, for clipping and the optimizer to meet)."""
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return 0.0
    norm = float(torch.nn.utils.get_total_norm(grads))
    if math.isfinite(norm) and norm > 0:
        torch._foreach_mul_(grads, 1.0 / norm)
    return norm
