"""Held-out evaluation: image-text retrieval recall@1/5/10 (contrastive head: one encode
per image and per caption), optional ITM re-ranking of the top-k, and ITM accuracy."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

from mmdata.train.objectives import Objectives, text_keep

KS = (1, 5, 10)


def recalls(sim: torch.Tensor, caption_image: torch.Tensor) -> dict[str, float]:
    """Recall@K both ways from a (captions x images) score matrix; ``caption_image[c]``
    is the image of caption ``c``. i2t: an image's hit is any of its captions."""
    out = {}
    ranked_images = sim.argsort(1, descending=True)  # per caption
    t2i = (ranked_images == caption_image[:, None]).float().argmax(1)
    ranked_captions = sim.T.argsort(1, descending=True)  # per image
    hits = caption_image[ranked_captions] == torch.arange(sim.shape[1])[:, None]
    i2t = hits.float().argmax(1)
    for k in KS:
        out[f"r{k}_t2i"] = float((t2i < k).float().mean())
        out[f"r{k}_i2t"] = float((i2t < k).float().mean())
    return out


@torch.no_grad()
def evaluate(
    objectives: Objectives, batches: Iterable[dict[str, Any]], device: torch.device, rerank: int
) -> dict[str, Any]:
    """Scores the held-out ``batches`` (collated eval samples)."""
    model = objectives.model
    was_training = model.training
    model.eval()
    texts, images, text_rows, image_rows, owner = [], [], [], [], []
    seen: dict[str, int] = {}
    for batch in batches:
        b = to_device(batch, device)
        t, i = objectives.embeddings(b)
        for row, image_id in enumerate(batch["image_id"]):
            if image_id not in seen:
                seen[image_id] = len(seen)
                images.append(i[row])
                image_rows.append({k: b[k][row] for k in ("features", "boxes", "mask")})
            owner.append(seen[image_id])
            texts.append(t[row])
            text_rows.append(b["text_ids"][row])
    if not texts:
        model.train(was_training)
        return {"eval_pairs": 0}
    text, image = torch.stack(texts), torch.stack(images)
    caption_image = torch.tensor(owner)
    sim = (text @ image.T).cpu()
    out: dict[str, Any] = {"eval_pairs": len(texts), "eval_images": len(images)}
    out.update(recalls(sim, caption_image))
    itm = _itm_scorer(objectives, text_rows, image_rows, device)
    if rerank > 0:
        reranked = sim.clone()
        k = min(rerank, sim.shape[1])
        for c in range(sim.shape[0]):  # each caption's top-k images
            top = sim[c].topk(k).indices
            reranked[c, top] = 10.0 + itm([c] * k, top.tolist())
        out.update({f"{name}_rerank": v for name, v in recalls(reranked, caption_image).items()})
    # ITM accuracy: every caption with its image and with another image
    negatives = [(o + 1 + c % max(len(images) - 1, 1)) % len(images) for c, o in enumerate(owner)]
    pos = itm(list(range(len(texts))), owner)
    neg = itm(list(range(len(texts))), negatives) if len(images) > 1 else torch.zeros(0)
    correct = (pos > 0.5).sum() + (neg <= 0.5).sum()
    out["itm_acc"] = float(correct) / (len(pos) + len(neg))
    model.train(was_training)
    return out


def _itm_scorer(objectives: Objectives, text_rows, image_rows, device):  # noqa: ANN001, ANN202
    """A function (caption indices, image indices) -> ITM match probabilities."""
    model, tok = objectives.model, objectives.tok

    def score(captions: list[int], images: list[int]) -> torch.Tensor:
        probs = []
        for lo in range(0, len(captions), 256):
            cs, ims = captions[lo : lo + 256], images[lo : lo + 256]
            ids = torch.nn.utils.rnn.pad_sequence(
                [text_rows[c] for c in cs], batch_first=True, padding_value=tok.pad_id
            )
            feats = torch.stack([image_rows[i]["features"] for i in ims])
            boxes = torch.stack([image_rows[i]["boxes"] for i in ims])
            mask = torch.stack([image_rows[i]["mask"] for i in ims])
            hidden, _ = model.encode(ids, text_keep(ids, tok), feats, boxes, mask)
            logits = model.itm(model.pooled(hidden)).float()
            probs.append(logits.softmax(-1)[:, 1].cpu())
        return torch.cat(probs) if probs else torch.zeros(0)

    return score


def to_device(batch: dict[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors to ``device`` (features as float32), other values as they are."""
    out = {}
    for k, v in batch.items():
        if isinstance(v, torch.Tensor):
            v = v.to(device, non_blocking=True)
            if k in ("features", "class_probs"):
                v = v.float()
        out[k] = v
    return out
