"""``codistill reproduce alpha-t | trident``: one study, every stage cached, ending in "Does
distillation pay?".

Stages (each writes its directory atomically under ``--out`` and is named by a hash of what it
was built from, so a rerun reuses what exists and a changed input builds anew):

data      stdlib-asserts mined from this interpreter's test suite, cut to the budget's train /
          valid / test sizes (or ``--data DIR`` with those three files)
teacher   the base teacher with the training corpus' vocabulary, fine-tuned on the train split
          (``codistill teacher finetune``); ``smoke`` uses a tiny random model instead
student   ``layers`` of the tuned teacher's layers, same vocabulary (identity token map); which
          layers is chosen by loss on the valid split (``student derive --choose-layers-on``)
          unless the budget spaces them evenly
cache     the tuned teacher's top-k log-probs over the train subset (``teacher cache``)
outputs   the tuned teacher's greedy assertions for the train subset (``teacher generate``),
          the targets of sequence-level KD
arms      one student per objective, all from the same init, the same data in the same order,
          the same optimiser, steps, batch and learning rate; only the loss (or the targets)
          differs
eval      teacher, untouched student and every arm on the same held-out test records
compare   every arm against the CE-only arm with paired 95% intervals (``codistill compare``),
          quality-vs-steps curves and student/teacher ratio bars, ``report.md``
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import Any

from codistill import rundir
from codistill.config.distill import load_distill_config
from codistill.config.evaluate import load_eval_config
from codistill.data.jsonl import read_records, write_records
from codistill.data.prompts import assertion_prompt
from codistill.models.registry import resolve_model
from codistill.teacher.cache_defaults import KEPT_MASS_DEFAULT


@dataclass(frozen=True)
class Budget:
    """How much of everything a study spends. ``None`` sizes mean the whole split."""

    train: int | None
    valid: int
    test: int | None
    teacher_steps: int
    student_steps: int
    batch_size: int
    layers: int
    teacher_lr: float
    student_lr: float
    max_source_tokens: int
    max_target_tokens: int
    valid_every: int
    layer_choice: str = "loss"  # "loss" (greedy removal on the valid split) or "even"
    cqs: bool = True
    tiny: bool = False  # tiny random teacher (the test suite's budget)


BUDGETS: dict[str, Budget] = {
    # Minutes on 2 cores with tiny random models: checks the pipeline, measures nothing.
    "smoke": Budget(
        train=96,
        valid=8,
        test=24,
        teacher_steps=40,
        student_steps=6,
        batch_size=4,
        layers=2,
        teacher_lr=3e-3,
        student_lr=3e-3,
        max_source_tokens=64,
        max_target_tokens=24,
        valid_every=3,
        cqs=False,
        tiny=True,
    ),
    # Sized like the run reported for issue 12 on this 2-core machine (Gemma 3 270M tuned 240
    # steps, 4-of-18-layer students = 22% of its non-embedding parameters, 400 steps of batch 8
    # each, 1,000 test records); about 3 hours for the alpha-t arms.
    "cpu": Budget(
        train=3200,
        valid=100,
        test=1000,
        teacher_steps=240,
        student_steps=400,
        batch_size=8,
        layers=4,
        teacher_lr=5e-5,
        student_lr=1e-3,
        max_source_tokens=128,
        max_target_tokens=48,
        valid_every=100,
    ),
    # The papers' scale, for a GPU machine: the whole train split, students of 6 of 18 layers,
    # about three epochs of batch 32 (alpha-T trains 3 epochs, Trident 12 with accumulation).
    "full": Budget(
        train=None,
        valid=1000,
        test=None,
        teacher_steps=4000,
        student_steps=4500,
        batch_size=32,
        layers=6,
        teacher_lr=5e-5,
        student_lr=3e-4,
        max_source_tokens=256,
        max_target_tokens=64,
        valid_every=500,
    ),
}

# Each arm: a preset (the objective as its paper gives it) and overrides of the objective only.
ARMS: dict[str, dict[str, Any]] = {
    "ce": {"preset": "alpha-temperature", "loss": "ce"},
    "alpha_t": {"preset": "alpha-temperature"},
    "ce_kl": {"preset": "ce-kl-baseline"},
    "trident_static": {"preset": "trident-static"},
    "trident_dynamic": {"preset": "trident-dynamic"},
    "seq_kd": {"preset": "alpha-temperature", "loss": "ce", "targets": "teacher-outputs"},
}
STUDIES: dict[str, list[str]] = {
    "alpha-t": ["ce", "alpha_t", "ce_kl", "seq_kd"],
    "trident": ["ce", "ce_kl", "trident_static", "trident_dynamic"],
}
BASELINE = "ce"

# Which checkpoint of each arm is scored: its last one, or the one with the lowest held-out CE
# on the valid split (early stopping), chosen by the same rule for every arm and never by test
# items.
CHECKPOINTS = ("final", "best")


def log(msg: str) -> None:
    print(f"[reproduce {time.strftime('%H:%M:%S')}] {msg}", flush=True)


def content_key(*parts: Any) -> str:
    """12 hex digits naming a stage by what it was built from."""
    blob = json.dumps(parts, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:12]


def stage(root: Path, name: str, key: str, build: Callable[[Path], Any]) -> Path:
    """``root/name-key``, built once by ``build(tmp_dir)`` into a temporary directory and then
    renamed into place, so an interrupted stage never looks complete."""
    final = root / f"{name}-{key}"
    if final.exists():
        log(f"{name}: cached ({final.name})")
        return final
    log(f"{name}: building {final.name}")
    tmp = rundir.fresh_tmp_dir(final)
    try:
        _measured(name, tmp, build)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)  # nothing half-built is left behind
        raise
    rundir.replace_dir(tmp, final)
    return final


def _measured(name: str, where: Path, build: Callable[[Path], Any]) -> None:
    """Run a stage's build and record its wall time and peak memory in ``stage.json``."""
    from codistill.evaluation.efficiency import PeakRSS  # lazy: torch

    started = time.time()
    with PeakRSS(interval_s=0.2) as peak:
        build(where)
    cost = {"stage": name, "seconds": round(time.time() - started, 1), "peak_rss_mb": peak.peak_mb}
    rundir.write_json(where / "stage.json", cost)


def train_resumably(preset: str, settings: dict[str, Any], work: Path) -> Path:
    """Train one arm into ``work/run``: from its last checkpoint, or afresh when it has none (a
    run stopped before its first checkpoint leaves files and nothing to resume). A finished
    arm drops its optimizer checkpoint: 5.3 GB for a 0.5B student."""
    from codistill.training.loop import distill  # lazy: torch

    run = work / "run"
    cfg = load_distill_config(preset, {**settings, "output_dir": str(run)})
    resume = (run / "checkpoint" / "trainer_state.json").exists()
    if not resume:
        shutil.rmtree(run, ignore_errors=True)
    distill(cfg, resume=resume)
    shutil.rmtree(run / "checkpoint", ignore_errors=True)
    return run


def check_checkpoint(which: str) -> None:
    """Raises ValueError for a choice not in ``CHECKPOINTS`` (before any stage runs)."""
    if which not in CHECKPOINTS:
        raise ValueError(f"unknown checkpoint {which!r}; choose from {list(CHECKPOINTS)}")


def scored_checkpoint(run: Path, which: str) -> Path:
    """The checkpoint of a trained arm that the study scores (see ``CHECKPOINTS``).

    Raises:
        ValueError: an unknown choice, or a run without that checkpoint (``best`` needs a
            validation split and a validation before the last step).
    """
    check_checkpoint(which)
    path = run / which
    if not (path / "config.json").exists():
        raise ValueError(f"{run}: no {which!r} checkpoint to score ({path} has no config.json)")
    return path


def best_validation(run: Path) -> tuple[int, float] | None:
    """``(step, held-out CE)`` of the lowest validation in a run's ``metrics.jsonl``; the first
    such step on ties, as the training loop keeps it under ``best/``."""
    rows = [r for r in _read_jsonl(run / "metrics.jsonl") if r.get("kind") == "valid"]
    if not rows:
        return None
    best = min(rows, key=lambda r: r["valid_loss"])  # min keeps the first of equal values
    return int(best["step"]), float(best["valid_loss"])


def checkpoint_note(which: str) -> str:
    """One report sentence saying which checkpoint the arms were scored at."""
    if which == "best":
        return (
            "Each arm is scored at its checkpoint with the lowest held-out CE on the valid "
            "split (the step is in the training table), chosen the same way for every arm."
        )
    return "Each arm is scored at its final checkpoint."


def held_out_cells(run: Path, info: dict) -> str:
    """Training-table cells: final held-out CE | best held-out CE (step)."""
    final = (info.get("final_validation") or {}).get("valid_loss")
    best = best_validation(run)
    best_s = "n/a" if best is None else f"{best[1]:.3f} (step {best[0]})"
    return f"{_num(final)} | {best_s}"


def resumable(root: Path, name: str, key: str, build: Callable[[Path], Any]) -> Path:
    """Like :func:`stage` for stages whose build picks up what an interrupted one left in its
    work dir: training from a checkpoint, teacher outputs and caches from the records and
    shards already written (an hour of a 1.5B teacher is not redone after a stop)."""
    final = root / f"{name}-{key}"
    if final.exists():
        log(f"{name}: cached ({final.name})")
        return final
    work = root / f".work-{name}-{key}"
    log(f"{name}: {'resuming' if work.exists() else 'building'} {final.name}")
    work.mkdir(parents=True, exist_ok=True)
    _measured(name, work, build)
    work.rename(final)
    return final


# ---------------------------------------------------------------------------------------------
# Stages
# ---------------------------------------------------------------------------------------------


def prepare_data(root: Path, budget: Budget, data_dir: str | None, seed: int) -> Path:
    """train / valid / test subsets spread over each split's modules."""
    source = Path(data_dir) if data_dir else None
    key = content_key(
        "data",
        str(source) if source else f"stdlib-{sys.version}",
        budget.train,
        budget.valid,
        budget.test,
        seed,
    )

    def build(tmp: Path) -> None:
        src = source
        if src is None:
            from codistill.data.stdlib import build_stdlib_asserts  # lazy: ~30 ms of mining code

            src = tmp / "stdlib-asserts"
            build_stdlib_asserts(src, seed=seed)
        for split, n in (("train", budget.train), ("valid", budget.valid), ("test", budget.test)):
            records = read_records(src / f"{split}.jsonl")
            if n is not None and n < len(records):
                records = records[:: len(records) // n][:n]
            write_records(tmp / f"{split}.jsonl", records)

    return stage(root, "data", key, build)


def prepare_teacher(root: Path, budget: Budget, data: Path, base: str | None, seed: int) -> Path:
    """The task-tuned teacher (``teacher-*/model``)."""
    key = content_key(
        "teacher",
        data.name,
        base,
        budget.tiny,
        budget.teacher_steps,
        budget.teacher_lr,
        budget.batch_size,
        budget.max_source_tokens,
        budget.max_target_tokens,
        seed,
    )

    def build(work: Path) -> None:
        from codistill.training.finetune import finetune_teacher  # lazy: run-time only

        texts = [
            t for r in read_records(data / "train.jsonl") for t in (assertion_prompt(r), r.target)
        ]
        if budget.tiny:
            from codistill.models.tiny import make_tiny_causal_lm  # lazy: torch

            start = make_tiny_causal_lm(work / "tiny", vocab_texts=texts, num_layers=4, seed=seed)
            vocab = None
        else:
            start, vocab = resolve_model(base or "embedded"), texts
        overrides = budget_overrides(budget, budget.teacher_lr, seed)
        finetune_teacher(
            str(start),
            str(data / "train.jsonl"),
            work,
            mode="full",
            valid_data=str(data / "valid.jsonl"),
            vocab_texts=vocab,
            overrides={**overrides, "max_steps": budget.teacher_steps},
        )

    return resumable(root, "teacher", key, build) / "model"


def prepare_student(root: Path, budget: Budget, teacher: Path, data: Path) -> Path:
    """The shared init of every arm: ``layers`` of the tuned teacher's layers, chosen by the
    loss they keep on the valid split (or evenly spaced)."""
    # lazy: torch
    from codistill.models.layer_choice import choose_layers
    from codistill.models.student import derive_student

    key = content_key("student", str(teacher), budget.layers, budget.layer_choice, data.name)

    def build(tmp: Path) -> None:
        layers, notes = budget.layers, {}
        if budget.layer_choice == "loss":
            choice = choose_layers(
                teacher,
                read_records(data / "valid.jsonl")[:32],
                budget.layers,
                max_source_tokens=budget.max_source_tokens,
                max_target_tokens=budget.max_target_tokens,
                on_removal=lambda r: log(f"student: removed layer {r['layer']} (loss {r['loss']})"),
            )
            layers, notes = choice.layers, {"layer_choice": choice.to_dict()}
        derive_student(teacher, tmp / "model", layers, notes=notes)

    return stage(root, "student", key, build) / "model"


def prepare_cache(root: Path, budget: Budget, teacher: Path, data: Path) -> Path:
    """The tuned teacher's top-k log-probs over the train subset, for every token-level arm
    (``codistill teacher cache`` with its defaults: k <= 64 holding 99.9% of the mass)."""
    from codistill.teacher.cache import build_cache  # lazy: torch

    key = content_key(
        "cache", str(teacher), data.name, budget.max_source_tokens, budget.max_target_tokens
    )

    def build(tmp: Path) -> None:
        records = read_records(data / "train.jsonl")
        build_cache(
            teacher,
            records,
            tmp / "cache",
            max_source_tokens=budget.max_source_tokens,
            max_target_tokens=budget.max_target_tokens,
            min_kept_mass=KEPT_MASS_DEFAULT,
            log=log,
        )

    return resumable(root, "cache", key, build) / "cache"


def prepare_outputs(root: Path, budget: Budget, teacher: Path, data: Path) -> Path:
    """The teacher's own greedy assertions for the train subset (sequence-level KD targets)."""
    # lazy: ~35 ms (backends, sandbox)
    from codistill.teacher.generations import GenerateSettings, generate_teacher_outputs

    key = content_key(
        "outputs", str(teacher), data.name, budget.max_source_tokens, budget.max_target_tokens
    )
    settings = GenerateSettings(
        max_new_tokens=budget.max_target_tokens, max_source_tokens=budget.max_source_tokens
    )

    def build(tmp: Path) -> None:
        records = read_records(data / "train.jsonl")
        generate_teacher_outputs(str(teacher), teacher, records, tmp / "outputs", settings, log=log)

    return resumable(root, "outputs", key, build) / "outputs"


def budget_overrides(budget, lr: float, seed: int) -> dict[str, Any]:
    """What every arm shares: optimiser, schedule, steps, batch, lengths, seed, data order.

    ``budget`` is a :class:`Budget` or any budget with the same ``batch_size``,
    ``max_source_tokens``, ``max_target_tokens`` and ``tiny`` (the code-generation study's)."""
    return {
        "lr": lr,
        "batch_size": budget.batch_size,
        "grad_accum": 1,
        "epochs": 1000,  # the budget is max_steps
        "warmup_ratio": 0.1,
        "weight_decay": 0.01,
        "max_grad_norm": 1.0,
        "dropout": None,
        "max_source_tokens": budget.max_source_tokens,
        "max_target_tokens": budget.max_target_tokens,
        "seed": seed,
        "log_every": 1 if budget.tiny else 10,
        "progress": False,
    }


def train_arm(
    root: Path,
    arm: str,
    budget: Budget,
    student: Path,
    teacher: Path,
    data: Path,
    cache: Path | None,
    outputs: Path | None,
    seed: int,
) -> Path:
    """One equal-budget student: the arm's objective, everything else from the budget."""

    spec = dict(ARMS[arm])
    preset = spec.pop("preset")
    if spec.get("targets") == "teacher-outputs":
        spec["targets"] = f"teacher:{outputs}"
    settings = {
        **spec,
        **budget_overrides(budget, budget.student_lr, seed),
        "student": str(student),
        "train_data": str(data / "train.jsonl"),
        "valid_data": str(data / "valid.jsonl"),
        "max_steps": budget.student_steps,
        "valid_every_steps": budget.valid_every,
    }
    if spec.get("loss") != "ce":
        settings.update(teacher=str(teacher), teacher_cache=str(cache))
    key = content_key("arm", arm, preset, settings)

    return resumable(root, f"arm-{arm}", key, partial(train_resumably, preset, settings)) / "run"


def evaluate_model(root: Path, name: str, model: Path, budget: Budget, data: Path) -> Path:
    """``codistill eval`` of one model on the test subset (greedy, one line)."""
    from codistill.evaluation.runner import run_eval  # lazy: torch

    key = content_key("eval", str(model), data.name, budget.max_source_tokens, budget.cqs)
    settings = {
        "task": "assertion",
        "data": str(data / "test.jsonl"),
        "model": str(model),
        "max_source_tokens": budget.max_source_tokens,
        "max_new_tokens": budget.max_target_tokens,
        "batch_size": 16,
        "latency_samples": 16,
        "cqs": budget.cqs,
    }

    def build(tmp: Path) -> None:
        run_eval(load_eval_config(None, {**settings, "output_dir": str(tmp / "eval")}))

    return stage(root, f"eval-{name}", key, build) / "eval"


# ---------------------------------------------------------------------------------------------
# The study
# ---------------------------------------------------------------------------------------------


@dataclass
class StudyOptions:
    study: str
    budget: str = "cpu"
    out: str = "runs/reproduce"
    teacher: str | None = None  # base teacher (default: embedded Gemma 3 270M)
    data: str | None = None  # a directory with train/valid/test.jsonl instead of stdlib-asserts
    arms: list[str] | None = None  # a subset of the study's arms (the baseline always runs)
    seed: int = 0
    checkpoint: str = "final"  # which checkpoint of each arm is scored: CHECKPOINTS


def reproduce(opts: StudyOptions) -> dict[str, Any]:
    """Run (or resume) one study and write ``OUT/STUDY/report.md`` and ``reproduce.json``."""
    if opts.study not in STUDIES:
        raise ValueError(f"unknown study {opts.study!r}; choose from {sorted(STUDIES)}")
    if opts.budget not in BUDGETS:
        raise ValueError(f"unknown budget {opts.budget!r}; choose from {sorted(BUDGETS)}")
    check_checkpoint(opts.checkpoint)
    arms = ordered_arms(opts.study, opts.arms, STUDIES[opts.study], BASELINE)
    budget = BUDGETS[opts.budget]
    root = Path(opts.out)
    root.mkdir(parents=True, exist_ok=True)
    started = time.time()
    data = prepare_data(root, budget, opts.data, opts.seed)
    teacher = prepare_teacher(root, budget, data, opts.teacher, opts.seed)
    student = prepare_student(root, budget, teacher, data)
    needs_cache = any(ARMS[a].get("loss") != "ce" for a in arms)
    cache = prepare_cache(root, budget, teacher, data) if needs_cache else None
    needs_outputs = any(ARMS[a].get("targets") for a in arms)
    outputs = prepare_outputs(root, budget, teacher, data) if needs_outputs else None
    runs = {
        a: train_arm(root, a, budget, student, teacher, data, cache, outputs, opts.seed)
        for a in arms
    }
    evals = {
        "teacher": evaluate_model(root, "teacher", teacher, budget, data),
        "student_init": evaluate_model(root, "student_init", student, budget, data),
    }
    for arm, run in runs.items():
        model = scored_checkpoint(run, opts.checkpoint)
        evals[arm] = evaluate_model(root, f"arm-{arm}", model, budget, data)
    out = root / opts.study
    _compare(out, evals, budget)
    summary = {
        "study": opts.study,
        "budget": {"name": opts.budget, **asdict(budget)},
        "arms": arms,
        "checkpoint": opts.checkpoint,
        "stages": {
            "data": str(data),
            "teacher": str(teacher),
            "student": str(student),
            "cache": str(cache) if cache else None,
            "outputs": str(outputs) if outputs else None,
        },
        "runs": {a: str(r) for a, r in runs.items()},
        "evals": {n: str(e) for n, e in evals.items()},
        "wall_seconds": round(time.time() - started, 1),
    }
    rundir.write_json(out / "reproduce.json", summary)
    write_report(out, summary)
    log(f"done in {summary['wall_seconds'] / 60:.1f} min; report in {out / 'report.md'}")
    return summary


def ordered_arms(
    study: str, chosen: list[str] | None, known: list[str], baseline: str
) -> list[str]:
    """The arms to run (``chosen``, or all ``known``), the baseline always first.

    Raises:
        ValueError: an arm the study does not have.
    """
    arms = list(known) if chosen is None else list(chosen)
    unknown = [a for a in arms if a not in known]
    if unknown:
        raise ValueError(
            f"arm {unknown[0]!r} is not part of the {study} study; its arms are {list(known)}"
        )
    return [baseline] + [a for a in arms if a != baseline]


def _compare(out: Path, evals: dict[str, Path], budget: Budget) -> None:
    """``codistill compare``: every arm against the CE-only arm, and against the teacher."""
    from codistill.evaluation.compare import compare_eval_runs  # lazy: numpy

    compare_eval_runs(evals, out, baseline=BASELINE, teacher="teacher", cqs=budget.cqs)


def _read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def write_curves(out: Path, runs: dict[str, str]) -> Path:
    """``quality_vs_steps.png``: each arm's training loss and held-out CE against steps."""
    from codistill.report.plots import runs_overlay  # lazy: matplotlib

    curves = []
    for arm, run in runs.items():
        rows = _read_jsonl(Path(run) / "metrics.jsonl")
        train = [r for r in rows if r["kind"] == "train"]
        curves.append((arm, train, [r for r in rows if r["kind"] == "valid"]))
    path = out / "quality_vs_steps.png"
    path.write_bytes(
        runs_overlay(curves, "training loss and held-out CE per arm (same init, data, budget)")
    )
    return path


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """``report.md`` beside ``comparison.md``: setup, the comparison, curves and ratio bars."""
    from codistill.report.plots import grouped_bars  # lazy: matplotlib

    comparison = json.loads((out / "comparison.json").read_text())
    metrics = {
        n: json.loads((Path(p) / "metrics.json").read_text()) for n, p in summary["evals"].items()
    }
    write_curves(out, summary["runs"])
    categories, series = _ratio_bars(comparison, metrics)
    (out / "ratios.png").write_bytes(
        grouped_bars(categories, series, "student / teacher", "ratio", reference_line=1.0)
    )
    teacher_eff = metrics["teacher"]["models"]["student"]["efficiency"]
    student_eff = metrics["student_init"]["models"]["student"]["efficiency"]
    tuned = Path(summary["stages"]["teacher"]).parent / "finetune.json"
    ft = json.loads(tuned.read_text()) if tuned.exists() else {}
    held_out = ft.get("held_out_loss", {})
    budget = summary["budget"]
    lines = [
        f"# codistill reproduce {summary['study']} (budget `{budget['name']}`)",
        "",
        f"Teacher: {ft.get('base_model', '?')} fine-tuned {ft.get('steps', '?')} steps on the "
        f"train subset; held-out CE per target token {_num(held_out.get('before'))} → "
        f"{_num(held_out.get('after'))}; "
        f"{teacher_eff['params_non_embedding'] / 1e6:.1f}M non-embedding parameters.",
        f"Students: {budget['layers']} of its layers ({_layer_note(summary)}), "
        f"{student_eff['params_non_embedding'] / 1e6:.1f}M non-embedding parameters "
        f"({student_eff['params_non_embedding'] / teacher_eff['params_non_embedding']:.0%} of "
        f"the teacher's); every arm trains {budget['student_steps']} steps of batch "
        f"{budget['batch_size']} at lr {budget['student_lr']} from the same init, on the same "
        f"{budget['train'] or 'all'} train records in the same order. "
        + checkpoint_note(summary.get("checkpoint", "final")),
        "",
        (out / "comparison.md").read_text(),
        "## Training",
        "",
        "| arm | wall s | final held-out CE | best held-out CE (step) |",
        "|---|---|---|---|",
    ]
    for arm, run in summary["runs"].items():
        info = json.loads((Path(run) / "run.json").read_text())
        cells = held_out_cells(Path(run), info)
        lines.append(f"| {arm} | {info.get('wall_seconds', 0):.0f} | {cells} |")
    lines += ["", "![quality vs steps](quality_vs_steps.png)", "", "![ratios](ratios.png)", ""]
    rundir.write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"


def _num(value: Any) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _layer_note(summary: dict) -> str:
    """Which teacher layers the students kept and how they were chosen."""
    derivation = Path(summary["stages"]["student"]) / "derivation.json"
    info = json.loads(derivation.read_text()) if derivation.exists() else {}
    choice = info.get("layer_choice")
    if choice is None:
        return f"layers {info.get('layers', '?')}, evenly spaced"
    return (
        f"layers {choice['layers']}, chosen by removing one at a time the layer whose removal "
        f"raised the valid CE least: {choice['full_loss']:.3f} with all, "
        f"{choice['loss']:.3f} with these"
    )


def _ratio_bars(comparison: dict, metrics: dict) -> tuple[list[str], dict[str, list]]:
    """Each student arm over the teacher: quality (vs truth) and cost."""
    quality = [
        m
        for m in ("exact_match", "char_similarity", "cqs")
        if m in comparison["arms"]["teacher"]["truth"]
    ]
    cost = [
        ("params_non_embedding", "non-embedding params"),
        ("size_mb", "size"),
        ("ms_per_sample", "latency"),
    ]
    teacher_q = comparison["arms"]["teacher"]["truth"]
    teacher_e = metrics["teacher"]["models"]["student"]["efficiency"]
    series = {}
    for arm, blocks in comparison["arms"].items():
        if arm == "teacher":
            continue
        eff = metrics[arm]["models"]["student"]["efficiency"]
        row = [_ratio(blocks["truth"][m]["value"], teacher_q[m]["value"]) for m in quality]
        row += [_ratio(eff.get(k), teacher_e.get(k)) for k, _ in cost]
        series[arm] = row
    return [m.replace("_", " ") for m in quality] + [label for _, label in cost], series


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
