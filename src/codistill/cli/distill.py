"""``codistill distill --config PRESET_OR_YAML key=value ...`` (and ``--resume RUN_DIR``)."""

from __future__ import annotations

import json
from pathlib import Path

from codistill.config.distill import DistillConfig, load_distill_config
from codistill.config.fields import ConfigError, describe


def register(sub) -> None:
    p = sub.add_parser(
        "distill",
        help="distil (or fine-tune with CE) a student",
        description="Train a student. Precedence: command line > YAML > defaults.",
        epilog="Tasks: task=assertion (default) or task=codegen (prompt -> solution, "
        "prompt_mode=raw|chat). Targets: targets=reference (default), teacher:DIR or "
        "teacher-verified:DIR (sequence-level KD on `codistill teacher generate` outputs). "
        "on_policy=L (0..1) trains a fraction L of micro-batches on the student's own samples "
        "scored by the online teacher. `--help-config` lists every key.",
    )
    p.add_argument(
        "--config",
        help="YAML file or preset name (alpha-temperature, "
        "trident-static, trident-dynamic, ce-kl-baseline)",
    )
    p.add_argument(
        "--resume",
        metavar="RUN_DIR",
        help="continue an interrupted run from RUN_DIR/checkpoint with its run.json "
        "config (overrides still apply)",
    )
    p.add_argument("--help-config", action="store_true", help="list every config key")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def config_for(args) -> DistillConfig:
    if args.resume:
        if args.config:
            raise ConfigError(
                "--resume continues a run with the config saved in its run.json; "
                "drop --config (key=value overrides still apply)"
            )
        run_json = Path(args.resume) / "run.json"
        if not run_json.is_file():
            raise ConfigError(f"--resume {args.resume}: no run.json there (not a run directory)")
        saved = json.loads(run_json.read_text())["config"]
        saved["output_dir"] = args.resume
        # halt_after_steps limits one invocation (a simulated kill); carried into the resumed
        # invocation it would halt that one too, so it applies only when given again.
        saved.pop("halt_after_steps", None)
        return load_distill_config(None, args.overrides, base=saved)
    return load_distill_config(args.config, args.overrides)


def run(args) -> int:
    if args.help_config:
        print(describe(DistillConfig))
        return 0
    from codistill.training.loop import distill  # lazy: torch, transformers

    cfg = config_for(args)
    result = distill(cfg, resume=bool(args.resume))
    print(
        json.dumps(
            {
                "run_dir": str(result.run_dir),
                "status": result.status,
                "validation": result.final_metrics,
            },
            indent=2,
        )
    )
    return 0
