"""Training throughput and model FLOPs utilisation of the reference trainer.

    python bench/train.py [--size base] [--batch 256] [--steps 30] [--workers 4]
                          [--peak-tflops T] [--device cuda]

Generates (once, cached in --dir) a corpus of ``images x captions`` caption samples with
``--boxes`` x 2048 float16 region features and 16-word captions (bench/stream.py's
generator), trains a WordPiece vocabulary on it, and runs the trainer's own step
(``mmdata.train.loop.Session``: one task per step drawn from the UNITER / ERNIE-ViL /
Oscar / CLIP mix, AdamW, gradient normalisation, bf16 autocast on CUDA) two ways, side
by side in this process:

- mmdata: batches from ``ShardStream`` through the DataLoader with ``--workers``
  workers and the trainer's collator, as ``mmdata train`` gets them;
- ceiling: the same steps on one batch collated once (no reading, no collating).

Prints samples/s of each and their ratio (over the steps actually run: a stream that runs
dry before ``--steps`` says so). Model FLOPs per step are counted by
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
from collections.abc import Callable, Iterable
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


def timed(
    run: Session, source: Iterable[dict], warmup: int, steps: int, deadline: float | None = None
) -> tuple[float, int]:
    """(seconds, steps timed) for up to ``steps`` optimizer steps after ``warmup`` untimed
    ones; fewer where the source runs dry or a step ends past ``deadline`` (a
    ``time.perf_counter`` value)."""
    started, done = 0.0, 0
    for step, batch in enumerate(itertools.islice(source, warmup + steps)):
        if step == warmup:
            sync(run.device)
            started = time.perf_counter()
        task = run.task(step)
        losses = run.forward_backward(task, batch, step)
        run.optimizer_step()
        float(losses[task].detach())  # the loop logs every step's loss, so pays this sync
        if step >= warmup:
            done += 1
            if deadline is not None and time.perf_counter() > deadline:
                break
    sync(run.device)
    return (time.perf_counter() - started if done else 0.0), done


def parser() -> argparse.ArgumentParser:
    """This script's options (bench/gpu.py parses its own settings with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", help="cpu, cuda or cuda:N (cuda when there is one)")
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
    return parser


def settings(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed options, with the device-dependent defaults filled in (``device`` becomes a
    torch.device)."""
    args = parser().parse_args(argv)
    args.device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    gpu = args.device.type == "cuda"
    args.batch = args.batch or (256 if gpu else 8)
    args.steps = args.steps or (30 if gpu else 5)
    return args


def measure(
    args: argparse.Namespace,
    record: dict | None = None,
    deadline: float | None = None,
    say: Callable[[str], object] = print,
) -> dict:
    """Build the corpus, the tokenizer and the model, count FLOPs, and time both sides.

    Figures go into ``record`` as they are measured: ``flops_per_step``, ``peak_flops``
    (None where unknown), and per side (``mmdata``, ``ceiling``) ``samples_per_s``,
    ``tflops_per_s``, ``mfu`` (None without a peak) and ``steps``; ``mfu`` and
    ``mmdata_over_ceiling``; ``cut``: a list of the sides that ``deadline`` (a
    ``time.perf_counter`` value) or a dry stream cut short. Lines for people go to ``say``.
    """
    record = {} if record is None else record
    cut = record.setdefault("cut", [])
    device, batch_size, steps = args.device, args.batch, args.steps
    gpu = device.type == "cuda"
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
    peak = peak_flops(device, args.peak_tflops)
    record.update(
        size=args.size, parameters=params, batch=batch_size,
        regions=config.model.max_regions, text_tokens=int(fixed["text_ids"].shape[1]),
        device=torch.cuda.get_device_name(device) if gpu else "CPU, no GPU",
        flops_per_step=flops, peak_flops=peak,
    )  # fmt: skip
    say(
        f"{args.size}: {params / 1e6:.1f} M parameters, batch {batch_size}, "
        f"{config.model.max_regions} regions, {record['text_tokens']} text tokens; "
        f"{record['device']}; {flops / 1e9:,.1f} GFLOP per step (task mix)"
    )
    for name, source in (("mmdata", iter(stream)), ("ceiling", itertools.repeat(fixed))):
        seconds, done = timed(run, source, args.warmup, steps, deadline)
        if done < steps:
            late = deadline is not None and time.perf_counter() > deadline
            why = "out of time" if late else "the stream ran dry"
            cut.append(f"{name}: {done} of {steps} steps ({why})")
        if not done:
            continue
        rate, achieved = done * batch_size / seconds, done * flops / seconds
        record[name] = {
            "samples_per_s": rate, "tflops_per_s": achieved / 1e12, "steps": done,
            "mfu": achieved / peak if peak else None,
        }  # fmt: skip
        line = f"{name:8s} {rate:,.1f} samples/s, {achieved / 1e12:.3f} TFLOP/s"
        if peak:
            line += f", MFU {achieved / peak:.1%}"
        say(line)
    if "mmdata" in record and "ceiling" in record:
        ratio = record["mmdata"]["samples_per_s"] / record["ceiling"]["samples_per_s"]
        record["mmdata_over_ceiling"] = ratio
        say(f"mmdata / ceiling: {ratio:.2f}x")
    if "mmdata" in record:
        record["mfu"] = record["mmdata"]["mfu"]
    return record


def main() -> None:
    record = measure(settings())
    if record.get("mfu") is not None:
        verdict = "ok" if record["mfu"] >= TARGET_MFU else "MISSED"
        print(f"MFU {record['mfu']:.1%} (target >= {TARGET_MFU:.0%}: {verdict})")


if __name__ == "__main__":
    main()
