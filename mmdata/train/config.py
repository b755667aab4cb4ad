"""Training configuration: a YAML file -> TrainConfig, every key checked."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from mmdata.core.errors import MmdataError
from mmdata.models.vlp import ModelConfig

#: Objectives and what they are (weights: sampling ratios, one task per batch, as UNITER).
OBJECTIVES = {
    "mlm": "masked language modelling conditioned on the regions (UNITER)",
    "itm": "image-text matching with in-batch and hard negatives (UNITER)",
    "mrfr": "masked region feature regression (UNITER)",
    "mrc": "masked region classification against the detector's labels (UNITER)",
    "mrc_kl": "masked region classification, KL to the detector's soft labels (UNITER)",
    "sgp": "scene-graph prediction: mask the words of objects/attributes/relations (ERNIE-ViL)",
    "tags": "object tags as extra text tokens, masked token prediction (Oscar)",
    "tag_contrast": "polluted tags: are these the image's tags? (Oscar's contrastive loss)",
    "contrastive": "image-text contrastive loss on pooled outputs (CLIP / ALIGN)",
    "voken_cls": "voken classification beside MLM on the same text-only step (Vokenization)",
}
#: Vokenization's ablations of the voken labels (its vlm/data.py): uniform random vokens,
#: the caption's vokens shuffled or reversed, or the token ids themselves.
VOKEN_ABLATIONS = ("none", "random", "shuffle", "reverse", "token")


class ConfigError(MmdataError):
    """A training config that cannot be used (names the file and the key)."""


@dataclass
class OptimConfig:
    lr: float = 5e-4
    weight_decay: float = 0.01
    warmup_steps: int = 20
    steps: int = 300
    batch_size: int = 32
    grad_accum: int = 1
    max_grad_norm: float = 2.0
    # scale each step's gradient to unit norm, so every task's batch moves the model as
    # much (mmdata.train.balance); false: UNITER's plain mixing, where the tasks with the
    # largest gradients set everyone's step size (max_grad_norm clips only then)
    normalise_gradients: bool = True


@dataclass
class EvalConfig:
    where: str | None = None  # SQL over sample columns picking the held-out images
    fraction: float = 0.2  # else: this fraction of images, by a hash of image_id
    max_images: int = 1000
    itm_rerank: int = 0  # re-rank the contrastive top-k with the ITM head (0: off)


@dataclass
class VokenConfig:
    """Where ``voken_cls`` finds its labels: a vokens layer of the corpus (a ``vokenize``
    layer run), its weight beside MLM, and an optional ablation."""

    layer: str = ""
    weight: float = 1.0
    ablation: str = "none"


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    vokens: VokenConfig = field(default_factory=VokenConfig)
    objectives: dict[str, float] = field(
        default_factory=lambda: {"mlm": 1.0, "itm": 1.0, "mrfr": 1.0, "mrc": 1.0}
    )
    wra_weight: float = 0.1  # word-region alignment, added to ITM batches (UNITER: 0.1)
    itm_hard_fraction: float = 0.5  # of ITM negatives, chosen by contrastive similarity
    tokenizer: str | None = None  # a BERT vocab.txt; None: trained on the corpus
    vocab_size: int = 2000
    seed: int = 0
    shuffle_buffer: int = 2000
    workers: int = 0
    checkpoint_every: int = 100
    log_every: int = 10
    device: str = "auto"

    @property
    def enabled(self) -> dict[str, float]:
        return {k: v for k, v in self.objectives.items() if v > 0}


def _build(cls: type, values: Any, where: str, source: str) -> Any:
    if not isinstance(values, dict):
        raise ConfigError(f"{source}: {where or 'the config'} must be a mapping")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(
            f"{source}: unknown key(s) {', '.join(where + k for k in unknown)}; "
            f"valid: {', '.join(where + k for k in fields)}"
        )
    defaults = cls()
    out = {}
    for name, value in values.items():
        default = getattr(defaults, name)
        if dataclasses.is_dataclass(default):
            out[name] = _build(type(default), value, f"{where}{name}.", source)
            continue
        if isinstance(default, float) and isinstance(value, int) and not isinstance(value, bool):
            value = float(value)
        wrong = default is not None and (
            isinstance(default, bool) != isinstance(value, bool)
            or not isinstance(value, type(default))
        )
        if wrong:
            raise ConfigError(
                f"{source}: {where}{name} must be {type(default).__name__}, got {value!r}"
            )
        out[name] = value
    return cls(**out)


def load_config(path: str | Path) -> TrainConfig:
    """Read and check a training config."""
    source = str(path)
    try:
        values = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{source}: cannot read the training config: {exc}") from None
    config = _build(TrainConfig, values, "", source)
    unknown = sorted(set(config.objectives) - set(OBJECTIVES))
    if unknown:
        raise ConfigError(
            f"{source}: unknown objective(s) {', '.join(unknown)}; valid: {', '.join(OBJECTIVES)}"
        )
    if not config.enabled:
        raise ConfigError(f"{source}: objectives: give at least one a weight > 0")
    if min(config.checkpoint_every, config.log_every, config.optim.grad_accum) < 1:
        raise ConfigError(
            f"{source}: checkpoint_every, log_every and optim.grad_accum must be >= 1"
        )
    if config.enabled.get("voken_cls") and not config.vokens.layer:
        raise ConfigError(f"{source}: objective voken_cls needs vokens.layer (a vokenize layer)")
    if config.vokens.ablation not in VOKEN_ABLATIONS:
        raise ConfigError(
            f"{source}: vokens.ablation must be one of {list(VOKEN_ABLATIONS)}, "
            f"got {config.vokens.ablation!r}"
        )
    if config.model.hidden % config.model.heads:
        raise ConfigError(f"{source}: model.hidden must be a multiple of model.heads")
    return config
