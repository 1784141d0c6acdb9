import json

import pytest

from codistill.data.jsonl import read_records, write_records
from codistill.data.schema import (
    PLACEHOLDER,
    TASKS,
    AssertionRecord,
    CloneRecord,
    CodegenRecord,
    DefectRecord,
    RecordError,
    prompt_and_target,
)


def _codegen(**overrides) -> dict:
    d = {
        "id": "HumanEval/0",
        "source": "humaneval+",
        "prompt": "def add(a, b):\n    ",
        "entry_point": "add",
        "tests": "def check(f):\n    assert f(1, 2) == 3\n\ncheck(add)\n",
        "canonical_solution": "return a + b\n",
        "language": "python",
        "extra": {"plus_input": [[1, 2], [3, 4]], "atol": 0},
        "split": None,
    }
    d.update(overrides)
    return d


def _clone(**overrides) -> dict:
    d = {
        "id": "11-22",
        "code1": "int f() { return 1; }",
        "code2": "int g() { return 1; }",
        "label": 1,
        "language": "java",
        "extra": {"id1": "11", "id2": "22"},
        "split": "train",
    }
    d.update(overrides)
    return d


def _defect(**overrides) -> dict:
    d = {
        "id": "7",
        "code": "int f(char *p) { return p[9]; }",
        "label": 0,
        "language": "c",
        "project": "qemu",
        "extra": {"commit_id": "abc"},
        "split": "test",
    }
    d.update(overrides)
    return d


FACTORIES = {"codegen": _codegen, "clone": _clone, "defect": _defect}


def test_every_new_task_is_registered_under_its_name():
    assert TASKS["codegen"] is CodegenRecord
    assert TASKS["clone"] is CloneRecord
    assert TASKS["defect"] is DefectRecord
    assert TASKS["assertion"] is AssertionRecord


@pytest.mark.parametrize("task", sorted(FACTORIES))
def test_records_of_each_task_read_back_equal_through_jsonl(tmp_path, task):
    cls = TASKS[task]
    records = [cls.from_dict(FACTORIES[task](id=f"r{i}"), f"mem:{i}") for i in range(3)]
    path = tmp_path / f"{task}.jsonl"
    write_records(path, records)
    assert read_records(path, task=task) == records


def test_optional_fields_may_be_left_out_of_the_json():
    d = _codegen()
    for name in ("canonical_solution", "extra", "split", "language"):
        del d[name]
    record = CodegenRecord.from_dict(d, "f:1")
    assert (record.canonical_solution, record.extra, record.split, record.language) == (
        None,
        {},
        None,
        "python",
    )


def test_required_field_missing_is_reported_with_file_line_and_field():
    d = _codegen()
    del d["tests"]
    with pytest.raises(RecordError, match=r"^data\.jsonl:4: field 'tests' missing$"):
        CodegenRecord.from_dict(d, "data.jsonl:4")


def test_bad_line_in_a_task_file_is_reported_with_file_and_line(tmp_path):
    path = tmp_path / "clone.jsonl"
    lines = [json.dumps(_clone(id="a")), json.dumps(_clone(id="b", label=2))]
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(RecordError, match=rf"^{path}:2: field 'label' expected one of 0, 1"):
        read_records(path, task="clone")


@pytest.mark.parametrize("task", ["clone", "defect"])
def test_label_true_is_not_accepted_for_1(task):
    with pytest.raises(RecordError, match="field 'label'"):
        TASKS[task].from_dict(FACTORIES[task](label=True), "f:1")


def test_codegen_language_outside_the_sandboxs_languages_is_rejected():
    assert CodegenRecord.from_dict(_codegen(language="java"), "f:1").language == "java"
    expected = "field 'language' expected one of 'python', 'javascript'"
    with pytest.raises(RecordError, match=expected):
        CodegenRecord.from_dict(_codegen(language="rust"), "f:1")


def test_defect_language_outside_allowed_values_is_rejected():
    with pytest.raises(RecordError, match="field 'language' expected one of 'python', 'java'"):
        DefectRecord.from_dict(_defect(language="cobol"), "f:1")


def test_entry_point_must_be_an_identifier():
    with pytest.raises(RecordError, match="field 'entry_point' expected a Python identifier"):
        CodegenRecord.from_dict(_codegen(entry_point="add two"), "f:1")


def test_extra_must_be_a_json_object():
    with pytest.raises(RecordError, match="field 'extra' expected a JSON object, got list"):
        CloneRecord.from_dict(_clone(extra=[1]), "f:1")


@pytest.mark.parametrize("field", ["code1", "code2"])
def test_empty_clone_fragment_is_rejected(field):
    with pytest.raises(RecordError, match=f"field '{field}' must not be empty"):
        CloneRecord.from_dict(_clone(**{field: " "}), "f:1")


def test_unexpected_field_is_rejected_for_new_tasks_too():
    with pytest.raises(RecordError, match="f:2: unexpected field 'commit_id'"):
        DefectRecord.from_dict(_defect(commit_id="abc"), "f:2")


def test_canonical_solution_may_be_null_or_empty():
    assert CodegenRecord.from_dict(_codegen(canonical_solution=None), "f:1")
    assert CodegenRecord.from_dict(_codegen(canonical_solution=""), "f:1")


def test_records_with_extra_fields_are_hashable():
    a = CodegenRecord.from_dict(_codegen(), "f:1")
    b = CodegenRecord.from_dict(_codegen(), "f:2")
    assert len({a, b}) == 1


def test_prompt_and_target_of_each_task():
    assertion = AssertionRecord(
        id="a",
        language="python",
        repository="r",
        focal_path="m.py",
        focal_name="f",
        focal_code="def f(): return 1",
        test_path="t.py",
        test_name="test_f",
        test_code=f"def test_f():\n    {PLACEHOLDER}",
        target="assert f() == 1",
        assert_line=2,
        focal_link="name",
        split=None,
    )
    assert prompt_and_target(assertion) == (
        "def f(): return 1\n\ndef test_f():\n    ",
        "assert f() == 1",
    )
    codegen = CodegenRecord.from_dict(_codegen(), "f:1")
    assert prompt_and_target(codegen) == (codegen.prompt, "return a + b\n")
    clone = CloneRecord.from_dict(_clone(), "f:1")
    assert prompt_and_target(clone) == (f"{clone.code1}\n{clone.code2}", "1")
    defect = DefectRecord.from_dict(_defect(), "f:1")
    assert prompt_and_target(defect) == (defect.code, "0")
