"""What every region backend shares: the ``Extractor`` protocol, the extractor id, the
torch device (autocast is mmdata.core.devices'). Backends import this module; none imports
another.

``factory.build_extractor(model, weights, ...)`` returns an object whose ``extract(images,
given)`` turns prepared images (mmdata.models.regions.preprocess) into REGIONS rows. Models:

- ``butd-r101-c4-vg``: bottom-up attention (mmdata.models.regions.butd), detectron2 checkpoints;
- ``torchvision-frcnn``: torchvision's ResNet-50 FPN Faster R-CNN with the user's weights
  (mmdata.models.regions.tv_frcnn);
- ``detectron2``: any detectron2 config + weights, when detectron2 is importable
  (mmdata.models.regions.detectron2_adapter).

The extractor id is ``<model>@<12 hex>``, a hash of the architecture config, the weights'
sha256 and the selection options: two rows with the same id came from the same thing.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from collections.abc import Sequence
from typing import Any, Protocol

import numpy as np
import torch

from mmdata.core.devices import resolve_device
from mmdata.models.regions.preprocess import Prepared
from mmdata.models.regions.selection import ExtractorError, Selection


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
