"""Flags several commands share, mmdata.train's included (it adds its commands to the
same parser through the mmdata.commands entry point)."""

from __future__ import annotations

import argparse


def add_progress_flags(parser: argparse.ArgumentParser, json: bool = True) -> None:
    """``-q`` for no progress bar and, with ``json``, ``--json`` for scripts (read back
    by ``progress_mode``); shared by every long command, mmdata.train's included."""
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar")
    if json:
        parser.add_argument(
            "--json",
            action="store_true",
            help="for scripts: progress as JSON lines on stderr, the summary as JSON on stdout",
        )


def progress_mode(args: argparse.Namespace) -> str:
    """The mmdata.core.progress mode the flags of ``add_progress_flags`` ask for."""
    return "json" if getattr(args, "json", False) else "quiet" if args.quiet else "bar"


def positive_int(text: str) -> int:
    """argparse type: an integer >= 1."""
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive integer")
    return int(text)
