"""Code-generation questions in JavaScript, C, C++ and Java: MultiPL-E's layout, run in the
sandbox, passing only when the tests reach their end."""

from __future__ import annotations

import json

import pytest

from codistill.data.prompts import completion_from_output, extract_code
from codistill.data.schema import CodegenRecord, RecordError
from codistill.evaluation.codegen import test_job as make_job
from codistill.evaluation.codegen import truncate_completion
from codistill.evaluation.codegen_languages import MARKER_PREFIX, reached_end
from codistill.evaluation.sandbox import ExecResult, Limits, Sandbox

# Each language: the prompt a model continues, the tests that follow (opening by closing the
# function, as MultiPL-E's do), and three bodies: right, wrong, and one that exits with status
# 0 before the tests can fail.
QUESTIONS = {
    "javascript": (
        "function add(a, b) {\n",
        "}\nconst assert = require('node:assert');\nassert.deepEqual(add(1, 2), 3);\n",
        ("  return a + b;", "  return a - b;", "  process.exit(0);"),
    ),
    "c": (
        "#include <stdlib.h>\nint add(int a, int b) {\n",
        "}\n#include <assert.h>\nint main(void) {\n    assert(add(1, 2) == 3);\n    return 0;\n}\n",
        ("    return a + b;", "    return a - b;", "    exit(0);"),
    ),
    "cpp": (
        "#include <cstdlib>\nint add(int a, int b) {\n",
        "}\n#include <cassert>\nint main(int argc, char **argv) {\n"
        "    assert(add(1, 2) == 3);\n}\n",
        ("    return a + b;", "    return a - b;", "    std::exit(0);"),
    ),
    "java": (
        "class Problem {\n    public static int add(int a, int b) {\n",
        "    }\n    public static void main(String[] args) {\n"
        "        assert(add(1, 2) == 3);\n    }\n}\n",
        (
            "        return a + b;",
            "        return a - b;",
            "        if (a >= 0) System.exit(0);\n        return a + b;",
        ),
    ),
}


def _whole(language: str, prompt: str, tests: str) -> CodegenRecord:
    return CodegenRecord(
        id=f"{language}/add",
        source="multipl-e",
        prompt=prompt,
        entry_point="add",
        tests=tests,
        language=language,
    )


def _record(language: str) -> CodegenRecord:
    prompt, tests, _ = QUESTIONS[language]
    return _whole(language, prompt, tests)


@pytest.fixture(scope="module")
def box():
    with Sandbox(Limits(timeout_s=20, cpu_s=20), workers=2) as sandbox:
        yield sandbox


@pytest.mark.parametrize("language", sorted(QUESTIONS))
def test_right_passes_wrong_fails_and_an_early_exit_fails(box, language):
    if not box.available(language):
        pytest.skip(f"no {language} toolchain here")
    record = _record(language)
    verdicts = []
    for body in QUESTIONS[language][2]:
        job, marker = make_job(record, body)
        assert marker is not None and marker.startswith(MARKER_PREFIX)
        result = reached_end(box.run_many([job])[0], marker)
        verdicts.append((result.passed, result.detail))
    (right, _), (wrong, _), (exited, how) = verdicts
    assert right, verdicts
    assert not wrong
    assert not exited and how == "exited before the end of the tests"


def test_a_python_question_keeps_its_own_harness():
    record = CodegenRecord(
        id="t/0", source="humaneval", prompt="def f():\n", entry_point="f", tests="assert f()"
    )
    job, marker = make_job(record, "    return True\n")
    assert (job.language, marker) == ("python", None)


def test_reached_end_needs_the_marker_as_the_last_line():
    ok = ExecResult("passed", 0, "output\nM\n", "", 0.1)
    assert reached_end(ok, "M").passed
    assert reached_end(ok, None).passed
    assert not reached_end(ExecResult("passed", 0, "M\nmore\n", "", 0.1), "M").passed
    failed = ExecResult("failed", 1, "M\n", "", 0.1, "exit status 1")
    assert reached_end(failed, "M") is failed


def test_a_question_in_an_unknown_language_is_refused_by_name():
    with pytest.raises(RecordError, match="language"):
        CodegenRecord(id="x", source="s", prompt="p", entry_point="f", tests="t", language="rust")


def test_raw_completions_stop_where_multipl_e_stops_them():
    assert truncate_completion("  return a + b;\n}\n\nfunction g() {}", language="javascript") == (
        "  return a + b;\n}\n"
    )
    assert truncate_completion("    return a + b;\n}\nint main() {}", language="c") == (
        "    return a + b;"
    )
    java = "        return a + b;\n    }\n    public static void main(String[] a) {}\n"
    assert truncate_completion(java, language="java") == "        return a + b;"


def test_chat_answers_in_another_language_are_their_code_block():
    answer = "Here:\n```js\nfunction add(a, b) {\n  return a + b;\n}\n```\nDone."
    assert extract_code(answer, "javascript").startswith("function add")
    # A prompt left open at the function takes the body (its tests close the function); a
    # prompt that is a comment is followed by the whole code.
    prompt = "function add(a, b) {\n"
    assert completion_from_output(answer, prompt, "chat", "add", "javascript") == (
        "  return a + b;\n"
    )
    other = "```cpp\nint twice(int x) { return 2 * x; }\n```"
    assert completion_from_output(other, "// Double x.\n", "chat", "twice", "cpp") == (
        "int twice(int x) { return 2 * x; }\n"
    )


def test_eval_scores_samples_of_a_javascript_question(tmp_path):
    from codistill.cli.main import main

    box = Sandbox(Limits())
    available = box.available("javascript")
    box.close()
    if not available:
        pytest.skip("no node here")
    record = _record("javascript")
    data = tmp_path / "tasks.jsonl"
    data.write_text(json.dumps(record.to_dict()) + "\n")
    samples = tmp_path / "samples.jsonl"
    bodies = QUESTIONS["javascript"][2]
    samples.write_text(
        "".join(json.dumps({"task_id": record.id, "completion": b}) + "\n" for b in bodies)
    )
    out = tmp_path / "ev"
    argv = ["eval", "--task", "codegen", "--data", str(data), "--samples", str(samples)]
    assert main([*argv, "--out", str(out), "pass_k=[1,3]"]) == 0
    verdicts = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [v["passed"] for v in verdicts] == [True, False, False]
    metrics = json.loads((out / "metrics.json").read_text())["models"]["samples"]["vs_truth"]
    assert metrics["pass@1"] == pytest.approx(1 / 3)


@pytest.mark.parametrize("language", ["c", "cpp"])
def test_a_solution_cannot_switch_the_tests_asserts_off_with_ndebug(box, language):
    if not box.available(language):
        pytest.skip(f"no {language} toolchain here")
    job, marker = make_job(_record(language), "#define NDEBUG\n    return a - b;")
    result = reached_end(box.run_many([job])[0], marker)
    assert not result.passed and result.detail == "SIGABRT"


def _run(box, record, completion):
    job, marker = make_job(record, completion)
    return reached_end(box.run_many([job])[0], marker)


def test_java_runs_the_tests_main_never_the_solutions(box):
    if not box.available("java"):
        pytest.skip("no java toolchain here")
    record = _whole(
        "java",
        "// Write a class Solution with static int add(int a, int b).\n",
        "public class Main {\n    public static void main(String[] args) {\n"
        "        assert Solution.add(1, 2) == 3;\n    }\n}\n",
    )
    demo = "public static void main(String[] a) { System.out.println(add(1, 2)); }"
    add = "static int add(int a, int b) { return a - b; }"
    wrong = f"public class Solution {{\n    {add}\n    {demo}\n}}\n"
    right = wrong.replace("a - b", "a + b")
    # Both `public`: the solution's loses it, as the file is named after the tests' class.
    assert _run(box, record, right).passed
    assert not _run(box, record, wrong).passed
    # English in a comment ("a record of") is no type declaration.
    commented = _record("java")
    body = "        // Keep a record of the sum.\n        return a + b;"
    assert _run(box, commented, body).passed


def test_tests_that_end_by_exiting_or_asynchronously_pass_a_right_solution(box):
    c = _whole(
        "c",
        "int add(int a, int b) {\n",
        "}\n#include <assert.h>\n#include <stdlib.h>\n"
        "int main(void) {\n    assert(add(1, 2) == 3);\n    exit(0);\n}\n",
    )
    if box.available("c"):
        assert _run(box, c, "    return a + b;").passed
        assert not _run(box, c, "    return a - b;").passed
    js = _whole(
        "javascript",
        "function add(a, b) {\n",
        "}\nconst assert = require('node:assert');\n"
        "(async () => {\n  await null;\n  assert.strictEqual(add(1, 2), 3);\n"
        "  console.log('done');\n})();\n",
    )
    if box.available("javascript"):
        ok = _run(box, js, "  return a + b;")
        assert ok.passed and "done" in ok.stdout
        assert not _run(box, js, "  return a - b;").passed


def test_a_chat_answer_to_an_open_function_prompt_gives_the_body(box):
    language = "cpp"
    if not box.available(language):
        pytest.skip("no g++ here")
    prompt, tests, _ = QUESTIONS[language]
    prompt = "// Add two numbers.\n" + prompt
    answer = (
        "```cpp\n#include <cstdlib>\n// Adds a and b.\nint add(int a, int b) {\n"
        "    if (a < 0) { return b + a; }\n    return a + b;\n}\n```"
    )
    completion = completion_from_output(answer, prompt, "chat", "add", language)
    assert completion == "    if (a < 0) { return b + a; }\n    return a + b;\n"
    record = _whole(language, prompt, tests)
    assert _run(box, record, completion).passed
