"""The vokenizer (Tan and Bansal, EMNLP 2020): a token-image matching model.

A token, in its sentence, and an image are each mapped to a unit vector of ``dim`` (64)
numbers; their inner product scores how well the image illustrates the token there. As
in the original (its ``xmatching/model.py``):

- language side: a transformer (the reference trainer's text encoder, mmdata.models.vlp;
  or BERT's weights loaded into it), the last ``lang_layers`` (4) layer outputs
  concatenated, then an MLP ``-> 256 -> ReLU -> dropout 0.3 -> dim``, L2-normalised;
- image side: the corpus's region features pooled over the boxes (mean, or a learned
  attention), or a torchvision backbone (ResNeXt-101 in the original) without its
  classifier, then the same MLP shape, L2-normalised.

The backbones are frozen by default, as the original's; the MLPs are what training fits.
A saved vokenizer is a folder: ``vokenizer.json`` (the config), ``weights.pt`` (the state
dict, loaded strictly) and ``vocab.txt`` (its WordPiece vocabulary). Its id,
``vokenizer@<12 hex>``, hashes the config and the weights, as a region extractor's id does:
every row a vokenizer writes names it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from mmdata.core.errors import MmdataError
from mmdata.core.io import written_whole
from mmdata.models.vlp import TEXT, Layer, ModelConfig
from mmdata.models.wordpiece import WORDPIECE_FILE, Tokenizer

CONFIG_FILE = "vokenizer.json"
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
WEIGHTS_FILE = "weights.pt"
IMAGE_SIDES = ("regions_mean", "regions_attn", "backbone")


class VokenizerError(MmdataError, ValueError):
    """A vokenizer that cannot be built or loaded (the message names the file and why)."""


@dataclass
class VokenizerConfig:
    """What a vokenizer is; every field is part of its id.

    ``text`` is the language transformer's shape (the reference trainer's ModelConfig);
    ``image`` picks the image side (``regions_mean``, ``regions_attn``: the corpus's region
    features; ``backbone``: a torchvision model over the pixels).
    """

    text: ModelConfig = field(default_factory=ModelConfig)
    lang_layers: int = 4
    dim: int = 64
    mlp_hidden: int = 256
    dropout: float = 0.3
    image: str = "regions_mean"
    feature_dim: int = 2048
    max_regions: int = 36
    backbone: str = "resnet50"
    image_size: int = 224
    lowercase: bool = True
    finetune_text: bool = False
    finetune_backbone: bool = False

    def check(self) -> None:
        if self.image not in IMAGE_SIDES:
            raise VokenizerError(f"image must be one of {list(IMAGE_SIDES)}, got {self.image!r}")
        if not 1 <= self.lang_layers:
            raise VokenizerError(f"lang_layers must be >= 1, got {self.lang_layers}")
        if self.dim < 1 or self.mlp_hidden < 1 or not 0 <= self.dropout < 1:
            raise VokenizerError("dim and mlp_hidden must be >= 1 and dropout in [0, 1)")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], where: str = "vokenizer config") -> VokenizerConfig:
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise VokenizerError(f"{where}: unknown keys {unknown}; known: {sorted(known)}")
        values = dict(data)
        text = values.pop("text", None) or {}
        text_keys = {f.name for f in dataclasses.fields(ModelConfig)}
        if set(text) - text_keys:
            raise VokenizerError(f"{where}: unknown text keys {sorted(set(text) - text_keys)}")
        config = cls(text=ModelConfig(**text), **values)
        config.check()
        return config


def _mlp(inp: int, c: VokenizerConfig) -> nn.Sequential:
    """The original's head on both sides: -> mlp_hidden -> ReLU -> dropout -> dim."""
    return nn.Sequential(
        nn.Linear(inp, c.mlp_hidden),
        nn.ReLU(),
        nn.Dropout(c.dropout),
        nn.Linear(c.mlp_hidden, c.dim),
    )


class TextEncoder(nn.Module):
    """The reference trainer's text path (mmdata.models.vlp.VLPModel's embeddings and
    layers, under the same parameter names, so a trainer checkpoint loads into it)."""

    def __init__(self, c: ModelConfig, vocab_size: int) -> None:
        super().__init__()
        h = c.hidden
        self.words = nn.Embedding(vocab_size, h)
        self.positions = nn.Embedding(c.max_text_tokens + c.max_tags + 2, h)
        self.types = nn.Embedding(3, h)
        self.text_norm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))

    @property
    def max_positions(self) -> int:
        return self.positions.num_embeddings

    def forward(self, ids: torch.Tensor, keep: torch.Tensor) -> list[torch.Tensor]:
        """Every layer's output for ``ids`` [b, l] ([CLS] ... [SEP]; ``keep`` True on
        real tokens), first to last."""
        pos = torch.arange(ids.shape[1], device=ids.device)
        x = self.words(ids) + self.positions(pos)[None] + self.types.weight[TEXT]
        x = self.dropout(self.text_norm(x))
        outputs = []
        for layer in self.layers:
            x = layer(x, keep)
            outputs.append(x)
        return outputs


class RegionPool(nn.Module):
    """One vector per image from its boxes' features: their mean, or a learned attention
    (a score per box, softmax over the real boxes)."""

    def __init__(self, feature_dim: int, attention: bool) -> None:
        super().__init__()
        self.score = nn.Linear(feature_dim, 1) if attention else None

    def forward(self, features: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        weights = keep.float()
        if self.score is not None:
            logits = self.score(features).squeeze(-1).masked_fill(~keep, float("-inf"))
            weights = torch.nan_to_num(torch.softmax(logits, dim=-1))  # an image with no box: 0
        weights = weights / weights.sum(-1, keepdim=True).clamp_min(1e-6)
        return (weights.unsqueeze(-1) * features).sum(1)


def torchvision_backbone(arch: str) -> tuple[nn.Module, int]:
    """A torchvision classification model without its classifier, and its output size
    (random weights: the caller loads the user's)."""
    import torchvision

    try:
        model = torchvision.models.get_model(arch, weights=None)
    except ValueError as exc:
        raise VokenizerError(f"unknown torchvision backbone {arch!r}: {exc}") from None
    head = "fc" if hasattr(model, "fc") else "classifier"
    last = getattr(model, head)
    size = last.in_features if isinstance(last, nn.Linear) else last[-1].in_features
    setattr(model, head, nn.Identity())
    return model, size


class Vokenizer(nn.Module):
    """Both sides of the token-image matching model."""

    def __init__(self, config: VokenizerConfig, vocab_size: int) -> None:
        super().__init__()
        config.check()
        self.config, self.vocab_size = config, vocab_size
        self.text = TextEncoder(config.text, vocab_size)
        layers = min(config.lang_layers, config.text.layers)
        self.lang_mlp = _mlp(config.text.hidden * layers, config)
        if config.image == "backbone":
            self.backbone, size = torchvision_backbone(config.backbone)
            self.pool = None
        else:
            self.backbone, size = None, config.feature_dim
            self.pool = RegionPool(size, attention=config.image == "regions_attn")
        self.visn_mlp = _mlp(size, config)
        self.freeze()

    def freeze(self) -> None:
        """Freeze the backbones unless the config fine-tunes them (the original trains
        only the MLPs)."""
        for p in self.text.parameters():
            p.requires_grad = self.config.finetune_text
        if self.backbone is not None:
            for p in self.backbone.parameters():
                p.requires_grad = self.config.finetune_backbone

    def encode_text(self, ids: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Unit vectors [b, l, dim], one per token (padding rows are meaningless)."""
        layers = min(self.config.lang_layers, self.config.text.layers)
        with torch.set_grad_enabled(self.config.finetune_text and torch.is_grad_enabled()):
            hidden = torch.cat(self.text(ids, keep)[-layers:], dim=-1)
        return F.normalize(self.lang_mlp(hidden), dim=-1)

    def encode_regions(self, features: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        """Unit vectors [b, dim] from region features [b, n, feature_dim]."""
        if self.pool is None:
            raise VokenizerError("this vokenizer's image side is a backbone: give it pixels")
        return F.normalize(self.visn_mlp(self.pool(features.float(), keep)), dim=-1)

    def encode_pixels(self, pixels: torch.Tensor) -> torch.Tensor:
        """Unit vectors [b, dim] from normalised pixels [b, 3, H, W]."""
        if self.backbone is None:
            raise VokenizerError("this vokenizer's image side is region features, not pixels")
        with torch.set_grad_enabled(self.config.finetune_backbone and torch.is_grad_enabled()):
            self.backbone.eval()  # frozen batch norm, as the original's
            x = self.backbone(pixels)
        return F.normalize(self.visn_mlp(x), dim=-1)


# ---- weights in ---------------------------------------------------------------------------


def load_trainer_text(text: TextEncoder, checkpoint: str | Path) -> None:
    """Initialise the text encoder from an ``mmdata train`` checkpoint (its ``model``
    state dict): every text parameter must be there with the same shape."""
    state = torch.load(checkpoint, map_location="cpu", weights_only=False)
    model = state.get("model", state) if isinstance(state, dict) else None
    if not isinstance(model, dict):
        raise VokenizerError(f"{checkpoint}: not an mmdata train checkpoint (no model state)")
    own = text.state_dict()
    picked = {k: v for k, v in model.items() if k in own}
    _load_strict(text, picked, str(checkpoint))


#: BERT (Hugging Face ``BertModel`` / ``BertForPreTraining``) names -> TextEncoder names,
#: per layer ``{i}``; query/key/value are fused into ``qkv`` by ``load_bert``.
_BERT_LAYER = {
    "attention.output.dense": "out",
    "attention.output.LayerNorm": "norm1",
    "intermediate.dense": "ff.0",
    "output.dense": "ff.2",
    "output.LayerNorm": "norm2",
}


def load_bert(text: TextEncoder, path: str | Path) -> None:
    """Load a user's BERT weights file (a Hugging Face ``pytorch_model.bin`` or
    ``model.safetensors`` state dict, ``bert.`` prefix or not) into the text encoder.

    Every encoder weight of BERT is used and every text parameter is filled: the text
    config must match BERT's (hidden, layers, heads, intermediate); positions take
    BERT's first rows; the third type row (mmdata's tags) is left as initialised. The
    tokenizer must be BERT's vocab.txt.
    """
    state = _read_state(path)
    state = {k.removeprefix("bert."): v for k, v in state.items()}
    emb = "embeddings."
    mapped: dict[str, torch.Tensor] = {
        "words.weight": state.pop(emb + "word_embeddings.weight", None),
        "text_norm.weight": state.pop(emb + "LayerNorm.weight", None),
        "text_norm.bias": state.pop(emb + "LayerNorm.bias", None),
    }
    positions = state.pop(emb + "position_embeddings.weight", None)
    types = state.pop(emb + "token_type_embeddings.weight", None)
    state.pop(emb + "position_ids", None)  # a buffer of some versions, not a weight
    own = text.state_dict()
    if positions is not None:
        if len(positions) < text.max_positions:
            raise VokenizerError(f"{path}: BERT has {len(positions)} positions, need more")
        mapped["positions.weight"] = positions[: text.max_positions]
    if types is not None:
        mapped["types.weight"] = torch.cat([types, own["types.weight"][len(types) :]])
    for i in range(len(text.layers)):
        pre = f"encoder.layer.{i}."
        for kind in ("weight", "bias"):
            qkv = [
                state.pop(f"{pre}attention.self.{n}.{kind}", None)
                for n in ("query", "key", "value")
            ]
            mapped[f"layers.{i}.qkv.{kind}"] = (
                None if any(t is None for t in qkv) else torch.cat(qkv)
            )
            for theirs, ours in _BERT_LAYER.items():
                mapped[f"layers.{i}.{ours}.{kind}"] = state.pop(f"{pre}{theirs}.{kind}", None)
    missing = sorted(k for k, v in mapped.items() if v is None)
    if missing:
        raise VokenizerError(f"{path}: not a BERT state dict of this shape; missing {missing[:6]}")
    left = sorted(k for k in state if k.startswith(("encoder.", "embeddings.")))
    if left:
        raise VokenizerError(f"{path}: BERT has more layers or weights than the config: {left[:6]}")
    _load_strict(text, mapped, str(path))


def load_backbone(backbone: nn.Module, path: str | Path) -> None:
    """A torchvision backbone's weights (its classifier's, if present, are dropped)."""
    state = _read_state(path)
    own = backbone.state_dict()
    state = {k: v for k, v in state.items() if k in own or not k.startswith(("fc.", "classifier."))}
    _load_strict(backbone, state, str(path))


def _read_state(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return dict(load_file(str(path)))
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 - torch and safetensors raise many kinds
        raise VokenizerError(f"{path}: cannot read weights: {type(exc).__name__}: {exc}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise VokenizerError(f"{path}: not a state dict")
    return state


def _load_strict(module: nn.Module, state: dict[str, torch.Tensor], where: str) -> None:
    own = module.state_dict()
    missing = sorted(set(own) - set(state))
    extra = sorted(set(state) - set(own))
    shapes = sorted(k for k in set(own) & set(state) if own[k].shape != state[k].shape)
    if missing or extra or shapes:
        problems = []
        for label, keys in (("missing", missing), ("unexpected", extra), ("shape differs", shapes)):
            if keys:
                problems.append(f"{label}: {keys[:6]}{' ...' if len(keys) > 6 else ''}")
        raise VokenizerError(f"{where}: weights do not fit ({'; '.join(problems)})")
    module.load_state_dict(state, strict=True)


# ---- saved vokenizers ---------------------------------------------------------------------


def vokenizer_id(config: VokenizerConfig, weights: bytes, vocab: bytes) -> str:
    """``vokenizer@<12 hex>``: the config, the weights and the vocabulary, hashed."""
    digest = hashlib.sha256(json.dumps(config.to_dict(), sort_keys=True).encode())
    digest.update(hashlib.sha256(weights).digest())
    digest.update(hashlib.sha256(vocab).digest())
    return f"vokenizer@{digest.hexdigest()[:12]}"


def save_vokenizer(model: Vokenizer, vocab_file: str | Path, out: str | Path) -> str:
    """Write the folder ``out`` (config, weights, vocabulary); returns the id."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in model.state_dict().items()}, buffer)
    weights = buffer.getvalue()
    vocab = Path(vocab_file).read_bytes()
    with written_whole(out / WEIGHTS_FILE) as partial:
        partial.write_bytes(weights)
    if Path(vocab_file).resolve() != (out / WORDPIECE_FILE).resolve():
        with written_whole(out / WORDPIECE_FILE) as partial:
            shutil.copyfile(vocab_file, partial)
    ident = vokenizer_id(model.config, weights, vocab)
    meta = {"id": ident, "vocab_size": model.vocab_size, "config": model.config.to_dict()}
    with written_whole(out / CONFIG_FILE) as partial:  # last: a folder with it is whole
        partial.write_text(json.dumps(meta, indent=1, sort_keys=True), encoding="utf-8")
    return ident


def load_vokenizer(
    folder: str | Path, device: str | torch.device = "cpu"
) -> tuple[Vokenizer, Tokenizer, str]:
    """A saved vokenizer (eval mode, on ``device``), its tokenizer and its id; the id is
    recomputed from the files, so a changed file cannot pass under the old name."""
    folder = Path(folder)
    try:
        meta = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        weights = (folder / WEIGHTS_FILE).read_bytes()
        vocab = (folder / WORDPIECE_FILE).read_bytes()
    except (OSError, ValueError) as exc:
        raise VokenizerError(f"{folder}: not a saved vokenizer: {exc}") from None
    config = VokenizerConfig.from_dict(meta["config"], str(folder / CONFIG_FILE))
    tokenizer = Tokenizer(folder / WORDPIECE_FILE, lowercase=config.lowercase)
    model = Vokenizer(config, meta["vocab_size"])
    state = torch.load(io.BytesIO(weights), map_location="cpu", weights_only=True)
    _load_strict(model, state, str(folder / WEIGHTS_FILE))
    ident = vokenizer_id(config, weights, vocab)
    if meta.get("id") != ident:
        raise VokenizerError(f"{folder}: files changed since it was saved (id {ident})")
    return model.to(device).eval(), tokenizer, ident


def text_batch(
    tokenizer: Tokenizer, texts: list[str], max_tokens: int
) -> tuple[torch.Tensor, torch.Tensor, list[list[tuple[int, int]]]]:
    """``[CLS] pieces [SEP]`` ids [b, l] and keep mask for ``texts`` (each cut to
    ``max_tokens`` pieces), and each text's piece offsets (characters, without the
    specials: piece ``j`` is position ``j + 1``)."""
    encoded = tokenizer.encode_batch(texts, max_tokens)
    width = max((len(ids) for ids, _ in encoded), default=0) + 2
    ids = torch.full((len(texts), width), tokenizer.pad_id, dtype=torch.long)
    for row, (pieces, _) in enumerate(encoded):
        ids[row, : len(pieces) + 2] = torch.tensor([tokenizer.cls_id, *pieces, tokenizer.sep_id])
    keep = ids != tokenizer.pad_id
    return ids, keep, [offsets for _, offsets in encoded]


def pixels(data: bytes | None, size: int) -> torch.Tensor:
    """An image as the torchvision backbone takes it: shorter side ``size`` (bilinear,
    antialiased), centre crop ``size`` x ``size``, ImageNet-normalised float32."""
    import torchvision.transforms.v2.functional as TF

    from mmdata.core.imagefile import MAX_PIXELS, decode_or_reject

    if data is None:
        raise VokenizerError("no image_bytes (read_images keep_bytes: true?)")
    array = np.asarray(decode_or_reject(data, MAX_PIXELS).convert("RGB"))
    image = torch.from_numpy(array.copy()).permute(2, 0, 1)
    image = TF.center_crop(TF.resize(image, [size], antialias=True), [size, size])
    image = image.float() / 255
    return TF.normalize(image, list(IMAGENET_MEAN), list(IMAGENET_STD))
