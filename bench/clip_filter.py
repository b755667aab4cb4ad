"""CLIP score filter throughput: the clip_score_filter stage on photo-like JPEGs.

    python bench/clip_filter.py                      # CPU: a tiny random open_clip model
    python bench/clip_filter.py --images 1024        # CUDA: ViT-B-32 (the stage's default), fp16

The model is the one the stage uses, built by open_clip with random weights (nothing can
be downloaded here; speed does not depend on the weights), saved to a checkpoint in the
temp folder and loaded back through the stage's own loader (mmdata.models.clip). On a
CPU the default is a tiny config (as tests/stages/test_clip_score_filter.py builds it):
ViT-B-32 on two cores says nothing about a GPU host.

The stage scores work batches of ``--batch`` rows (its default ``batch_size`` under
Ray), each row one 640x480 or 500x375 JPEG with ``--captions`` captions; ``process``
decodes and preprocesses every image on the CPU, one after another, then embeds images
and captions in micro-batches of ``--micro-batch``. Printed: the stage's images/s, and
the model alone on images already preprocessed (its ceiling), so the share of the
stage's time spent decoding on the CPU shows.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))

from regions import photo, sync  # noqa: E402

TINY_NAME = "mmdata-bench-tiny-clip"
TINY = {
    "embed_dim": 16,
    # head_width: vision heads are width // head_width (default 64, which would give 0)
    "vision_cfg": {"image_size": 32, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
    "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1},
}


def parser() -> argparse.ArgumentParser:
    """This script's options (bench/gpu.py parses its own settings with it)."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", help=f"open_clip architecture (ViT-B-32; {TINY_NAME} on CPU)")
    parser.add_argument("--images", type=int, help="images timed (1024 on CUDA, else 32)")
    parser.add_argument("--captions", type=int, default=1, help="captions per image")
    parser.add_argument("--batch", type=int, default=256, help="rows per stage call")
    parser.add_argument("--micro-batch", type=int, help="per forward pass (256 on CUDA, else 64)")
    parser.add_argument("--precision", help="fp32, fp16 or bf16 (fp16 on CUDA)")
    return parser


def settings(argv: list[str] | None = None) -> argparse.Namespace:
    """Parsed options, with the device-dependent defaults filled in."""
    args = parser().parse_args(argv)
    gpu = args.device.startswith("cuda")
    args.model = args.model or ("ViT-B-32" if gpu else TINY_NAME)
    args.images = args.images or (1024 if gpu else 32)
    args.micro_batch = args.micro_batch or (256 if gpu else 64)
    args.precision = args.precision or ("fp16" if gpu else "fp32")
    return args


def checkpoint(model: str) -> tuple[str, str | None]:
    """(checkpoint, model_config) of ``model`` with random weights, saved once in the temp
    folder; the tiny model gets its JSON config written beside it."""
    import open_clip

    folder = Path(tempfile.gettempdir())
    config = None
    if model == TINY_NAME:
        config = folder / f"{TINY_NAME}.json"
        config.write_text(json.dumps(TINY))
        open_clip.add_model_config(config)
    path = folder / f"mmdata-bench-clip-{model}.pt"
    if not path.is_file():
        torch.manual_seed(0)
        partial = path.with_suffix(".partial")
        torch.save(open_clip.create_model(model).state_dict(), partial)
        partial.replace(path)  # never a half-written checkpoint for the next run
    return str(path), (str(config) if config else None)


def table(jpegs: list[bytes], captions: int, first: int):  # noqa: ANN201 - a pyarrow.Table
    """A work batch as executors hand it to stages: one row per JPEG."""
    import pyarrow as pa

    from mmdata.core.batch import to_work
    from mmdata.core.schema import CAPTION

    ids = [f"bench:{first + i}" for i in range(len(jpegs))]
    texts = [
        [
            {"caption_id": f"{i}-{c}", "text": f"a photo of thing {i} number {c}"}
            for c in range(captions)
        ]
        for i in ids
    ]
    return to_work(
        pa.table(
            {
                "image_id": ids,
                "image_bytes": jpegs,
                "captions": pa.array(texts, pa.list_(CAPTION)),
            }
        ),
        shard=0,
    )


def measure(
    args: argparse.Namespace,
    record: dict | None = None,
    deadline: float | None = None,
    say: Callable[[str], object] = print,
) -> dict:
    """Time the stage and the model alone.

    Figures go into ``record`` as they are measured: ``stage_images_per_s`` (and
    ``stage_captions_per_s``), ``model_images_per_s``, ``outside_image_pass_share`` (the part of the
    stage's time not spent in the model's image pass); ``cut``: a list of what
    ``deadline`` (a ``time.perf_counter`` value) cut short. Lines for people go to ``say``.
    """
    from mmdata.stages.clip_score_filter import ClipScoreFilter

    record = {} if record is None else record
    cut = record.setdefault("cut", [])
    path, config = checkpoint(args.model)
    stage = ClipScoreFilter(
        checkpoint=path, model=args.model, model_config=config, min_score=0.0,
        device=args.device, precision=args.precision, micro_batch=args.micro_batch,
    )  # fmt: skip
    stage.setup()
    distinct = [photo(*((640, 480) if i % 2 else (500, 375)), seed=i) for i in range(32)]
    jpegs = [distinct[i % len(distinct)] for i in range(args.images)]
    record.update(
        model=args.model, precision=args.precision, micro_batch=args.micro_batch,
        batch=args.batch, captions_per_image=args.captions, images=args.images,
        device=torch.cuda.get_device_name() if args.device.startswith("cuda") else "CPU",
    )  # fmt: skip
    say(
        f"clip_score_filter, {args.model} ({args.precision}) on {record['device']}: "
        f"{args.images} images, {args.captions} caption(s) each, batches of {args.batch}, "
        f"micro-batches of {args.micro_batch}"
    )
    stage.process(table(jpegs[: min(args.batch, len(jpegs))], args.captions, 0))  # warm-up
    sync(args.device)
    started, done = time.perf_counter(), 0
    while done < len(jpegs):
        chunk = jpegs[done : done + args.batch]
        out = stage.process(table(chunk, args.captions, done))
        assert out.num_rows == len(chunk)
        done += len(chunk)
        if deadline is not None and time.perf_counter() > deadline and done < len(jpegs):
            cut.append(f"stage after {done} of {len(jpegs)} images")
            break
    seconds = time.perf_counter() - started
    record.update(
        stage_images=done,
        stage_images_per_s=done / seconds,
        stage_captions_per_s=done * args.captions / seconds,
    )
    say(f"stage: {done / seconds:,.1f} images/s ({done * args.captions / seconds:,.1f} captions/s)")
    scorer = stage._scorer  # the loaded model, to time it without the decoding
    pixels = torch.stack([scorer._pixels(d) for d in distinct])
    reps = -(-args.micro_batch // len(pixels))
    ready = pixels.repeat(reps, 1, 1, 1)[: args.micro_batch]
    scorer._embed(scorer.model.encode_image, ready)
    passes = max(1, args.images // args.micro_batch)
    sync(args.device)
    started = time.perf_counter()
    for _ in range(passes):
        scorer._embed(scorer.model.encode_image, ready)
    model_rate = passes * len(ready) / (time.perf_counter() - started)
    record["model_images_per_s"] = model_rate
    record["outside_image_pass_share"] = max(0.0, 1 - record["stage_images_per_s"] / model_rate)
    say(
        f"model alone (image pass on preprocessed tensors, batch {len(ready)}): "
        f"{model_rate:,.1f} images/s; the stage spends {record['outside_image_pass_share']:.0%} "
        "of its time elsewhere (decode, preprocess, captions)"
    )
    return record


def main() -> None:
    measure(settings())


if __name__ == "__main__":
    main()
