"""``codistill compare``: does distillation pay? Eval runs side by side with paired intervals."""

from __future__ import annotations

import sys

from codistill.config.fields import ConfigError


def register(sub) -> None:
    p = sub.add_parser(
        "compare",
        help="eval runs of several arms on the same items: 95%% intervals, paired differences "
        "against a baseline arm, McNemar on exact match / pass@1",
    )
    p.add_argument(
        "--arm",
        action="append",
        required=True,
        metavar="NAME=RUN_DIR",
        help="an arm and its `codistill eval` run directory (repeat; at least two)",
    )
    p.add_argument("--baseline", required=True, help="the arm the others are compared with")
    p.add_argument(
        "--teacher", help="the teacher's arm: assertions are also scored against its outputs"
    )
    p.add_argument("--out", required=True, help="directory for comparison.json / comparison.md")
    p.add_argument("--language", choices=["python", "java"], help="if the runs do not say")
    p.add_argument(
        "--cqs", action="store_true", help="also the per-item Code Quality Score (assertions)"
    )
    p.add_argument("--keep-case", action="store_true", help="exact match without case folding")
    p.add_argument("--resamples", type=int, default=2000, help="bootstrap resamples (2000)")
    p.add_argument("--seed", type=int, default=0, help="bootstrap seed")
    p.set_defaults(func=run)


def parse_arms(specs: list[str]) -> dict[str, str]:
    """``["kd=runs/a", "ce=runs/b"]`` -> ``{"kd": "runs/a", "ce": "runs/b"}``, checked."""
    arms: dict[str, str] = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--arm {spec!r}: expected NAME=RUN_DIR")
        if name in arms:
            raise ConfigError(f"--arm {name!r} given twice")
        arms[name] = path
    if len(arms) < 2:
        raise ConfigError("compare needs at least two --arm NAME=RUN_DIR")
    return arms


def run(args) -> int:
    from codistill.evaluation.compare import compare_eval_runs  # lazy: numpy (`--help` skips it)

    arms = parse_arms(args.arm)
    for role, name in (("--baseline", args.baseline), ("--teacher", args.teacher)):
        if name is not None and name not in arms:
            raise ConfigError(f"{role} {name!r} is not one of the arms {sorted(arms)}")
    if args.resamples < 1:
        raise ConfigError(f"--resamples must be >= 1, got {args.resamples}")
    try:
        _, text = compare_eval_runs(
            arms,
            args.out,
            baseline=args.baseline,
            teacher=args.teacher,
            language=args.language,
            casefold=not args.keep_case,
            cqs=args.cqs,
            n_resamples=args.resamples,
            seed=args.seed,
        )
    except ValueError as exc:  # runs on different items, a bad predictions line, ...
        raise ConfigError(str(exc)) from None
    sys.stdout.write(text)
    return 0
