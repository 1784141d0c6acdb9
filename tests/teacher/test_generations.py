"""The teacher-generations file: content keys, header checks, torn lines, and output shaping."""

from __future__ import annotations

import dataclasses
import json

import pytest

from codistill.data.schema import CodegenRecord
from codistill.teacher.generations import (
    FILENAME,
    GenerateSettings,
    GenerationsError,
    GenerationsMismatch,
    GenerationsWriter,
    _postprocess,
    _verdict,
    generation_key,
    header_differences,
    make_entry,
    make_header,
    read_generations,
)
from tests.helpers import make_records

KEY_A, KEY_B, KEY_C = "a" * 64, "b" * 64, "c" * 64


def header(**over) -> dict:
    base = {
        "task": "codegen",
        "teacher": {"spec": "/models/qwen", "name": "qwen", "weights_sha256": "f" * 64},
        "backend": "transformers",
        "decoding": {"n": 1, "temperature": 0.0, "top_p": 1.0, "max_new_tokens": 64, "seed": 0},
        "prompt": {"mode": "raw", "style": None, "max_source_tokens": 512},
    }
    base.update(over)
    return make_header(**base)


def codegen_record(**over) -> CodegenRecord:
    base = {
        "id": "T/0",
        "source": "test",
        "prompt": 'def add(a, b):\n    """Sum of a and b."""\n',
        "entry_point": "add",
        "tests": "assert add(1, 2) == 3\n",
    }
    base.update(over)
    return CodegenRecord(**base)


def test_key_follows_the_input_not_the_id_or_reference():
    record = codegen_record()
    same_input = dataclasses.replace(record, id="T/9", canonical_solution="    return a + b\n")
    assert generation_key(same_input) == generation_key(record)
    for field, value in (("prompt", "def add(a, b):\n"), ("tests", "assert add(0, 0) == 0\n")):
        assert generation_key(dataclasses.replace(record, **{field: value})) != generation_key(
            record
        )


def test_assertion_key_is_the_prompt_text_in_its_style():
    record = make_records(1, "train")[0]
    edited = dataclasses.replace(record, test_code=record.test_code.replace("compute", "calc"))
    assert generation_key(edited) != generation_key(record)
    assert generation_key(record, "placeholder") != generation_key(record, "prefix")
    assert generation_key(dataclasses.replace(record, target="x")) == generation_key(record)


def test_written_entries_read_back_by_key(tmp_path):
    writer = GenerationsWriter(tmp_path / "g", header())
    writer.append([make_entry(KEY_A, "T/0", ["    return a + b\n"], ["passed"])])
    writer.append([make_entry(KEY_B, "T/1", ["x", "y"], None)])
    found, entries = read_generations(tmp_path / "g")
    assert found["decoding"]["max_new_tokens"] == 64
    assert set(entries) == {KEY_A, KEY_B}
    assert entries[KEY_A]["verdicts"] == ["passed"]
    assert entries[KEY_B] == {"key": KEY_B, "id": "T/1", "outputs": ["x", "y"], "verdicts": None}
    assert read_generations(tmp_path / "g" / FILENAME)[1] == entries  # the file path works too


def test_torn_last_line_is_ignored_then_cut_off_on_resume(tmp_path):
    writer = GenerationsWriter(tmp_path, header())
    writer.append([make_entry(KEY_A, "T/0", ["a"], None)])
    with open(tmp_path / FILENAME, "a", encoding="utf-8") as fh:
        fh.write('{"key": "' + KEY_B + '", "id": "T/1", "outp')  # a crash mid-write
    assert set(read_generations(tmp_path)[1]) == {KEY_A}
    resumed = GenerationsWriter(tmp_path, header())
    assert resumed.resumed and resumed.present == {KEY_A}
    resumed.append([make_entry(KEY_B, "T/1", ["b"], None)])
    lines = (tmp_path / FILENAME).read_text().splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)
    assert set(read_generations(tmp_path)[1]) == {KEY_A, KEY_B}


def test_resume_with_other_settings_is_refused_naming_each_field(tmp_path):
    GenerationsWriter(tmp_path, header())
    other = header(
        teacher={"spec": "/models/qwen", "weights_sha256": "0" * 64},
        decoding={"n": 1, "temperature": 0.5, "top_p": 1.0, "max_new_tokens": 64, "seed": 0},
    )
    with pytest.raises(GenerationsMismatch) as err:
        GenerationsWriter(tmp_path, other)
    assert err.value.fields == ["teacher.weights_sha256", "decoding.temperature"]
    assert "decoding.temperature: file has 0.0, requested 0.5" in str(err.value)


def test_same_weights_under_another_name_is_the_same_teacher():
    renamed = header(teacher={"spec": "embedded:qwen", "name": "q", "weights_sha256": "f" * 64})
    assert header_differences(header(), renamed) == {}
    assert set(
        header_differences(header(), header(prompt={"mode": "chat", "max_source_tokens": 512}))
    ) == {"prompt.mode"}


def test_a_file_from_before_middle_truncation_resumes_as_left_cut(tmp_path):
    old = header()
    del old["prompt"]["truncation"]  # written before the field existed
    assert header()["prompt"]["truncation"] == "left"
    assert header_differences(old, header()) == {}
    middle = header(prompt={"mode": "raw", "max_source_tokens": 512, "truncation": "middle"})
    assert header_differences(old, middle) == {"prompt.truncation": ("left", "middle")}
    with pytest.raises(ValueError, match="--truncation must be one of left, middle"):
        GenerateSettings(truncation="right").check()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not valid JSON"),
        ('{"key": "short", "outputs": []}', "field key"),
        ('{"key": "' + KEY_C + '", "outputs": ["a"], "verdicts": []}', "field verdicts"),
        ('{"key": "' + KEY_C + '", "outputs": [1]}', "field outputs"),
    ],
)
def test_a_bad_line_is_named_by_file_and_line(tmp_path, line, message):
    GenerationsWriter(tmp_path, header()).append([make_entry(KEY_A, "T/0", ["a"], None)])
    with open(tmp_path / FILENAME, "a", encoding="utf-8") as fh:
        fh.write(line + "\n")
    with pytest.raises(GenerationsError, match=rf"{FILENAME}:3: .*{message}"):
        read_generations(tmp_path)


def test_a_file_without_header_is_refused(tmp_path):
    (tmp_path / FILENAME).write_text('{"key": "' + KEY_A + '", "outputs": []}\n')
    with pytest.raises(GenerationsError, match="not a teacher-generations header"):
        read_generations(tmp_path)
    with pytest.raises(FileNotFoundError, match="teacher generate"):
        read_generations(tmp_path / "missing")


def test_settings_refuse_greedy_samples_and_chat_assertions():
    with pytest.raises(ValueError, match="--n 3 needs --temperature > 0"):
        GenerateSettings(n=3).check()
    with pytest.raises(ValueError, match="chat is for code generation"):
        GenerateSettings(task="assertion", prompt_mode="chat").check()
    with pytest.raises(ValueError, match=r"--top-p must be in \(0, 1\]"):
        GenerateSettings(top_p=0).check()
    GenerateSettings(task="codegen", prompt_mode="chat", n=3, temperature=0.8).check()


def test_raw_codegen_output_is_cut_and_its_first_line_reindented():
    record = codegen_record()
    raw = "     return a + b\n\n\ndef unrelated():\n    pass\n"  # Qwen's one-space slip
    assert _postprocess(record, raw, "raw") == "    return a + b\n\n"


def test_chat_codegen_output_becomes_a_completion_of_the_raw_prompt():
    record = codegen_record()
    answer = "Here:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    completion = _postprocess(record, answer, "chat")
    assert completion == "\ndef add(a, b):\n    return a + b\n"
    namespace: dict = {}
    exec(record.prompt + completion + record.tests, namespace)  # noqa: S102 - our own code


def test_assertion_output_is_its_first_nonblank_line():
    record = make_records(1, "train")[0]
    assert _postprocess(record, "\n  self.assertTrue(x)\nmore", "raw") == "self.assertTrue(x)"


def test_plus_tests_decide_the_verdict_after_the_base_tests():
    base = {"status": "passed", "passed": True, "plus_status": None, "passed_plus": None}
    assert _verdict(base) == "passed"
    assert _verdict({**base, "plus_status": "timed_out", "passed_plus": False}) == "timed_out"
    assert _verdict({**base, "plus_status": "passed", "passed_plus": True}) == "passed"
    assert _verdict({**base, "status": "crashed", "passed": False}) == "crashed"
