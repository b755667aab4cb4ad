"""``mmdata train-vokenizer``: fit a vokenizer (mmdata.models.vokenizer) on a captioned
corpus, evaluate token-to-image retrieval on held-out images, save it.

The original's recipe (``xmatching/``): COCO captions, at most 20 tokens, Adam 1e-3, batch
256, 20 epochs, the paired hinge loss (margin 0.5: each half of a batch is the other
half's negatives, averaged over real tokens). ``loss: infonce`` swaps in a token-level
softmax over the batch's images instead. ``shuffle_pairs: true`` trains on captions
paired with random images: the control that must stay at chance.

Evaluation: every token of every held-out caption (or only ``eval_words``) ranks the
held-out images by score; R@K is how often the caption's own image is in the top K;
chance is K / images.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import yaml

from mmdata.core.devices import resolve_device
from mmdata.core.io import written_whole
from mmdata.core.progress import Progress
from mmdata.models.vokenizer import (
    Vokenizer,
    VokenizerConfig,
    VokenizerError,
    load_backbone,
    load_bert,
    load_trainer_text,
    pixels,
    save_vokenizer,
    text_batch,
)
from mmdata.models.wordpiece import Tokenizer
from mmdata.stream import ShardStream
from mmdata.stream.decode import region_tensors
from mmdata.train.config import ConfigError
from mmdata.train.loop import image_fraction, vocabulary
from mmdata.train.objectives import word_candidates

log = logging.getLogger(__name__)
LOSSES = ("hinge", "infonce")


@dataclass
class VokenizerTraining:
    """A ``train-vokenizer`` config (YAML): the model under ``vokenizer:``, the rest here."""

    vokenizer: VokenizerConfig = field(default_factory=VokenizerConfig)
    loss: str = "hinge"
    margin: float = 0.5
    temperature: float = 0.07
    lr: float = 1e-3
    batch_size: int = 256
    epochs: int = 20
    max_tokens: int = 20
    seed: int = 0
    held_out: float = 0.1  # fraction of images kept for evaluation (by a hash of the id)
    eval_k: list[int] = field(default_factory=lambda: [1, 5, 10])
    eval_words: list[str] = field(default_factory=list)  # empty: every token
    shuffle_pairs: bool = False
    tokenizer: str | None = None  # a vocab.txt; default: the corpus's (trained if missing)
    vocab_size: int = 2000
    init_checkpoint: str | None = None  # an mmdata train checkpoint for the text encoder
    init_bert: str | None = None  # a BERT weights file for the text encoder
    backbone_weights: str | None = None  # torchvision weights for image: backbone
    device: str = "auto"
    workers: int = 0

    def check(self, where: str) -> None:
        if self.loss not in LOSSES:
            raise ConfigError(f"{where}: loss must be one of {list(LOSSES)}, got {self.loss!r}")
        if self.loss == "hinge" and (self.batch_size % 2 or self.margin <= 0):
            raise ConfigError(f"{where}: the hinge loss needs an even batch_size and margin > 0")
        if not 0 < self.held_out < 1 or self.epochs < 1 or self.batch_size < 2:
            raise ConfigError(f"{where}: held_out in (0, 1), epochs >= 1, batch_size >= 2")
        if self.vokenizer.image == "backbone" and not self.backbone_weights:
            raise ConfigError(f"{where}: image: backbone needs backbone_weights (a local file)")


def load_training(path: str | Path) -> VokenizerTraining:
    """A ``train-vokenizer`` YAML file, every key checked."""
    where = str(path)
    try:
        data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{where}: cannot read the config: {exc}") from None
    known = {f.name for f in dataclasses.fields(VokenizerTraining)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ConfigError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
    try:
        model = VokenizerConfig.from_dict(data.pop("vokenizer", None) or {}, where)
        config = VokenizerTraining(vokenizer=model, **data)
    except (TypeError, VokenizerError) as exc:
        raise ConfigError(f"{where}: {exc}") from None
    config.check(where)
    return config


# ---- losses -----------------------------------------------------------------------------


def paired_hinge_loss(
    lang: torch.Tensor, visn: torch.Tensor, keep: torch.Tensor, margin: float
) -> torch.Tensor:
    """The original's loss: the batch's first half and second half are each other's
    negatives; for every real token, hinge(margin - true + false) in both directions,
    summed and divided by the number of tokens. ``lang`` [b, l, d], ``visn`` [b, d]."""
    half = len(lang) // 2
    pos_l, neg_l = lang[:half], lang[half : 2 * half]
    pos_v, neg_v = visn[:half, None], visn[half : 2 * half, None]
    pos_k, neg_k = keep[:half].float(), keep[half : 2 * half].float()
    true_pos, true_neg = (pos_l * pos_v).sum(-1), (neg_l * neg_v).sum(-1)
    false_pos, false_neg = (pos_l * neg_v).sum(-1), (neg_l * pos_v).sum(-1)
    loss = F.relu(margin - true_pos + false_pos) * pos_k
    loss = loss.sum() + (F.relu(margin - true_neg + false_neg) * neg_k).sum()
    return loss / (pos_k.sum() + neg_k.sum()).clamp_min(1)


def info_nce_loss(
    lang: torch.Tensor, visn: torch.Tensor, keep: torch.Tensor, image_key: torch.Tensor, t: float
) -> torch.Tensor:
    """Each real token against every distinct image of the batch: cross-entropy to its
    own image (captions of one image share it, so they are not each other's negatives)."""
    keys, index = torch.unique(image_key, return_inverse=True)
    rows = torch.arange(len(index), device=visn.device)
    first = torch.full((len(keys),), len(index), dtype=torch.long, device=visn.device)
    first = first.scatter_reduce(0, index, rows, reduce="amin")  # each image's first sample
    logits = torch.einsum("bld,nd->bln", lang, visn[first]) / t
    target = index[:, None].expand(-1, lang.shape[1])
    return F.cross_entropy(logits[keep], target[keep])


# ---- data -------------------------------------------------------------------------------


class Batches:
    """Caption samples -> (token ids, keep, image inputs, image keys) batches."""

    def __init__(self, tokenizer: Tokenizer, config: VokenizerTraining) -> None:
        self.tok, self.config = tokenizer, config

    def image_inputs(self, samples: Sequence[dict[str, Any]]) -> dict[str, torch.Tensor]:
        c = self.config.vokenizer
        if c.image == "backbone":
            return {
                "pixels": torch.stack([pixels(s["image_bytes"], c.image_size) for s in samples])
            }
        regions = [s["regions"] for s in samples]
        features = torch.stack([r["features"] for r in regions]).float()
        if features.shape[-1] != c.feature_dim:
            raise ConfigError(
                f"the corpus's region features have {features.shape[-1]} dims, the "
                f"vokenizer's feature_dim is {c.feature_dim}"
            )
        return {"features": features, "mask": torch.stack([r["mask"] for r in regions])}

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        ids, keep, offsets = text_batch(
            self.tok, [s["text"] or "" for s in samples], self.config.max_tokens
        )
        names = [s["image_id"] for s in samples]
        index = {name: i for i, name in enumerate(dict.fromkeys(names))}
        return {
            "ids": ids,
            "keep": keep,
            "words": word_candidates(ids, self.tok),  # no [CLS], [SEP], padding
            "image_id": names,
            "image_key": torch.tensor([index[n] for n in names]),
            "offsets": offsets,
            **self.image_inputs(samples),
        }


def stream(
    catalog: str, corpus: str, config: VokenizerTraining, evaluation: bool, seed: int = 0
) -> ShardStream:
    c = config.vokenizer
    columns = ["image_id", "text", "image_bytes" if c.image == "backbone" else "regions"]
    decode = {} if c.image == "backbone" else {"regions": region_tensors(c.max_regions)}
    test = image_fraction(config.held_out)
    where = test if evaluation else f"NOT ({test})"
    return ShardStream(
        catalog, corpus, columns=columns, unit="caption", where=where, seed=seed,
        shuffle_buffer=0 if evaluation else 4096, rank=0, world_size=1, decode=decode,
    )  # fmt: skip


def _loader(ds: ShardStream, batches: Batches, config: VokenizerTraining, train: bool) -> Any:
    from torch.utils.data import DataLoader

    size = config.batch_size if train else 256
    return DataLoader(
        ds, batch_size=size, num_workers=config.workers, collate_fn=batches, drop_last=train
    )


# ---- the model --------------------------------------------------------------------------


def build(config: VokenizerTraining, tokenizer: Tokenizer) -> Vokenizer:
    """A fresh vokenizer with the configured initial weights."""
    model = Vokenizer(config.vokenizer, tokenizer.vocab_size)
    if config.init_checkpoint and config.init_bert:
        raise ConfigError("give init_checkpoint or init_bert, not both")
    if config.init_checkpoint:
        load_trainer_text(model.text, config.init_checkpoint)
    if config.init_bert:
        load_bert(model.text, config.init_bert)
    if config.backbone_weights:
        if model.backbone is None:
            raise ConfigError("backbone_weights given, but the image side is region features")
        load_backbone(model.backbone, config.backbone_weights)
    return model


def image_vectors(model: Vokenizer, batch: dict[str, Any], device: torch.device) -> torch.Tensor:
    """The batch's image keys [b, dim] (one per sample)."""
    if "pixels" in batch:
        return model.encode_pixels(batch["pixels"].to(device))
    return model.encode_regions(batch["features"].to(device), batch["mask"].to(device))


def _shuffled(batch: dict[str, Any], rng: torch.Generator) -> dict[str, Any]:
    """The control: every caption paired with another sample's image."""
    order = torch.randperm(len(batch["ids"]), generator=rng)
    out = dict(batch)
    for name in ("pixels", "features", "mask", "image_key"):
        if name in batch:
            out[name] = batch[name][order]
    return out


# ---- training ---------------------------------------------------------------------------


def train_vokenizer(
    config: VokenizerTraining,
    catalog: str,
    corpus: str,
    out: str | Path,
    progress: bool | str = False,
) -> dict[str, Any]:
    """Train, evaluate on the held-out images, save the vokenizer to ``out``; returns the
    summary (also ``out``/summary.json)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    device = torch.device(resolve_device(config.device))
    tokenizer = vocabulary(
        config.tokenizer, config.vocab_size, catalog, corpus, out, config.vokenizer.lowercase
    )
    model = build(config, tokenizer).to(device)
    batches = Batches(tokenizer, config)
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], config.lr)
    rng = torch.Generator().manual_seed(config.seed)
    losses, steps = [], 0
    ds = stream(catalog, corpus, config, evaluation=False, seed=config.seed)
    with Progress(config.epochs, "epoch", progress, desc="train-vokenizer") as bar:
        for epoch in range(config.epochs):
            ds.set_epoch(epoch)
            model.train()
            epoch_losses = []
            for batch in _loader(ds, batches, config, train=True):
                if config.shuffle_pairs:
                    batch = _shuffled(batch, rng)
                loss = _loss(model, batch, config, device)
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                epoch_losses.append(loss.item())
                steps += 1
            if not epoch_losses:
                raise ConfigError(
                    f"corpus {corpus!r} has fewer training captions than one batch "
                    f"({config.batch_size})"
                )
            losses.append(float(np.mean(epoch_losses)))
            bar.update(1, rows=len(epoch_losses) * config.batch_size)
    ident = save_vokenizer(model, tokenizer.path, out)
    summary = {
        "vokenizer_id": ident,
        "corpus": corpus,
        "steps": steps,
        "loss": config.loss,
        "epoch_losses": losses,
        "shuffle_pairs": config.shuffle_pairs,
        **evaluate_retrieval(model, tokenizer, catalog, corpus, config, device),
    }
    with written_whole(out / "summary.json") as partial:
        partial.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _loss(
    model: Vokenizer, batch: dict[str, Any], config: VokenizerTraining, device: torch.device
) -> torch.Tensor:
    lang = model.encode_text(batch["ids"].to(device), batch["keep"].to(device))
    visn = image_vectors(model, batch, device)
    keep = batch["words"].to(device)
    if config.loss == "hinge":
        return paired_hinge_loss(lang, visn, keep, config.margin)
    return info_nce_loss(lang, visn, keep, batch["image_key"].to(device), config.temperature)


# ---- evaluation -------------------------------------------------------------------------


@torch.no_grad()
def evaluate_retrieval(
    model: Vokenizer,
    tokenizer: Tokenizer,
    catalog: str,
    corpus: str,
    config: VokenizerTraining,
    device: torch.device,
) -> dict[str, Any]:
    """Token-to-image R@K over the held-out images, for every token and for the
    ``eval_words`` (if any), with chance."""
    model.eval()
    keys: dict[str, torch.Tensor] = {}
    tokens: list[tuple[torch.Tensor, str, str]] = []  # (vector, token text, own image)
    batches = Batches(tokenizer, config)
    for batch in _loader(stream(catalog, corpus, config, evaluation=True), batches, config, False):
        visn = image_vectors(model, batch, device).cpu()
        lang = model.encode_text(batch["ids"].to(device), batch["keep"].to(device)).cpu()
        mask = batch["words"]
        for row, name in enumerate(batch["image_id"]):
            keys.setdefault(name, visn[row])
            for position in mask[row].nonzero().flatten().tolist():
                piece = tokenizer.id_to_token(int(batch["ids"][row, position])) or ""
                tokens.append((lang[row, position], piece, name))
    return retrieval_metrics(keys, tokens, config.eval_k, set(config.eval_words))


def retrieval_metrics(
    keys: dict[str, torch.Tensor],
    tokens: Sequence[tuple[torch.Tensor, str, str]],
    ks: Sequence[int],
    words: set[str],
) -> dict[str, Any]:
    """R@K of each token's own image among ``keys``, for all tokens and for ``words``."""
    names = list(keys)
    if not names or not tokens:
        return {"eval_images": len(names), "eval_tokens": len(tokens)}
    matrix = torch.stack([keys[n] for n in names])
    position = {name: i for i, name in enumerate(names)}
    own = torch.tensor([position[name] for _, _, name in tokens])
    scores = torch.stack([vector for vector, _, _ in tokens]) @ matrix.T
    # rank of the own image: how many images score strictly higher
    rank = (scores > scores.gather(1, own[:, None])).sum(1)
    chosen = torch.tensor([piece in words for _, piece, _ in tokens])
    result: dict[str, Any] = {"eval_images": len(names), "eval_tokens": len(tokens)}
    for k in ks:
        result[f"r{k}"] = float((rank < k).float().mean())
        result[f"r{k}_chance"] = min(1.0, k / len(names))
        if words:
            result[f"r{k}_words"] = (
                float((rank[chosen] < k).float().mean()) if chosen.any() else None
            )
    result["eval_word_tokens"] = int(chosen.sum())
    return result
