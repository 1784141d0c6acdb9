"""``codistill teacher finetune``: tune a teacher on the task's training split before distilling.

The distill config keys (``max_steps``, ``lr``, ``batch_size``, ``max_source_tokens``, ...) pass
through as ``key=value``, so a teacher is tuned with the same loop, checks and logs as a student.
"""

from __future__ import annotations

import json
from pathlib import Path

from codistill.cli.student import corpus_texts
from codistill.config.fields import ConfigError, parse_overrides
from codistill.models.registry import resolve_model


def add_parser(tsub) -> None:
    """Adds ``finetune`` to the ``codistill teacher`` subcommands."""
    f = tsub.add_parser(
        "finetune",
        help="fine-tune a teacher on the training split (all weights with frozen embeddings, or "
        "LoRA merged back) and save it as a plain model directory (resumable)",
    )
    f.add_argument("--model", required=True, help="model dir, 'embedded' or 'embedded:NAME'")
    f.add_argument("--train", required=True, help="training JSONL (the train split only)")
    f.add_argument("--valid", help="held-out JSONL: loss before and after, in finetune.json")
    f.add_argument("--out", required=True, help="work dir; the tuned teacher goes to OUT/model")
    f.add_argument("--task", default="assertion", choices=["assertion", "codegen"])
    f.add_argument(
        "--mode",
        default="full",
        choices=["full", "lora"],
        help="full: every weight but the embeddings (default); lora: adapters, merged on save",
    )
    f.add_argument(
        "--vocab-from",
        action="append",
        metavar="FILE",
        help="trim the vocabulary to this file's tokens first (repeat for more files), keeping "
        "every layer; a student derived from the tuned teacher then shares it",
    )
    f.add_argument(
        "overrides", nargs="*", metavar="key=value", help="distill config keys (max_steps=...)"
    )
    f.set_defaults(func=run)


def run(args) -> int:
    from codistill.models.loading import load_tokenizer  # lazy: torch, transformers
    from codistill.training.finetune import finetune_teacher  # lazy: run-time only, ~7 ms

    overrides = parse_overrides(args.overrides)
    fixed = {"student", "teacher", "loss", "train_data", "valid_data", "task", "output_dir"}
    clash = sorted(fixed & set(overrides))
    if clash:
        raise ConfigError(f"{', '.join(clash)}: set by teacher finetune's own options")
    if (Path(args.out) / "model" / "config.json").exists():
        raise ConfigError(f"{args.out}/model already exists: this teacher is already tuned")
    model = resolve_model(args.model)
    texts = None
    if args.vocab_from:
        texts = corpus_texts(args.vocab_from, load_tokenizer(model))
    try:
        summary = finetune_teacher(
            model,
            args.train,
            args.out,
            valid_data=args.valid,
            task=args.task,
            mode=args.mode,
            vocab_texts=texts,
            overrides=overrides,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    print(json.dumps(summary["held_out_loss"]))
    print(summary["model"])
    return 0
