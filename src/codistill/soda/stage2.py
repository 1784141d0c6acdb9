"""SODA Stage II, multi-view feedback: the student answers each question, execution and a judge
assess its solution, and each question gets a difficulty level.

For each question (an MBPP-style :class:`codistill.data.schema.CodegenRecord` with tests):

1. **student**: the student answers P_c (:func:`codistill.soda.prompts.render_correct`), the
   paper's y_s ~ S(P_c(x)), one answer per question (greedy unless the caller's ``Decoding``
   samples); the code is read with :func:`codistill.soda.stage1.solution_from_answer`.
2. **execution** (Sec. 3.3.2): the solution runs against the question's tests in the sandbox
   (:mod:`codistill.soda.verify`): ``passed`` is Pass, every fault outcome and ``no_code`` (an
   answer with no solution in it, not run) is Fail, and ``environment`` (a module the sandbox
   lacks) is kept apart with ``passed = None``, as the paper sets environment issues aside.
3. **scoring** (Sec. 3.3.1): the judge (:func:`codistill.soda.judge.judge_solutions`, stage
   ``stage2.judge``) scores each solution with the six-point rubric; a malformed judgement is
   retried once, then left unscored (never guessed). An answer with no code is not sent to the
   judge: it scores 0, the rubric's floor (there is nothing to assess), and is counted apart
   (``judge.no_code``) and left out of the judge–execution agreement.
4. **levels** (Sec. 3.4): :func:`codistill.soda.difficulty.classify_all`: easy (pass, score >= 4),
   medium (pass, 2 <= score < 4), hard (fail, score < 2); the rest unclassified with a reason.

The paper's ablations drop one view. The paper does not say how levels are formed then; our
choices, used only in these two cases:

* without scoring (``use_judge=False``): a passing solution is easy, a failing one hard (no
  medium level); no execution result (environment) is unclassified;
* without execution (``use_execution=False``): score >= 4 is easy, 2 <= score < 4 medium,
  score < 2 hard; an unscored solution is unclassified.

Files in the stage directory, each written atomically: ``feedback.jsonl`` (one row per question:
``question_id, solution, outcome, passed, score, level, reason``) and ``report.json`` (written
last: it marks the stage complete and holds the sha256 of its inputs), plus two append-only
caches: ``verify_cache.jsonl`` (sandbox outcomes) and ``judge_cache.jsonl`` (judge answers keyed
by :func:`codistill.soda.judge.judge_key`: judge, template, question, solution, attempt). A rerun
with the same inputs returns the finished report and asks and runs nothing; an interrupted run
resumes from the caches (the student's and judge's :class:`TeacherCalls` caches included).
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from codistill.data.jsonl import write_text_atomic
from codistill.data.schema import CodegenRecord
from codistill.soda import verify
from codistill.soda.difficulty import (
    LEVELS,
    REASON_NO_EXECUTION,
    REASON_UNSCORED,
    Levels,
    classify_all,
)
from codistill.soda.judge import agreement, judge_solutions
from codistill.soda.prompts import (
    PromptTemplate,
    load_template,
    question_text,
    render_correct,
    templates_sha256,
)
from codistill.soda.stage1 import NO_CODE, Verifier, solution_from_answer
from codistill.soda.stagefiles import check_questions, finished_report, stage_counts, write_jsonl
from codistill.soda.teacher import AnswerStore, TeacherCalls, content_key

STAGE_VERSION = 1  # bump when what this module computes changes, so old reports are not reused
NO_CODE_SCORE = 0  # an answer without code: the rubric's floor, without asking the judge
FEEDBACK_FIELDS = ("question_id", "solution", "outcome", "passed", "score", "level", "reason")


class Stage2Error(ValueError):
    """Questions or settings Stage II cannot use; one-line message naming the field."""


@dataclass(frozen=True)
class Stage2Config:
    """Stage II settings.

    Attributes:
        use_execution: run the student's solutions (False: the ablation "w/o execution").
        use_judge: score them with the judge (False: the ablation "w/o scoring").
        timeout_s: the sandbox's wall-clock limit per program.
        workers: sandbox programs run at once.
    """

    use_execution: bool = True
    use_judge: bool = True
    timeout_s: float = 5.0
    workers: int = 2

    def check(self) -> Stage2Config:
        """Returns self; raises :class:`Stage2Error` naming the first bad field."""
        if not (self.use_execution or self.use_judge):
            raise Stage2Error(
                "use_execution and use_judge are both false: no view is left to assess the "
                "student's solutions"
            )
        if self.timeout_s <= 0:
            raise Stage2Error(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.workers < 1:
            raise Stage2Error(f"workers must be >= 1, got {self.workers}")
        return self


class JudgeCache(MutableMapping[str, str]):
    """Judge answers by :func:`codistill.soda.judge.judge_key`, in an append-only JSONL file
    (:class:`codistill.soda.teacher.AnswerStore`), as :func:`judge_solutions` takes a cache."""

    def __init__(self, path: str | os.PathLike[str]):
        self.store = AnswerStore(path)

    def __getitem__(self, key: str) -> str:
        return self.store[key]["answer"]

    def __setitem__(self, key: str, answer: str) -> None:
        self.store.append([{"key": key, "answer": answer}])

    def __delitem__(self, key: str) -> None:
        raise TypeError("the judge cache is append-only")

    def __contains__(self, key: object) -> bool:
        return key in self.store.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.store.entries)

    def __len__(self) -> int:
        return len(self.store.entries)


def stage2_inputs_sha256(
    questions: Sequence[CodegenRecord],
    student: TeacherCalls,
    judge: TeacherCalls | None,
    config: Stage2Config,
    templates: dict[str, PromptTemplate],
) -> str:
    """sha256 over everything Stage II's output depends on."""
    return content_key(
        STAGE_VERSION,
        [r.to_dict() for r in questions],
        student.teacher_key,
        judge.teacher_key if judge is not None and config.use_judge else None,
        asdict(config),
        templates_sha256(templates),
    )


def run_stage2(
    questions: Sequence[CodegenRecord],
    student: TeacherCalls,
    judge: TeacherCalls | None,
    out_dir: str | os.PathLike[str],
    config: Stage2Config | None = None,
    template_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
) -> dict[str, Any]:
    """Builds (or finds) Stage II's feedback in ``out_dir``; returns its report.

    Args:
        questions: the questions, each with tests and a unique id.
        student: the student's calls (:func:`codistill.soda.teacher.open_teacher` opens a
            student directory too).
        judge: the judge's calls (the teacher by default); may be None only with
            ``use_judge=False``.
        out_dir: the stage directory.
        config: settings (default :class:`Stage2Config`).
        template_dir: a folder of user templates overriding ``correct.txt`` / ``judge.txt``.
        log: progress lines.

    Returns:
        The ``report.json`` dict.

    Raises:
        Stage2Error: no questions, a question without tests, duplicate ids, or
            ``use_judge=True`` without a judge.
    """
    config = (config or Stage2Config()).check()
    check_questions(questions, Stage2Error, "stage 2")
    if config.use_judge and judge is None:
        raise Stage2Error("use_judge=True needs a judge (pass the teacher, or use_judge=False)")
    out = Path(out_dir)
    names = ("correct", "judge") if config.use_judge else ("correct",)
    templates = {n: load_template(n, template_dir) for n in names}
    inputs = stage2_inputs_sha256(questions, student, judge, config, templates)
    done = finished_report(out, inputs, ("feedback.jsonl",))
    if done is not None:
        log(f"stage 2: up to date in {out} (pass@1 {done['pass_at_1']})")
        return done
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    answers = student.ask(
        [render_correct(templates["correct"], question_text(r)) for r in questions],
        stage="stage2.student",
    )
    solutions = [solution_from_answer(a, r) for a, r in zip(answers, questions, strict=True)]
    has_code = [bool(s.strip()) for s in solutions]
    outcomes: list[str | None] = [None] * len(questions)
    sandbox = {"runs": 0, "cached": 0}
    if config.use_execution:
        verifier = Verifier(out / "verify_cache.jsonl", config)
        try:
            outcomes = list(verifier.outcomes(list(zip(questions, solutions, strict=True))))
        finally:
            verifier.close()
        sandbox = {"runs": verifier.runs, "cached": verifier.cached}
    passed = [_passed(o) for o in outcomes]
    scores: list[int | None] = [None] * len(questions)
    judge_report: dict[str, Any] = {"used": False}
    if config.use_judge:
        scores, judge_report = _score(
            questions, solutions, has_code, judge, templates["judge"], out
        )
        judge_report["agreement"] = _agreement(scores, passed, has_code, config)
    levels = _levels([r.id for r in questions], passed, scores, config)
    level_of = {q: (lv, None) for lv, ids in levels.by_level.items() for q in ids}
    level_of.update({q: ("unclassified", why) for q, why in levels.unclassified})
    rows = [
        {
            "question_id": r.id,
            "solution": s,
            "outcome": o,
            "passed": p,
            "score": sc,
            "level": level_of[r.id][0],
            "reason": level_of[r.id][1],
        }
        for r, s, o, p, sc in zip(questions, solutions, outcomes, passed, scores, strict=True)
    ]
    write_jsonl(out / "feedback.jsonl", rows)
    n_passed = sum(p is True for p in passed)
    environment = sum(o == "environment" for o in outcomes)
    observed = Counter(o for o in outcomes if o is not None)
    report = {
        "stage": 2,
        "version": STAGE_VERSION,
        "inputs_sha256": inputs,
        "questions": len(questions),
        "config": asdict(config),
        # Greedy, one sample: pass@1 is the share that passed; an environment error is no pass.
        "pass_at_1": n_passed / len(questions) if config.use_execution else None,
        "pass_at_1_without_environment": (
            n_passed / (len(questions) - environment)
            if config.use_execution and len(questions) > environment
            else None
        ),
        "passed": n_passed if config.use_execution else None,
        "outcomes": (
            {o: observed[o] for o in (*verify.OUTCOMES, NO_CODE)} if config.use_execution else None
        ),
        "judge": judge_report,
        "levels": levels.counts(),
        "level_rule": _level_rule(config),
        "unclassified": [{"question_id": q, "reason": why} for q, why in levels.unclassified],
        "student": stage_counts(student.counts(), "stage2."),
        "judge_calls": stage_counts(judge.counts(), "stage2.") if config.use_judge else None,
        "sandbox": sandbox,
        "wall_s": round(time.perf_counter() - start, 3),
    }
    text = json.dumps(report, indent=2) + "\n"
    write_text_atomic(out / "report.json", text)
    counts = levels.counts()
    log(
        f"stage 2: pass@1 {report['pass_at_1']}; "
        + ", ".join(f"{k} {counts[k]}" for k in (*LEVELS, "unclassified"))
    )
    return json.loads(text)  # as a rerun reads it back


def read_feedback(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """The rows of a ``feedback.jsonl`` (what :func:`codistill.soda.stage3.run_stage3` takes).

    Raises:
        Stage2Error: a line that is not JSON or lacks a field, as ``FILE:LINE: ...``.
    """
    rows = []
    with open(path, encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise Stage2Error(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            missing = [f for f in FEEDBACK_FIELDS if not isinstance(row, dict) or f not in row]
            if missing:
                raise Stage2Error(f"{path}:{lineno}: feedback row without field {missing[0]!r}")
            rows.append(row)
    return rows


def _passed(outcome: str | None) -> bool | None:
    """Pass / Fail of an outcome; None when there is none or it is an environment error."""
    if outcome is None or outcome == "environment":
        return None
    return outcome == "passed"


def _score(
    questions: Sequence[CodegenRecord],
    solutions: Sequence[str],
    has_code: Sequence[bool],
    judge: TeacherCalls,
    template: PromptTemplate,
    out: Path,
) -> tuple[list[int | None], dict[str, Any]]:
    """Judge scores per question (no code: :data:`NO_CODE_SCORE`), and the judge's report."""
    asked = [i for i, ok in enumerate(has_code) if ok]
    result = judge_solutions(
        [(question_text(questions[i]), solutions[i]) for i in asked],
        judge.asker("stage2.judge"),
        JudgeCache(out / "judge_cache.jsonl"),
        template,
        judge.teacher_key,
    )
    scores: list[int | None] = [NO_CODE_SCORE] * len(questions)
    for i, score in zip(asked, result.scores, strict=True):
        scores[i] = score
    histogram = Counter(s for i, s in enumerate(scores) if has_code[i] and s is not None)
    report = {
        "used": True,
        **result.counts(),
        "no_code": len(questions) - len(asked),
        "scores": {str(s): histogram[s] for s in sorted(histogram)},
    }
    return scores, report


def _agreement(
    scores: Sequence[int | None],
    passed: Sequence[bool | None],
    has_code: Sequence[bool],
    config: Stage2Config,
) -> dict[str, Any] | None:
    """Judge–execution agreement over the judged items with a Pass/Fail result."""
    if not config.use_execution:
        return None
    both = [i for i, p in enumerate(passed) if p is not None and has_code[i]]
    found = agreement([scores[i] for i in both], [bool(passed[i]) for i in both])
    return found.as_dict()


def _levels(
    ids: Sequence[str],
    passed: Sequence[bool | None],
    scores: Sequence[int | None],
    config: Stage2Config,
) -> Levels:
    """The paper's levels, or this module's documented fallbacks when a view is off."""
    if config.use_execution and config.use_judge:
        return classify_all(ids, passed, scores)
    levels = Levels(by_level={level: [] for level in LEVELS}, unclassified=[])
    for qid, ok, score in zip(ids, passed, scores, strict=True):
        if config.use_execution:  # without scoring: pass is easy, fail is hard
            if ok is None:
                levels.unclassified.append((qid, REASON_NO_EXECUTION))
            else:
                levels.by_level["easy" if ok else "hard"].append(qid)
        elif score is None:  # without execution: the score alone
            levels.unclassified.append((qid, REASON_UNSCORED))
        else:
            level = "easy" if score >= 4 else "medium" if score >= 2 else "hard"
            levels.by_level[level].append(qid)
    return levels


def _level_rule(config: Stage2Config) -> str:
    if config.use_execution and config.use_judge:
        return "paper: easy pass & score>=4, medium pass & 2<=score<4, hard fail & score<2"
    if config.use_execution:
        return "w/o scoring (our choice): easy pass, hard fail"
    return "w/o execution (our choice): easy score>=4, medium 2<=score<4, hard score<2"
