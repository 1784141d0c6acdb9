"""``codistill reproduce alpha-t | trident --budget smoke|cpu|full``: one study end to end."""

from __future__ import annotations

from codistill.config.fields import ConfigError
from codistill.reproduce import BUDGETS, STUDIES, StudyOptions, reproduce


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="one paper's study end to end (tuned teacher, equal-budget arms, evaluation, "
        "paired comparison, report); resumable, every stage cached by content",
    )
    p.add_argument("study", choices=sorted(STUDIES), help="which study")
    p.add_argument(
        "--budget",
        default="cpu",
        choices=list(BUDGETS),
        help="smoke: tiny random models, minutes (checks the pipeline only); cpu: what runs on "
        "a 2-core machine in a few hours (default); full: the papers' scale, for a GPU",
    )
    p.add_argument("--out", default="runs/reproduce", help="stage cache and reports")
    p.add_argument("--teacher", help="base teacher (default: embedded Gemma 3 270M)")
    p.add_argument("--data", help="directory with train/valid/test.jsonl instead of stdlib-asserts")
    p.add_argument(
        "--arms", help="comma-separated subset of the study's arms (the CE-only arm always runs)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def run(args) -> int:
    opts = StudyOptions(
        study=args.study,
        budget=args.budget,
        out=args.out,
        teacher=args.teacher,
        data=args.data,
        arms=[a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None,
        seed=args.seed,
    )
    try:
        reproduce(opts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return 0
