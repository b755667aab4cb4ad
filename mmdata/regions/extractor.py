"""Region extractors: a detector, its weights and the box-selection rule, behind one call.

``build_extractor(model, weights, ...)`` returns an object whose ``extract(images,
given)`` turns prepared images (mmdata.regions.preprocess) into REGIONS rows. Models:

- ``butd-r101-c4-vg``: bottom-up attention (mmdata.regions.butd), detectron2 checkpoints;
- ``torchvision-frcnn``: torchvision's ResNet-50 FPN Faster R-CNN with the user's weights
  (mmdata.regions.tv_frcnn);
- ``detectron2``: any detectron2 config + weights, when detectron2 is importable
  (mmdata.regions.detectron2_adapter).

The extractor id is ``<model>@<12 hex>``, a hash of the architecture config, the weights'
sha256 and the selection options: two rows with the same id came from the same thing.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from mmdata.devices import resolve_device
from mmdata.regions.preprocess import Prepared
from mmdata.regions.selection import MODELS, ExtractorError, Selection


class Extractor(Protocol):
    extractor_id: str
    min_size: int
    max_size: int

    def extract(
        self, images: Sequence[Prepared], given: Sequence[np.ndarray | None] | None = None
    ) -> list[dict[str, Any]]: ...


def extractor_id(model: str, config: Any, weights_sha256: str, selection: Selection) -> str:
    """``model@<12 hex>`` from everything that decides the output."""
    blob = json.dumps(
        {
            "config": config,
            "weights": weights_sha256,
            "selection": dataclasses.asdict(selection),
        },
        sort_keys=True,
        default=str,
    )
    return f"{model}@{hashlib.sha256(blob.encode()).hexdigest()[:12]}"


def torch_device(device: str) -> torch.device:
    """The ``device`` argument as a torch device (``auto``: cuda when available)."""
    try:
        return torch.device(resolve_device(device, ExtractorError))
    except RuntimeError as exc:
        raise ExtractorError(f"device must be auto, cpu, cuda or cuda:N: {exc}") from None


def autocast(device: torch.device, precision: str) -> contextlib.AbstractContextManager:
    """bf16/fp16 autocast on CUDA; fp32 (no autocast) elsewhere."""
    if device.type != "cuda" or precision == "fp32":
        return contextlib.nullcontext()
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    return torch.autocast("cuda", dtype=dtype)


def build_extractor(
    model: str,
    weights: str | Path | None,
    *,
    selection: Selection,
    device: str = "auto",
    precision: str = "auto",
    model_config: str | Path | None = None,
    input_min_size: int | None = None,
    input_max_size: int | None = None,
    proposals: int | None = None,
) -> Extractor:
    """The extractor ``model`` with ``weights`` (see the module doc for the choices)."""
    selection.check()
    dev = torch_device(device)
    if precision == "auto":
        precision = "fp16" if dev.type == "cuda" else "fp32"
    if precision not in ("fp32", "fp16", "bf16"):
        raise ExtractorError(f"precision must be auto, fp32, fp16 or bf16, got {precision!r}")
    common = {
        "selection": selection,
        "device": dev,
        "model_config": model_config,
        "input_min_size": input_min_size,
        "input_max_size": input_max_size,
    }
    if model == "butd-r101-c4-vg":
        from mmdata.regions.butd_extractor import ButdExtractor

        return ButdExtractor(weights, precision=precision, proposals=proposals, **common)
    if model == "torchvision-frcnn":
        from mmdata.regions.tv_frcnn import TorchvisionExtractor

        return TorchvisionExtractor(weights, precision=precision, **common)
    if model == "detectron2":
        from mmdata.regions.detectron2_adapter import Detectron2Extractor

        return Detectron2Extractor(weights, **common)
    raise ExtractorError(f"unknown region model {model!r}; choose from {', '.join(MODELS)}")
