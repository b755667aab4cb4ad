"""A single-stream vision-language transformer (UNITER / VL-BERT style) and its heads: the
reference trainer's model (mmdata.train) and the vokenizer's language side
(mmdata.models.vokenizer).

Input: [CLS] words [SEP] (tags [SEP]) regions. Words: word-piece + position + type
embeddings; regions: projected features + projected 7-d box geometry (UNITER) + type.
Attention is torch's scaled_dot_product_attention with a key padding mask.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

TEXT, IMAGE, TAGS = 0, 1, 2  # type ids


@dataclass
class ModelConfig:
    hidden: int = 128
    layers: int = 2
    heads: int = 4
    intermediate: int = 512
    dropout: float = 0.1
    max_text_tokens: int = 40
    max_tags: int = 10
    max_regions: int = 36
    num_classes: int = 1601  # detector classes incl. background (Caffe order, bg = 0)
    contrastive_dim: int = 128
    voken_classes: int = 0  # the voken set's size (voken_cls); 0: no voken head


class Layer(nn.Module):
    """A post-LN BERT layer."""

    def __init__(self, c: ModelConfig) -> None:
        super().__init__()
        self.heads = c.heads
        self.qkv = nn.Linear(c.hidden, 3 * c.hidden)
        self.out = nn.Linear(c.hidden, c.hidden)
        self.norm1 = nn.LayerNorm(c.hidden, eps=1e-12)
        self.ff = nn.Sequential(
            nn.Linear(c.hidden, c.intermediate), nn.GELU(), nn.Linear(c.intermediate, c.hidden)
        )
        self.norm2 = nn.LayerNorm(c.hidden, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)
        self.p = c.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, n, h = x.shape
        q, k, v = self.qkv(x).view(b, n, 3, self.heads, h // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(
            q, k, v, attn_mask=keep[:, None, None, :], dropout_p=self.p if self.training else 0.0
        )
        x = self.norm1(x + self.dropout(self.out(a.transpose(1, 2).reshape(b, n, h))))
        return self.norm2(x + self.dropout(self.ff(x)))


class Head(nn.Module):
    """BERT's prediction-head transform (dense, GELU, LayerNorm) then a linear output."""

    def __init__(self, hidden: int, out: int) -> None:
        super().__init__()
        self.transform = nn.Sequential(
            nn.Linear(hidden, hidden), nn.GELU(), nn.LayerNorm(hidden, eps=1e-12)
        )
        self.decoder = nn.Linear(hidden, out)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(x))


class VLPModel(nn.Module):
    """The encoder and every objective's head (unused heads cost nothing at run time)."""

    def __init__(self, c: ModelConfig, vocab_size: int, feature_dim: int) -> None:
        super().__init__()
        self.config, self.feature_dim = c, feature_dim
        h = c.hidden
        self.words = nn.Embedding(vocab_size, h)
        self.positions = nn.Embedding(c.max_text_tokens + c.max_tags + 2, h)
        self.types = nn.Embedding(3, h)
        self.text_norm = nn.LayerNorm(h, eps=1e-12)
        # per-dimension standardisation of the detector's features, fixed from the first
        # training batch: features of one detector share a large common component
        # (random weights: 0.99 correlation between images) that would drown the rest
        self.register_buffer("feature_mean", torch.zeros(feature_dim))
        self.register_buffer("feature_std", torch.ones(feature_dim))
        self.register_buffer("feature_stats_set", torch.tensor(False))
        self.region_feat = nn.Sequential(nn.Linear(feature_dim, h), nn.LayerNorm(h, eps=1e-12))
        self.region_box = nn.Sequential(nn.Linear(7, h), nn.LayerNorm(h, eps=1e-12))
        self.region_norm = nn.LayerNorm(h, eps=1e-12)
        self.dropout = nn.Dropout(c.dropout)
        self.layers = nn.ModuleList(Layer(c) for _ in range(c.layers))
        self.pooler = nn.Sequential(nn.Linear(h, h), nn.Tanh())
        self.mlm = Head(h, vocab_size)
        self.mlm.decoder.weight = self.words.weight  # tied, as BERT
        self.itm = nn.Linear(h, 2)
        self.tag_contrast = nn.Linear(h, 2)
        self.mrfr = Head(h, feature_dim)
        self.mrc = Head(h, c.num_classes)
        # Vokenization's voken classification head: Linear -> GELU -> LayerNorm -> Linear
        self.voken = Head(h, c.voken_classes) if c.voken_classes else None
        self.text_proj = nn.Linear(h, c.contrastive_dim)
        self.image_proj = nn.Linear(h, c.contrastive_dim)
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / 0.07)))
        self.apply(self._init)

    @staticmethod
    def _init(module: nn.Module) -> None:
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, std=0.02)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)

    def embed_text(self, ids: torch.Tensor, kind: int = TEXT, start: int = 0) -> torch.Tensor:
        pos = torch.arange(start, start + ids.shape[1], device=ids.device)
        x = self.words(ids) + self.positions(pos)[None] + self.types.weight[kind]
        return self.dropout(self.text_norm(x))

    @torch.no_grad()
    def set_feature_stats(self, features: torch.Tensor, mask: torch.Tensor) -> None:
        """Fix the standardisation from real (unpadded) regions, once."""
        if bool(self.feature_stats_set) or not mask.any():
            return
        real = features[mask].float()
        self.feature_mean.copy_(real.mean(0))
        self.feature_std.copy_(real.std(0).clamp_min(1e-3) if len(real) > 1 else 1.0)
        self.feature_stats_set.fill_(True)

    def standardised(self, features: torch.Tensor) -> torch.Tensor:
        return (features - self.feature_mean) / self.feature_std

    def embed_regions(self, features: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
        x = (
            self.region_feat(self.standardised(features))
            + self.region_box(boxes)
            + self.types.weight[IMAGE]
        )
        return self.dropout(self.region_norm(x))

    def encode(
        self,
        text_ids: torch.Tensor | None,
        text_keep: torch.Tensor | None,
        features: torch.Tensor | None = None,
        boxes: torch.Tensor | None = None,
        region_keep: torch.Tensor | None = None,
        tag_ids: torch.Tensor | None = None,
        tag_keep: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Hidden states of [text; tags; regions] (any part may be absent) and the keep
        mask (True = a real token)."""
        parts, keeps = [], []
        if text_ids is not None:
            parts.append(self.embed_text(text_ids))
            keeps.append(text_keep)
        if tag_ids is not None:
            parts.append(self.embed_text(tag_ids, TAGS, start=self.config.max_text_tokens))
            keeps.append(tag_keep)
        if features is not None:
            parts.append(self.embed_regions(features, boxes))
            keeps.append(region_keep)
        x, keep = torch.cat(parts, 1), torch.cat(keeps, 1)
        for layer in self.layers:
            x = layer(x, keep)
        return x, keep

    def pooled(self, hidden: torch.Tensor) -> torch.Tensor:
        """The first position's output through the pooler ([CLS], or the first region)."""
        return self.pooler(hidden[:, 0])
