"""``codistill eval --model DIR [--reference DIR] --task T --data FILE [key=value ...]``."""

from __future__ import annotations

from codistill.config.evaluate import EvalConfig, load_eval_config
from codistill.config.fields import describe, parse_overrides


def register(sub) -> None:
    p = sub.add_parser(
        "eval",
        help="evaluate a model against the ground truth and a reference",
        description="Writes RUN_DIR/metrics.json and predictions.jsonl. "
        "Precedence: command line > YAML > defaults.",
    )
    p.add_argument("--model", help="model directory (the student)")
    p.add_argument("--reference", help="reference model directory (the teacher)")
    p.add_argument("--task", choices=("assertion", "codegen", "clone", "defect"))
    p.add_argument("--data", help="JSONL of the task's records")
    p.add_argument("--samples", help="codegen: score these completions (task_id, completion)")
    p.add_argument("--out", help="run directory (default runs/eval)")
    p.add_argument("--config", help="YAML file of eval settings")
    p.add_argument("--help-config", action="store_true", help="list every config key")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.help_config:
        print(describe(EvalConfig))
        return 0
    from codistill.evaluation.runner import render_table, run_eval  # lazy: torch, transformers

    flags = {
        "model": args.model,
        "reference": args.reference,
        "task": args.task,
        "data": args.data,
        "samples": args.samples,
        "output_dir": args.out,
    }
    overrides = parse_overrides(list(args.overrides))
    overrides.update({k: v for k, v in flags.items() if v is not None})
    cfg = load_eval_config(args.config, overrides)
    metrics = run_eval(cfg)
    print(render_table(metrics))
    print(
        f"metrics: {cfg.output_dir}/metrics.json  predictions: {cfg.output_dir}/predictions.jsonl"
    )
    return 0
