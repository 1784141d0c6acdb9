"""``codistill fidelity``: metamorphic and adversarial comparison of a teacher and its student,
gated like a test suite (exit 1 when a ``--fail-under``/``--fail-over`` gate fails).

Settings come from the flags below, ``--config FILE.yaml`` and trailing ``key=value`` overrides
(``--help-config`` lists every key); precedence: command line > YAML > defaults, and a flag
wins over the same key given as ``key=value``.
"""

from __future__ import annotations

import dataclasses
import sys

from codistill.config.fidelity import FIDELITY_TASKS, FidelityConfig, load_fidelity_config
from codistill.config.fields import describe, parse_overrides

# Config keys whose flag has another name; every other key's flag is --key-with-dashes (all
# keys but ``worst`` have one). Flags default to None, "not given", so that a flag's default
# never overwrites the YAML file's value.
_FLAG_OF = {"n_resamples": "bootstrap"}


def register(sub) -> None:
    p = sub.add_parser(
        "fidelity",
        help="compare teacher and student under behaviour-preserving transformations and attacks",
        description="Writes OUT/fidelity.json and fidelity.md; exits 1 when a gate fails. "
        "Settings: the flags, --config FILE.yaml and key=value overrides (--help-config lists "
        "the keys). Precedence: command line > YAML > defaults.",
    )
    p.add_argument("--teacher", help="teacher model or classifier; 'embedded' = Gemma 3 270M")
    p.add_argument("--student", help="student model (or classifier) directory")
    p.add_argument("--task", choices=FIDELITY_TASKS)
    p.add_argument("--data", help="task JSONL (codistill data formats)")
    p.add_argument("--out", help="output dir: fidelity.json and fidelity.md")
    p.add_argument(
        "--relations",
        help="comma-separated relation names, or 'all' (default: every relation of the language)",
    )
    p.add_argument("--variants", type=int, help="variants per relation and input (default 1)")
    p.add_argument("--max-records", type=int, help="inputs used (default 50)")
    p.add_argument("--attacks", help="comma-separated: alert, mhm (default both); 'none' to skip")
    p.add_argument("--attack-budget", type=int, help="model queries per input (default 60)")
    p.add_argument("--attack-records", type=int, help="inputs attacked per model (default 20)")
    p.add_argument(
        "--attack-target",
        choices=["auto", "reference", "self"],
        help="what an attack must break: the reference answer, or the model's own output on "
        "the original (auto, the default: reference for classifiers, self for generators)",
    )
    p.add_argument(
        "--attack-mlm",
        metavar="DIR",
        help="masked LM directory for ALERT candidate names; default: the synonym table",
    )
    p.add_argument(
        "--cqs",
        action="store_true",
        default=None,
        help="assertion generation: also compare teacher and student Code Quality Scores "
        "against the reference on every variant (loads the offline MiniLM)",
    )
    for side in ("teacher", "student"):
        p.add_argument(
            f"--{side}-backend",
            metavar="SPEC",
            help=f"generate the {side}'s text through a backend instead of in-process: "
            "llamacpp:FILE.gguf (a loopback llama.cpp server), openai:URL, transformers:DIR",
        )
    p.add_argument(
        "--verify",
        choices=["compile", "parse"],
        help="variant verification: compile (the default: javac/gcc with stubs, tests for "
        "codegen) or parse",
    )
    p.add_argument("--partial", type=float, help="codegen: share of body given (default 0.5)")
    p.add_argument("--max-source-tokens", type=int, help="prompt tokens kept (default 256)")
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help="generation budget (default 48 for assertions, 256 for code generation)",
    )
    p.add_argument("--batch-size", type=int, help="default 8")
    p.add_argument("--prompt-style", choices=["prefix", "placeholder"], help="default prefix")
    p.add_argument(
        "--bootstrap", type=int, help="bootstrap resamples for CIs (key n_resamples; 1000)"
    )
    p.add_argument("--seed", type=int, help="default 0")
    p.add_argument("--cache-dir", help="model output cache (default ~/.cache/codistill/fidelity)")
    p.add_argument(
        "--fail-under",
        help="gates METRIC=MIN,...: e.g. agreement=0.9,student_consistency=0.8, "
        "RELATION.METRIC, teacher.accuracy, attack.alert.student.attack_success_rate",
    )
    p.add_argument("--fail-over", help="gates METRIC=MAX,...: e.g. attack.alert.relative_drop=1")
    p.add_argument("--config", help="YAML file of fidelity settings (keys: --help-config)")
    p.add_argument("--help-config", action="store_true", help="list every config key")
    p.add_argument("overrides", nargs="*", metavar="key=value")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.help_config:
        print(describe(FidelityConfig))
        return 0
    from codistill.fidelity.gates import GateError  # lazy: run-time only
    from codistill.fidelity.models import BackendError  # lazy: torch
    from codistill.fidelity.render import render_markdown  # lazy: run-time only

    # lazy: numpy
    from codistill.fidelity.runner import FidelityError, FidelityOptions, run_fidelity

    try:
        cfg = load_fidelity_config(args.config, _command_line(args))
        opts = FidelityOptions(
            **vars(cfg), log=lambda msg: print(f"[fidelity] {msg}", file=sys.stderr, flush=True)
        )
        result = run_fidelity(opts)
    except (FidelityError, GateError, BackendError) as exc:
        print(f"codistill fidelity: error: {exc}", file=sys.stderr)
        return 2
    print(render_markdown(result))
    print(f"wrote {cfg.out}/fidelity.json")
    failed = [g for g in result["gates"] if not g["passed"]]
    if failed:
        names_failed = ", ".join(g["metric"] for g in failed)
        print(f"codistill fidelity: {len(failed)} gate(s) failed: {names_failed}", file=sys.stderr)
        return 1
    return 0


def _command_line(args) -> dict:
    """The ``key=value`` overrides, then the flags given (a flag wins over its key)."""
    from codistill.fidelity.gates import parse_gates  # lazy: run-time only

    overrides = parse_overrides(list(args.overrides))
    for f in dataclasses.fields(FidelityConfig):
        key = f.name
        value = getattr(args, _FLAG_OF.get(key, key), None)
        if value is None:
            continue  # not given: the YAML file or the default decides
        if key in ("fail_under", "fail_over"):
            value = parse_gates(value)
        overrides[key] = value
    return overrides
