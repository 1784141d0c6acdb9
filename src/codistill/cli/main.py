"""``codistill``: one subcommand per pipeline step (data -> teacher -> student -> distill ->
evaluate -> fidelity -> report). Each subcommand lives in its own module of this package and
exposes ``register(subparsers)``; add a step by adding a module to ``SUBCOMMANDS``."""

from __future__ import annotations

import argparse
import importlib
import sys

from codistill import __version__
from codistill.config.fields import ConfigError
from codistill.data.schema import RecordError
from codistill.models.registry import ModelIntegrityError, UnknownModelError

# Pipeline order.
SUBCOMMANDS = [
    "data",
    "models",
    "teacher",
    "student",
    "distill",
    "sweep",
    "classifier",
    "eval",
    "compare",
    "fidelity",
    "report",
    "soda",
    "reproduce",
    "quickstart",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="codistill", description="Distil a code LM into a small student and measure it."
    )
    parser.add_argument("--version", action="version", version=f"codistill {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in SUBCOMMANDS:
        importlib.import_module(f"codistill.cli.{name}").register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    # Per-file "Loading weights" bars drown the training progress bar; keep our own bars only.
    from transformers.utils import logging as hf_logging  # lazy: transformers (`--help` skips it)

    hf_logging.disable_progress_bar()
    try:
        return int(args.func(args) or 0)
    # User errors: bad config, missing or existing paths, a bad data line (named FILE:LINE), an
    # embedded model that does not exist or whose installed files do not match their hash.
    except (
        ConfigError,
        RecordError,
        FileNotFoundError,
        FileExistsError,
        UnknownModelError,
        ModelIntegrityError,
    ) as exc:
        print(f"codistill {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
