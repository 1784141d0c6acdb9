"""SODA Stage I with a scripted teacher and the real sandbox (short limits)."""

from __future__ import annotations

import json

import pytest

from codistill.soda import verify
from codistill.soda.stage1 import (
    Stage1Config,
    Stage1Error,
    load_seeds,
    run_stage1,
    solution_from_answer,
    split_questions,
)
from codistill.soda.teacher import TeacherCalls
from tests.soda.fault_questions import (
    DIGIT_SUM,
    PALINDROME,
    PALINDROME_SOLUTION,
    SUM_TO,
    SUM_TO_SOLUTION,
)
from tests.soda.test_teacher import ScriptedBackend

FENCE = "```"
WRONG_DIGIT_SUM = "def digit_sum(n):\n    return n % 10\n"  # fails digit_sum(123) == 6
# Teacher "faulty" answers: (entry point, fault kind in the prompt) -> code.
FAULTY = {
    # Asked for a logic error, but the code is right: it passes, so it is dropped.
    ("sum_to", "Logical Error"): "def sum_to(n):\n    return n * (n + 1) // 2\n",
    ("sum_to", "Name Error"): "def sum_to(n):\n    return totl + n\n",
    ("is_palindrome", "Logical Error"): "def is_palindrome(text):\n    return text == text\n",
    # Asked for a name error, but it is a syntax error: the wrong reason, dropped.
    ("is_palindrome", "Name Error"): "def is_palindrome(text)\n    return tex == tex[::-1]\n",
}
CORRECT = {"sum_to": SUM_TO_SOLUTION, "digit_sum": WRONG_DIGIT_SUM, "is_palindrome": None}


def script(text: str) -> str:
    entry = next(e for e in ("sum_to", "digit_sum", "is_palindrome") if f"{e}(" in text)
    if "faulty solution" in text:
        kind = "Logical Error" if "Logical Error" in text else "Name Error"
        return f"Here it is:\n{FENCE}python\n{FAULTY[(entry, kind)]}{FENCE}\n{kind}: hidden"
    code = CORRECT[entry] or PALINDROME_SOLUTION
    # Chat answers often end with example calls: they are not part of the solution.
    return f"Sure.\n{FENCE}python\n{code}\nprint({entry}(3))\n{FENCE}\n"


CONFIG = Stage1Config(
    teacher_fault_types=("logic", "name"),
    injected_fault_types=("syntax", "type"),
    injected_per_type=1,
    seed=3,
    timeout_s=1.5,
)
SEEDS = [SUM_TO, DIGIT_SUM, PALINDROME]


@pytest.fixture
def sandbox_runs(monkeypatch):
    """Counts programs run in the sandbox."""
    runs = []
    real = verify.run_solutions

    def counting(items, **kwargs):
        runs.append(len(items))
        return real(items, **kwargs)

    monkeypatch.setattr(verify, "run_solutions", counting)
    return runs


def _teacher(tmp_path, backend):
    return TeacherCalls({"name": "scripted"}, tmp_path / "teacher_cache.jsonl", backend=backend)


@pytest.fixture
def first_run(tmp_path, sandbox_runs):
    backend = ScriptedBackend(script)
    report = run_stage1(SEEDS, tmp_path / "s1", _teacher(tmp_path, backend), CONFIG, log=_quiet)
    return tmp_path, backend, report, sum(sandbox_runs)


def _quiet(_line: str) -> None:
    pass


def _rows(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_correct_answers_that_pass_are_kept_and_failures_counted(first_run):
    tmp_path, _, report, _ = first_run
    correct = {r["question_id"]: r["solution"] for r in _rows(tmp_path / "s1" / "correct.jsonl")}
    assert set(correct) == {SUM_TO.id, PALINDROME.id}
    assert "print(" not in correct[SUM_TO.id] and "def sum_to" in correct[SUM_TO.id]
    assert report["correct"]["asked"] == 3 and report["correct"]["verified"] == 2
    assert report["correct"]["failed_by_outcome"]["logic"] == 1  # the wrong digit_sum
    assert sum(report["correct"]["failed_by_outcome"].values()) == 1


def test_teacher_faults_kept_only_when_they_fail_for_the_intended_reason(first_run):
    tmp_path, backend, report, _ = first_run
    teacher_pairs = [
        r for r in _rows(tmp_path / "s1" / "pairs.jsonl") if r["meta"]["origin"] == "teacher"
    ]
    kept = {(r["question_id"], r["fault_type"]) for r in teacher_pairs}
    assert kept == {(SUM_TO.id, "name"), (PALINDROME.id, "logic")}
    assert all(r["meta"]["observed"] == r["fault_type"] for r in teacher_pairs)
    faults = report["faults"]["teacher"]
    assert faults["logic"]["generated"] == 2 and faults["logic"]["verified"] == 1
    assert faults["logic"]["observed"] == {"logic": 1, "passed": 1}  # the "faulty" one passed
    assert faults["name"]["observed"] == {"name": 1, "syntax": 1}
    assert faults["syntax"]["generated"] == 0 and faults["syntax"]["share"] is None
    # Faulty solutions are asked only for questions with a verified correct one, one per type.
    faulty_prompts = [p for p in backend.prompts if "faulty solution" in p]
    assert len(faulty_prompts) == 4 and not any("digit_sum(" in p for p in faulty_prompts)
    assert report["teacher"]["stages"]["stage1.faulty"]["calls"] == 4
    assert report["teacher"]["stages"]["stage1.correct"]["calls"] == 3


def test_injected_faults_are_verified_and_paired_with_the_correct_solution(first_run):
    tmp_path, _, report, _ = first_run
    rows = _rows(tmp_path / "s1" / "pairs.jsonl")
    injected = [r for r in rows if r["meta"]["origin"] == "injected"]
    assert injected and all(r["meta"]["observed"] == r["fault_type"] for r in injected)
    assert {r["fault_type"] for r in injected} <= {"syntax", "type"}
    for r in injected:
        assert r["correct"] != r["faulty"] and r["meta"]["operator"]
    counts = report["faults"]["injected"]
    assert counts["syntax"]["generated"] == 2  # one per solved question
    assert counts["syntax"]["verified"] == 2  # a syntax fault always fails to compile
    assert sum(c["verified"] for c in counts.values()) == len(injected)
    assert counts["logic"]["generated"] == 0  # not asked for
    assert report["pairs"]["total"] == len(rows) == len(injected) + 2
    row = rows[0]
    assert set(row) == {"question_id", "prompt", "correct", "faulty", "fault_type", "meta"}
    assert row["meta"]["split"] in ("sft", "contrastive")


def test_the_pairs_file_is_what_the_contrastive_stage_reads(first_run):
    from codistill.training.preference import read_pairs  # lazy: torch

    tmp_path, _, report, _ = first_run
    pairs = read_pairs(tmp_path / "s1" / "pairs.jsonl")
    assert len(pairs) == report["pairs"]["total"]


def test_rerun_calls_nothing_and_runs_nothing(first_run, sandbox_runs):
    tmp_path, _, report, ran = first_run
    assert ran > 0
    out = tmp_path / "s1"
    pairs = (out / "pairs.jsonl").read_bytes()
    backend = ScriptedBackend(script)
    again = run_stage1(SEEDS, out, _teacher(tmp_path, backend), CONFIG, log=_quiet)
    assert backend.prompts == [] and sum(sandbox_runs) == ran
    assert again == report and (out / "pairs.jsonl").read_bytes() == pairs
    # Interrupted before the files were written: both caches carry the work.
    (out / "report.json").unlink()
    resumed = run_stage1(SEEDS, out, _teacher(tmp_path, backend), CONFIG, log=_quiet)
    assert backend.prompts == [] and sum(sandbox_runs) == ran
    assert resumed["sandbox"] == {"runs": 0, "cached": report["sandbox"]["runs"]}
    assert resumed["teacher"]["stages"]["stage1.correct"]["cache_hits"] == 3
    assert (out / "pairs.jsonl").read_bytes() == pairs
    # Other inputs (another seed) are not served the old report.
    other = run_stage1(
        SEEDS, out, _teacher(tmp_path, backend), Stage1Config(**{**vars(CONFIG), "seed": 4})
    )
    assert other["inputs_sha256"] != report["inputs_sha256"]


def test_split_is_deterministic_and_80_20(first_run):
    tmp_path, _, report, _ = first_run
    ids = [f"Mbpp/{i}" for i in range(10)]
    split = split_questions(ids, seed=7)
    assert sum(s == "sft" for s in split.values()) == 8
    assert split_questions(list(reversed(ids)), seed=7) == split
    assert split_questions(ids, seed=8) != split
    assert sum(s == "sft" for s in split_questions(ids[:7], seed=0).values()) == 6  # round(5.6)
    recorded = json.loads((tmp_path / "s1" / "split.json").read_text())
    assert recorded["seed"] == 3 and len(recorded["sft"]) + len(recorded["contrastive"]) == 3
    assert recorded["sft"] == sorted(
        q for q, s in split_questions([r.id for r in SEEDS], 3).items() if s == "sft"
    )
    assert report["split"] == {"sft": 2, "contrastive": 1}


def test_seed_line_that_is_not_a_codegen_record_names_file_and_line(tmp_path):
    seeds = tmp_path / "seeds.jsonl"
    seeds.write_text(json.dumps(SUM_TO.to_dict()) + "\n" + json.dumps({"id": "x"}) + "\n")
    with pytest.raises(Stage1Error) as err:
        load_seeds(seeds)
    message = str(err.value)
    assert message.startswith(f"{seeds}:2:") and "\n" not in message
    seeds.write_text(json.dumps({**SUM_TO.to_dict(), "tests": ""}) + "\n")
    with pytest.raises(Stage1Error, match=r"seeds\.jsonl:1: question 'Mbpp/t1' has no tests"):
        load_seeds(seeds)
    seeds.write_text(json.dumps(SUM_TO.to_dict()) + "\n")
    assert load_seeds(seeds) == [SUM_TO]


def test_solution_from_answer_keeps_a_syntax_fault_as_written():
    broken = "def f(x)\n    return x\nprint(f(1))\n"
    assert solution_from_answer(f"{FENCE}python\n{broken}{FENCE}", SUM_TO) == broken
    # A refusal is no solution, not a syntax fault.
    assert solution_from_answer("I will not write wrong code.", SUM_TO) == ""
    bare = "def sum_to(n):\n    return n\n"
    assert solution_from_answer(f"Here:\n{bare}", SUM_TO) == f"Here:\n{bare}"


def test_an_answer_without_code_is_counted_not_run(tmp_path, sandbox_runs):
    from codistill.soda.stage1 import Verifier

    verifier = Verifier(tmp_path / "v.jsonl", CONFIG)
    assert verifier.outcomes([(SUM_TO, ""), (SUM_TO, "  \n")]) == ["no_code", "no_code"]
    assert sandbox_runs == [] and verifier.box is None
