"""SODA's cycles end to end (``codistill soda``): Stage I, supervised and contrastive learning,
Stage II, Stage III, evaluation; every step resumable and keyed by the content of its inputs.

One cycle ``c`` (the paper's Fig. 2), in ``RUN/cycle-c/``:

1. ``stage1/``: the teacher's verified correct solutions and correct/faulty pairs on the
   cycle's questions (:func:`codistill.soda.stage1.run_stage1`), questions split 80/20;
2. ``sft/``: correctness-aware supervised learning on the verified solutions of the ``sft``
   split (``codistill distill`` with ``loss=ce task=codegen``: NLL of the solution tokens only),
   starting from the previous cycle's final student;
3. ``contrastive/``: fault-aware contrastive learning on the pairs of the ``contrastive`` split
   (:func:`codistill.training.preference.train_preference`, the supervised student as the frozen
   reference);
4. ``eval/``: pass@1 (greedy) of the cycle's student on the held-out set, a ``codistill eval``
   run directory (``metrics.json``, ``predictions.jsonl``), so ``codistill compare`` can pair
   any two cycles or arms item by item; ``cycle-0/eval/`` is the untouched student;
5. ``stage2/``: the new student answers the cycle's questions, execution and the judge assess
   them, each question gets a level (:func:`codistill.soda.stage2.run_stage2`);
6. ``stage3/``: the teacher writes new questions per level
   (:func:`codistill.soda.stage3.run_stage3`).

**Next cycle's questions.** The paper adds the new questions to the seed knowledge ("10K newly
generated questions added at each iteration", Sec. 4.6), so by default (``keep_questions``)
cycle ``c+1`` works on cycle ``c``'s questions plus the new ones. Keeping them costs no teacher
call (every answer about an old question is in the teacher's cache; the split of an old question
is a hash of its id, so it stays on the same side) but training time, and it keeps the student
from drifting away from what it learned (the next student trains again on the union, as the
paper's growing seed set implies). ``keep_questions=false`` moves on to the new questions only
(they still must not duplicate any earlier one). Stage II and III also run in the last cycle: a
later rerun with more ``cycles`` continues from its new questions.

**Resuming.** Each step writes ``step.json`` last: the sha256 of its inputs (questions, the
student's weights, the teacher's identity, the settings) and what it measured (teacher calls
and tokens, wall time). A rerun skips every step whose ``step.json`` matches; a step whose
inputs changed is redone (and so are those after it, whose inputs include its outputs). The
teacher's answers are cached by content in ``RUN/teacher_cache.jsonl``; a training step
interrupted after a checkpoint resumes from it.

**Ablations and baselines** (all config switches): ``faults=false`` (no faulty solutions, no
contrastive stage: every question's verified solution goes to supervised learning, since no
question is kept back for a stage that does not run), ``judge=false`` / ``execution=false``
(Stage II without one view), ``difficulty=false`` (new questions from uniformly drawn seeds),
``ratio=1:1:2`` (or ``1:1:1``, ``0:0:1``), and ``sft_only=true``: plain SFT on verified teacher
solutions (instruction-following distillation: the teacher answers, the verified answers are
learned, the teacher writes new questions from uniformly drawn ones), with no faults, no
contrastive stage and no student feedback. Its teacher-call budget is matched to a SODA run
with ``match_calls=SODA_RUN/results.json``: in each cycle, the calls the SODA run spent beyond
what this arm has already spent are turned into extra new questions, at the SODA run's own cost
per new question (its Stage III answers per question asked). Both totals are reported.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import shutil
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill import rundir
from codistill.config.distill import load_distill_config
from codistill.config.evaluate import load_eval_config
from codistill.config.preference import load_preference_config
from codistill.data.benchmarks import (
    detect_benchmark,
    load_benchmark,
    load_humaneval,
    load_humaneval_plus,
    load_mbpp,
)
from codistill.data.jsonl import read_records, write_records, write_text_atomic
from codistill.data.schema import CodegenRecord, RecordError
from codistill.evaluation.runner import run_eval
from codistill.files import sha256_file
from codistill.soda import stage2, stage3
from codistill.soda.config import SodaConfig
from codistill.soda.prompts import FAULT_TYPES, LEVELS, load_template
from codistill.soda.stage1 import Stage1Config, load_seeds, run_stage1, stage1_inputs_sha256
from codistill.soda.stagefiles import read_jsonl
from codistill.soda.teacher import Decoding, TeacherCalls, content_key, open_teacher
from codistill.training.loop import distill
from codistill.training.preference import train_preference

STEP_FILE = "step.json"
STEP_VERSION = 1  # bump when what a step computes changes, so old step.json are not reused
BENCHMARK_KINDS = ("humaneval", "humaneval-plus", "mbpp", "mbpp-test")


class SodaError(ValueError):
    """A SODA setting or input that cannot be used; one-line message."""


# --- data ----------------------------------------------------------------------------------


def load_eval_set(specs: Sequence[str]) -> list[CodegenRecord]:
    """The held-out records named by ``specs`` (``KIND:PATH`` or a codegen JSONL / benchmark
    file), in order, ids unique.

    Raises:
        SodaError: a missing file, an unknown kind, or an id in two sets.
    """
    records: list[CodegenRecord] = []
    for spec in specs:
        kind, sep, path = spec.partition(":")
        if not (sep and kind in BENCHMARK_KINDS):
            kind, path = "file", spec
        if not Path(path).is_file():
            raise SodaError(f"eval_data {spec!r}: {path} does not exist")
        try:
            if kind == "humaneval":
                found = load_humaneval(path)
            elif kind == "humaneval-plus":
                found = load_humaneval_plus(path)
            elif kind in ("mbpp", "mbpp-test"):
                found = load_mbpp(path, split="test" if kind == "mbpp-test" else None)
            else:
                detected = detect_benchmark(path)
                found = (
                    load_benchmark(detected, path)
                    if detected
                    else read_records(path, task="codegen")
                )
        except RecordError as exc:
            raise SodaError(f"eval_data {spec!r}: {exc}") from None
        records += found
    ids = Counter(r.id for r in records)
    twice = [i for i, n in ids.items() if n > 1]
    if twice:
        raise SodaError(f"eval_data: item {twice[0]!r} appears in two sets")
    return records


def hold_out(
    seeds: Sequence[CodegenRecord], n: int, seed: int
) -> tuple[list[CodegenRecord], list[CodegenRecord]]:
    """``(training seeds, held-out seeds)``: the ``n`` seeds with the smallest sha256 of
    ``seed:eval:id`` are held out (independent of the file's order)."""
    if n >= len(seeds):
        raise SodaError(f"eval_holdout={n} leaves no seed question of {len(seeds)} to train on")

    def rank(r: CodegenRecord) -> str:
        return hashlib.sha256(f"{seed}:eval:{r.id}".encode()).hexdigest()

    out = {r.id for r in sorted(seeds, key=rank)[:n]}
    return [r for r in seeds if r.id not in out], [r for r in seeds if r.id in out]


def model_fingerprint(path: str | Path) -> str:
    """sha256 over a model directory's config, weights, tokenizer and token map (or of the spec
    when it is not a directory, such as ``embedded:NAME``)."""
    where = Path(path)
    if not where.is_dir():
        return content_key("spec", str(path))
    names = ["config.json", "tokenizer.json", "token_map.json"]
    files = [where / n for n in names if (where / n).is_file()]
    files += sorted(where.glob("*.safetensors")) + sorted(where.glob("*.bin"))
    return content_key([(f.name, sha256_file(f)) for f in files])


def records_key(records: Sequence[CodegenRecord]) -> str:
    return content_key([r.to_dict() for r in records])


# --- steps ---------------------------------------------------------------------------------


@dataclass
class Step:
    """What a step did (or, skipped, what it did when it ran)."""

    name: str
    skipped: bool
    result: dict[str, Any]
    teacher: dict[str, Any]
    wall_s: float


def _done(where: Path, key: str) -> dict[str, Any] | None:
    path = where / STEP_FILE
    if not path.is_file():
        return None
    try:
        found = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return found if found.get("inputs_sha256") == key else None


def run_step(
    where: Path,
    name: str,
    inputs: Any,
    build: Callable[[Path], dict[str, Any]],
    calls: Sequence[TeacherCalls] = (),
    log: Callable[[str], None] = print,
) -> Step:
    """``build(where)`` unless ``where/step.json`` holds the same inputs' sha256.

    The teacher counts of ``calls`` are reset before the build and recorded after it, so the
    step's record holds its own calls and tokens only.
    """
    key = content_key(STEP_VERSION, name, inputs)
    found = _done(where, key)
    if found is not None:
        log(f"{name}: up to date ({where})")
        return Step(name, True, found["result"], found["teacher"], found["wall_s"])
    (where / STEP_FILE).unlink(missing_ok=True)
    where.mkdir(parents=True, exist_ok=True)
    for c in calls:
        c.stages.clear()
    start = time.perf_counter()
    result = build(where)
    wall = round(time.perf_counter() - start, 3)
    teacher = _merged_counts(calls)
    record = {"step": name, "inputs_sha256": key, "result": result, "teacher": teacher}
    rundir.write_json(where / STEP_FILE, {**record, "wall_s": wall})
    return Step(name, False, json.loads(json.dumps(result, default=str)), teacher, wall)


def _merged_counts(calls: Sequence[TeacherCalls]) -> dict[str, Any]:
    """Per stage name: calls, cache hits, tokens, over the given teachers (each counted once)."""
    out: dict[str, Any] = {}
    for c in {id(c): c for c in calls}.values():
        for stage_name, counts in c.counts()["stages"].items():
            out[stage_name] = counts
    return out


def _fresh_run_dir(run: Path) -> bool:
    """True to resume ``run`` from its checkpoint; otherwise an unfinished ``run`` is cleared
    (a run that never reached a checkpoint starts again)."""
    if (run / "checkpoint" / "trainer_state.json").is_file():
        return True
    if run.exists():
        shutil.rmtree(run)
    return False


# --- the cycle -----------------------------------------------------------------------------


@dataclass
class Context:
    """What every cycle shares."""

    cfg: SodaConfig
    out: Path
    teacher: TeacherCalls
    judge: TeacherCalls | None
    eval_path: Path
    benchmarks: list[CodegenRecord]
    log: Callable[[str], None]


def open_student(
    path: Path, cache: Path, cfg: SodaConfig, gguf: Path | None = None
) -> TeacherCalls:
    """The student as Stage II asks it (greedy, through its own answer cache): in-process, or
    through llama.cpp on ``gguf`` (its export) with the directory's tokenizer."""
    decoding = Decoding(max_new_tokens=cfg.student_max_new_tokens, seed=cfg.seed)
    if gguf is not None:
        return open_teacher(
            f"llamacpp:{gguf}",
            cache,
            decoding,
            prompt_mode=cfg.prompt_mode,
            tokenizer=str(path),
            n_threads=2,
        )
    return open_teacher(str(path), cache, decoding, prompt_mode=cfg.prompt_mode, n_threads=2)


def student_gguf(ctx: Context, where: Path, student: Path) -> Path | None:
    """``student`` exported as a bfloat16 GGUF in ``where/gguf/`` for llama.cpp, once per
    weights (``student_backend=llamacpp``); None for the in-process backend."""
    if ctx.cfg.student_backend != "llamacpp":
        return None
    from codistill.models.export_gguf import export_gguf  # lazy: the gguf writer

    def build(step_dir: Path) -> dict[str, Any]:
        tmp = step_dir / "model.gguf.tmp"
        export_gguf(student, tmp, quant="bf16")
        tmp.replace(step_dir / "model.gguf")
        return {"model": str(student), "quant": "bf16"}

    run_step(where / "gguf", "gguf", [model_fingerprint(student), "bf16"], build, log=ctx.log)
    return where / "gguf" / "model.gguf"


def stage1_config(cfg: SodaConfig) -> Stage1Config:
    """Stage I settings; without faults (``faults=false``, ``sft_only``) no faulty solution is
    asked or injected, and every question goes to supervised learning."""
    faults = cfg.faults and not cfg.sft_only
    return Stage1Config(
        teacher_fault_types=tuple(cfg.teacher_fault_types) if faults else (),
        injected_fault_types=FAULT_TYPES if faults else (),
        injected_per_type=cfg.injected_per_type if faults else 0,
        seed=cfg.seed,
        sft_share=cfg.sft_share if faults else 1.0,
        timeout_s=cfg.timeout_s,
        workers=cfg.workers,
    )


def sft_records(stage1_dir: Path, questions: Sequence[CodegenRecord]) -> list[CodegenRecord]:
    """The ``sft`` split's questions with the teacher's verified solution as their target."""
    by_id = {r.id: r for r in questions}
    return [
        dataclasses.replace(by_id[row["question_id"]], canonical_solution=row["solution"])
        for row in read_jsonl(stage1_dir / "correct.jsonl")
        if row["split"] == "sft"
    ]


def step_sft(ctx: Context, cdir: Path, student: Path, stage1_dir: Path, questions) -> Step:
    """Correctness-aware supervised learning; skipped (student unchanged) without data."""
    cfg = ctx.cfg
    records = sft_records(stage1_dir, questions)
    settings = {
        "task": "codegen",
        "loss": "ce",
        "prompt_mode": cfg.prompt_mode,
        "lr": cfg.sft_lr,
        "epochs": cfg.sft_epochs,
        "max_steps": cfg.sft_max_steps,
        "batch_size": cfg.sft_batch_size,
        "grad_accum": cfg.sft_grad_accum,
        "max_source_tokens": cfg.max_source_tokens,
        "max_target_tokens": cfg.max_target_tokens,
        "seed": cfg.seed,
        "progress": False,
        "log_every": 1,
    }
    inputs = [model_fingerprint(student), records_key(records), settings]

    def build(where: Path) -> dict[str, Any]:
        if not records:
            return {"trained": False, "reason": "no verified solution on the sft split"}
        train = where / "train.jsonl"
        write_records(train, records)
        run = where / "run"
        resume = _fresh_run_dir(run)
        dcfg = load_distill_config(
            None,
            {**settings, "student": str(student), "train_data": str(train), "output_dir": str(run)},
        )
        result = distill(dcfg, resume=resume)
        steps = rundir.read_json(run / "run.json").get("global_step")
        return {"trained": True, "examples": len(records), "steps": steps, "status": result.status}

    return run_step(cdir / "sft", "sft", inputs, build, log=ctx.log)


def step_contrastive(ctx: Context, cdir: Path, student: Path, stage1_dir: Path) -> Step:
    """Fault-aware contrastive learning on the contrastive split's pairs (reference: the
    supervised student); skipped without faults or pairs."""
    cfg = ctx.cfg
    pairs = [
        row
        for row in read_jsonl(stage1_dir / "pairs.jsonl")
        if row["meta"]["split"] == "contrastive"
    ]
    settings = {
        "prompt_mode": cfg.prompt_mode,
        "lr": cfg.contrastive_lr,
        "epochs": cfg.contrastive_epochs,
        "max_steps": cfg.contrastive_max_steps,
        "batch_size": cfg.contrastive_batch_size,
        "beta": cfg.beta,
        "max_source_tokens": cfg.max_source_tokens,
        "max_target_tokens": cfg.max_target_tokens,
        "device": cfg.device,
        "seed": cfg.seed,
    }
    enabled = cfg.faults and not cfg.sft_only
    inputs = [model_fingerprint(student), content_key(pairs), settings, enabled]

    def build(where: Path) -> dict[str, Any]:
        if not enabled:
            return {"trained": False, "reason": "sft_only" if cfg.sft_only else "faults=false"}
        if not pairs:
            return {"trained": False, "reason": "no verified pair on the contrastive split"}
        path = where / "pairs.jsonl"
        write_text_atomic(path, "".join(json.dumps(p, ensure_ascii=False) + "\n" for p in pairs))
        run = where / "run"
        resume = _fresh_run_dir(run)
        pcfg = load_preference_config(
            None, {**settings, "student": str(student), "pairs": str(path), "output_dir": str(run)}
        )
        result = train_preference(pcfg, resume=resume)
        return {
            "trained": True,
            "pairs": len(pairs),
            "steps": result.global_step,
            "final": result.final,
        }

    return run_step(cdir / "contrastive", "contrastive", inputs, build, log=ctx.log)


def step_eval(ctx: Context, where: Path, student: Path) -> Step:
    """pass@1 (greedy) of ``student`` on the held-out set: ``where/eval/run`` is a
    ``codistill eval`` run (``metrics.json``, ``predictions.jsonl``)."""
    cfg = ctx.cfg
    settings = {
        "task": "codegen",
        "data": str(ctx.eval_path),
        "pass_k": [1],
        "prompt_mode": cfg.prompt_mode,
        "codegen_max_new_tokens": cfg.eval_max_new_tokens,
        "max_source_tokens": cfg.max_source_tokens,
        "batch_size": cfg.eval_batch_size,
        "max_examples": cfg.eval_max_examples,
        "latency_samples": 0,
        "cqs": False,
        "workers": cfg.workers,
    }
    # The set by content, not by path: a moved run directory stays up to date.
    inputs = [model_fingerprint(student), sha256_file(ctx.eval_path)]
    inputs += [{k: v for k, v in settings.items() if k != "data"}]
    gguf = student_gguf(ctx, where, student)
    if gguf is not None:  # the export is the same weights: the key names the backend only
        inputs.append(cfg.student_backend)
        settings["model_backend"] = f"llamacpp:{gguf}"

    def build(where: Path) -> dict[str, Any]:
        run = where / "run"
        if run.exists():
            shutil.rmtree(run)
        metrics = run_eval(
            load_eval_config(None, {**settings, "model": str(student), "output_dir": str(run)})
        )
        scores = metrics["models"]["student"]["vs_truth"]
        rows = [r for r in read_jsonl(run / "predictions.jsonl") if r.get("sample", 0) == 0]
        return {
            "model": str(student),
            "n": metrics["n"],
            "pass@1": scores.get("pass@1"),
            "pass@1_plus": scores.get("pass@1_plus"),
            "items": {r["task_id"]: bool(r["passed"]) for r in rows},
            "items_plus": {
                r["task_id"]: bool(r["passed_plus"])
                for r in rows
                if r.get("passed_plus") is not None
            },
            "eval_dir": str(run),
        }

    return run_step(where / "eval", "eval", inputs, build, log=ctx.log)


def run_cycle(
    ctx: Context,
    c: int,
    questions: list[CodegenRecord],
    student: Path,
    earlier: list[CodegenRecord],
    new_budget: int,
) -> tuple[dict[str, Any], Path, list[CodegenRecord]]:
    """One cycle; returns its report, its final student and the new questions."""
    cfg, log = ctx.cfg, ctx.log
    cdir = ctx.out / f"cycle-{c}"
    write_records(cdir / "questions.jsonl", questions)
    steps: dict[str, Step] = {}

    s1cfg = stage1_config(cfg)
    templates = {n: load_template(n, cfg.template_dir) for n in ("correct", "faulty")}
    s1_key = stage1_inputs_sha256(questions, ctx.teacher, s1cfg, templates)
    steps["stage1"] = run_step(
        cdir / "stage1",
        "stage1",
        s1_key,
        lambda d: run_stage1(
            questions, d, ctx.teacher, s1cfg, template_dir=cfg.template_dir, log=log
        ),
        [ctx.teacher],
        log,
    )
    steps["sft"] = step_sft(ctx, cdir, student, cdir / "stage1", questions)
    sft_student = cdir / "sft" / "run" / "final" if steps["sft"].result["trained"] else student
    steps["contrastive"] = step_contrastive(ctx, cdir, sft_student, cdir / "stage1")
    final = (
        cdir / "contrastive" / "run" / "final"
        if steps["contrastive"].result["trained"]
        else sft_student
    )
    steps["eval"] = step_eval(ctx, cdir, final)

    feedback: list[dict[str, Any]] = []
    if not cfg.sft_only:
        steps["stage2"] = _stage2(ctx, cdir, final, questions)
        feedback = stage2.read_feedback(cdir / "stage2" / "feedback.jsonl")
    s3cfg = stage3.Stage3Config(
        n_new=new_budget,
        ratio=tuple(cfg.ratio),
        use_difficulty=cfg.difficulty and not cfg.sft_only,
        seed=cfg.seed + c,
        decontaminate=cfg.decontaminate,
        timeout_s=cfg.timeout_s,
        workers=cfg.workers,
    )
    s3_inputs = [feedback, records_key(questions), records_key(earlier), ctx.teacher.teacher_key]
    s3_inputs += [dataclasses.asdict(s3cfg), records_key(ctx.benchmarks)]
    steps["stage3"] = run_step(
        cdir / "stage3",
        "stage3",
        s3_inputs,
        lambda d: stage3.run_stage3(
            feedback,
            questions,
            ctx.teacher,
            d,
            s3cfg,
            benchmarks=ctx.benchmarks,
            template_dir=cfg.template_dir,
            log=log,
            id_prefix=f"soda/c{c}",
            existing=earlier,
        ),
        [ctx.teacher],
        log,
    )
    new = stage3.read_questions(cdir / "stage3" / "questions.jsonl")
    report = cycle_report(c, questions, steps, student, final)
    rundir.write_json(cdir / "report.json", report)
    write_text_atomic(cdir / "report.md", cycle_markdown(report))
    return report, final, new


def _stage2(ctx: Context, cdir: Path, student: Path, questions) -> Step:
    cfg = ctx.cfg
    s2cfg = stage2.Stage2Config(
        use_execution=cfg.execution,
        use_judge=cfg.judge,
        timeout_s=cfg.timeout_s,
        workers=cfg.workers,
    )
    judge = ctx.judge if cfg.judge else None
    key = [
        records_key(questions),
        model_fingerprint(student),
        judge.teacher_key if judge is not None else None,
        dataclasses.asdict(s2cfg),
        cfg.student_max_new_tokens,
        cfg.prompt_mode,
    ]
    gguf = student_gguf(ctx, cdir, student)
    if gguf is not None:
        key.append(cfg.student_backend)

    def build(where: Path) -> dict[str, Any]:
        with open_student(student, where / "student_cache.jsonl", cfg, gguf) as asked:
            return stage2.run_stage2(
                questions, asked, judge, where, s2cfg, template_dir=cfg.template_dir, log=ctx.log
            )

    return run_step(cdir / "stage2", "stage2", key, build, [c for c in (judge,) if c], ctx.log)


# --- reports -------------------------------------------------------------------------------


def _calls(step: Step) -> dict[str, int]:
    """Answers a step took from the teacher: made now (``calls``), served by the cache
    (``cache_hits``), and the tokens of both."""
    out = Counter()
    for counts in step.teacher.values():
        out["calls"] += counts["calls"]
        out["cache_hits"] += counts["cache_hits"]
        out["tokens"] += counts["prompt_tokens"] + counts["completion_tokens"]
        out["cached_tokens"] += counts["cached_prompt_tokens"] + counts["cached_completion_tokens"]
    return {k: out[k] for k in ("calls", "cache_hits", "tokens", "cached_tokens")}


def answers_used(step_calls: dict[str, int]) -> int:
    """Teacher answers a step consumed, fresh or cached: what a budget is counted in (a shared
    cache makes a second arm's calls free, not its budget)."""
    return step_calls["calls"] + step_calls["cache_hits"]


def cycle_report(
    c: int, questions: Sequence[CodegenRecord], steps: dict[str, Step], start: Path, final: Path
) -> dict[str, Any]:
    """The per-cycle report: levels, new questions, teacher calls, wall time, pass@1."""
    s2 = steps.get("stage2")
    s3 = steps["stage3"].result
    teacher = {name: _calls(s) for name, s in steps.items()}
    return {
        "cycle": c,
        "questions": len(questions),
        "student_in": str(start),
        "student_out": str(final),
        "stage1": {
            "correct": steps["stage1"].result["correct"],
            "pairs": steps["stage1"].result["pairs"],
            "split": steps["stage1"].result["split"],
        },
        "sft": steps["sft"].result,
        "contrastive": steps["contrastive"].result,
        "levels": s2.result["levels"] if s2 else None,
        "stage2": (
            {k: s2.result.get(k) for k in ("pass_at_1", "outcomes", "level_rule")}
            | {"judge_agreement": s2.result.get("judge", {}).get("agreement")}
            if s2
            else {"skipped": "sft_only: no student feedback"}
        ),
        "new_questions": {
            "asked": s3["asked"],
            "kept": s3["kept"],
            "rejected": s3["rejected"],
            "allocation": s3["allocation"],
        },
        "teacher_calls": teacher,
        "teacher_answers_total": sum(answers_used(t) for t in teacher.values()),
        "wall_s": {name: s.wall_s for name, s in steps.items()},
        "skipped_now": sorted(name for name, s in steps.items() if s.skipped),
        "eval": {
            k: steps["eval"].result[k]
            for k in ("n", "pass@1", "pass@1_plus", "eval_dir", "items", "items_plus")
        },
    }


def _pct(x: float | None) -> str:
    return "—" if x is None else f"{100 * x:.1f}%"


def cycle_markdown(report: dict[str, Any]) -> str:
    """A short Markdown summary of one cycle's report."""
    ev, nq = report["eval"], report["new_questions"]
    lines = [
        f"# SODA cycle {report['cycle']}",
        "",
        f"- questions: {report['questions']}; teacher's correct solutions verified: "
        f"{report['stage1']['correct']['verified']}; pairs: {report['stage1']['pairs']['total']}",
        f"- supervised: {_trained(report['sft'])}; contrastive: {_trained(report['contrastive'])}",
        f"- pass@1 on {ev['n']} held-out items: {_pct(ev['pass@1'])}"
        + (f" (plus: {_pct(ev['pass@1_plus'])})" if ev["pass@1_plus"] is not None else ""),
    ]
    if report["levels"]:
        lines.append("- levels: " + ", ".join(f"{k} {v}" for k, v in report["levels"].items()))
    rejected = ", ".join(f"{k} {v}" for k, v in nq["rejected"].items() if v) or "none"
    lines += [
        f"- new questions: {nq['kept']} kept of {nq['asked']} asked; rejected: {rejected}",
        "",
        "| step | teacher calls | cache hits | tokens | wall s |",
        "|---|---|---|---|---|",
    ]
    for name, calls in report["teacher_calls"].items():
        lines.append(
            f"| {name} | {calls['calls']} | {calls['cache_hits']} | "
            f"{calls['tokens'] + calls['cached_tokens']} | {report['wall_s'][name]} |"
        )
    return "\n".join(lines) + "\n"


def _trained(result: dict[str, Any]) -> str:
    if result["trained"]:
        return f"{result.get('steps')} steps"
    return f"skipped ({result['reason']})"


# --- the run -------------------------------------------------------------------------------


def matched_budgets(cfg: SodaConfig) -> list[dict[str, Any]] | None:
    """Per cycle of the SODA run named by ``match_calls``: its teacher answers and its cost per
    new question asked (Stage III answers / questions asked); None without ``match_calls``."""
    if cfg.match_calls is None:
        return None
    path = Path(cfg.match_calls)
    try:
        soda = json.loads(path.read_text(encoding="utf-8"))
        cycles = [r for r in soda["cycles"] if r["cycle"] > 0]
        out = []
        for r in cycles:
            asked = r["new_questions"]["asked"]
            s3 = answers_used(r["teacher_calls"]["stage3"])
            out.append(
                {"answers": r["teacher_answers_total"], "per_new": s3 / asked if asked else 2}
            )
    except (OSError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise SodaError(f"match_calls {path}: not a codistill soda results.json ({exc})") from None
    if soda.get("arm") != "soda":
        raise SodaError(f"match_calls {path}: that run is {soda.get('arm')!r}, not a SODA run")
    if len(out) < cfg.cycles:
        raise SodaError(f"match_calls {path}: {len(out)} cycles there, {cfg.cycles} asked here")
    return out


def run_soda(
    cfg: SodaConfig,
    *,
    teacher: TeacherCalls | None = None,
    judge: TeacherCalls | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Runs (or resumes) every cycle; writes and returns ``results.json``.

    Args:
        cfg: the validated config (:func:`load_soda_config`).
        teacher: the teacher's calls (default: :func:`open_teacher` on ``cfg.teacher`` with
            ``RUN/teacher_cache.jsonl``); tests pass a scripted one.
        judge: the judge's calls (default: the teacher, or ``cfg.judge_model``).
        log: progress lines.

    Raises:
        SodaError, Stage1Error, Stage2Error, Stage3Error, TeacherError: bad inputs (one line).
    """
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    seeds = load_seeds(cfg.seeds)
    held: list[CodegenRecord] = []
    if cfg.eval_holdout:
        seeds, held = hold_out(seeds, cfg.eval_holdout, cfg.seed)
    benchmarks = load_eval_set(cfg.eval_data) + held
    eval_path = out / "eval_set.jsonl"
    write_records(eval_path, benchmarks)
    budgets = matched_budgets(cfg)
    rundir.write_json(out / "config.json", dataclasses.asdict(cfg))
    owned: list[TeacherCalls] = []
    if teacher is None:
        teacher = _open(cfg.teacher, out / "teacher_cache.jsonl", cfg)
        owned.append(teacher)
    if judge is None and cfg.judge:
        judge = (
            teacher
            if cfg.judge_model is None
            else _open(cfg.judge_model, out / "judge_cache.jsonl", cfg)
        )
        if judge is not teacher:
            owned.append(judge)
    ctx = Context(cfg, out, teacher, judge, eval_path, benchmarks, log)
    results: dict[str, Any] = {
        "arm": "sft_only" if cfg.sft_only else "soda",
        "config": dataclasses.asdict(cfg),
        "eval_set": {"path": str(eval_path), "n": len(benchmarks)},
        "cycles": [],
    }
    try:
        base = step_eval(ctx, out / "cycle-0", Path(cfg.student)).result
        results["cycles"].append({"cycle": 0, "student_out": cfg.student, "eval": base})
        student, questions, earlier = Path(cfg.student), list(seeds), []
        spent = 0
        for c in range(1, cfg.cycles + 1):
            log(f"cycle {c}/{cfg.cycles}: {len(questions)} questions")
            n_new = cfg.n_new
            if budgets is not None:
                target = sum(b["answers"] for b in budgets[:c])
                n_new = matched_n_new(target - spent, len(questions), budgets[c - 1]["per_new"])
                log(f"cycle {c}: {target - spent} teacher answers left to match: {n_new} new")
            report, student, new = run_cycle(ctx, c, questions, student, earlier, n_new)
            spent += report["teacher_answers_total"]
            if budgets is not None:
                target = sum(b["answers"] for b in budgets[:c])
                report["budget_match"] = {"soda_answers": target, "answers": spent}
            results["cycles"].append(report)
            _write_results(out, results)
            log(_summary_line(report))
            questions, earlier = next_questions(questions, new, earlier, cfg.keep_questions, log)
    finally:
        for t in owned:
            t.close()
    _write_results(out, results)
    return results


def next_questions(
    questions: list[CodegenRecord],
    new: list[CodegenRecord],
    earlier: list[CodegenRecord],
    keep: bool,
    log: Callable[[str], None] = print,
) -> tuple[list[CodegenRecord], list[CodegenRecord]]:
    """The next cycle's questions and the earlier ones outside them (which new questions must
    not duplicate): this cycle's plus the new ones (``keep``) or the new ones alone; when no
    new question was kept, this cycle's again rather than none."""
    seen = {r.id for r in [*earlier, *questions]}
    fresh = [r for r in new if r.id not in seen]
    if keep:
        nxt = [*questions, *fresh]
    elif fresh:
        nxt = fresh
    else:
        log("no new question kept: the next cycle works on this cycle's questions again")
        nxt = list(questions)
    inside = {r.id for r in nxt}
    rest = [r for r in [*earlier, *questions] if r.id not in inside]
    return nxt, rest


def matched_n_new(answers_left: int, n_questions: int, per_new: float) -> int:
    """New questions the SFT-only arm asks in a cycle so its teacher answers reach the SODA
    run's: the answers left to match (SODA's up to this cycle minus this arm's so far), less
    Stage I's (one correct solution per question; no faults here), at SODA's cost per new
    question."""
    room = answers_left - n_questions
    return max(0, int(room // max(per_new, 1e-9)))


def _open(spec: str, cache: Path, cfg: SodaConfig) -> TeacherCalls:
    decoding = Decoding(max_new_tokens=cfg.teacher_max_new_tokens, seed=cfg.seed)
    return open_teacher(
        spec,
        cache,
        decoding,
        prompt_mode=cfg.teacher_prompt_mode,
        server_model=cfg.server_model,
        api_key_env=cfg.api_key_env,
    )


def _write_results(out: Path, results: dict[str, Any]) -> None:
    """``results.json``: per cycle pass@1 and per-item pass vectors (paired comparisons)."""
    rundir.write_json(out / "results.json", results)
    lines = ["| cycle | pass@1 | pass@1+ | teacher answers | new kept |", "|---|---|---|---|---|"]
    for r in results["cycles"]:
        ev = r["eval"]
        nq = r.get("new_questions", {})
        lines.append(
            f"| {r['cycle']} | {_pct(ev.get('pass@1'))} | {_pct(ev.get('pass@1_plus'))} | "
            f"{r.get('teacher_answers_total', '—')} | {nq.get('kept', '—')} |"
        )
    write_text_atomic(
        out / "summary.md", f"# codistill soda ({results['arm']})\n\n" + "\n".join(lines) + "\n"
    )


def _summary_line(report: dict[str, Any]) -> str:
    ev, nq = report["eval"], report["new_questions"]
    levels = report["levels"] or {}
    return (
        f"cycle {report['cycle']}: pass@1 {_pct(ev['pass@1'])}; levels "
        + (", ".join(f"{k} {levels.get(k, 0)}" for k in LEVELS) if levels else "—")
        + f"; new questions {nq['kept']}/{nq['asked']} kept; teacher answers "
        f"{report['teacher_answers_total']}"
    )
