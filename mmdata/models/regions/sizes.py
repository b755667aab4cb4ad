"""The input size a model resizes to, known without building the model (for ``prepare``)."""

from __future__ import annotations

from pathlib import Path

#: (shorter side, longest side) each model resizes to by default.
DEFAULT_SIZES = {
    "butd-r101-c4-vg": (600, 1000),  # bottom-up attention's Caffe test scale
    "torchvision-frcnn": (800, 1333),  # torchvision's GeneralizedRCNNTransform
    "detectron2": (800, 1333),  # detectron2's INPUT.MIN/MAX_SIZE_TEST defaults
}


def input_sizes(
    model: str,
    model_config: str | Path | None = None,
    min_size: int | None = None,
    max_size: int | None = None,
) -> tuple[int, int]:
    """The recipe's sizes, else the butd config file's, else the model's defaults."""
    low, high = DEFAULT_SIZES[model]
    if model == "butd-r101-c4-vg" and model_config is not None:
        from mmdata.models.regions.butd_extractor import load_config

        config = load_config(model_config)
        low, high = config.min_size, config.max_size
    return min_size or low, max_size or high
