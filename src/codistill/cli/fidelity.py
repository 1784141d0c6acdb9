"""``codistill fidelity``: metamorphic and adversarial comparison of a teacher and its student,
gated like a test suite (exit 1 when a ``--fail-under``/``--fail-over`` gate fails)."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "fidelity",
        help="compare teacher and student under behaviour-preserving transformations and attacks",
    )
    p.add_argument(
        "--teacher", required=True, help="teacher model or classifier; 'embedded' = Gemma 3 270M"
    )
    p.add_argument("--student", required=True, help="student model (or classifier) directory")
    p.add_argument("--task", required=True, choices=["assertion", "codegen", "clone", "defect"])
    p.add_argument("--data", required=True, help="task JSONL (codistill data formats)")
    p.add_argument("--out", required=True, help="output dir: fidelity.json and fidelity.md")
    p.add_argument(
        "--relations",
        default="all",
        help="comma-separated relation names, or 'all' (every relation of the language)",
    )
    p.add_argument("--variants", type=int, default=1, help="variants per relation and input")
    p.add_argument("--max-records", type=int, default=50, help="inputs used (default 50)")
    p.add_argument(
        "--attacks", default="alert,mhm", help="comma-separated: alert, mhm; 'none' to skip"
    )
    p.add_argument("--attack-budget", type=int, default=60, help="model queries per input")
    p.add_argument("--attack-records", type=int, default=20, help="inputs attacked per model")
    p.add_argument(
        "--attack-target",
        default="auto",
        choices=["auto", "reference", "self"],
        help="what an attack must break: the reference answer, or the model's own output on "
        "the original (auto: reference for classifiers, self for generators)",
    )
    p.add_argument(
        "--attack-mlm",
        metavar="DIR",
        help="masked LM directory for ALERT candidate names; default: the synonym table",
    )
    p.add_argument(
        "--cqs",
        action="store_true",
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
        default="compile",
        choices=["compile", "parse"],
        help="variant verification: compile (javac/gcc with stubs, tests for codegen) or parse",
    )
    p.add_argument("--partial", type=float, default=0.5, help="codegen: share of body given")
    p.add_argument("--max-source-tokens", type=int, default=256)
    p.add_argument(
        "--max-new-tokens",
        type=int,
        help="generation budget (default 48 for assertions, 256 for code generation)",
    )
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--prompt-style", default="prefix", choices=["prefix", "placeholder"])
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for CIs")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--cache-dir", help="model output cache (default ~/.cache/codistill/fidelity)")
    p.add_argument(
        "--fail-under",
        default="",
        help="gates METRIC=MIN,...: e.g. agreement=0.9,student_consistency=0.8, "
        "RELATION.METRIC, teacher.accuracy, attack.alert.student.attack_success_rate",
    )
    p.add_argument(
        "--fail-over", default="", help="gates METRIC=MAX,...: e.g. attack.alert.relative_drop=1"
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from codistill.fidelity.gates import GateError, parse_gates
    from codistill.fidelity.models import BackendError
    from codistill.fidelity.render import render_markdown
    from codistill.fidelity.runner import FidelityError, FidelityOptions, run_fidelity

    def names(text: str) -> list[str]:
        return [x.strip() for x in text.split(",") if x.strip()]

    try:
        attacks = [] if args.attacks.strip() in ("", "none") else names(args.attacks)
        bad = [a for a in attacks if a not in ("alert", "mhm")]
        if bad:
            raise FidelityError(f"--attacks: unknown {bad}; expected alert, mhm or none")
        for flag, value in (
            ("--variants", args.variants),
            ("--max-records", args.max_records),
            ("--attack-budget", args.attack_budget),
            ("--max-new-tokens", args.max_new_tokens),
        ):
            if value is not None and value < 1:
                raise FidelityError(f"{flag} must be >= 1, got {value}")
        if not 0 <= args.partial <= 1:
            raise FidelityError(f"--partial must be in [0, 1], got {args.partial}")
        opts = FidelityOptions(
            teacher=args.teacher,
            student=args.student,
            task=args.task,
            data=args.data,
            out=args.out,
            relations=None if args.relations == "all" else names(args.relations),
            variants=args.variants,
            max_records=args.max_records,
            attacks=attacks,
            attack_budget=args.attack_budget,
            attack_records=args.attack_records,
            attack_target=args.attack_target,
            attack_mlm=args.attack_mlm,
            cqs=args.cqs,
            teacher_backend=args.teacher_backend,
            student_backend=args.student_backend,
            verify=args.verify,
            partial=args.partial,
            max_source_tokens=args.max_source_tokens,
            max_new_tokens=args.max_new_tokens,
            batch_size=args.batch_size,
            prompt_style=args.prompt_style,
            n_resamples=args.bootstrap,
            seed=args.seed,
            cache_dir=args.cache_dir,
            fail_under=parse_gates(args.fail_under),
            fail_over=parse_gates(args.fail_over),
            log=lambda msg: print(f"[fidelity] {msg}", file=sys.stderr, flush=True),
        )
        result = run_fidelity(opts)
    except (FidelityError, GateError, BackendError) as exc:
        print(f"codistill fidelity: error: {exc}", file=sys.stderr)
        return 2
    print(render_markdown(result))
    print(f"wrote {args.out}/fidelity.json")
    failed = [g for g in result["gates"] if not g["passed"]]
    if failed:
        names_failed = ", ".join(g["metric"] for g in failed)
        print(f"codistill fidelity: {len(failed)} gate(s) failed: {names_failed}", file=sys.stderr)
        return 1
    return 0
