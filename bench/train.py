"""Training throughput and model FLOPs utilisation of the reference trainer.

    python bench/train.py [--size base] [--batch 256] [--steps 30] [--workers 4]
                          [--peak-tflops T]

Generates (once, cached in --dir) a corpus of ``images x captions`` caption samples with
``--boxes`` x 2048 float16 region features and 16-word captions (bench/stream.py's
generator), trains a WordPiece vocabulary on it, and runs the trainer's own step
(``mmdata.train.loop.Session``: one task per step drawn from the UNITER / ERNIE-ViL /
Oscar / CLIP mix, AdamW, gradient normalisation, bf16 autocast on CUDA) two ways, side
by side in this process:

- mmdata: batches from ``ShardStream`` through the DataLoader with ``--workers``
  workers and the trainer's collator, as ``mmdata train`` gets them;
- ceiling: the same steps on one batch collated once (no reading, no collating).

Prints samples/s of each and their ratio. Model FLOPs per step are counted by
``torch.utils.flop_counter`` on one forward and backward of each task (weighted by the
task mix; ITM's no-grad pass that picks hard negatives included), so MFU = FLOPs per
second / the GPU's dense bf16 peak (H100 SXM 989 TFLOPS, PCIe 756; H200 989; A100 312;
``--peak-tflops`` for others). Target on an H100-class GPU: MFU >= 35% for the BERT-base
configuration with 36 regions. On a CPU only samples/s are printed (no peak to compare).
"""

from __future__ import annotations

import argparse
import itertools
import sys
import time
from pathlib import Path

import torch
from torch.utils.flop_counter import FlopCounterMode

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from stream import generate  # noqa: E402

from mmdata.train.config import EvalConfig, ModelConfig, OptimConfig, TrainConfig  # noqa: E402
from mmdata.train.loop import Session, batches, corpus_tokenizer, training_stream  # noqa: E402

TARGET_MFU = 0.35
SIZES = {
    # BERT-base, as UNITER-base / LXMERT / Oscar-base
    "base": ModelConfig(hidden=768, layers=12, heads=12, intermediate=3072, dropout=0.1,
                        max_text_tokens=40, max_tags=10, max_regions=36, num_classes=1601,
                        contrastive_dim=256),
    "tiny": ModelConfig(hidden=128, layers=2, heads=4, intermediate=256, dropout=0.1,
                        max_text_tokens=32, max_tags=10, max_regions=10, num_classes=1601,
                        contrastive_dim=64),
}  # fmt: skip
MIX = {"mlm": 1.0, "itm": 1.0, "mrfr": 0.5, "mrc": 0.5, "sgp": 0.5, "tags": 0.5,
       "tag_contrast": 0.5, "contrastive": 1.0}  # fmt: skip


def peak_flops(device: torch.device, override: float | None) -> float | None:
    """Dense bf16 peak of ``device`` in FLOP/s (None where unknown)."""
    if override:
        return override * 1e12
    if device.type != "cuda":
        return None
    name = torch.cuda.get_device_name(device)
    for key, tflops in (("H100 PCIe", 756), ("H100", 989), ("H200", 989), ("A100", 312)):
        if key in name:
            return tflops * 1e12
    return None


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def flops_per_step(run: Session, batch: dict) -> float:
    """Model FLOPs of one training step, averaged over the task mix."""
    total = 0.0
    weights = dict(zip(run.names, run.weights))
    for task, weight in weights.items():
        counter = FlopCounterMode(display=False)
        with counter:
            run.forward_backward(task, batch, step=0)
        run.optimizer.zero_grad(set_to_none=True)
        total += weight * counter.get_total_flops()
    return total / sum(weights.values())


def timed(run: Session, source, warmup: int, steps: int) -> float:  # noqa: ANN001
    """Seconds for ``steps`` optimizer steps after ``warmup`` untimed ones."""
    started = 0.0
    for step, batch in enumerate(itertools.islice(source, warmup + steps)):
        if step == warmup:
            sync(run.device)
            started = time.perf_counter()
        task = run.task(step)
        losses = run.forward_backward(task, batch, step)
        run.optimizer_step()
        float(losses[task].detach())  # the loop logs every step's loss, so pays this sync
    sync(run.device)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", choices=sorted(SIZES), default="base")
    parser.add_argument("--batch", type=int, help="samples a step (256 on CUDA, else 8)")
    parser.add_argument("--steps", type=int, help="timed steps per side (default 30 / 5)")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--images", type=int, default=4000)
    parser.add_argument("--captions", type=int, default=5)
    parser.add_argument("--boxes", type=int, default=36)
    parser.add_argument("--peak-tflops", type=float, help="the device's dense bf16 peak")
    parser.add_argument("--dir", type=Path, default=Path("/tmp/mmdata-bench-train"))
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpu = device.type == "cuda"
    batch_size = args.batch or (256 if gpu else 8)
    steps = args.steps or (30 if gpu else 5)
    if gpu:
        torch.backends.cuda.matmul.allow_tf32 = True
    catalog = str(generate(args.dir, args.images, args.captions, args.boxes, words=16))
    config = TrainConfig(
        model=SIZES[args.size],
        optim=OptimConfig(lr=1e-4, warmup_steps=10, steps=10**6, batch_size=batch_size),
        eval=EvalConfig(fraction=0.0),
        objectives=MIX, vocab_size=4000, shuffle_buffer=2000, workers=args.workers,
    )  # fmt: skip
    tok = corpus_tokenizer(config, catalog, "bench", args.dir)
    run = Session(config, tok, 2048, device)
    run.model.train()
    params = sum(p.numel() for p in run.model.parameters())
    stream = batches(training_stream(config, catalog, "bench"), tok, config)
    fixed = next(iter(stream))
    flops = flops_per_step(run, fixed)
    print(
        f"{args.size}: {params / 1e6:.1f} M parameters, batch {batch_size}, "
        f"{config.model.max_regions} regions, {fixed['text_ids'].shape[1]} text tokens; "
        f"{torch.cuda.get_device_name(device) if gpu else 'CPU, no GPU'}; "
        f"{flops / 1e9:,.1f} GFLOP per step (task mix)"
    )
    peak = peak_flops(device, args.peak_tflops)
    rates = {}
    for name, source in (("mmdata", iter(stream)), ("ceiling", itertools.repeat(fixed))):
        seconds = timed(run, source, args.warmup, steps)
        rates[name] = steps * batch_size / seconds
        achieved = steps * flops / seconds
        line = f"{name:8s} {rates[name]:,.1f} samples/s, {achieved / 1e12:.3f} TFLOP/s"
        if peak:
            line += f", MFU {achieved / peak:.1%}"
        print(line)
    print(f"mmdata / ceiling: {rates['mmdata'] / rates['ceiling']:.2f}x")
    if peak:
        mfu = rates["mmdata"] * flops / batch_size / peak
        verdict = "ok" if mfu >= TARGET_MFU else "MISSED"
        print(f"MFU {mfu:.1%} (target >= {TARGET_MFU:.0%}: {verdict})")


if __name__ == "__main__":
    main()
