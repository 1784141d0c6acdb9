"""SODA on questions in JavaScript, C, C++ and Java: solutions read from answers, run against
the questions' own tests, each failure counted as the fault it is."""

from __future__ import annotations

import json

import pytest

from codistill.data.code_text import drop_main
from codistill.data.schema import CodegenRecord
from codistill.evaluation.sandbox import ExecResult, Sandbox
from codistill.soda.stage1 import solution_from_answer
from codistill.soda.verify import default_limits, outcome_of, run_solutions

LIMITS = default_limits(4.0)  # the JVM starts slowly on a busy machine; compiling has its own

# SODA-style questions: the prompt is a comment describing the task, the tests a program.
QUESTIONS = {
    "javascript": (
        "// Write a function clamp(x, lo, hi) that limits x to [lo, hi].\n",
        "const assert = require('node:assert');\n"
        "assert.strictEqual(clamp(5, 0, 3), 3);\nassert.strictEqual(clamp(-1, 0, 3), 0);\n",
    ),
    "c": (
        "/* Write a function int clamp(int x, int lo, int hi) that limits x to [lo, hi]. */\n",
        "#include <assert.h>\nint main(void) {\n"
        "    assert(clamp(5, 0, 3) == 3);\n    assert(clamp(-1, 0, 3) == 0);\n    return 0;\n}\n",
    ),
    "cpp": (
        "// Write a function int clamp(int x, int lo, int hi) that limits x to [lo, hi].\n",
        "#include <cassert>\nint main() {\n"
        "    assert(clamp(5, 0, 3) == 3);\n    assert(clamp(-1, 0, 3) == 0);\n}\n",
    ),
    "java": (
        "// Write a class Solution with static int clamp(int x, int lo, int hi).\n",
        "class Main {\n    public static void main(String[] args) {\n"
        "        assert Solution.clamp(5, 0, 3) == 3;\n"
        "        assert Solution.clamp(-1, 0, 3) == 0;\n    }\n}\n",
    ),
}

# Per language: (solution, expected outcome).
SOLUTIONS = {
    "javascript": [
        ("function clamp(x, lo, hi) { return Math.min(hi, Math.max(lo, x)); }", "passed"),
        ("function clamp(x, lo, hi) { return Math.min(hi, x); }", "logic"),
        ("function clamp(x, lo, hi) { return Math.min(hi, Math.max(lo, y)); }", "name"),
        ("function clamp(x, lo, hi) { return null.x; }", "type"),
        ("function clamp(x, lo, hi) { return (x; }", "syntax"),
        ("function clamp(x, lo, hi) { while (true) {} }", "timeout"),
        ("const m = require('left-pad');\nfunction clamp(x, lo, hi) { return x; }", "environment"),
    ],
    "c": [
        ("int clamp(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }", "passed"),
        ("int clamp(int x, int lo, int hi) { return x > hi ? hi : x; }", "logic"),
        ("int clamp(int x, int lo, int hi) { return x < lo ? lo : y; }", "name"),
        ("int clamp(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x }", "syntax"),
        ('int clamp(int x, int lo, int hi) { return "a" * x; }', "type"),
        ("#include <nothere.h>\nint clamp(int x, int lo, int hi) { return x; }", "environment"),
    ],
    "cpp": [
        (
            "#include <algorithm>\nint clamp(int x, int lo, int hi) "
            "{ return std::min(hi, std::max(lo, x)); }",
            "passed",
        ),
        ("int clamp(int x, int lo, int hi) { return lo; }", "logic"),
        (
            '#include <string>\nint clamp(int x, int lo, int hi) { return std::string("a"); }',
            "type",
        ),
    ],
    "java": [
        (
            "class Solution {\n    static int clamp(int x, int lo, int hi) "
            "{ return Math.min(hi, Math.max(lo, x)); }\n}\n",
            "passed",
        ),
        (
            "class Solution {\n    static int clamp(int x, int lo, int hi) { return x; }\n}\n",
            "logic",
        ),
        (
            "class Solution {\n    static int clamp(int x, int lo, int hi) { return y; }\n}\n",
            "name",
        ),
        (
            'class Solution {\n    static int clamp(int x, int lo, int hi) { return "a"; }\n}\n',
            "type",
        ),
        (
            "class Solution {\n    static int clamp(int x, int lo, int hi) { return x }\n}\n",
            "syntax",
        ),
    ],
}


def _question(language: str) -> CodegenRecord:
    prompt, tests = QUESTIONS[language]
    return CodegenRecord(
        id=f"{language}/clamp",
        source="soda-test",
        prompt=prompt,
        entry_point="clamp",
        tests=tests,
        language=language,
    )


@pytest.fixture(scope="module")
def box():
    with Sandbox(LIMITS, workers=2) as sandbox:
        yield sandbox


@pytest.mark.parametrize("language", sorted(QUESTIONS))
def test_each_solution_gets_the_outcome_of_its_fault(box, language):
    if not box.available(language):
        pytest.skip(f"no {language} toolchain here")
    question = _question(language)
    items = [(question, code) for code, _ in SOLUTIONS[language]]
    outcomes = run_solutions(items, sandbox=box, limits=LIMITS)
    got = [(o.outcome, o.detail) for o in outcomes]
    assert [o for o, _ in got] == [want for _, want in SOLUTIONS[language]], got


def test_an_answers_code_block_loses_its_own_main():
    question = _question("c")
    answer = (
        "Here is the function with a demo:\n```c\n#include <stdio.h>\n"
        "int clamp(int x, int lo, int hi) { return x < lo ? lo : x > hi ? hi : x; }\n\n"
        'int main(void) {\n    printf("%d\\n", clamp(5, 0, 3));\n    return 0;\n}\n```\n'
    )
    solution = solution_from_answer(answer, question)
    assert "int clamp" in solution and "main" not in solution
    assert solution_from_answer("I cannot help with that.", question) == ""
    # Prose that names the function is no solution (it would verify as a syntax fault).
    assert solution_from_answer("Sorry, I cannot write clamp(x, lo, hi) for you.", question) == ""
    js = _question("javascript")
    answer = (
        "```js\nconst assert = require('assert');\n"
        "function clamp(x, lo, hi) {\n  return Math.min(hi, Math.max(lo, x));\n}\n"
        "console.log(clamp(5, 0, 3));\nassert.strictEqual(clamp(1, 0, 3), 1);\n```"
    )
    assert solution_from_answer(answer, js).strip() == (
        "function clamp(x, lo, hi) {\n  return Math.min(hi, Math.max(lo, x));\n}"
    )
    java = "class S {\n    public static void main(String[] a) throws E {\n        f();\n    }\n}\n"
    assert drop_main(java, "java") == "class S {\n}\n"
    assert drop_main("function main() {}", "javascript") == "function main() {}"
    annotated = (
        'class S {\n    @SuppressWarnings("x") public static final void main(String[] a) {}\n}\n'
    )
    assert drop_main(annotated, "java") == "class S {\n}\n"


def test_the_question_says_which_language_to_answer_in():
    from codistill.soda.prompts import question_text

    assert question_text(_question("cpp")).endswith(
        "Write the solution in C++, without a main function."
    )


@pytest.mark.parametrize(
    "status, detail, stderr, language, expected",
    [
        ("failed", "compile error", "Main.java:3: error: cannot find symbol", "java", "name"),
        ("failed", "compile error", "main.c:2:5: error: 'y' undeclared", "c", "name"),
        ("failed", "compile error", "main.c:(.text+0x5): undefined reference to `f'", "c", "name"),
        (
            "failed",
            "compile error",
            "main.cpp:3:1: error: expected ';' before '}'",
            "cpp",
            "syntax",
        ),
        ("failed", "compile error", "Main.java:3: error: incompatible types", "java", "type"),
        ("failed", "compile error", "main.c:1: error: something new", "c", "other"),
        ("crashed", "SIGABRT", "main: main.c:5: main: Assertion `x' failed.", "c", "logic"),
        ("crashed", "SIGSEGV", "", "c", "other"),
        (
            "failed",
            "exit status 1",
            "\nReferenceError: y is not defined\n    at",
            "javascript",
            "name",
        ),
        (
            "failed",
            "exit status 1",
            'Exception in thread "main" java.lang.ClassCastException: x',
            "java",
            "type",
        ),
        ("memory_exceeded", "MemoryError", "", "javascript", "other"),
        ("unavailable", "java: no JUnit 4 (with Hamcrest) in ~/.m2", "", "java", "environment"),
        # The first error diagnostic decides, not the source line the compiler quotes under it.
        (
            "failed",
            "compile error",
            "main.c:9:12: error: too few arguments to function 'add'\n"
            "    9 |     assert(add(1, 2) == expected);\n",
            "c",
            "type",
        ),
        (
            "failed",
            "compile error",
            "main.cpp:4:5: error: no matching function for call to 'f(int)'",
            "cpp",
            "type",
        ),
        ("failed", "compile error", "main.c:2:1: error: unknown type name 'bool'", "c", "name"),
        (
            "crashed",
            "SIGABRT",
            "terminate called after throwing an instance of 'std::out_of_range'",
            "cpp",
            "other",
        ),
        ("failed", "exited before the end of the tests", "", "c", "other"),
        ("failed", "exit status 1", "\nError: clamp(5, 0, 3) should be 3\n", "javascript", "logic"),
        (
            "failed",
            "exit status 1",
            "Failures (1):\n  org.opentest4j.AssertionFailedError: expected: <3> but was: <5>",
            "java",
            "logic",
        ),
        ("timed_out", "CPU-time limit (1 s)", "", "java", "timeout"),
    ],
)
def test_outcome_of_each_native_verdict(status, detail, stderr, language, expected):
    result = ExecResult(status, 1, "", stderr, 0.1, detail)
    assert outcome_of(result, language) == expected


def test_stage2_runs_a_question_in_its_own_language_and_stage3_draws_no_new_one_from_it(
    tmp_path,
):
    """Stage II end to end on a JavaScript question (a scripted student and judge), then Stage
    III, which writes new questions in Python only and counts the seed it did not draw."""
    from codistill.soda.stage2 import Stage2Config, run_stage2
    from codistill.soda.stage3 import Stage3Config, run_stage3
    from codistill.soda.teacher import TeacherCalls
    from tests.soda.test_teacher import ScriptedBackend

    with Sandbox(LIMITS) as probe:
        if not probe.available("javascript"):
            pytest.skip("no node here")
    question = _question("javascript")
    right = SOLUTIONS["javascript"][0][0]
    student = ScriptedBackend(lambda text: f"Here:\n```js\n{right}\n```\n")
    judge = ScriptedBackend(lambda text: "Code Analysis: good.\nScore: 5")
    report = run_stage2(
        [question],
        TeacherCalls({"name": "student"}, tmp_path / "student.jsonl", backend=student),
        TeacherCalls({"name": "judge"}, tmp_path / "judge.jsonl", backend=judge),
        tmp_path / "s2",
        Stage2Config(timeout_s=4.0),
        log=lambda _: None,
    )
    feedback = [
        json.loads(x) for x in (tmp_path / "s2" / "feedback.jsonl").read_text().splitlines()
    ]
    assert (feedback[0]["outcome"], feedback[0]["level"]) == ("passed", "easy"), report
    teacher = ScriptedBackend(lambda text: "unused")
    done = run_stage3(
        feedback,
        [question],
        TeacherCalls({"name": "teacher"}, tmp_path / "teacher.jsonl", backend=teacher),
        tmp_path / "s3",
        Stage3Config(n_new=4),
        log=lambda _: None,
    )
    assert (done["seeds_other_language"], done["asked"], done["kept"]) == (1, 0, 0)
