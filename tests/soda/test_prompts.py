import hashlib
import shutil

import pytest

from codistill.soda.prompts import (
    FAULT_TYPES,
    PACKAGE_TEMPLATES,
    TEMPLATE_NAMES,
    Prompt,
    TemplateError,
    load_template,
    load_templates,
    parse_new_question,
    render_correct,
    render_faulty,
    render_judge,
    render_new_question,
    templates_sha256,
)

QUESTION = "Write a function add(a, b) that returns {'sum': a + b} and costs $5."


def _copy(tmp_path, name):
    """A user directory holding a copy of one packaged template, returned with its path."""
    path = tmp_path / f"{name}.txt"
    shutil.copy(PACKAGE_TEMPLATES / f"{name}.txt", path)
    return path


def test_every_packaged_template_loads_and_names_its_file():
    templates = load_templates()
    assert set(templates) == set(TEMPLATE_NAMES) == {"correct", "faulty", "judge", "new_questions"}
    for name, template in templates.items():
        assert template.path == PACKAGE_TEMPLATES / f"{name}.txt"
        assert template.sections["system"] and template.sections["user"]


def test_correct_prompt_carries_question_verbatim_braces_and_dollars_included():
    prompt = render_correct(load_template("correct"), QUESTION)
    assert isinstance(prompt, Prompt)
    assert QUESTION in prompt.user
    assert "${" not in prompt.user
    assert prompt.messages() == [
        {"role": "system", "content": prompt.system},
        {"role": "user", "content": prompt.user},
    ]
    assert prompt.text().startswith(prompt.system) and prompt.text().endswith(prompt.user)


def test_faulty_prompt_lists_the_five_fault_types_with_definitions():
    template = load_template("faulty")
    user = render_faulty(template, QUESTION).user
    for heading in ("Syntax Error:", "Logical Error:", "Type Error:", "Name Error:"):
        assert heading in user
    assert "Timeout Error:" in user and "loop" in user
    assert set(FAULT_TYPES) == {"syntax", "logic", "type", "name", "timeout"}


def test_faulty_prompt_can_ask_for_one_fault_type_only():
    user = render_faulty(load_template("faulty"), QUESTION, ("name",)).user
    assert "Name Error:" in user
    assert "Syntax Error:" not in user and "Timeout Error:" not in user


def test_faulty_prompt_refuses_an_unknown_fault_type():
    with pytest.raises(TemplateError, match="unknown fault type 'memory'"):
        render_faulty(load_template("faulty"), QUESTION, ("memory",))


def test_judge_prompt_has_the_six_point_rubric_and_the_score_line_format():
    user = render_judge(load_template("judge"), QUESTION, "def add(a, b):\n    return a + b").user
    assert "return a + b" in user
    for criterion, points in [
        ("Basic functionality", 2),
        ("Boundary checks", 1),
        ("Requirement coverage", 1),
        ("Readability and documentation", 1),
        ("Coding practices", 1),
    ]:
        assert f"{criterion} ({points} point" in user
    assert "Score: <total>" in user and "Code Analysis:" in user


@pytest.mark.parametrize("level", ["easy", "medium", "hard"])
def test_new_question_prompt_uses_the_level_instruction(level):
    template = load_template("new_questions")
    user = render_new_question(template, QUESTION, level, "assert add(1, 2) == 3").user
    assert template.sections[level].strip() in user
    assert "assert add(1, 2) == 3" in user and "#Created Instruction#" in user
    assert ("harder" in user) == (level == "easy")


def test_new_question_prompt_refuses_an_unknown_level():
    with pytest.raises(TemplateError, match="unknown level 'expert'"):
        render_new_question(load_template("new_questions"), QUESTION, "expert")


def test_sha256_is_of_the_file_bytes_and_changes_with_an_edit(tmp_path):
    packaged = load_template("judge")
    assert packaged.sha256 == hashlib.sha256(packaged.path.read_bytes()).hexdigest()
    path = _copy(tmp_path, "judge")
    path.write_text(path.read_text() + "\nBe strict.\n")
    edited = load_template("judge", tmp_path)
    assert edited.path == path and edited.sha256 != packaged.sha256
    assert templates_sha256({"judge": edited}) != templates_sha256({"judge": packaged})


def test_a_user_directory_overrides_only_the_templates_it_holds(tmp_path):
    path = _copy(tmp_path, "correct")
    path.write_text(path.read_text().replace("You are", "You, the user's model, are"))
    templates = load_templates(tmp_path)
    assert templates["correct"].path == path
    assert "the user's model" in render_correct(templates["correct"], "q").system
    assert templates["judge"].path == PACKAGE_TEMPLATES / "judge.txt"


def test_a_missing_placeholder_is_an_error_naming_file_and_placeholder(tmp_path):
    path = _copy(tmp_path, "judge")
    path.write_text(path.read_text().replace("${solution}", "(the code)"))
    with pytest.raises(TemplateError, match=r"judge\.txt: missing placeholder \$\{solution\}"):
        load_template("judge", tmp_path)


def test_an_unknown_placeholder_is_an_error_naming_file_and_placeholder(tmp_path):
    path = _copy(tmp_path, "correct")
    path.write_text(path.read_text().replace("${question}", "${question} in ${language}"))
    with pytest.raises(TemplateError, match=r"correct\.txt: unknown placeholder \$\{language\}"):
        load_template("correct", tmp_path)


def test_a_stray_dollar_is_an_error_and_a_doubled_one_is_literal(tmp_path):
    path = _copy(tmp_path, "correct")
    original = path.read_text()
    path.write_text(original.replace("#Given Instruction#\n", "#Given Instruction# $ 5\n", 1))
    with pytest.raises(TemplateError, match=r"correct\.txt: a '\$'"):
        load_template("correct", tmp_path)
    path.write_text(original.replace("#Given Instruction#\n", "#Given Instruction# $$5\n", 1))
    assert "#Given Instruction# $5" in render_correct(load_template("correct", tmp_path), "q").user


def test_a_placeholder_outside_the_user_message_is_an_error(tmp_path):
    path = _copy(tmp_path, "correct")
    path.write_text(path.read_text().replace("code.\n<<<user>>>", "code. ${question}\n<<<user>>>"))
    with pytest.raises(TemplateError, match=r"placeholder \$\{question\} in <<<system>>>"):
        load_template("correct", tmp_path)


def test_a_missing_fault_type_section_is_an_error(tmp_path):
    path = _copy(tmp_path, "faulty")
    text = path.read_text()
    path.write_text(text[: text.index("<<<timeout>>>")])
    with pytest.raises(TemplateError, match=r"faulty\.txt: missing section <<<timeout>>>"):
        load_template("faulty", tmp_path)


def test_an_unknown_section_and_text_before_the_first_section_are_errors(tmp_path):
    path = _copy(tmp_path, "correct")
    original = path.read_text()
    path.write_text(original + "<<<memory>>>\nOut of memory.\n")
    with pytest.raises(TemplateError, match=r"unknown section <<<memory>>>"):
        load_template("correct", tmp_path)
    path.write_text("A preamble.\n" + original)
    with pytest.raises(TemplateError, match=r"correct\.txt:1: text before"):
        load_template("correct", tmp_path)


def test_a_misnamed_file_in_the_user_directory_is_refused(tmp_path):
    shutil.copy(PACKAGE_TEMPLATES / "correct.txt", tmp_path / "corect.txt")
    with pytest.raises(TemplateError, match=r"corect\.txt: not a SODA template name"):
        load_templates(tmp_path)


def test_a_missing_directory_or_template_name_is_an_error(tmp_path):
    with pytest.raises(TemplateError, match="template directory does not exist"):
        load_template("correct", tmp_path / "nope")
    with pytest.raises(TemplateError, match="unknown template 'critic'"):
        load_template("critic")


def test_rendering_without_a_used_field_is_an_error_naming_it(tmp_path):
    template = load_template("judge")
    with pytest.raises(TemplateError, match=r"no value given for placeholder \$\{solution\}"):
        template.render(question="q")


def test_a_renderer_refuses_another_template():
    with pytest.raises(TemplateError, match="expected the 'judge' template"):
        render_judge(load_template("correct"), "q", "s")


NEW_ANSWER = """Here is a new question.
**#Created Instruction#**
Write a function count_vowels(s) that returns how many vowels s holds.
#Tests#
```python
assert count_vowels("hello") == 2
assert count_vowels("") == 0
```
"""


def test_parse_new_question_reads_instruction_and_fenced_tests():
    instruction, tests = parse_new_question(NEW_ANSWER)
    assert instruction == "Write a function count_vowels(s) that returns how many vowels s holds."
    assert tests == 'assert count_vowels("hello") == 2\nassert count_vowels("") == 0'


@pytest.mark.parametrize(
    "answer",
    [
        "Write a function f(x).\nassert f(1) == 1",  # no markers
        NEW_ANSWER.replace("#Tests#", "Tests:"),
        NEW_ANSWER.replace('assert count_vowels("hello") == 2', "x = 1"),  # not only asserts
        NEW_ANSWER.replace("== 0\n", "== 0 +\n"),  # does not parse
        NEW_ANSWER.replace(
            "Write a function count_vowels(s) that returns how many vowels s holds.", ""
        ),
        NEW_ANSWER + "\n#Created Instruction#\nAnother one.\n",
    ],
)
def test_parse_new_question_rejects_what_cannot_be_verified(answer):
    assert parse_new_question(answer) is None
