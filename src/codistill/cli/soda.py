"""``codistill soda``: SODA's self-paced distillation cycles (``codistill.soda.cycle``)."""

from __future__ import annotations

import sys
from pathlib import Path

from codistill.config.fields import ConfigError

BUDGET_NAMES = ("smoke", "cpu", "full")


def register(sub) -> None:
    p = sub.add_parser(
        "soda",
        help="SODA: cycles of correct-and-fault delivery, student feedback and new questions "
        "from the teacher's text (any backend, an API included); resumable",
    )
    p.add_argument("--teacher", help="DIR, embedded[:NAME], llamacpp:..., openai:URL")
    p.add_argument("--student", help="the student's model directory")
    p.add_argument("--seeds", help="seed questions (codegen JSONL with tests)")
    p.add_argument("--out", help="run directory (an existing one is resumed)")
    p.add_argument("--judge", help="the judge's spec (default: the teacher)")
    p.add_argument("--api-key-env", help="openai: the environment variable holding the API key")
    p.add_argument(
        "--budget",
        default="cpu",
        choices=BUDGET_NAMES,
        help="smoke: tiny models, minutes; cpu: this 2-core machine (default); full: the "
        "paper's scale, for a GPU",
    )
    p.add_argument("--cycles", type=int, help="distillation cycles (default: the budget's)")
    p.add_argument("--config", help="a YAML file of settings (below the key=value overrides)")
    p.add_argument(
        "--help-config", action="store_true", help="list every key=value setting and exit"
    )
    p.add_argument(
        "overrides", nargs="*", metavar="key=value", help="settings, e.g. faults=false ratio=1:1:1"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from codistill.soda import cycle  # lazy: run-time only (pulls torch through training)
    from codistill.soda.config import SodaConfig, load_soda_config
    from codistill.soda.stage1 import Stage1Error
    from codistill.soda.stage2 import Stage2Error
    from codistill.soda.stage3 import Stage3Error
    from codistill.soda.teacher import TeacherError

    if args.help_config:
        from codistill.config.fields import describe  # lazy: run-time only

        print(describe(SodaConfig))
        return 0
    missing = [f"--{n}" for n in ("teacher", "student", "seeds", "out") if not getattr(args, n)]
    if missing:
        raise ConfigError(f"{missing[0]} is required (see codistill soda --help)")
    # ``1:1:2`` is a base-60 integer to YAML 1.1; parse_ratio reads it back, but keep the text.
    overrides = [o for o in args.overrides if not o.startswith("ratio=")]
    ratio = next((o.split("=", 1)[1] for o in args.overrides if o.startswith("ratio=")), None)
    try:
        cfg = load_soda_config(
            args.budget,
            args.config,
            overrides,
            teacher=args.teacher,
            student=args.student,
            seeds=args.seeds,
            output_dir=args.out,
            judge_model=args.judge,
            api_key_env=args.api_key_env,
            cycles=args.cycles,
            ratio=ratio,
        )
        results = cycle.run_soda(cfg)
    except (
        cycle.SodaError,
        Stage1Error,
        Stage2Error,
        Stage3Error,
        TeacherError,
    ) as exc:
        raise ConfigError(str(exc)) from None
    print(f"codistill soda: {args.out}/summary.md", file=sys.stderr)
    for line in (Path(args.out) / "summary.md").read_text().splitlines():
        print(line)
    return 0 if results["cycles"] else 1
