"""``report.md`` of ``codistill reproduce codegen``: the setup, the comparisons, each arm's
training and how the scored models' answers look."""

from __future__ import annotations

import json
import statistics
from collections import Counter
from pathlib import Path
from typing import Any

from codistill import rundir
from codistill.data.jsonl import read_records
from codistill.data.prompts import codegen_program, python_parses
from codistill.data.schema import CodegenRecord
from codistill.reproduce import checkpoint_note, held_out_cells, write_curves
from codistill.reproduce_codegen.arms import (
    ARMS,
    REFERENCE_BASELINE,
    SAMPLE_TEMPERATURE,
    SAMPLE_TOP_P,
    STUDENT_TARGETS,
    paired_with_ce,
)


def _samples_note(samples: int) -> str:
    if samples == 1:
        return "The teacher wrote one greedy solution per training prompt."
    return (
        f"The teacher wrote {samples} solutions per training prompt, sampled at temperature "
        f"{SAMPLE_TEMPERATURE}, top-p {SAMPLE_TOP_P}; each distinct one kept is a training example."
    )


def _prompts_note(style: str) -> str:
    if style == "mbpp":
        return "MBPP's training tasks are written as MBPP writes them (a description and a test)."
    return (
        "MBPP's training tasks are written as HumanEval writes its prompts (signature, docstring "
        "with the first test as an example), answered by a body."
    )


# A completion "repeats" when one stripped line of more than 8 characters occurs this often: the
# runaway loop a student falls into when it never learned to stop (short lines such as
# ``return x`` recur legitimately).
REPEATED_LINE_TIMES = 5


def answer_shape(record: CodegenRecord, completion: str) -> dict[str, bool | None]:
    """How an answer looks, for the report: ``parses`` (the program the completion stands for,
    :func:`codistill.data.prompts.codegen_program`, is valid Python; None for other languages)
    and ``repeats`` (a line of more than 8 characters occurs :data:`REPEATED_LINE_TIMES` times
    or more)."""
    parses = None
    if record.language == "python":
        parses = python_parses(codegen_program(record, completion))
    lines = Counter(line.strip() for line in completion.splitlines())
    repeats = any(n >= REPEATED_LINE_TIMES for line, n in lines.items() if len(line) > 8)
    return {"parses": parses, "repeats": repeats}


def answer_table(evals: dict[str, str], tests: dict[str, CodegenRecord]) -> list[str]:
    """How long each model's answers are, how many do not parse or loop (``tests``: the test
    records by id, for their prompts and languages), and what scoring them cost: an arm that
    took up the teacher's prose after its code (the ``seq`` arms) writes three times the
    characters of ``ce`` and takes twice the evaluation time for no task more."""
    from codistill.evaluation.compare import read_eval_run  # lazy: numpy

    lines = [
        "## Answers",
        "",
        "| model | answers | median answer (chars) | do not parse | repeat a line "
        f"{REPEATED_LINE_TIMES}+ times | evaluation wall s |",
        "|---|---|---|---|---|---|",
    ]
    for name, run in evals.items():
        rows = read_eval_run(run)["rows"]
        median = statistics.median(len(r["completion"]) for r in rows) if rows else 0
        shapes = [answer_shape(tests[r["task_id"]], r["completion"]) for r in rows]
        checked = [s["parses"] for s in shapes if s["parses"] is not None]
        unparsed = f"{checked.count(False)} of {len(checked)}" if checked else "—"
        repeats = sum(s["repeats"] for s in shapes)
        stage = Path(run).parent / "stage.json"
        wall = f"{json.loads(stage.read_text())['seconds']:.0f}" if stage.is_file() else "?"
        lines.append(f"| {name} | {len(rows)} | {median:.0f} | {unparsed} | {repeats} | {wall} |")
    return lines


# How each arm on every training prompt differs from ``ce`` (the report says it beside them).
VS_CE = {
    "kd-ref": "differs from it only in the loss (alpha-T)",
    "seq": "differs from it only in the targets (the teacher's solutions)",
    "kd-seq": "differs in the targets (the teacher's solutions) and the loss (alpha-T)",
    "kd-own": "differs in the targets (the untouched student's own solutions) and the loss "
    "(the teacher's KL alone)",
    "kd-hidden": "differs only in the loss (alpha-T with the online teacher, plus the distance "
    "of each layer's states from the teacher's)",
    "kd-online": "differs only in the loss (alpha-T with the online teacher: the KL over the "
    "whole vocabulary)",
}


def _section(comparison: Path) -> str:
    """A ``comparison.md`` as a section of the report: its title dropped, its headings one level
    down (it is part of the report, not a report of its own)."""
    text = comparison.read_text().replace("\n#", "\n##")
    return text.split("\n", 1)[1].lstrip("\n")


def write_report(out: Path, summary: dict[str, Any]) -> Path:
    """``report.md``: the setup, the data, the comparison and each arm's training."""
    data = json.loads((Path(summary["stages"]["data"]) / "data.json").read_text())
    budget = summary["budget"]
    lines = [
        f"# codistill reproduce codegen (budget `{budget['name']}`)",
        "",
        f"Teacher `{summary['stages']['teacher']}`, student init `{summary['stages']['student']}`"
        f"; every arm trains {budget['student_steps']} steps of batch {budget['batch_size']} at "
        f"lr {budget['student_lr']} from that init. "
        + checkpoint_note(summary.get("checkpoint", "final")),
        _samples_note(summary.get("teacher_samples", 1)),
        _prompts_note(summary.get("train_prompts", "mbpp")),
        f"Training prompts: {data['train']} ({data['train_with_tests']} with tests); test: "
        + ", ".join(f"{k} {v}" for k, v in data["test"].items())
        + f"; decontamination removed {data['decontaminated']['stdlib_functions']} standard "
        f"library functions and {data['decontaminated']['mbpp_non_test']} MBPP tasks.",
        "",
        (out / "comparison.md").read_text(),
    ]
    lines += [
        "## Against the untouched student",
        "",
        "Each arm against the student it started from: whether training helped at all, and on "
        "which benchmark.",
        "",
        _section(out / "vs-init" / "comparison.md"),
    ]
    arms = paired_with_ce(summary["arms"])
    if arms:
        lines += [
            f"## On every training prompt: against `{REFERENCE_BASELINE}`",
            "",
            "The arms trained on every training prompt, against CE-only on those prompts' "
            "references in the same order: "
            + "; ".join(f"`{a}` {VS_CE[a]}" for a in arms if a in VS_CE)
            + ".",
            "",
            _section(out / "vs-ce" / "comparison.md"),
        ]
    lines += [
        "## Training",
        "",
        "| arm | targets | records used | dropped: no tests / no passing output | wall s "
        "| final held-out CE | best held-out CE (step) |",
        "|---|---|---|---|---|---|---|",
    ]
    for arm, run in summary["runs"].items():
        info = json.loads((Path(run) / "run.json").read_text())
        used = (info.get("tokenization") or {}).get("examples", "?")
        t = info.get("targets") or {}
        if t.get("kind") == "reference":
            targets, dropped = "references", "—"
        elif ARMS.get(arm, {}).get("targets") == STUDENT_TARGETS:
            # run.json calls them teacher outputs: they are read as any model's outputs are
            targets = "the untouched student's outputs"
            dropped = f"— / — ({t.get('records_dropped', 0)} empty)"
        else:
            targets = f"`{t.get('kind', budget['targets'])}` outputs"
            dropped = f"{t.get('records_without_tests', 0)} / {t.get('outputs_not_passed', 0)}"
        wall = info.get("wall_seconds", 0)
        cells = held_out_cells(Path(run), info)
        lines.append(f"| {arm} | {targets} | {used} | {dropped} | {wall:.0f} | {cells} |")
    tests = read_records(Path(summary["stages"]["data"]) / "test.jsonl", "codegen")
    lines += ["", *answer_table(summary["evals"], {r.id: r for r in tests})]
    write_curves(out, summary["runs"])
    lines += ["", "![quality vs steps](quality_vs_steps.png)", ""]
    rundir.write_text(out / "report.md", "\n".join(lines))
    return out / "report.md"
