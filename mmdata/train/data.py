"""Samples from mmdata.stream -> training batches (token ids, scene-graph node masks,
tags, region tensors). Runs in DataLoader workers; masking happens later, on the batch."""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any

import torch

from mmdata.models.vokens import revokenize
from mmdata.models.wordpiece import Tokenizer
from mmdata.stream.decode import RegionTensors, region_tensors, scene_graph_spans
from mmdata.train.config import TrainConfig

#: Scene-graph node kinds in ``sg_kind`` (ERNIE-ViL's three prediction tasks).
MAX_NODES = 16
COLUMNS = ["image_id", "caption_id", "text", "scene_graph", "regions"]
#: The label of a token that has no voken (cross_entropy's ignore_index).
IGNORE = -100


def regions_hook(config: TrainConfig) -> RegionTensors:
    """The decode hook the trainer streams regions with."""
    return region_tensors(
        config.model.max_regions,
        "uniter7",
        torch.float16,  # halves what workers move; cast to float32 on the batch
        soft_labels=config.objectives.get("mrc_kl", 0) > 0,
        tags=any(config.objectives.get(k, 0) > 0 for k in ("tags", "tag_contrast")),
    )


class Collator:
    """Turns a list of caption samples into one batch of tensors."""

    def __init__(self, tokenizer: Tokenizer, config: TrainConfig) -> None:
        self.tok, self.config = tokenizer, config

    def __call__(self, samples: Sequence[dict[str, Any]]) -> dict[str, Any]:
        tok, m = self.tok, self.config.model
        encoded = tok.encode_batch([s["text"] or "" for s in samples], m.max_text_tokens - 2)
        length = max(len(ids) for ids, _ in encoded) + 2
        text_ids = torch.full((len(samples), length), tok.pad_id, dtype=torch.long)
        sg_nodes = torch.zeros(len(samples), MAX_NODES, length, dtype=torch.bool)
        sg_kind = torch.full((len(samples), MAX_NODES), -1, dtype=torch.long)
        for b, (sample, (ids, offsets)) in enumerate(zip(samples, encoded)):
            row = [tok.cls_id, *ids, tok.sep_id]
            text_ids[b, : len(row)] = torch.tensor(row)
            spans = scene_graph_spans(sample.get("scene_graph"))
            nodes = [(0, s[0], s[1]) for s in spans["objects"]]
            nodes += [(1, s[0], s[1]) for s in spans["attributes"]]
            nodes += [(2, s[0], s[1]) for s in spans["relations"]]
            k = 0
            for kind, start, end in nodes:
                pieces = tok.pieces_in_span(offsets, start, end)
                if not pieces or k == MAX_NODES:
                    continue
                sg_nodes[b, k, [p + 1 for p in pieces]] = True  # +1: after [CLS]
                sg_kind[b, k] = kind
                k += 1
        regions = [s["regions"] for s in samples]
        batch: dict[str, Any] = {
            "image_id": [s["image_id"] for s in samples],
            "caption_id": [s["caption_id"] for s in samples],
            "text_ids": text_ids,
            "sg_nodes": sg_nodes,
            "sg_kind": sg_kind,
        }
        keys = {id_: i for i, id_ in enumerate(dict.fromkeys(batch["image_id"]))}
        batch["image_key"] = torch.tensor([keys[i] for i in batch["image_id"]])
        for name in ("features", "boxes", "classes", "mask", "class_probs"):
            if name in regions[0]:
                batch[name] = torch.stack([r[name] for r in regions])
        if "vokens" in samples[0]:
            batch["voken_targets"] = torch.full_like(text_ids, IGNORE)
            for b, (sample, (ids, offsets)) in enumerate(zip(samples, encoded)):
                labels = voken_labels(sample, ids, offsets, self.config)
                batch["voken_targets"][b, 1 : len(labels) + 1] = torch.tensor(labels)
        if "tags" in regions[0]:
            tags = [tok.encode_words(r["tags"], m.max_tags) + [tok.sep_id] for r in regions]
            width = max(len(t) for t in tags)
            batch["tag_ids"] = torch.full((len(samples), width), tok.pad_id, dtype=torch.long)
            for b, t in enumerate(tags):
                batch["tag_ids"][b, : len(t)] = torch.tensor(t)
        return batch


def voken_labels(
    sample: dict[str, Any], ids: list[int], offsets: list[tuple[int, int]], config: TrainConfig
) -> list[int]:
    """The voken of each of the trainer's pieces of this caption: the vokenizer's tokens'
    vokens moved over by character span (revokenization); IGNORE where none overlaps or
    the caption has no vokens. ``config.vokens.ablation`` replaces them as Vokenization's
    ablations do (random, shuffle, reverse, token)."""
    entry = next(
        (v for v in sample.get("vokens") or [] if v["caption_id"] == sample["caption_id"]), None
    )
    if entry is None:
        return [IGNORE] * len(ids)
    spans = list(zip(entry["starts"], entry["ends"]))
    moved = revokenize(spans, entry["voken_ids"], offsets)
    labels = [IGNORE if v is None else int(v) for v in moved]
    ablation = config.vokens.ablation
    if ablation == "token":
        return list(ids)
    if ablation == "none":
        return labels
    rng = random.Random(f"{config.seed}/{sample['caption_id']}")
    where = [i for i, v in enumerate(labels) if v != IGNORE]
    values = [labels[i] for i in where]
    if ablation == "random":
        values = [rng.randrange(config.model.voken_classes) for _ in values]
    elif ablation == "shuffle":
        rng.shuffle(values)
    elif ablation == "reverse":
        values.reverse()
    for i, v in zip(where, values):
        labels[i] = v
    return labels
