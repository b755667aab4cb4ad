"""`mmdata train`, `train-tokenizer` and `train-vokenizer`, added to the CLI through the
``mmdata.commands`` entry-point group (mmdata itself never imports mmdata.train)."""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path
from typing import Any

from mmdata.core.flags import add_progress_flags, positive_int, progress_mode


def add_commands(sub: Any) -> None:
    """Add the training commands to the CLI's subparsers."""
    train = sub.add_parser(
        "train", help="train the reference VLP model on a corpus, evaluate, resume if stopped"
    )
    train.add_argument("config", help="training config (YAML), e.g. recipes/train_tiny.yaml")
    train.add_argument("--catalog", required=True)
    train.add_argument("--corpus", required=True)
    train.add_argument(
        "--out", required=True, help="checkpoints, metrics.jsonl and summary.json go here"
    )
    train.add_argument(
        "--steps", type=positive_int, help="train this many steps (overrides optim.steps)"
    )
    add_progress_flags(train)
    train.set_defaults(handler=_cmd_train)

    tokenizer = sub.add_parser(
        "train-tokenizer", help="train a WordPiece vocabulary on a corpus's captions"
    )
    tokenizer.add_argument("--catalog", required=True)
    tokenizer.add_argument("--corpus", required=True)
    tokenizer.add_argument("--vocab-size", type=int, default=2000)
    tokenizer.add_argument(
        "--out", help="folder for vocab.txt (default: <corpus output>/tokenizer)"
    )
    tokenizer.set_defaults(handler=_cmd_train_tokenizer)

    vokenizer = sub.add_parser(
        "train-vokenizer",
        help="train a vokenizer (token-image matching) on a captioned corpus, evaluate, save",
    )
    vokenizer.add_argument(
        "config", help="vokenizer config (YAML), e.g. recipes/train_vokenizer_demo.yaml"
    )
    vokenizer.add_argument("--catalog", required=True)
    vokenizer.add_argument("--corpus", required=True)
    vokenizer.add_argument("--out", required=True, help="the saved vokenizer's folder")
    vokenizer.add_argument("--epochs", type=positive_int, help="overrides the config's epochs")
    add_progress_flags(vokenizer)
    vokenizer.set_defaults(handler=_cmd_train_vokenizer)


def _cmd_train(args: argparse.Namespace) -> int:
    from mmdata.train.config import load_config
    from mmdata.train.loop import train

    config = load_config(args.config)
    if args.steps is not None:
        config.optim.steps = args.steps
    summary = train(config, args.catalog, args.corpus, args.out, progress_mode(args))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, one summary: rank 0's
        print(json.dumps(summary))  # the last stdout line: scripts read it
    return 0


def _cmd_train_tokenizer(args: argparse.Namespace) -> int:
    from mmdata.models.wordpiece import train_wordpiece
    from mmdata.train.loop import caption_texts, tokenizer_home

    home = Path(args.out) if args.out else tokenizer_home(args.catalog, args.corpus, None)
    path = train_wordpiece(caption_texts(args.catalog, args.corpus), args.vocab_size, home)
    print(f"{path}: {args.vocab_size}-piece WordPiece vocabulary for corpus {args.corpus!r}")
    return 0


def _cmd_train_vokenizer(args: argparse.Namespace) -> int:
    from mmdata.train.vokenizer import load_training, train_vokenizer

    config = load_training(args.config)
    if args.epochs is not None:
        config.epochs = args.epochs
    summary = train_vokenizer(config, args.catalog, args.corpus, args.out, progress_mode(args))
    print(json.dumps(summary))  # the last stdout line: scripts read it
    return 0
