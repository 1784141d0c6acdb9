"""SODA Stage II with a scripted student and judge and the real sandbox (short limits)."""

from __future__ import annotations

import json

import pytest

from codistill.soda.stage2 import Stage2Config, Stage2Error, read_feedback, run_stage2
from codistill.soda.teacher import TeacherCalls
from tests.soda.fault_questions import (
    COUNT_BETWEEN,
    DESCRIBE,
    DESCRIBE_SOLUTION,
    DIGIT_SUM,
    MAX_GAP,
    MAX_GAP_SOLUTION,
    PALINDROME,
    PALINDROME_SOLUTION,
    SUM_TO,
    SUM_TO_SOLUTION,
)
from tests.soda.test_teacher import ScriptedBackend

FENCE = "```"
QUESTIONS = [SUM_TO, DIGIT_SUM, MAX_GAP, PALINDROME, COUNT_BETWEEN, DESCRIBE]
# The student's code per entry point; None: a refusal without code.
STUDENT = {
    "sum_to": SUM_TO_SOLUTION,  # passes
    "digit_sum": "def digit_sum(n):\n    return n % 10\n",  # logic fail
    "max_gap": MAX_GAP_SOLUTION,  # passes
    "is_palindrome": "import no_such_module_xyz\n" + PALINDROME_SOLUTION,  # environment
    "count_between": None,  # no code
    "describe": DESCRIBE_SOLUTION,  # passes
}
# The judge's first answer and its answer to the retry, per entry point.
JUDGE = {
    "sum_to": ("Code Analysis: fine.\nScore: 5", None),
    "digit_sum": ("Code Analysis: wrong.\n**Score:** 1/6", None),
    "max_gap": ("Code Analysis: works, no comments.\nFinal score = 3 out of 6", None),
    "is_palindrome": ("It looks fine to me.", "Score: 4"),  # retried, then scored
    "describe": ("Good code.", "I would say quite good."),  # retried, still unscored
    "count_between": ("Score: 6", None),  # never asked: there is no code to judge
}
CONFIG = Stage2Config(timeout_s=1.5)


def _entry(text: str) -> str:
    return next(e for e in STUDENT if f"{e}(" in text)


def student_script(text: str) -> str:
    code = STUDENT[_entry(text)]
    if code is None:
        return "I cannot help with that."
    return f"Sure.\n{FENCE}python\n{code}\nprint('example')\n{FENCE}\n"


def judge_script(text: str) -> str:
    first, retry = JUDGE[_entry(text)]
    return retry if "Your answer must end" in text and retry is not None else first


def _calls(path, backend) -> TeacherCalls:
    return TeacherCalls({"name": path.name}, path, backend=backend)


def _run(tmp_path, config=CONFIG, *, judge=True, out="s2"):
    student = ScriptedBackend(student_script)
    judge_backend = ScriptedBackend(judge_script)
    judge_calls = _calls(tmp_path / "judge.jsonl", judge_backend) if judge else None
    report = run_stage2(
        QUESTIONS,
        _calls(tmp_path / "student.jsonl", student),
        judge_calls,
        tmp_path / out,
        config,
        log=lambda _: None,
    )
    return report, student, judge_backend


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("stage2")
    report, student, judge = _run(tmp_path)
    return tmp_path, report, student, judge


def _rows(path):
    return {r["question_id"]: r for r in read_feedback(path)}


def test_execution_verdicts_and_pass_at_1(first_run):
    tmp_path, report, student, _ = first_run
    rows = _rows(tmp_path / "s2" / "feedback.jsonl")
    assert [(rows[q.id]["outcome"], rows[q.id]["passed"]) for q in QUESTIONS] == [
        ("passed", True),
        ("logic", False),
        ("passed", True),
        ("environment", None),  # kept apart: neither pass nor fail
        ("no_code", False),
        ("passed", True),
    ]
    assert report["pass_at_1"] == 3 / 6 and report["passed"] == 3
    assert report["pass_at_1_without_environment"] == 3 / 5
    assert report["outcomes"]["environment"] == 1 and report["outcomes"]["no_code"] == 1
    assert sum(report["outcomes"].values()) == 6
    assert "print(" not in rows[SUM_TO.id]["solution"]
    assert len(student.prompts) == 6 and report["student"]["stages"]["stage2.student"]["calls"] == 6
    assert report["sandbox"]["runs"] == 5  # the answer without code is not run


def test_judge_retries_once_and_counts_unscored(first_run):
    tmp_path, report, _, judge = first_run
    rows = _rows(tmp_path / "s2" / "feedback.jsonl")
    assert [rows[q.id]["score"] for q in QUESTIONS] == [5, 1, 3, 4, 0, None]
    j = report["judge"]
    assert (j["scored"], j["retried"], j["unscored"], j["calls"]) == (4, 2, 1, 7)
    assert j["no_code"] == 1  # scored 0 without asking
    assert len(judge.prompts) == 7 and not any("count_between(" in p for p in judge.prompts)
    assert report["judge_calls"]["stages"]["stage2.judge"]["calls"] == 7
    # Agreement over judged items with a Pass/Fail: sum_to both pass, digit_sum both fail,
    # max_gap passes but scores 3 < 4; describe is unscored, is_palindrome has no verdict.
    agreement = j["agreement"]
    assert (agreement["both_pass"], agreement["both_fail"], agreement["execution_only"]) == (
        1,
        1,
        1,
    )
    assert agreement["unscored"] == 1 and agreement["compared"] == 3
    assert agreement["rate"] == pytest.approx(2 / 3)


def test_levels_with_unclassified_reasons(first_run):
    tmp_path, report, _, _ = first_run
    rows = _rows(tmp_path / "s2" / "feedback.jsonl")
    levels = {q.id: (rows[q.id]["level"], rows[q.id]["reason"]) for q in QUESTIONS}
    assert levels == {
        SUM_TO.id: ("easy", None),
        DIGIT_SUM.id: ("hard", None),
        MAX_GAP.id: ("medium", None),
        PALINDROME.id: ("unclassified", "no execution result"),
        COUNT_BETWEEN.id: ("hard", None),
        DESCRIBE.id: ("unclassified", "unscored"),
    }
    counts = report["levels"]
    assert (counts["easy"], counts["medium"], counts["hard"], counts["unclassified"]) == (
        1,
        1,
        2,
        2,
    )
    assert counts["total"] == 6
    assert {u["question_id"] for u in report["unclassified"]} == {PALINDROME.id, DESCRIBE.id}
    row = next(iter(rows.values()))
    assert set(row) == {"question_id", "solution", "outcome", "passed", "score", "level", "reason"}


def test_without_scoring_pass_is_easy_and_fail_is_hard(tmp_path):
    config = Stage2Config(use_judge=False, timeout_s=1.5)
    report, _, judge = _run(tmp_path, config, judge=False)
    rows = _rows(tmp_path / "s2" / "feedback.jsonl")
    assert {q: r["level"] for q, r in rows.items()} == {
        SUM_TO.id: "easy",
        DIGIT_SUM.id: "hard",
        MAX_GAP.id: "easy",
        PALINDROME.id: "unclassified",
        COUNT_BETWEEN.id: "hard",
        DESCRIBE.id: "easy",
    }
    assert all(r["score"] is None for r in rows.values())
    assert report["judge"] == {"used": False} and report["judge_calls"] is None
    assert judge.prompts == [] and "w/o scoring" in report["level_rule"]


def test_without_execution_the_score_sets_the_level(tmp_path):
    config = Stage2Config(use_execution=False, timeout_s=1.5)
    report, _, _ = _run(tmp_path, config)
    rows = _rows(tmp_path / "s2" / "feedback.jsonl")
    assert {q: r["level"] for q, r in rows.items()} == {
        SUM_TO.id: "easy",  # 5
        DIGIT_SUM.id: "hard",  # 1
        MAX_GAP.id: "medium",  # 3
        PALINDROME.id: "easy",  # 4 after the retry; its environment error is never seen
        COUNT_BETWEEN.id: "hard",  # no code: 0
        DESCRIBE.id: "unclassified",  # unscored
    }
    assert rows[DESCRIBE.id]["reason"] == "unscored"
    assert all(r["outcome"] is None and r["passed"] is None for r in rows.values())
    assert report["pass_at_1"] is None and report["outcomes"] is None
    assert report["sandbox"] == {"runs": 0, "cached": 0}
    assert not (tmp_path / "s2" / "verify_cache.jsonl").exists()
    assert report["judge"]["agreement"] is None


def test_a_missing_view_or_judge_is_refused(tmp_path):
    with pytest.raises(Stage2Error, match="both false"):
        Stage2Config(use_execution=False, use_judge=False).check()
    with pytest.raises(Stage2Error, match="needs a judge"):
        _run(tmp_path, CONFIG, judge=False)
    with pytest.raises(Stage2Error, match="appears twice"):
        run_stage2([SUM_TO, SUM_TO], None, None, tmp_path, Stage2Config(use_judge=False))


def test_rerun_calls_nothing_and_runs_nothing(first_run):
    tmp_path, report, _, _ = first_run
    out = tmp_path / "s2"
    feedback = (out / "feedback.jsonl").read_bytes()
    again, student, judge = _run(tmp_path)
    assert student.prompts == [] and judge.prompts == []
    assert again == report and (out / "feedback.jsonl").read_bytes() == feedback
    # Interrupted before the report: the caches carry the work.
    saved = (out / "report.json").read_text()
    (out / "report.json").unlink()
    try:
        resumed, student, judge = _run(tmp_path)
    finally:
        (out / "report.json").write_text(saved)
    assert student.prompts == [] and judge.prompts == []
    assert resumed["sandbox"] == {"runs": 0, "cached": 5}
    assert resumed["judge"]["calls"] == 0 and resumed["judge"]["cache_hits"] == 7
    assert resumed["levels"] == report["levels"]
    assert (out / "feedback.jsonl").read_bytes() == feedback
    # Other inputs are not served the old report.
    other, _, _ = _run(tmp_path, Stage2Config(timeout_s=1.0))
    assert other["inputs_sha256"] != report["inputs_sha256"]
    assert json.loads((out / "report.json").read_text())["inputs_sha256"] == other["inputs_sha256"]
