"""``build_extractor``: a region model by name (each backend imported only when asked
for, so torch-only installs never import detectron2)."""

from __future__ import annotations

from pathlib import Path

from mmdata.models.regions.base import Extractor, torch_device
from mmdata.models.regions.selection import MODELS, ExtractorError, Selection


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
        from mmdata.models.regions.butd_extractor import ButdExtractor

        return ButdExtractor(weights, precision=precision, proposals=proposals, **common)
    if model == "torchvision-frcnn":
        from mmdata.models.regions.tv_frcnn import TorchvisionExtractor

        return TorchvisionExtractor(weights, precision=precision, **common)
    if model == "detectron2":
        from mmdata.models.regions.detectron2_adapter import Detectron2Extractor

        return Detectron2Extractor(weights, **common)
    raise ExtractorError(f"unknown region model {model!r}; choose from {', '.join(MODELS)}")
