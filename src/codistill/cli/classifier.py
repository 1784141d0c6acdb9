"""``codistill classifier teacher|student``: clone/defect classifiers for fidelity testing.

``teacher`` fine-tunes a classification head on a backbone with the teacher part of the data;
``student`` distils a smaller classifier from that teacher's soft labels on the unlabelled part
(see `codistill.training.classifier`). Settings come from flags, ``key=value`` overrides (any
config key, e.g. ``fractions=[0.5,0.3,0.05,0.15]``) and ``--config FILE.yaml``; precedence is
command line > YAML > defaults. Output directories appear whole or not at all.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

from codistill.cli.student import parse_layers
from codistill.config.fields import ConfigError, build, describe, load_yaml, parse_overrides
from codistill.data.schema import RecordError
from codistill.models.registry import resolve_model

# The training code (torch, transformers) is imported inside the run functions, marked
# `# lazy: <cost>`; see codistill/cli/__init__.py.

# Flags whose value goes to the config key of the same name as given.
_TEACHER_FLAGS = (
    "backbone",
    "task",
    "data",
    "out",
    "train_size",
    "valid_size",
    "test_size",
    "max_length",
    "batch_size",
    "unfreeze_layers",
    "epochs",
    "lr",
    "seed",
)
_STUDENT_FLAGS = (
    "teacher",
    "data",
    "out",
    "unlabeled_size",
    "steps",
    "batch_size",
    "lr",
    "temperature",
    "alpha",
    "seed",
)


def register(sub) -> None:
    p = sub.add_parser(
        "classifier",
        help="clone/defect classifiers: a fine-tuned teacher and a distilled student",
        description="Precedence: command line > YAML (--config) > defaults.",
    )
    csub = p.add_subparsers(dest="action", required=True, metavar="ACTION")

    t = csub.add_parser("teacher", help="fine-tune a classification head on a backbone")
    t.add_argument("--backbone", help="decoder-only model dir, or 'embedded' (Gemma 3 270M)")
    t.add_argument("--task", choices=("clone", "defect"), help="classification task")
    t.add_argument("--data", help="BigCloneBench (clone) or Devign (defect) JSONL")
    t.add_argument("--out", help="output classifier directory")
    t.add_argument("--train-size", type=int, help="teacher-part records used (default: all)")
    t.add_argument("--valid-size", type=int, help="valid-part records used (default: all)")
    t.add_argument("--test-size", type=int, help="test-part records used (default: all)")
    t.add_argument("--max-length", type=int, help="tokens per input; a pair shares them")
    t.add_argument("--batch-size", type=int, help="inputs per forward pass")
    t.add_argument(
        "--unfreeze-layers", type=int, help="top layers to fine-tune (default 0: head only)"
    )
    t.add_argument("--epochs", type=int, help="passes over the teacher part")
    t.add_argument("--lr", type=float, help="learning rate of the head")
    t.add_argument("--seed", type=int, help="seed of the split and training")
    _common(t)
    t.set_defaults(func=run_teacher, config_class="TeacherConfig", flags=_TEACHER_FLAGS)

    s = csub.add_parser("student", help="distil a smaller classifier from a teacher")
    s.add_argument("--teacher", help="teacher classifier dir (from `classifier teacher`)")
    s.add_argument("--data", help="the data file the teacher was trained on")
    s.add_argument("--out", help="output student directory")
    s.add_argument("--layers", help="student layers: a count (default 4) or indices like 0,8,17")
    s.add_argument("--unlabeled-size", type=int, help="unlabeled records used (default: all)")
    s.add_argument("--steps", type=int, help="optimizer steps")
    s.add_argument("--batch-size", type=int, help="inputs per step")
    s.add_argument("--lr", type=float, help="peak learning rate")
    s.add_argument("--temperature", type=float, help="KD temperature T")
    s.add_argument("--alpha", type=float, help="weight of hard-label CE (default 0: pure KD)")
    s.add_argument(
        "--no-trim-vocab", action="store_true", help="keep the teacher's full vocabulary"
    )
    s.add_argument("--seed", type=int, help="seed of the batch order")
    _common(s)
    s.set_defaults(func=run_student, config_class="StudentConfig", flags=_STUDENT_FLAGS)


def _common(p) -> None:
    p.add_argument("--config", help="YAML file of config keys")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.add_argument("--help-config", action="store_true", help="list every config key")
    p.add_argument("overrides", nargs="*", metavar="key=value", help="any config key")


def config_for(args) -> Any:
    """The validated config of a ``classifier`` action from YAML, overrides and flags."""
    from codistill.training.classifier import config  # lazy: torch

    cls = getattr(config, args.config_class)
    command_line = parse_overrides(args.overrides)
    command_line.update(
        {key: getattr(args, key) for key in args.flags if getattr(args, key) is not None}
    )
    if getattr(args, "layers", None) is not None:
        command_line["layers"] = parse_layers(args.layers)
    if getattr(args, "no_trim_vocab", False):
        command_line["trim_vocab"] = False
    if args.quiet:
        command_line["progress"] = False
    layers = [("command line", command_line)]
    if args.config:
        layers.insert(0, (args.config, load_yaml(args.config)))
    cfg = build(cls, *layers)
    if Path(cfg.out).exists() and not args.overwrite:
        raise ConfigError(f"--out {cfg.out} already exists; pass --overwrite to replace it")
    if not Path(cfg.data).is_file():
        raise FileNotFoundError(f"--data {cfg.data}: no such file")
    return cfg


def _summary(meta: dict[str, Any], out: str) -> dict[str, Any]:
    return {
        "out": out,
        "role": meta["role"],
        "task": meta["task"],
        "split_used": meta["split"]["used"],
        "metrics": meta["metrics"],
        "seconds": meta["seconds"],
    }


def _run(args, action) -> int:
    from codistill.training.classifier import config  # lazy: torch

    if args.help_config:
        print(describe(getattr(config, args.config_class)))
        return 0
    cfg = config_for(args)
    try:
        meta = action(cfg)
    except ValueError as exc:  # bad layer choice, no pad id, ...: the user's input
        if isinstance(exc, ConfigError | RecordError):
            raise
        raise ConfigError(str(exc)) from exc
    print(json.dumps(_summary(meta, cfg.out), indent=2))
    return 0


def run_teacher(args) -> int:
    from codistill.training.classifier.teacher import train_teacher  # lazy: torch

    def train(cfg):
        # Resolved after the config checks: 'embedded' converts the GGUF, which takes minutes.
        return train_teacher(dataclasses.replace(cfg, backbone=resolve_model(cfg.backbone)))

    return _run(args, train)


def run_student(args) -> int:
    from codistill.training.classifier.student import distill_student  # lazy: torch

    return _run(args, distill_student)
