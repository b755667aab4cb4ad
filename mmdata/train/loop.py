"""The training loop: AdamW with warmup and linear decay, gradient accumulation, bf16
autocast on CUDA, DDP under torchrun (the stream split by rank), checkpoints holding the
model, optimizer, scheduler and stream state, exact resume, metrics.jsonl."""

from __future__ import annotations

import json
import logging
import os
import random
from collections import defaultdict, deque
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from mmdata.catalog.store import Catalog, CatalogError, layer_view
from mmdata.core.devices import autocast, resolve_device
from mmdata.core.io import written_whole
from mmdata.core.progress import Progress
from mmdata.models.vlp import VLPModel
from mmdata.models.wordpiece import WORDPIECE_FILE, Tokenizer, train_wordpiece
from mmdata.stream import ShardStream
from mmdata.train.balance import normalise_gradients
from mmdata.train.config import ConfigError, TrainConfig
from mmdata.train.data import COLUMNS, Collator, regions_hook
from mmdata.train.evaluate import evaluate, to_device
from mmdata.train.objectives import Objectives

log = logging.getLogger(__name__)
CHECKPOINTS = "checkpoints"
KEEP_CHECKPOINTS = 2


def held_out(config: TrainConfig) -> str:
    """SQL over sample columns selecting the evaluation images."""
    return config.eval.where or image_fraction(config.eval.fraction)


def image_fraction(fraction: float) -> str:
    """SQL over sample columns picking ``fraction`` of the images by a stable hash of
    image_id (md5), so the split never depends on order or runs."""
    buckets = int(round(fraction * 1000))
    return f"('0x' || substr(md5(image_id), 1, 8))::UBIGINT % 1000 < {buckets}"


def tokenizer_home(catalog: str, corpus: str, out: Path | None) -> Path:
    """Where a corpus's vocabulary is stored: beside its shards (``<output>/tokenizer``),
    or in ``out`` when the shards are on an object store."""
    _, rows = Catalog(catalog).query("SELECT output FROM corpora WHERE name = ?", [corpus])
    if not rows:
        raise ConfigError(f"{catalog}: no corpus named {corpus!r}")
    output = rows[0][0]
    if "://" in output:
        if out is None:
            raise ConfigError(f"corpus {corpus!r} is remote ({output}): give --out")
        return out / "tokenizer"
    return Path(output) / "tokenizer"


def caption_texts(catalog: str, corpus: str) -> Iterator[str]:
    """Every caption of ``corpus``, in stored order."""
    stream = ShardStream(
        catalog, corpus, columns=["text"], unit="caption", shuffle_buffer=0, rank=0, world_size=1
    )
    return (s["text"] or "" for s in stream)


def corpus_tokenizer(config: TrainConfig, catalog: str, corpus: str, out: Path) -> Tokenizer:
    """The config's vocab file, else the corpus's stored one, else one trained now on the
    corpus's captions and stored with the corpus."""
    return vocabulary(config.tokenizer, config.vocab_size, catalog, corpus, out)


def vocabulary(
    vocab_file: str | None, vocab_size: int, catalog: str, corpus: str, out: Path,
    lowercase: bool = True,
) -> Tokenizer:  # fmt: skip
    """``vocab_file``, else the corpus's stored vocabulary, else one of ``vocab_size``
    pieces trained now on the corpus's captions and stored with the corpus."""
    if vocab_file:
        return Tokenizer(vocab_file, lowercase=lowercase)
    home = tokenizer_home(catalog, corpus, out)
    if not (home / WORDPIECE_FILE).exists():
        train_wordpiece(caption_texts(catalog, corpus), vocab_size, home)
        log.info("trained a %d-piece WordPiece vocabulary in %s", vocab_size, home)
    return Tokenizer(home / WORDPIECE_FILE, lowercase=lowercase)


def _distributed() -> tuple[int, int, int]:
    """(rank, world size, local rank); starts the process group under torchrun."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        torch.distributed.init_process_group(backend)
    rank = torch.distributed.get_rank() if world > 1 else 0
    return rank, world, int(os.environ.get("LOCAL_RANK", "0"))


def _schedule(config: TrainConfig):  # noqa: ANN202
    warmup, total = max(config.optim.warmup_steps, 1), max(config.optim.steps, 1)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total - step) / max(total - warmup, 1))

    return factor


def _optimizer(model: torch.nn.Module, config: TrainConfig) -> torch.optim.AdamW:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        (no_decay if p.ndim < 2 or "norm" in name else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": config.optim.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=config.optim.lr, betas=(0.9, 0.98), eps=1e-6)


def latest_checkpoint(out: Path) -> Path | None:
    found = sorted((out / CHECKPOINTS).glob("step-*.pt"))
    return found[-1] if found else None


def _feature_dim(catalog: str, corpus: str) -> int:
    """The region feature size of the corpus (read from its first image with regions)."""
    first = ShardStream(
        catalog, corpus, columns=["regions"], where="regions IS NOT NULL", shuffle_buffer=0,
        rank=0, world_size=1,
    )  # fmt: skip
    for sample in first:
        if sample["regions"]["feature_dim"]:
            return int(sample["regions"]["feature_dim"])
    raise ConfigError(f"corpus {corpus!r} has no region features: add a regions stage")


class TaskRunner(torch.nn.Module):
    """One objective on one batch as a module call, so DistributedDataParallel sees the
    forward pass and all-reduces the gradients of whatever it used."""

    def __init__(self, objectives: Objectives) -> None:
        super().__init__()
        self.model, self.objectives = objectives.model, objectives

    def forward(self, task: str, batch: dict, g: torch.Generator) -> dict[str, torch.Tensor]:
        return self.objectives.tasks[task](batch, g)


class Session:
    """A run's model, objectives, optimizer and schedule, and the work of one step (the
    loop and bench/train.py share it)."""

    def __init__(
        self, config: TrainConfig, tok: Tokenizer, feature_dim: int, device: torch.device,
        world: int = 1,
    ) -> None:  # fmt: skip
        self.config, self.device = config, device
        self.model = VLPModel(config.model, tok.vocab_size, feature_dim).to(device)
        self.objectives = Objectives(
            self.model, tok, config.wra_weight, config.itm_hard_fraction, config.vokens.weight
        )
        self.runner: torch.nn.Module = TaskRunner(self.objectives)
        if world > 1:
            ids = [device.index] if device.type == "cuda" else None
            # one task per batch leaves the other heads unused
            self.runner = torch.nn.parallel.DistributedDataParallel(
                self.runner, device_ids=ids, find_unused_parameters=True
            )
        self.optimizer = _optimizer(self.model, config)
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, _schedule(config))
        self.names = list(config.enabled)
        self.weights = [config.enabled[n] for n in self.names]

    def task(self, step: int) -> str:
        """One task per optimizer step (every micro-batch, every rank), drawn from (seed,
        step): a resumed run draws exactly what the first would have."""
        return random.Random(f"{self.config.seed}/{step}").choices(self.names, self.weights)[0]

    def forward_backward(
        self, task: str, batch: dict[str, Any], step: int, micro: int = 0, rank: int = 0
    ) -> dict[str, torch.Tensor]:
        """One micro-batch: the task's losses, their gradient accumulated. Masks and
        negatives come from (seed, step, micro-batch, rank)."""
        c, device = self.config, self.device
        g = torch.Generator(device=device)
        g.manual_seed(c.seed * 1_000_003 + step * 1009 + micro * 31 + rank)
        b = to_device(batch, device)
        self.model.set_feature_stats(b["features"], b["mask"])
        with autocast(device, "bf16"):
            losses = self.runner(task, b, g)
        (self.objectives.total(task, losses) / c.optim.grad_accum).backward()
        return losses

    def optimizer_step(self) -> None:
        params = self.model.parameters
        if self.config.optim.normalise_gradients:
            normalise_gradients(params())
        torch.nn.utils.clip_grad_norm_(params(), self.config.optim.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)


def training_stream(
    config: TrainConfig, catalog: str, corpus: str, rank: int = 0, world: int = 1
) -> ShardStream:
    """The training captions (held-out images left out), shuffled, split by rank; with
    voken_cls, the vokens layer zipped on."""
    vokens = bool(config.enabled.get("voken_cls"))
    return ShardStream(
        catalog, corpus, columns=COLUMNS + (["vokens"] if vokens else []), unit="caption",
        where=f"NOT ({held_out(config)})", seed=config.seed,
        shuffle_buffer=config.shuffle_buffer, rank=rank, world_size=world,
        decode={"regions": regions_hook(config)}, batch_size=config.optim.batch_size,
        layers=[config.vokens.layer] if vokens else (),
    )  # fmt: skip


def voken_classes(config: TrainConfig, catalog: str, corpus: str, tok: Tokenizer) -> int:
    """The size of the voken set the corpus's vokens layer points into (the vocabulary's
    for the ``token`` ablation): the voken head's output size."""
    if config.vokens.ablation == "token":
        return tok.vocab_size
    cat = Catalog(catalog)
    # the layer's caption entries, not the per-token ``vokens`` view: no token is unnested
    try:
        _, sets = cat.query(
            "SELECT DISTINCT v.vokenizer_id, v.keys_layer FROM (SELECT unnest(vokens) AS v "
            f"FROM {layer_view(config.vokens.layer)} WHERE corpus = ? AND vokens IS NOT NULL)",
            [corpus],
        )
    except CatalogError:
        sets = []  # no such layer (or no vokens column): said below
    if len(sets) != 1:
        raise ConfigError(
            f"{catalog}: vokens layer {config.vokens.layer!r} of corpus {corpus!r} must point "
            f"into one voken set, found {len(sets)} (run a vokenize layer first)"
        )
    ((ident, keys),) = sets
    _, [(size,)] = cat.query(
        "SELECT count(*) FROM voken_set WHERE vokenizer_id = ? AND layer = ?", [ident, keys]
    )
    return int(size)


def batches(stream: ShardStream, tok: Tokenizer, config: TrainConfig) -> DataLoader:
    """One epoch of collated training batches."""
    return DataLoader(
        stream, batch_size=config.optim.batch_size, num_workers=config.workers,
        collate_fn=Collator(tok, config), drop_last=True,
    )  # fmt: skip


def train(
    config: TrainConfig,
    catalog: str,
    corpus: str,
    out: str | Path,
    progress: bool | str = False,
) -> dict[str, Any]:
    """Train (or resume from the last checkpoint in ``out``), evaluate, and return the
    summary (also written to ``out``/summary.json): ITM accuracy, recall@K, eval pairs,
    steps and each objective's final loss. ``progress`` (rank 0): as for ``run_recipe``,
    in steps and samples."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rank, world, local_rank = _distributed()
    device = torch.device(resolve_device(config.device))
    if device.type == "cuda" and world > 1:
        device = torch.device("cuda", local_rank)
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    tok = corpus_tokenizer(config, catalog, corpus, out)
    if config.enabled.get("voken_cls"):
        config.model.voken_classes = voken_classes(config, catalog, corpus, tok)
    run = Session(config, tok, _feature_dim(catalog, corpus), device, world)
    per_rank = config.optim.batch_size
    stream = training_stream(config, catalog, corpus, rank, world)
    step, consumed, history = 0, 0, defaultdict(lambda: deque(maxlen=20))
    resume = latest_checkpoint(out)
    if resume is not None:
        state = torch.load(resume, map_location=device, weights_only=False)
        run.model.load_state_dict(state["model"])
        run.optimizer.load_state_dict(state["optimizer"])
        run.scheduler.load_state_dict(state["scheduler"])
        stream.load_state_dict(state["stream"][rank])
        step, consumed = state["step"], state["stream"][rank]["consumed"]
        for name, values in state["history"].items():
            history[name].extend(values)
        _truncate_metrics(out / "metrics.jsonl", step)
        log.info("resumed from %s at step %d", resume, step)
    metrics = open(out / "metrics.jsonl", "a", encoding="utf-8") if rank == 0 else None  # noqa: SIM115
    bar = Progress(
        config.optim.steps, "step", progress if rank == 0 else False, desc="train", start=step
    )
    run.model.train()
    try:
        while step < config.optim.steps:
            for batch in batches(stream, tok, config):
                consumed += per_rank
                micro = (consumed // per_rank - 1) % config.optim.grad_accum
                task = run.task(step)
                losses = run.forward_backward(task, batch, step, micro, rank)
                values = {k: float(v.detach()) for k, v in losses.items()}  # one sync
                for name, value in values.items():
                    history[name].append(value)
                if micro + 1 < config.optim.grad_accum:
                    continue
                run.optimizer_step()
                step += 1
                bar.update(1, rows=per_rank * world * config.optim.grad_accum)
                if metrics is not None:
                    row = {"step": step, "task": task, "lr": run.scheduler.get_last_lr()[0]}
                    row.update({f"loss_{k}": v for k, v in values.items()})
                    metrics.write(json.dumps(row) + "\n")
                    metrics.flush()
                    if step % config.log_every == 0:
                        log.info("step %d/%d %s", step, config.optim.steps, json.dumps(row))
                if step % config.checkpoint_every == 0 or step == config.optim.steps:
                    _save(out, step, run, stream, consumed, history, config, rank, world)
                if step >= config.optim.steps:
                    break
            else:  # the epoch ran out: next epoch, new order
                stream.set_epoch(stream.epoch + 1)
                consumed = 0
    finally:
        bar.close()
        if metrics is not None:
            metrics.close()
    summary: dict[str, Any] = {"steps": step}
    if rank == 0:
        summary.update(_evaluate(config, run.objectives, tok, catalog, corpus, device))
    extra = ["wra"] if "itm" in run.names and config.wra_weight > 0 else []
    if "voken_cls" in run.names:
        extra.append("voken_mlm")
        summary["voken_classes"] = config.model.voken_classes
    for name in [*run.names, *extra]:
        values = history.get(name)
        summary[f"loss_{name}"] = sum(values) / len(values) if values else None
    if rank == 0:
        with written_whole(out / "summary.json") as partial:
            partial.write_text(json.dumps(summary, indent=1), encoding="utf-8")
    return summary


def _evaluate(config, objectives, tok, catalog, corpus, device):  # noqa: ANN001, ANN202
    eval_stream = ShardStream(
        catalog, corpus, columns=COLUMNS, unit="caption", where=held_out(config),
        shuffle_buffer=0, rank=0, world_size=1, decode={"regions": regions_hook(config)},
    )  # fmt: skip
    collate = Collator(tok, config)

    def batches():  # noqa: ANN202
        images: set[str] = set()
        pending: list[dict] = []
        for sample in eval_stream:
            if sample["image_id"] not in images and len(images) >= config.eval.max_images:
                continue
            images.add(sample["image_id"])
            pending.append(sample)
            if len(pending) == 64:
                yield collate(pending)
                pending = []
        if pending:
            yield collate(pending)

    return evaluate(objectives, batches(), device, config.eval.itm_rerank)


def _save(out, step, run, stream, consumed, history, config, rank, world):  # noqa: ANN001, ANN202
    """Every rank's stream state gathered into one checkpoint, written by rank 0."""
    mine = stream.state_dict(num_samples=consumed, num_workers=config.workers)
    states = [mine]
    if world > 1:
        states = [None] * world
        torch.distributed.all_gather_object(states, mine)
    if rank != 0:
        return
    folder = out / CHECKPOINTS
    folder.mkdir(exist_ok=True)
    state = {
        "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(),
        "scheduler": run.scheduler.state_dict(),
        "stream": states,
        "step": step,
        "history": {k: list(v) for k, v in history.items()},
    }
    path = folder / f"step-{step:07d}.pt"
    with written_whole(path) as partial:
        torch.save(state, partial)
    for old in sorted(folder.glob("step-*.pt"))[:-KEEP_CHECKPOINTS]:
        old.unlink()


def _truncate_metrics(path: Path, step: int) -> None:
    """Drop metric lines past the checkpoint a resume starts from (they will be redone)."""
    if not path.exists():
        return
    keep = [
        line
        for line in path.read_text(encoding="utf-8").splitlines()
        if line.strip() and json.loads(line)["step"] <= step
    ]
    path.write_text("".join(line + "\n" for line in keep), encoding="utf-8")
