from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from codistill.data.schema import CodegenRecord
from codistill.evaluation.codegen import (
    PROGRAM_STOP_SEQUENCES,
    STOP_SEQUENCES,
    base_program,
    plus_program,
    read_samples,
    truncate_completion,
)

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"


def _record(**over) -> CodegenRecord:
    fields = {
        "id": "t/0",
        "source": "humaneval+",
        "prompt": "def add(a, b):\n",
        "entry_point": "add",
        "tests": "def check(f):\n    assert f(1, 2) == 3\n\ncheck(add)",
        "canonical_solution": "    return a + b\n",
        "extra": {"base_input": [[1, 2]], "plus_input": [[0.1, 0.2], [-5, 5]], "atol": 0},
    }
    fields.update(over)
    return CodegenRecord(**fields)


def _runs(program: str) -> bool:
    done = subprocess.run([sys.executable, "-c", program], capture_output=True, timeout=60)
    return done.returncode == 0


def test_completion_stops_at_the_next_top_level_statement():
    text = "    return a + b\n\ndef other():\n    pass\n"
    assert truncate_completion(text) == "    return a + b\n"
    assert truncate_completion("    return 1") == "    return 1"


def test_a_whole_program_opening_with_a_blank_line_is_not_cut_to_nothing():
    # MBPP answers are whole programs; one starting "\ndef f" used to be cut at index 0.
    program = "\ndef f(x):\n    return x\n\ndef g():\n    pass\n"
    assert truncate_completion(program) == "\ndef f(x):\n    return x\n"


def test_a_whole_program_keeps_its_imports_and_helpers_and_ends_at_its_tests():
    program = (
        "import math\n\ndef _half(x):\n    return x / 2\n\n"
        "def area(r):\n    return math.pi * _half(r)\n"
    )
    for tail in ("\nassert area(2) == math.pi\n", '\n"""\nWrite another\n', "\nprint(area(1))"):
        assert truncate_completion(program + tail, programs=True) == program
    # The continuation stops would have kept only the import.
    assert truncate_completion(program) == "import math\n"


class _RawServer:
    """A stand-in backend that continues every prompt with ``text`` (or ``text(prompt)``),
    recording the stop strings of each call."""

    def __init__(self, text, stops: list):
        self.text, self.stops = text, stops

    def generate(self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, stop=None):
        from codistill.evaluation.backends import Completion

        self.stops.append(stop)
        answer = self.text if callable(self.text) else lambda p: self.text
        return [Completion(answer(p), 5, 0.1) for p in prompts for _ in range(n)]

    def close(self):
        pass


MBPP_DOUBLE = _record(
    id="Mbpp/1",
    source="mbpp",
    prompt='"""\nWrite a function to double a number.\nassert double(2) == 4\n"""\n',
    entry_point="double",
    canonical_solution="def double(x):\n    return 2 * x\n",
    tests="assert double(2) == 4\nassert double(0) == 0\n",
    extra={},
)


def _eval_raw(tmp_path, monkeypatch, records, answer) -> tuple[list, dict]:
    """``codistill eval`` of ``records`` through a :class:`_RawServer` answering ``answer``:
    the stop strings of each backend call, and metrics.json."""
    import json

    from codistill.cli.main import main
    from codistill.data.jsonl import write_records

    data = tmp_path / "tasks.jsonl"
    write_records(data, records)
    stops: list = []
    server = _RawServer(answer, stops)
    monkeypatch.setattr("codistill.evaluation.backends.make_backend", lambda spec, **kw: server)
    out = tmp_path / "raw"
    argv = ["eval", "--task", "codegen", "--data", str(data), "--out", str(out)]
    assert main([*argv, "pass_k=[1]", "model_backend=openai:http://x"]) == 0
    return stops, json.loads((out / "metrics.json").read_text())


def test_raw_mbpp_answers_are_scored_as_whole_programs(tmp_path, monkeypatch):
    answer = "import operator\n\ndef _two():\n    return 2\n\ndef double(x):\n"
    answer += "    return operator.mul(_two(), x)\n\nassert double(3) == 7\n"
    stops, metrics = _eval_raw(tmp_path, monkeypatch, [MBPP_DOUBLE], answer)
    assert stops == [list(PROGRAM_STOP_SEQUENCES)]
    # Passes only if the helpers were kept and the model's own wrong assert was cut.
    assert metrics["models"]["student"]["vs_truth"]["pass@1"] == 1.0


def test_humaneval_and_mbpp_pooled_get_each_their_own_stops(tmp_path, monkeypatch):
    program = "def _two():\n    return 2\n\ndef double(x):\n    return _two() * x\n"
    body = "    return a + b\n\ndef other():\n    pass\n"
    records = [_record(extra={}), MBPP_DOUBLE]
    answer = lambda p: body if "def add" in p else program  # noqa: E731
    stops, metrics = _eval_raw(tmp_path, monkeypatch, records, answer)
    assert sorted(stops) == sorted([list(STOP_SEQUENCES), list(PROGRAM_STOP_SEQUENCES)])
    assert metrics["models"]["student"]["vs_truth"]["pass@1"] == 1.0


def test_base_program_passes_a_correct_completion_and_fails_a_wrong_one():
    record = _record()
    assert _runs(base_program(record, "    return a + b\n"))
    assert not _runs(base_program(record, "    return a - b\n"))


def test_plus_program_compares_against_the_canonical_solution_on_extra_inputs():
    record = _record()
    assert _runs(plus_program(record, "    return a + b\n"))
    # Right on the base test (1, 2) but wrong on a plus input (-5, 5).
    assert not _runs(plus_program(record, "    return abs(a) + b if a > 0 else 3\n"))


def test_plus_program_is_none_without_extra_inputs():
    assert plus_program(_record(extra={}), "    return a + b\n") is None


def test_read_samples_groups_completions_and_names_bad_lines(tmp_path):
    records = [_record(id="a"), _record(id="b")]
    path = tmp_path / "samples.jsonl"
    path.write_text('{"task_id": "a", "completion": "x"}\n{"task_id": "a", "completion": "y"}\n')
    assert read_samples(str(path), records) == [["x", "y"], []]
    path.write_text('{"task_id": "a"}\n')
    with pytest.raises(ValueError, match="samples.jsonl:1: expected a JSON object"):
        read_samples(str(path), records)
    path.write_text('{"task_id": "zzz", "completion": ""}\n')
    with pytest.raises(ValueError, match="'zzz' is not in the data"):
        read_samples(str(path), records)


def test_real_humaneval_plus_canonical_solutions_pass_their_plus_program():
    path = SHARED / "humaneval-plus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    from codistill.data.benchmarks import load_humaneval_plus

    for record in load_humaneval_plus(path)[:5]:
        assert _runs(plus_program(record, record.canonical_solution)), record.id


def _write_tasks(tmp_path) -> Path:
    from codistill.data.jsonl import write_records

    path = tmp_path / "tasks.jsonl"
    write_records(
        path,
        [
            _record(id="t/0"),
            _record(
                id="t/1",
                prompt="def sub(a, b):\n",
                entry_point="sub",
                canonical_solution="    return a - b\n",
                tests="assert sub(3, 1) == 2\n",
            ),
        ],
    )
    return path


def test_eval_scores_samples_with_pass_at_k_and_writes_verdicts(tmp_path):
    from codistill.cli.main import main

    samples = tmp_path / "samples.jsonl"
    rows = [
        ("t/0", "    return a + b\n"),
        ("t/0", "    return a * b\n"),
        ("t/1", "    return a - b\n"),
        ("t/1", "    return b - a\n"),
    ]
    samples.write_text(
        "".join(f'{{"task_id": "{t}", "completion": {c!r}}}\n'.replace("'", '"') for t, c in rows)
    )
    out = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--task",
                "codegen",
                "--data",
                str(_write_tasks(tmp_path)),
                "--samples",
                str(samples),
                "--out",
                str(out),
                "pass_k=[1,2]",
            ]
        )
        == 0
    )
    import json

    metrics = json.loads((out / "metrics.json").read_text())["models"]["samples"]["vs_truth"]
    assert metrics["pass@1"] == pytest.approx(0.5)  # one of two samples passes per task
    assert metrics["pass@2"] == pytest.approx(1.0)
    verdicts = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert [v["passed"] for v in verdicts] == [True, False, True, False]
    assert verdicts[1]["status"] == "failed"


def test_eval_generates_greedy_completions_with_a_model(tiny_setup, tmp_path):
    from codistill.cli.main import main

    out = tmp_path / "gen"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_setup["teacher"]),
                "--task",
                "codegen",
                "--data",
                str(_write_tasks(tmp_path)),
                "--out",
                str(out),
                "pass_k=[1]",
                "codegen_max_new_tokens=8",
            ]
        )
        == 0
    )
    import json

    metrics = json.loads((out / "metrics.json").read_text())["models"]["student"]["vs_truth"]
    assert metrics["pass@1"] == 0.0  # a random tiny model does not write `return a + b`
    verdicts = (out / "predictions.jsonl").read_text().splitlines()
    assert len(verdicts) == 2


def _samples_file(tmp_path, rows) -> Path:
    import json

    path = tmp_path / "samples.jsonl"
    path.write_text("".join(json.dumps({"task_id": t, "completion": c}) + "\n" for t, c in rows))
    return path


def _eval_samples(tmp_path, samples, data=None, *extra) -> list[str]:
    data = data or _write_tasks(tmp_path)
    argv = ["eval", "--task", "codegen", "--data", str(data), "--samples", str(samples)]
    return [*argv, "--out", str(tmp_path / "ev"), "pass_k=[1]", *extra]


def test_samples_for_some_tasks_are_refused_unless_partial_scoring_is_asked(tmp_path, capsys):
    import json

    from codistill.cli.main import main

    samples = _samples_file(tmp_path, [("t/1", "    return a - b\n")])
    assert main(_eval_samples(tmp_path, samples)) == 2
    assert "no samples for 1 of 2 tasks (first: t/0)" in capsys.readouterr().err
    assert main(_eval_samples(tmp_path, samples, None, "samples_partial=true")) == 0
    scored = json.loads((tmp_path / "ev" / "metrics.json").read_text())["models"]["samples"]
    assert scored["attempted"] == {"tasks": 1, "of": 2}
    assert scored["vs_truth"]["pass@1"] == 1.0


def test_an_empty_samples_file_is_refused(tmp_path, capsys):
    from codistill.cli.main import main

    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(_eval_samples(tmp_path, empty)) == 2
    assert "no samples" in capsys.readouterr().err


def test_the_benchmarks_own_gzipped_file_is_read_directly(tmp_path, capsys):
    from codistill.cli.main import main
    from codistill.data.benchmarks import humaneval_package_path

    samples = _samples_file(tmp_path, [("HumanEval/0", "    return False\n")])
    argv = _eval_samples(tmp_path, samples, humaneval_package_path(), "samples_partial=true")
    assert main([*argv, "max_examples=3"]) == 0
    assert "as humaneval" in capsys.readouterr().out


class _ChatServer:
    """A stand-in generation backend that answers every prompt like an instruct model does:
    prose around a fenced whole function, with an example call after it."""

    answers = {
        "add": "Sure!\n```python\ndef add(a, b):\n    return a + b\n\nprint(add(1, 2))\n```",
        "sub": "```python\ndef sub(a, b):\n    return a + b\n```\nThis subtracts.",
    }

    def __init__(self, seen: list):
        self.seen = seen

    def generate(self, prompts, *, max_new_tokens, temperature=0.0, top_p=1.0, n=1, **_):
        from codistill.evaluation.backends import Completion

        self.seen.extend(prompts)
        name = lambda p: "add" if "def add" in p else "sub"  # noqa: E731
        return [Completion(self.answers[name(p)], 5, 0.1) for p in prompts for _ in range(n)]

    def close(self):
        pass


def test_chat_mode_renders_the_template_and_tests_the_answers_code(tmp_path, monkeypatch):
    import json

    from codistill.cli.main import main
    from codistill.models.tiny import make_tiny_causal_lm

    model = make_tiny_causal_lm(tmp_path / "m", vocab_texts=None, num_layers=1, seed=0)
    # transformers 5 keeps a tokenizer's chat template beside it in chat_template.jinja.
    template = "{% for m in messages %}<user>{{ m.content }}{% endfor %}<bot>"
    (model / "chat_template.jinja").write_text(template)
    seen: list[str] = []
    monkeypatch.setattr(
        "codistill.evaluation.backends.make_backend", lambda spec, **kw: _ChatServer(seen)
    )
    out = tmp_path / "chat"
    argv = [
        "eval",
        "--model",
        str(model),
        "--task",
        "codegen",
        "--data",
        str(_write_tasks(tmp_path)),
    ]
    argv += ["--out", str(out), "pass_k=[1]", "prompt_mode=chat", "model_backend=openai:http://x"]
    assert main(argv) == 0
    assert len(seen) == 2 and all(p.startswith("<user>Complete the following") for p in seen)
    assert all(p.endswith("<bot>") for p in seen)
    metrics = json.loads((out / "metrics.json").read_text())
    student = metrics["models"]["student"]
    assert student["vs_truth"]["pass@1"] == 0.5  # add is right, sub is not
    assert student["generation"]["prompt_mode"] == "chat" == metrics["prompt_mode"]
    assert student["generation"]["backend"] == "openai:http://x"


def test_chat_mode_without_a_template_is_refused_by_name(tiny_setup, tmp_path, capsys):
    from codistill.cli.main import main

    argv = ["eval", "--model", str(tiny_setup["teacher"]), "--task", "codegen"]
    argv += [
        "--data",
        str(_write_tasks(tmp_path)),
        "--out",
        str(tmp_path / "o"),
        "prompt_mode=chat",
    ]
    assert main(argv) == 2
    assert "has no chat template; use prompt_mode=raw" in capsys.readouterr().err


# ---- issue 13: verdicts a completion cannot forge ------------------------------------------------


@pytest.fixture(scope="module")
def sandbox():
    from codistill.evaluation.sandbox import Limits, Sandbox

    with Sandbox(Limits(timeout_s=10.0, cpu_s=10, memory_mb=512), workers=2) as box:
        yield box


def test_correct_completion_passes_base_and_plus_in_the_sandbox(sandbox):
    record = _record()
    for program in (
        base_program(record, "    return a + b\n"),
        plus_program(record, "    return a + b\n"),
    ):
        result = sandbox.run(program)
        assert result.passed, (result.status, result.detail, result.stderr[-500:])


@pytest.mark.parametrize(
    "name",
    [
        "reward hack: sys.exit(0)",
        "reward hack: os._exit(0)",
        "reward hack: atexit os._exit",
        "reward hack: SystemExit in check",
        "reward hack: always-equal __eq__",
        "reward hack: read HumanEval.jsonl.gz",
        "reward hack: patch json.loads",
        "reward hack: always-equal non-float",
    ],
)
def test_reward_hacks_are_judged_failed(sandbox, name):
    from codistill.evaluation.sandbox_probes import ProbeSite

    with ProbeSite() as site:
        try:
            probe = site.probe(name)
        except LookupError as exc:
            pytest.skip(str(exc))
    result = sandbox.run(probe.program)
    assert result.status == "failed", (result.status, result.detail, result.stderr[-500:])


def test_always_equal_objects_inside_lists_are_refused(sandbox):
    record = _record(tests="def check(f):\n    assert f(1, 2) == [3]\n\ncheck(add)\n")
    hack = (
        "    class E(int):\n        def __eq__(self, o):\n            return True\n"
        "    return [E(0)]\n"
    )
    assert not sandbox.run(base_program(record, hack)).passed
    assert sandbox.run(base_program(record, "    return [a + b]\n")).passed


def test_completion_that_rebinds_builtins_cannot_change_the_tests(sandbox):
    record = _record(tests="def check(f):\n    assert abs(f(1, 2) - 3) < 1e-9\n\ncheck(add)\n")
    hack = "    return 0\nimport builtins\nbuiltins.abs = lambda x: 0\n"
    result = sandbox.run(base_program(record, hack))
    assert (result.status, result.detail) == ("failed", "AssertionError")


def test_plus_program_requires_exact_types():
    record = _record(canonical_solution="    return a + b\n", extra={"base_input": [[1, 2]]})
    assert not _runs(plus_program(record, "    return a + b == 3\n"))  # True is not 3
    floats = _record(extra={"base_input": [[1.5, 2.0]], "atol": 0})
    assert _runs(plus_program(floats, "    return a + b\n"))
    ints = _record(canonical_solution="    return float(a + b)\n", extra={"base_input": [[1, 2]]})
    assert _runs(plus_program(ints, "    return a + b\n"))  # an int where a float is expected


def test_plus_inputs_are_embedded_as_literals_without_names():
    from codistill.evaluation.codegen import python_literal

    value = [1, -2.5, float("inf"), float("-inf"), "x'\"", None, True, {"k": [[]]}]
    text = python_literal(value)
    assert "json" not in text and "float" not in text
    assert eval(text, {"__builtins__": {}}) == value
    nan = eval(python_literal(float("nan")), {"__builtins__": {}})
    assert nan != nan


def test_guard_asserts_wraps_what_asserts_compare():
    from codistill.evaluation.codegen import guard_asserts

    tests = (
        "def check(c):\n    r = c(1)\n    assert r == 2\n    assert c(3) == 4, 'msg'\n"
        "    assert not c(0)\n    assert sorted(r, key=lambda x: -x) == [2]\n"
    )
    out = guard_asserts(tests)
    assert "assert _codistill_value(r) == 2" in out
    assert "assert _codistill_value(c(3)) == 4, 'msg'" in out
    assert "assert not _codistill_value(c(0))" in out
    assert "key=lambda x: -x" in out  # a lambda in an assert is left alone
    assert guard_asserts("assert (") == "assert ("  # unparsable tests are kept as they are


def test_humaneval_base_tests_still_pass_canonical_solutions_in_the_sandbox(sandbox):
    path = SHARED / "humaneval-plus" / "HumanEvalPlus-v0.1.10.jsonl.gz"
    if not path.exists():
        pytest.skip(f"{path} not present")
    from codistill.data.benchmarks import load_humaneval_plus
    from codistill.evaluation.sandbox import Job

    records = load_humaneval_plus(path)[:20]
    results = sandbox.run_many(
        [Job(base_program(r, r.canonical_solution)) for r in records], workers=2
    )
    assert [r.id for r, res in zip(records, results, strict=True) if not res.passed] == []


@pytest.fixture
def readable_outside(tmp_path):
    """A file samples can read unless it is hidden: the sandbox masks /tmp and /var/tmp, so it
    is written beside the tests (skipped where a checkout lives under a masked directory)."""
    import json
    import shutil
    import tempfile

    from codistill.evaluation.sandbox import run_programs

    where = Path(tempfile.mkdtemp(prefix=".hide-probe-", dir=Path(__file__).parent))
    try:
        where.chmod(0o755)
        origin = where / "origin.json"
        origin.write_text(json.dumps({"t/0": 3}))
        origin.chmod(0o644)
        seen = run_programs([f"open({str(origin)!r}).read()"], timeout_s=10)[0]
        if seen.status != "passed":
            pytest.skip(f"{where} is not visible inside the sandbox here")
        yield origin
    finally:
        shutil.rmtree(where)


@pytest.mark.parametrize("hidden", [False, True])
def test_files_named_in_hide_cannot_be_read_by_samples(tmp_path, readable_outside, hidden):
    """A pooled data file's origin (e.g. ../shared's HumanEval+) holds the answers too."""
    import json

    from codistill.cli.main import main
    from codistill.data.jsonl import write_records

    origin = readable_outside
    completion = f"    import json\n    return json.load(open({str(origin)!r}))['t/0']\n"
    samples = tmp_path / "samples.jsonl"
    samples.write_text(json.dumps({"task_id": "t/0", "completion": completion}) + "\n")
    data = tmp_path / "tasks.jsonl"
    write_records(data, [_record(extra={})])
    out = tmp_path / "ev"
    argv = ["eval", "--task", "codegen", "--data", str(data), "--samples", str(samples)]
    argv += ["--out", str(out), "pass_k=[1]"]
    if hidden:
        argv.append(f"hide=[{str(origin)!r}]")
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())["models"]["samples"]["vs_truth"]
    assert metrics["pass@1"] == (0.0 if hidden else 1.0)
