"""The torch device a model stage runs on, from its ``device`` argument."""

from __future__ import annotations


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
