"""The pretraining objectives, as their papers define them.

UNITER: one task per batch; masking is conditional (one modality at a time), 15% with
at least one token or region, masked region features zeroed; ITM swaps the image with
probability 0.5; WRA is IPOT over cosine distance, weight 0.1, on ITM batches.
ERNIE-ViL: 30% of scene-graph nodes, all words of each, 80/10/10 replacement.
Oscar: tags as extra text; 15% of caption and tag tokens masked; the contrastive loss
replaces the tags half of the time. CLIP/ALIGN: symmetric InfoNCE on pooled outputs.
Vokenization: voken classification on every word with a voken, summed with MLM on the
same text-only step.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from mmdata.models.vlp import VLPModel
from mmdata.models.wordpiece import Tokenizer
from mmdata.train.wra import wra_loss

Batch = dict[str, Any]


def choose(candidates: torch.Tensor, rate: float, g: torch.Generator) -> torch.Tensor:
    """A ``rate`` share of the True entries of each row of ``candidates``, at least one
    per row that has any (UNITER's "at least one token or region")."""
    scores = torch.rand(candidates.shape, generator=g, device=candidates.device)
    chosen = (scores < rate) & candidates
    # rows with none chosen: take their best-scoring candidate
    best = torch.where(candidates, scores, torch.full_like(scores, -1.0)).argmax(-1)
    empty = ~chosen.any(-1) & candidates.any(-1)
    chosen[empty, best[empty]] = True
    return chosen


def replace_tokens(
    ids: torch.Tensor, chosen: torch.Tensor, tok: Tokenizer, g: torch.Generator
) -> torch.Tensor:
    """BERT's 80/10/10: [MASK], a random word piece, or unchanged."""
    roll = torch.rand(ids.shape, generator=g, device=ids.device)
    random_ids = torch.randint(5, tok.vocab_size, ids.shape, generator=g, device=ids.device)
    out = ids.clone()
    out[chosen & (roll < 0.8)] = tok.mask_id
    swap = chosen & (roll >= 0.8) & (roll < 0.9)
    out[swap] = random_ids[swap]
    return out


def text_keep(ids: torch.Tensor, tok: Tokenizer) -> torch.Tensor:
    return ids != tok.pad_id


def word_candidates(ids: torch.Tensor, tok: Tokenizer) -> torch.Tensor:
    return (ids != tok.pad_id) & (ids != tok.cls_id) & (ids != tok.sep_id)


class Objectives:
    """Computes any objective's loss on a batch already on the model's device."""

    def __init__(
        self, model: VLPModel, tok: Tokenizer, wra_weight: float, hard: float,
        voken_weight: float = 1.0,
    ) -> None:  # fmt: skip
        self.model, self.tok, self.wra_weight, self.hard = model, tok, wra_weight, hard
        self.voken_weight = voken_weight
        self.tasks: dict[str, Callable[[Batch, torch.Generator], dict[str, torch.Tensor]]] = {
            "mlm": self.mlm,
            "itm": self.itm,
            "mrfr": self.mrfr,
            "mrc": self.mrc,
            "mrc_kl": self.mrc_kl,
            "sgp": self.sgp,
            "tags": self.tags,
            "tag_contrast": self.tag_contrast,
            "contrastive": self.contrastive,
            "voken_cls": self.voken_cls,
        }

    # ---- shared pieces -----------------------------------------------------------------

    def _joint(self, b: Batch, ids=None, features=None, tags=None):  # noqa: ANN001, ANN202
        ids = b["text_ids"] if ids is None else ids
        return self.model.encode(
            ids,
            text_keep(b["text_ids"], self.tok),
            b["features"] if features is None else features,
            b["boxes"],
            b["mask"],
            tags,
            None if tags is None else tags != self.tok.pad_id,
        )

    def _token_loss(self, hidden: torch.Tensor, targets: torch.Tensor, chosen: torch.Tensor):  # noqa: ANN202
        logits = self.model.mlm(hidden[:, : chosen.shape[1]][chosen])
        return F.cross_entropy(logits.float(), targets[chosen])

    def _masked_regions(self, b: Batch, g: torch.Generator):  # noqa: ANN202
        chosen = choose(b["mask"], 0.15, g)
        features = b["features"].masked_fill(chosen[..., None], 0.0)  # zeroed, as UNITER
        hidden, _ = self._joint(b, features=features)
        region_hidden = hidden[:, -b["features"].shape[1] :]
        return region_hidden[chosen], chosen

    # ---- objectives --------------------------------------------------------------------

    def mlm(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        chosen = choose(word_candidates(b["text_ids"], self.tok), 0.15, g)
        ids = replace_tokens(b["text_ids"], chosen, self.tok, g)
        hidden, _ = self._joint(b, ids=ids)
        return {"mlm": self._token_loss(hidden, b["text_ids"], chosen)}

    def mrfr(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        out, chosen = self._masked_regions(b, g)
        target = self.model.standardised(b["features"][chosen].float())
        return {"mrfr": F.mse_loss(self.model.mrfr(out).float(), target)}

    def mrc(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        out, chosen = self._masked_regions(b, g)
        return {"mrc": F.cross_entropy(self.model.mrc(out).float(), b["classes"][chosen])}

    def mrc_kl(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        out, chosen = self._masked_regions(b, g)
        log_p = F.log_softmax(self.model.mrc(out).float(), -1)
        target = b["class_probs"][chosen].float()
        return {"mrc_kl": F.kl_div(log_p, target, reduction="batchmean")}

    def negatives(self, b: Batch, g: torch.Generator) -> torch.Tensor:
        """For each sample, the index of another sample with a different image: a hard
        one (sampled by contrastive similarity, as ALBEF) for a ``hard`` share, else a
        random one. -1 where the batch holds no other image."""
        key = b["image_key"]
        other = key[:, None] != key[None, :]
        weights = other.float()
        if self.hard > 0:
            with torch.no_grad():
                text, image = self.embeddings(b)
                sim = (text @ image.T).float()
            hard = torch.softmax(sim.masked_fill(~other, -1e4), -1) * other
            use_hard = torch.rand(len(key), generator=g, device=key.device) < self.hard
            weights = torch.where(use_hard[:, None], hard, weights)
        has = other.any(1)
        picks = torch.multinomial(weights[has], 1, generator=g)
        out = torch.full_like(key, -1)
        out[has] = picks[:, 0]
        return out

    def itm(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        neg = self.negatives(b, g)
        swap = (torch.rand(len(neg), generator=g, device=neg.device) < 0.5) & (neg >= 0)
        source = torch.where(swap, neg, torch.arange(len(neg), device=neg.device))
        features, boxes, mask = b["features"][source], b["boxes"][source], b["mask"][source]
        keep = text_keep(b["text_ids"], self.tok)
        hidden, _ = self.model.encode(b["text_ids"], keep, features, boxes, mask)
        logits = self.model.itm(self.model.pooled(hidden)).float()
        out = {"itm": F.cross_entropy(logits, (~swap).long())}
        if self.wra_weight > 0:
            n = b["text_ids"].shape[1]
            txt, img = hidden[:, 1:n], hidden[:, n:]  # words without [CLS]
            txt_pad = ~(keep[:, 1:] & (b["text_ids"][:, 1:] != self.tok.sep_id))
            out["wra"] = wra_loss(txt, img, txt_pad, ~mask, ~swap)
        return out

    def total(self, task: str, losses: dict[str, torch.Tensor]) -> torch.Tensor:
        """The loss a task's batch trains on: its own, plus WRA (weighted) on ITM batches,
        plus MLM on voken_cls batches (Vokenization sums them on one step)."""
        loss = losses[task]
        if "wra" in losses:
            loss = loss + self.wra_weight * losses["wra"]
        if task == "voken_cls":
            loss = self.voken_weight * loss + losses["voken_mlm"]
        return loss

    def voken_cls(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        """Vokenization's step on text alone: 15% of the words masked (BERT's 80/10/10);
        MLM on the masked ones and voken classification (the head: Linear -> GELU ->
        LayerNorm -> Linear over the voken set) on every word that has a voken."""
        if self.model.voken is None:
            raise ValueError("voken_cls needs model.voken_classes > 0 (set by the trainer)")
        chosen = choose(word_candidates(b["text_ids"], self.tok), 0.15, g)
        ids = replace_tokens(b["text_ids"], chosen, self.tok, g)
        hidden, _ = self.model.encode(ids, text_keep(b["text_ids"], self.tok))
        targets = b["voken_targets"]
        labelled = targets >= 0
        logits = self.model.voken(hidden[labelled]).float()
        return {
            "voken_cls": F.cross_entropy(logits, targets[labelled]),
            "voken_mlm": self._token_loss(hidden, b["text_ids"], chosen),
        }

    def sgp(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        nodes = b["sg_kind"] >= 0
        picked = choose(nodes, 0.3, g)
        chosen = (b["sg_nodes"] & picked[..., None]).any(1)  # every word of a picked node
        if not chosen.any():  # no scene graph in the batch: masked words as MLM
            chosen = choose(word_candidates(b["text_ids"], self.tok), 0.15, g)
        ids = replace_tokens(b["text_ids"], chosen, self.tok, g)
        hidden, _ = self._joint(b, ids=ids)
        return {"sgp": self._token_loss(hidden, b["text_ids"], chosen)}

    def tags(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        both = torch.cat([b["text_ids"], b["tag_ids"]], 1)
        cand = word_candidates(both, self.tok)
        chosen = choose(cand, 0.15, g)
        masked = replace_tokens(both, chosen, self.tok, g)
        n = b["text_ids"].shape[1]
        hidden, _ = self._joint(b, ids=masked[:, :n], tags=masked[:, n:])
        return {"tags": self._token_loss(hidden, both, chosen)}

    def tag_contrast(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        key = b["image_key"]
        perm = torch.randperm(len(key), generator=g, device=key.device)
        polluted = (torch.rand(len(key), generator=g, device=key.device) < 0.5) & (key[perm] != key)
        tags = torch.where(polluted[:, None], b["tag_ids"][perm], b["tag_ids"])
        hidden, _ = self._joint(b, tags=tags)
        logits = self.model.tag_contrast(self.model.pooled(hidden)).float()
        return {"tag_contrast": F.cross_entropy(logits, (~polluted).long())}

    def embeddings(self, b: Batch) -> tuple[torch.Tensor, torch.Tensor]:
        """L2-normalised text-only and image-only embeddings (O(N) encodes)."""
        m = self.model
        text, _ = m.encode(b["text_ids"], text_keep(b["text_ids"], self.tok))
        cls = torch.full_like(b["text_ids"][:, :1], self.tok.cls_id)
        image, _ = m.encode(cls, torch.ones_like(cls, dtype=torch.bool), b["features"],
                            b["boxes"], b["mask"])  # fmt: skip
        t = F.normalize(m.text_proj(m.pooled(text)).float(), dim=-1)
        i = F.normalize(m.image_proj(m.pooled(image)).float(), dim=-1)
        return t, i

    def contrastive(self, b: Batch, g: torch.Generator) -> dict[str, torch.Tensor]:
        text, image = self.embeddings(b)
        logits = self.model.logit_scale.exp().clamp(max=100) * text @ image.T
        key = b["image_key"]
        same = (key[:, None] == key[None, :]).float()  # captions of one image: all positive
        to_images = F.cross_entropy(logits, same / same.sum(1, keepdim=True))
        to_texts = F.cross_entropy(logits.T, same.T / same.sum(0)[:, None])
        loss = (to_images + to_texts) / 2
        return {"contrastive": loss}
