"""The torch device a model stage runs on, from its ``device`` argument, and the mixed
precision it runs in. torch is imported inside the functions: recipes validate without it."""

from __future__ import annotations

import contextlib
from typing import Any


def resolve_device(device: str, error: type[Exception] = ValueError) -> str:
    """``auto`` becomes cuda when it is available; an explicit cuda must be available
    (else ``error``, whose message says how to get a GPU on Ray)."""
    import torch  # model stages only: recipes validate without importing torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise error(
            f"device {device!r} but CUDA is not available here "
            "(on Ray, give the stage resources: {num_gpus: 1})"
        )
    return device


def autocast(device: Any, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; nothing (fp32) elsewhere or for ``fp32``. ``device``:
    a torch.device. The one autocast of the detectors, the CLIP scorer and the trainer."""
    import torch

    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)
