"""Loading detectron2-format checkpoints into mmdata's detectors, strictly.

Accepted files:

- ``.pkl``: a pickled dict. detectron2's own format (``{"model": {name: ndarray},
  "__author__": ...}``, what py-bottom-up-attention ships) is used as named. Anything
  else is read as Caffe2/Detectron (``{"blobs": ...}`` or a flat dict of
  ``res2_0_branch2a_w``-style blobs): names go through detectron2's Caffe2 renaming and
  class rows are moved from Caffe's background-first to detectron2's background-last.
- ``.pth``/``.pt``: a torch state dict, bare or under ``"model"`` / ``"state_dict"``.

Every parameter and buffer of the model must get a value of the right shape, and every
key of the file must be used: otherwise the load fails listing the missing, unexpected
and mis-shaped keys. The one allowance: Caffe2 files fold batch norm into scale and
shift, so their frozen-BN running mean/var may be absent (they are then 0 and 1).
"""

from __future__ import annotations

import hashlib
import pickle
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from mmdata.core.errors import MmdataError
from mmdata.core.io import written_whole

_LISTED = 12  # keys shown per kind in an error message


class CheckpointError(MmdataError, ValueError):
    """A checkpoint that cannot be read, or does not fit the model (message says how)."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_checkpoint(path: str | Path) -> tuple[dict[str, torch.Tensor], bool]:
    """``(state dict, is_caffe2)`` of a .pkl or .pth file."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint file")
    try:
        if path.suffix == ".pkl":
            with path.open("rb") as fh:
                data = pickle.load(fh, encoding="latin1")
        else:
            data = torch.load(path, map_location="cpu", weights_only=True)
    except (OSError, EOFError, pickle.UnpicklingError, RuntimeError, ValueError) as exc:
        raise CheckpointError(
            f"{path}: not a readable checkpoint ({type(exc).__name__}: {exc})"
        ) from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a dict of weights, found {type(data).__name__}")
    caffe2 = False
    if "model" in data and isinstance(data["model"], dict):
        caffe2 = data.get("__author__") == "Caffe2"
        data = data["model"]
    elif "state_dict" in data and isinstance(data["state_dict"], dict):
        data = data["state_dict"]
    elif "blobs" in data and isinstance(data["blobs"], dict):
        caffe2, data = True, data["blobs"]
    elif path.suffix == ".pkl" and data and all("." not in str(k) for k in data):
        caffe2 = True  # Detectron's flat blob dict
    state: dict[str, torch.Tensor] = {}
    for key, value in data.items():
        if str(key).endswith("_momentum"):
            continue  # Caffe2 solver state, not weights
        if isinstance(value, np.ndarray | np.generic):
            value = torch.from_numpy(np.array(value))
        if not isinstance(value, torch.Tensor):
            raise CheckpointError(f"{path}: {key!r} is a {type(value).__name__}, not an array")
        state[str(key)] = value
    return state, caffe2


def caffe2_name(name: str) -> str:
    """detectron2's renaming of Caffe2 blob names (``res2_0_branch2a_w`` -> ...)."""
    n = name.replace("_", ".")
    for pattern, repl in (
        (r"\.b$", ".bias"),
        (r"\.w$", ".weight"),
        (r"bn\.(s|gamma)$", "norm.weight"),
        (r"bn\.(bias|beta)$", "norm.bias"),
        (r"bn\.(rm|running\.mean)$", "norm.running_mean"),
        (r"bn\.(riv|running\.var)$", "norm.running_var"),
        (r"^res\.conv1\.norm\.", "conv1.norm."),
        (r"^conv1\.", "stem.conv1."),
        (r"\.branch1\.", ".shortcut."),
        (r"\.branch2a\.", ".conv1."),
        (r"\.branch2b\.", ".conv2."),
        (r"\.branch2c\.", ".conv3."),
        (r"^conv\.rpn\.", "proposal_generator.rpn_head.conv."),
        (r"^rpn\.cls\.logits\.", "proposal_generator.rpn_head.objectness_logits."),
        (r"^rpn\.bbox\.pred\.", "proposal_generator.rpn_head.anchor_deltas."),
        (r"^bbox\.pred\.", "roi_heads.box_predictor.bbox_pred."),
        (r"^cls\.score\.", "roi_heads.box_predictor.cls_score."),
        (r"^cls\.embedding\.", "roi_heads.box_predictor.cls_embedding."),
        (r"^fc\.attr\.", "roi_heads.box_predictor.fc_attr."),
        (r"^attr\.score\.", "roi_heads.box_predictor.attr_score."),
        (r"^(stem|res[234])\.", r"backbone.\1."),
        (r"^res5\.", "roi_heads.res5."),
    ):
        n = re.sub(pattern, repl, n)
    return n


def caffe_to_detectron2_rows(key: str, value: torch.Tensor) -> torch.Tensor:
    """Caffe puts background (and "no attribute") first; detectron2 puts it last, and its
    class-specific box regression has no background rows."""
    stem = key.rsplit(".", 1)[0]
    if stem.endswith("box_predictor.bbox_pred"):
        return value[4:]
    if stem.endswith(("box_predictor.cls_score", "box_predictor.cls_embedding")) or stem.endswith(
        "box_predictor.attr_score"
    ):
        return torch.cat([value[1:], value[:1]])
    return value


def fit_state(
    state: dict[str, torch.Tensor], model: nn.Module, caffe2: bool, source: str
) -> dict[str, torch.Tensor]:
    """``state`` renamed onto ``model``'s keys; raises listing every key that does not fit."""
    if caffe2:
        state = {caffe2_name(k): v for k, v in state.items()}
        state = {k: caffe_to_detectron2_rows(k, v) for k, v in state.items()}
    state = {k.removeprefix("module."): v for k, v in state.items()}
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    if caffe2:  # Caffe2 folds BN into scale/shift: no running statistics in the file
        for k in [k for k in missing if k.endswith(("norm.running_mean", "norm.running_var"))]:
            fill = torch.zeros_like if k.endswith("mean") else torch.ones_like
            state[k] = fill(expected[k])
        missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    shapes = [
        f"{k}: file {tuple(v.shape)}, model {tuple(expected[k].shape)}"
        for k, v in state.items()
        if k in expected and tuple(v.shape) != tuple(expected[k].shape)
    ]
    if missing or unexpected or shapes:
        parts = []
        for label, keys in (("missing", missing), ("unexpected", unexpected), ("shape", shapes)):
            if keys:
                shown = ", ".join(keys[:_LISTED]) + (" ..." if len(keys) > _LISTED else "")
                parts.append(f"{len(keys)} {label} ({shown})")
        raise CheckpointError(f"{source}: does not fit the model: " + "; ".join(parts))
    return {k: v.to(expected[k].dtype) for k, v in state.items()}


def load_weights(model: nn.Module, path: str | Path) -> str:
    """Load ``path`` into ``model`` strictly; returns the file's sha256."""
    state, caffe2 = read_checkpoint(path)
    model.load_state_dict(fit_state(state, model, caffe2, str(path)), strict=True)
    return file_sha256(path)


def as_detectron2_pkl(model: nn.Module, path: str | Path, author: str = "mmdata") -> None:
    """Save ``model`` as detectron2's model-zoo .pkl (numpy blobs under ``"model"``)."""
    blobs: dict[str, Any] = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    with written_whole(Path(path)) as partial, partial.open("wb") as fh:
        pickle.dump({"model": blobs, "__author__": author}, fh, protocol=4)
