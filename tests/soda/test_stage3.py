"""SODA Stage III with a scripted teacher and the real sandbox (short limits)."""

from __future__ import annotations

import json

import pytest

from codistill.data.benchmarks import mbpp_prompt
from codistill.data.decontam import jaccard, shingles
from codistill.data.schema import CodegenRecord
from codistill.soda.stage3 import (
    Stage3Config,
    Stage3Error,
    entry_point_of,
    read_questions,
    run_stage3,
)
from codistill.soda.teacher import TeacherCalls
from tests.soda.fault_questions import (
    COUNT_BETWEEN,
    DESCRIBE,
    DIGIT_SUM,
    MAX_GAP,
    PALINDROME,
    SUM_TO,
)
from tests.soda.test_teacher import ScriptedBackend

FENCE = "```"
QUESTIONS = [SUM_TO, DIGIT_SUM, MAX_GAP, PALINDROME, COUNT_BETWEEN, DESCRIBE]
LEVEL = {
    SUM_TO.id: "easy",
    MAX_GAP.id: "medium",
    DIGIT_SUM.id: "hard",
    PALINDROME.id: "hard",
    COUNT_BETWEEN.id: "unclassified",
    DESCRIBE.id: "unclassified",
}
FEEDBACK = [{"question_id": q.id, "level": LEVEL[q.id]} for q in QUESTIONS]

BELL = "Write a function to find the n-th Bell number, the ways to partition a set of n items."
BELL_SOLUTION = """\
def bell_number(n):
    bell = [[0 for i in range(n + 1)] for j in range(n + 1)]
    bell[0][0] = 1
    for i in range(1, n + 1):
        bell[i][0] = bell[i - 1][i - 1]
        for j in range(1, i + 1):
            bell[i][j] = bell[i - 1][j - 1] + bell[i][j - 1]
    return bell[n][0]
"""
BENCHMARK = CodegenRecord(
    id="Mbpp/608",
    source="mbpp",
    prompt=mbpp_prompt(BELL, "assert bell_number(2) == 2"),
    entry_point="bell_number",
    tests="assert bell_number(2) == 2\n",
    canonical_solution=BELL_SOLUTION,
)
VOWELS = "Write a function that counts the vowels (a, e, i, o, u) in a lowercase string."
VOWELS_TESTS = "assert count_vowels('hello') == 2\nassert count_vowels('sky') == 0\n"
VOWELS_NEAR = VOWELS.replace("string.", "string of letters.")
DIGITS_NEAR = (
    "Write a function that returns the sum of the decimal digits of a non-negative integer n."
)


def new_question(instruction: str, tests: str) -> str:
    return f"#Created Instruction#\n{instruction}\n#Tests#\n{FENCE}python\n{tests}{FENCE}\n"


# (seed entry point, request number) -> the teacher's new question.
NEW = {
    ("sum_to", 1): new_question(
        "Write a function that returns the sum of the squares of the integers from 1 to n.",
        "assert sum_squares(3) == 14\nassert sum_squares(1) == 1\n",
    ),
    ("sum_to", 2): new_question(
        "Write a function that returns the sum of the cubes of the integers from 1 to n.",
        "assert sum_cubes(2) == 9\nassert sum_cubes(3) == 36\n",
    ),
    ("max_gap", 1): "#Created Instruction#\nSomething without tests.",  # unparsable
    # A copy of an existing question.
    ("max_gap", 2): new_question(
        "Write a function that returns the sum of the decimal digits of a non-negative integer.",
        "assert digit_sum(123) == 6\n",
    ),
    ("digit_sum", 1): new_question(DIGITS_NEAR, "assert digit_sum(123) == 6\n"),  # near existing
    ("digit_sum", 2): new_question(BELL, "assert bell_number(2) == 2\n"),  # a benchmark's
    ("is_palindrome", 1): new_question(VOWELS, VOWELS_TESTS),
    ("is_palindrome", 2): new_question(VOWELS_NEAR, VOWELS_TESTS),  # near the one before
}
# The teacher's solution per new entry point; sum_cubes is wrong.
SOLUTIONS = {
    "sum_squares": "def sum_squares(n):\n    return sum(i * i for i in range(1, n + 1))\n",
    "sum_cubes": "def sum_cubes(n):\n    return sum(i * i for i in range(1, n + 1))\n",
    "count_vowels": "def count_vowels(s):\n    return sum(c in 'aeiou' for c in s)\n",
    "set_partitions": BELL_SOLUTION + "\n\ndef set_partitions(n):\n    return bell_number(n)\n",
}


def script(text: str) -> str:
    if "Write a correct and complete solution" in text:
        entry = next(e for e in SOLUTIONS if f"{e}(" in text)
        return f"{FENCE}python\n{SOLUTIONS[entry]}{FENCE}\n"
    seed = next(e for e in ("sum_to", "max_gap", "digit_sum", "is_palindrome") if f"{e}(" in text)
    return NEW[(seed, 2 if "request 2" in text else 1)]


CONFIG = Stage3Config(n_new=8, seed=1, timeout_s=1.5)


def _teacher(path, backend) -> TeacherCalls:
    return TeacherCalls({"name": "scripted"}, path, backend=backend)


def _run(tmp_path, config=CONFIG, feedback=FEEDBACK, out="s3", script_fn=script, **kwargs):
    backend = ScriptedBackend(script_fn)
    report = run_stage3(
        feedback,
        QUESTIONS,
        _teacher(tmp_path / "teacher.jsonl", backend),
        tmp_path / out,
        config,
        benchmarks=[BENCHMARK],
        log=lambda _: None,
        id_prefix="soda/c1",
        **kwargs,
    )
    return report, backend


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    tmp_path = tmp_path_factory.mktemp("stage3")
    report, backend = _run(tmp_path)
    return tmp_path, report, backend


def test_the_fixtures_are_what_they_claim():
    near = jaccard(
        shingles(mbpp_prompt(DIGITS_NEAR, "assert digit_sum(123) == 6")), shingles(DIGIT_SUM.prompt)
    )
    assert 0.7 <= near < 1
    vowels = [
        shingles(mbpp_prompt(v, "assert count_vowels('hello') == 2")) for v in (VOWELS, VOWELS_NEAR)
    ]
    assert 0.7 <= jaccard(*vowels) < 1


def test_ratio_respected_and_each_candidate_rejected_for_its_reason(first_run):
    tmp_path, report, _ = first_run
    assert report["allocation"]["quotas"] == {"easy": 2, "medium": 2, "hard": 4}
    assert {g: v["asked"] for g, v in report["by_level"].items()} == {
        "easy": 2,
        "medium": 2,
        "hard": 4,
    }
    assert report["asked"] == 8 and report["kept"] == 2
    assert report["rejected"] == {
        "unparsable": 1,
        "exact_duplicate": 1,
        "near_duplicate": 2,
        "contaminated": 1,
        "solution_failed": 1,
    }
    assert report["by_level"]["easy"]["rejected"]["solution_failed"] == 1
    assert report["by_level"]["medium"]["rejected"]["unparsable"] == 1
    assert report["by_level"]["hard"]["kept"] == 1
    why = {(r["seed"], r["reason"]): r for r in report["rejections"]}
    assert why[(SUM_TO.id, "solution_failed")]["outcome"] == "logic"
    assert why[(MAX_GAP.id, "exact_duplicate")]["detail"] == f"of {DIGIT_SUM.id}"
    assert why[(DIGIT_SUM.id, "near_duplicate")]["detail"] == f"of {DIGIT_SUM.id}"
    assert "Mbpp/608" in why[(DIGIT_SUM.id, "contaminated")]["detail"]
    assert why[(PALINDROME.id, "near_duplicate")]["detail"].startswith("of new question soda/c1/")
    assert report["decontamination"]["benchmark_items"] == {"mbpp": 2}


def test_kept_questions_are_mbpp_records_with_verified_solutions(first_run):
    tmp_path, report, _ = first_run
    kept = read_questions(tmp_path / "s3" / "questions.jsonl")
    assert {r.entry_point for r in kept} == {"sum_squares", "count_vowels"}
    for record in kept:
        assert record.id.startswith("soda/c1/") and record.source.startswith("mbpp")
        assert record.prompt.startswith('"""\n') and record.extra["test_list"]
        assert record.tests == "\n".join(record.extra["test_list"]) + "\n"
        assert record.canonical_solution and f"def {record.entry_point}" in (
            record.canonical_solution
        )
    by_entry = {r.entry_point: r for r in kept}
    assert by_entry["sum_squares"].extra["soda"] == {"level": "easy", "seed": SUM_TO.id}
    assert by_entry["count_vowels"].extra["soda"] == {"level": "hard", "seed": PALINDROME.id}


def test_solutions_asked_only_for_candidates_not_lost_already(first_run):
    _, report, backend = first_run
    stages = report["teacher"]["stages"]
    assert stages["stage3.new_question"]["calls"] == 8
    # sum_squares, sum_cubes and both vowel questions; not the unparsable one, the duplicates
    # of existing questions or the contaminated one.
    assert stages["stage3.solution"]["calls"] == 4
    repeats = [p for p in backend.prompts if "request 2" in p]
    assert len(repeats) == 4  # each level drew each of its seeds twice
    assert report["sandbox"]["runs"] == 4


def test_a_solution_copied_from_a_benchmark_is_contaminated(tmp_path):
    partitions = "Write a function that counts how many ways n items split into non-empty groups."
    answer = new_question(
        partitions, "assert set_partitions(2) == 2\nassert set_partitions(3) == 5\n"
    )
    config = Stage3Config(n_new=1, ratio=(0, 0, 1), timeout_s=1.5)
    report, _ = _run(
        tmp_path, config, script_fn=lambda t: script(t) if "correct and complete" in t else answer
    )
    assert report["rejected"]["contaminated"] == 1 and report["kept"] == 0
    rejection = report["rejections"][0]
    assert rejection["detail"].startswith("solution close to mbpp Mbpp/608")
    assert report["sandbox"]["runs"] == 1  # it passed its tests first
    # Without decontamination it is kept.
    report, _ = _run(
        tmp_path,
        Stage3Config(**{**vars(config), "decontaminate": False}),
        out="s3b",
        script_fn=lambda t: script(t) if "correct and complete" in t else answer,
    )
    assert report["kept"] == 1 and report["decontamination"]["benchmark_items"] == {}


def test_other_ratios_and_uniform_sampling(tmp_path):
    unparsable = lambda _text: "no idea"  # noqa: E731 - nothing reaches the sandbox
    report, _ = _run(tmp_path, Stage3Config(n_new=4, ratio=(0, 0, 1)), script_fn=unparsable)
    assert report["allocation"]["quotas"] == {"easy": 0, "medium": 0, "hard": 4}
    report, _ = _run(
        tmp_path, Stage3Config(n_new=6, ratio=(1, 1, 1)), out="b", script_fn=unparsable
    )
    assert report["allocation"]["quotas"] == {"easy": 2, "medium": 2, "hard": 2}
    # No medium questions: its share goes to easy and hard, 1:2.
    no_medium = [r for r in FEEDBACK if r["level"] != "medium"]
    report, _ = _run(tmp_path, Stage3Config(n_new=6), no_medium, out="c", script_fn=unparsable)
    assert report["allocation"]["quotas"] == {"easy": 2, "medium": 0, "hard": 4}
    assert report["rejected"]["unparsable"] == 6 and report["sandbox"]["runs"] == 0
    # Without classification: every question (unclassified ones too) is a seed, once each.
    config = Stage3Config(n_new=6, use_difficulty=False)
    report, backend = _run(tmp_path, config, out="d", script_fn=unparsable)
    assert list(report["by_level"]) == ["random"] and report["by_level"]["random"]["asked"] == 6
    seeds = {r["seed"] for r in report["rejections"]}
    assert seeds == {q.id for q in QUESTIONS}
    assert all("same domain, with similar length" in p for p in backend.prompts)


def test_rerun_calls_nothing(first_run):
    tmp_path, report, _ = first_run
    out = tmp_path / "s3"
    kept = (out / "questions.jsonl").read_bytes()
    again, backend = _run(tmp_path)
    assert backend.prompts == [] and again == report
    (out / "report.json").unlink()
    resumed, backend = _run(tmp_path)
    assert backend.prompts == [] and resumed["sandbox"] == {"runs": 0, "cached": 4}
    assert (out / "questions.jsonl").read_bytes() == kept
    assert resumed["rejected"] == report["rejected"]
    # An existing question from an earlier cycle makes a new one a duplicate: other inputs.
    earlier = read_questions(out / "questions.jsonl")[:1]
    other, _ = _run(tmp_path, existing=earlier)
    assert other["inputs_sha256"] != report["inputs_sha256"]
    assert other["kept"] == 1 and other["rejected"]["exact_duplicate"] == 2
    assert json.loads((out / "report.json").read_text())["kept"] == 1


def test_bad_inputs_are_refused(tmp_path):
    with pytest.raises(Stage3Error, match="question_id 'Mbpp/nope'"):
        _run(tmp_path, feedback=[{"question_id": "Mbpp/nope", "level": "easy"}])
    with pytest.raises(Stage3Error, match="level must be one of"):
        _run(tmp_path, feedback=[{"question_id": SUM_TO.id, "level": "trivial"}])
    with pytest.raises(Stage3Error, match="ratio"):
        Stage3Config(ratio=(0, 0, 0)).check()
    with pytest.raises(Stage3Error, match="near_duplicate_jaccard"):
        Stage3Config(near_duplicate_jaccard=0).check()


def test_entry_point_is_the_one_non_builtin_function_called():
    assert entry_point_of("assert f(1) == 2\nassert len(f(2)) == 1\n") == "f"
    assert entry_point_of("from math import isclose\nassert isclose(g(1), 0.5)\n") == "g"
    assert entry_point_of("import math\nassert math.isclose(h(1), 0.5)\n") == "h"
    assert entry_point_of("assert f(1) == g(1)\n") is None
    assert entry_point_of("assert sorted([2, 1]) == [1, 2]\n") is None
