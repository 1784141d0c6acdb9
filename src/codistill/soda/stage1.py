"""SODA Stage I data: verified correct solutions and correct/faulty pairs, per seed question.

For each seed question (an MBPP-style :class:`codistill.data.schema.CodegenRecord`: a prompt
and tests):

1. **correct**: the teacher answers P_c (:func:`codistill.soda.prompts.render_correct`); the code
   is read from the answer and run against the question's tests in the sandbox
   (:mod:`codistill.soda.verify`). Only passing solutions are kept; the others are counted by
   outcome (syntax, name, type, logic, timeout, environment, other).
2. **faulty, from the teacher**: for each question with a verified correct solution, the teacher
   answers P_f once *per fault type* (``render_faulty(..., (fault_type,))``), and the answer is
   kept only when the sandbox sees it fail for exactly that reason. One type per call rather
   than all five in one answer: the intended type is then known without trusting the teacher's
   own account of what it broke (the thing being checked), every type gets its own share in
   the report, and a pair never mixes faults. It costs up to five calls per question;
   ``teacher_fault_types`` narrows it (empty: none).
3. **faulty, injected**: :func:`codistill.soda.faults.sample_faults` mutates each verified-correct
   solution (``injected_per_type`` per type, ``seed``), each verified the same way. Injected
   faults differ from the correct solution only at the fault.
4. **pairs**: each verified faulty solution with its question's correct one, written to
   ``pairs.jsonl``; the correct solutions alone go to ``correct.jsonl``.

The questions are split 80/20 (``sft_share``) between correctness-aware supervised learning and
fault-aware contrastive learning: each question id is ranked by sha256 of ``seed:id`` and the
first ``round(sft_share * n)`` go to ``sft``. The split depends only on the seed and the ids (not
on input order, nor on which questions the teacher solved), is recorded in ``split.json`` and on
every row.

Files in the stage directory, each written atomically (temporary file, then rename):
``correct.jsonl``, ``pairs.jsonl``, ``split.json``, ``report.json`` (written last: it marks the
stage complete and holds the sha256 of its inputs), and two append-only caches:
``teacher_cache.jsonl`` (:class:`codistill.soda.teacher.TeacherCalls`, unless the caller keeps
it elsewhere) and ``verify_cache.jsonl`` (sandbox outcomes keyed by question, solution and time
limit). A rerun with the same inputs finds ``report.json`` and returns it, asking the teacher
nothing and running nothing; an interrupted run resumes from both caches.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codistill.data.code_text import defines, drop_main
from codistill.data.jsonl import read_records, write_text_atomic
from codistill.data.prompts import (
    completion_from_chat,
    completion_from_output,
    definitions_only,
    extract_code,
)
from codistill.data.schema import CodegenRecord, RecordError
from codistill.soda import faults as fault_injection
from codistill.soda import verify
from codistill.soda.prompts import (
    FAULT_TYPES,
    PromptTemplate,
    load_template,
    question_text,
    render_correct,
    render_faulty,
    templates_sha256,
)
from codistill.soda.stagefiles import check_questions, finished_report, stage_counts, write_jsonl
from codistill.soda.teacher import AnswerStore, TeacherCalls, content_key

STAGE_VERSION = 1  # bump when what this module computes changes, so old reports are not reused
ORIGINS = ("teacher", "injected")
SPLITS = ("sft", "contrastive")
NO_CODE = "no_code"  # an answer without a solution in it: not run


class Stage1Error(ValueError):
    """Seed questions or settings Stage I cannot use; one-line message naming file/field."""


@dataclass(frozen=True)
class Stage1Config:
    """Stage I settings.

    Attributes:
        teacher_fault_types: fault types asked of the teacher, one call per type and question.
        injected_fault_types: fault types injected into verified-correct solutions.
        injected_per_type: injected faults per type and question (0: no injection).
        seed: fault sampling and the question split.
        sft_share: share of questions for supervised learning (the rest: contrastive).
        timeout_s: the sandbox's wall-clock limit per program (a timeout fault costs one).
        workers: sandbox programs run at once.
    """

    teacher_fault_types: tuple[str, ...] = FAULT_TYPES
    injected_fault_types: tuple[str, ...] = FAULT_TYPES
    injected_per_type: int = 1
    seed: int = 0
    sft_share: float = 0.8
    timeout_s: float = 5.0
    workers: int = 2

    def check(self) -> Stage1Config:
        """Returns self; raises :class:`Stage1Error` naming the first bad field."""
        for name in ("teacher_fault_types", "injected_fault_types"):
            unknown = [t for t in getattr(self, name) if t not in FAULT_TYPES]
            if unknown:
                raise Stage1Error(
                    f"{name}: unknown fault type {unknown[0]!r}; expected {', '.join(FAULT_TYPES)}"
                )
        if self.injected_per_type < 0:
            raise Stage1Error(f"injected_per_type must be >= 0, got {self.injected_per_type}")
        if not 0 <= self.sft_share <= 1:
            raise Stage1Error(f"sft_share must be in [0, 1], got {self.sft_share}")
        if self.timeout_s <= 0:
            raise Stage1Error(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.workers < 1:
            raise Stage1Error(f"workers must be >= 1, got {self.workers}")
        return self


def load_seeds(path: str | os.PathLike[str]) -> list[CodegenRecord]:
    """Seed questions from a codegen JSONL file, each with tests.

    Raises:
        Stage1Error: a line that is not a codegen record (``FILE:LINE: ...``), a record without
            tests (``FILE:LINE: question ID has no tests``), or an empty file.
    """
    try:
        records = read_records(path, task="codegen")
    except RecordError as exc:
        raise Stage1Error(str(exc)) from None
    except OSError as exc:
        raise Stage1Error(f"{path}: cannot read seed questions ({exc.strerror or exc})") from None
    if not records:
        raise Stage1Error(f"{path}: no seed questions")
    untested = [r for r in records if not r.tests.strip()]
    if untested:
        line = _line_of(Path(path), untested[0].id)
        raise Stage1Error(
            f"{path}:{line}: question {untested[0].id!r} has no tests, so no solution to it "
            "can be verified"
        )
    return records


def _line_of(path: Path, record_id: str) -> int:
    with open(path, "rb") as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.strip() and json.loads(raw).get("id") == record_id:
                return lineno
    return 0


def split_questions(ids: Sequence[str], seed: int, sft_share: float = 0.8) -> dict[str, str]:
    """``{id: "sft" | "contrastive"}``: ids ranked by sha256 of ``seed:id``, the first
    ``round(sft_share * len(ids))`` for supervised learning. Independent of the ids' order."""
    ranked = sorted(set(ids), key=lambda i: hashlib.sha256(f"{seed}:{i}".encode()).hexdigest())
    n_sft = round(sft_share * len(ranked))
    return {qid: SPLITS[0] if rank < n_sft else SPLITS[1] for rank, qid in enumerate(ranked)}


def solution_from_answer(answer: str, record: CodegenRecord) -> str:
    """The solution in a teacher's answer, as the completion ``codistill eval`` scores.

    MBPP-style questions (the prompt is a description) are answered by a whole program: the
    answer's code block (:func:`codistill.data.prompts.extract_code`) without its top-level
    example calls and prints (kept as is when it does not parse: a syntax fault must stay one).
    Other questions go through :func:`codistill.data.prompts.completion_from_chat`. A question
    in another language than Python takes the answer's code block (continuing the prompt where
    it repeats it), without a ``main`` of its own (the tests bring theirs:
    :func:`codistill.data.code_text.drop_main`).

    An answer with no fenced block that does not define the entry point either (a refusal, an
    explanation) has no solution: ``""``, never run, counted as ``no_code``. Otherwise a
    refusal would not compile and pass as a verified syntax fault.
    """
    if record.language != "python":
        if "```" not in answer and not defines(answer, record.entry_point):
            return ""
        code = completion_from_output(answer, record.prompt, "chat", None, record.language)
        code = _without_examples(drop_main(code, record.language), record.language)
        return code if code.strip() else ""
    python_def = rf"^[ \t]*(async[ \t]+)?def[ \t]+{re.escape(record.entry_point)}\b"
    if "```" not in answer and not re.search(python_def, answer, re.MULTILINE):
        return ""
    if record.source.lower().startswith("mbpp"):
        code = definitions_only(extract_code(answer))
        return code.strip("\n") + "\n" if code.strip() else ""
    return completion_from_chat(answer, record.prompt, record.entry_point)


# A JavaScript answer's own example checks at top level: its `assert` import would clash with
# the tests' (`const assert` declared twice), its calls only print.
_JS_EXAMPLE = re.compile(
    r"^(?:(?:const|let|var)\s+\w+\s*=\s*require\(\s*['\"](?:node:)?assert(?:/strict)?['\"]\s*\)"
    r"|console\.(?:log|assert)\(.*\)|assert(?:\.\w+)?\(.*\))\s*;?\s*$",
    re.M,
)


def _without_examples(code: str, language: str) -> str:
    """``code`` without a JavaScript answer's top-level example lines (:data:`_JS_EXAMPLE`)."""
    return _JS_EXAMPLE.sub("", code) if language == "javascript" else code


class Verifier:
    """Sandbox outcomes through ``verify_cache.jsonl``; one sandbox, started on first need.
    Stages I–III share it; ``config`` is any of their configs (it reads ``timeout_s`` and
    ``workers``)."""

    def __init__(self, path: Path, config: Stage1Config):
        self.store = AnswerStore(path)
        self.limits = verify.default_limits(config.timeout_s)
        self.workers = config.workers
        self.box = None
        self.runs = 0
        self.cached = 0

    def outcomes(self, items: Sequence[tuple[CodegenRecord, str]]) -> list[str]:
        """Per ``(question, solution)``: an outcome of :data:`verify.OUTCOMES`, or ``no_code``
        for an empty solution (not run)."""
        ran = [i for i, (_, s) in enumerate(items) if s.strip()]
        found = iter(self._run([items[i] for i in ran]))
        return [next(found) if s.strip() else NO_CODE for _, s in items]

    def _run(self, items: Sequence[tuple[CodegenRecord, str]]) -> list[str]:
        keys = [
            content_key(
                r.prompt,
                r.tests,
                s,
                self.limits.timeout_s,
                self.limits.cpu_s,
                *([] if r.language == "python" else [r.language]),
            )
            for r, s in items
        ]
        todo: dict[str, int] = {}
        for i, k in enumerate(keys):
            if k not in self.store:
                todo.setdefault(k, i)
        self.cached += len(items) - len(todo)
        if todo:
            if self.box is None:
                from codistill.evaluation.sandbox import Sandbox  # lazy: only when running

                self.box = Sandbox(self.limits, workers=self.workers)
            found = verify.run_solutions(
                [items[i] for i in todo.values()],
                sandbox=self.box,
                limits=self.limits,
                workers=self.workers,
            )
            self.runs += len(found)
            self.store.append(
                [{"key": k, "outcome": o.outcome} for k, o in zip(todo, found, strict=True)]
            )
        return [self.store[k]["outcome"] for k in keys]

    def close(self) -> None:
        if self.box is not None:
            self.box.close()
            self.box = None


def stage1_inputs_sha256(
    seeds: Sequence[CodegenRecord],
    teacher: TeacherCalls,
    config: Stage1Config,
    templates: dict[str, PromptTemplate],
) -> str:
    """sha256 over everything Stage I's output depends on."""
    return content_key(
        STAGE_VERSION,
        [r.to_dict() for r in seeds],
        teacher.teacher_key,
        asdict(config),
        templates_sha256(templates),
    )


def run_stage1(
    seeds: Sequence[CodegenRecord],
    out_dir: str | os.PathLike[str],
    teacher: TeacherCalls,
    config: Stage1Config | None = None,
    *,
    template_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Builds (or finds) Stage I's data in ``out_dir``; returns its report.

    Args:
        seeds: the seed questions, each with tests and a unique id.
        out_dir: the stage directory.
        teacher: the teacher calls (its cache may live anywhere; see :func:`open_teacher`).
        config: settings (default :class:`Stage1Config`).
        template_dir: a folder of user templates overriding the packaged ``correct.txt`` /
            ``faulty.txt``.
        log: progress lines.

    Returns:
        The ``report.json`` dict.

    Raises:
        Stage1Error: no seeds, a seed without tests, or duplicate ids.
    """
    config = (config or Stage1Config()).check()
    check_questions(seeds, Stage1Error, "stage 1", "seed question")
    out = Path(out_dir)
    templates = {n: load_template(n, template_dir) for n in ("correct", "faulty")}
    inputs = stage1_inputs_sha256(seeds, teacher, config, templates)
    done = finished_report(out, inputs, ("pairs.jsonl", "correct.jsonl"))
    if done is not None:
        log(f"stage 1: up to date in {out} ({done['pairs']['total']} pairs)")
        return done
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    verifier = Verifier(out / "verify_cache.jsonl", config)
    try:
        correct, correct_report = _correct(seeds, teacher, templates["correct"], verifier)
        log(f"stage 1: {len(correct)}/{len(seeds)} correct solutions verified")
        rows, fault_reports = _faulty(
            seeds, correct, teacher, templates["faulty"], verifier, config
        )
    finally:
        verifier.close()
    split = split_questions([r.id for r in seeds], config.seed, config.sft_share)
    by_id = {r.id: r for r in seeds}
    correct_rows = [
        {"question_id": q, "prompt": by_id[q].prompt, "solution": s, "split": split[q]}
        for q, s in correct.items()
    ]
    for row in rows:
        row["meta"]["split"] = split[row["question_id"]]
    write_jsonl(out / "correct.jsonl", correct_rows)
    write_jsonl(out / "pairs.jsonl", rows)
    split_doc = {
        "seed": config.seed,
        "sft_share": config.sft_share,
        "rule": "ids ranked by sha256(f'{seed}:{id}'); the first round(sft_share * n) are sft",
        **{name: sorted(q for q, s in split.items() if s == name) for name in SPLITS},
    }
    write_text_atomic(out / "split.json", json.dumps(split_doc, indent=2) + "\n")
    report = {
        "stage": 1,
        "version": STAGE_VERSION,
        "inputs_sha256": inputs,
        "questions": len(seeds),
        "config": asdict(config),
        "split": {name: len(split_doc[name]) for name in SPLITS},
        "correct": correct_report,
        "faults": fault_reports,
        "pairs": {
            "total": len(rows),
            "by_origin": dict(Counter(r["meta"]["origin"] for r in rows)),
            "by_type": dict(Counter(r["fault_type"] for r in rows)),
            "by_split": {name: sum(r["meta"]["split"] == name for r in rows) for name in SPLITS},
            "questions_with_pairs": len({r["question_id"] for r in rows}),
        },
        "correct_by_split": {
            name: sum(r["split"] == name for r in correct_rows) for name in SPLITS
        },
        "teacher": stage_counts(teacher.counts(), "stage1."),
        "sandbox": {"runs": verifier.runs, "cached": verifier.cached},
        "wall_s": round(time.perf_counter() - start, 3),
    }
    text = json.dumps(report, indent=2) + "\n"
    write_text_atomic(out / "report.json", text)
    log(f"stage 1: {len(rows)} pairs -> {out / 'pairs.jsonl'}")
    return json.loads(text)  # as a rerun reads it back (lists, not tuples)


def _correct(
    seeds: Sequence[CodegenRecord],
    teacher: TeacherCalls,
    template: PromptTemplate,
    verifier: Verifier,
) -> tuple[dict[str, str], dict[str, Any]]:
    """Verified correct solutions by question id, and the correct-side report."""
    answers = teacher.ask(
        [render_correct(template, question_text(r)) for r in seeds], stage="stage1.correct"
    )
    solutions = [solution_from_answer(a, r) for a, r in zip(answers, seeds, strict=True)]
    outcomes = verifier.outcomes(list(zip(seeds, solutions, strict=True)))
    correct = {r.id: s for r, s, o in zip(seeds, solutions, outcomes, strict=True) if o == "passed"}
    observed = Counter(outcomes)
    report = {
        "asked": len(seeds),
        "verified": len(correct),
        "share": len(correct) / len(seeds),
        "failed_by_outcome": {o: observed[o] for o in (*verify.OUTCOMES, NO_CODE) if o != "passed"},
    }
    return correct, report


def _faulty(
    seeds: Sequence[CodegenRecord],
    correct: dict[str, str],
    teacher: TeacherCalls,
    template: PromptTemplate,
    verifier: Verifier,
    config: Stage1Config,
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Verified faulty solutions as pair rows, and per-origin, per-type counts."""
    solved = [r for r in seeds if r.id in correct]
    # (record, faulty solution, intended type, origin, operator)
    items: list[tuple[CodegenRecord, str, str, str, str | None]] = []
    asked = [(r, t) for r in solved for t in config.teacher_fault_types]
    if asked:
        prompts = [render_faulty(template, question_text(r), (t,)) for r, t in asked]
        answers = teacher.ask(prompts, stage="stage1.faulty")
        for (r, t), answer in zip(asked, answers, strict=True):
            items.append((r, solution_from_answer(answer, r), t, "teacher", None))
    unparsable = other_language = 0
    if config.injected_per_type > 0 and config.injected_fault_types:
        for r in solved:
            if r.language != "python":  # the operators edit Python syntax trees
                other_language += 1
                continue
            try:
                found = fault_injection.sample_faults(
                    correct[r.id],
                    seed=config.seed,
                    per_type=config.injected_per_type,
                    fault_types=config.injected_fault_types,
                )
            except ValueError:  # a body continuing a HumanEval-style prompt does not parse
                unparsable += 1
                continue
            items += [(r, f.source, f.fault_type, "injected", f.operator) for f in found]
    outcomes = verifier.outcomes([(r, s) for r, s, *_ in items])
    tallies = {o: {t: Counter() for t in FAULT_TYPES} for o in ORIGINS}
    rows = []
    for (r, source, intended, origin, operator), observed in zip(items, outcomes, strict=True):
        tally = tallies[origin][intended]
        tally["generated"] += 1
        tally[f"observed:{observed}"] += 1
        if observed != intended:
            continue
        tally["verified"] += 1
        # The pairs file's schema is the contrastive stage's (training/preference.py): the
        # whole record as the prompt, so it renders as supervised training renders it.
        rows.append(
            {
                "question_id": r.id,
                "prompt": r.to_dict(),
                "correct": correct[r.id],
                "faulty": source,
                "fault_type": intended,
                "meta": {"origin": origin, "observed": observed, "operator": operator},
            }
        )
    report = {origin: _tally_report(tallies[origin]) for origin in ORIGINS}
    report["injection_unparsable"] = unparsable
    report["injection_other_language"] = other_language
    return rows, report


def _tally_report(by_type: dict[str, Counter]) -> dict[str, dict[str, Any]]:
    out = {}
    for fault_type, c in by_type.items():
        generated, verified = c["generated"], c["verified"]
        out[fault_type] = {
            "generated": generated,
            "verified": verified,
            "share": verified / generated if generated else None,
            "observed": {
                k.split(":", 1)[1]: v for k, v in sorted(c.items()) if k.startswith("observed:")
            },
        }
    return out
