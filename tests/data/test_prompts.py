"""Raw and chat prompts, and turning a model's text back into a completion to run."""

from __future__ import annotations

import pytest

from codistill.data.prompts import (
    completion_from_chat,
    completion_from_output,
    extract_code,
    fix_first_line_indent,
    render_prompt,
)

PROMPT = 'def add(a, b):\n    """Return a + b.\n    >>> add(1, 2)\n    3\n    """\n'
TESTS = "assert add(1, 2) == 3\nassert add(-1, 1) == 0\n"


def runs(program: str) -> bool:
    namespace: dict = {}
    try:
        exec(compile(program + "\n" + TESTS, "p", "exec"), namespace)
    except Exception:
        return False
    return True


def test_the_one_space_slip_on_a_raw_completion_is_undone():
    slipped = "     return a + b\n"
    assert not runs(PROMPT + slipped)
    fixed = fix_first_line_indent(slipped, PROMPT)
    assert fixed == "    return a + b\n" and runs(PROMPT + fixed)


def test_the_slip_is_undone_when_later_lines_show_the_level():
    slipped = "     s = a\n    s += b\n    return s\n"
    assert fix_first_line_indent(slipped, PROMPT) == "    s = a\n    s += b\n    return s\n"


@pytest.mark.parametrize(
    "completion",
    ["    return a + b\n", "    if a:\n        return a + b\n    return b\n", "\n    return a + b"],
)
def test_well_indented_completions_are_left_alone(completion):
    assert fix_first_line_indent(completion, PROMPT) == completion


def test_a_whole_program_at_column_one_is_moved_to_column_zero():
    program = " def add(a, b):\n    return a + b\n"
    assert fix_first_line_indent(program, "Write a function add.\n").startswith("def add")


def test_chat_answer_with_the_whole_function_replaces_the_prompts_definition():
    answer = "Here it is:\n```python\ndef add(a, b):\n    return a + b\n```\nDone."
    completion = completion_from_chat(answer, PROMPT, "add")
    assert runs(PROMPT + completion)


def test_chat_answer_with_only_a_body_continues_the_prompt():
    answer = "```python\nreturn a + b\n```"
    completion = completion_from_chat(answer, PROMPT, "add")
    assert completion == "    return a + b\n" and runs(PROMPT + completion)


def test_extract_code_prefers_the_python_block_and_survives_a_missing_fence():
    assert extract_code("```text\nx\n```\n```python\ny = 1\n```") == "y = 1\n"
    assert extract_code("```python\ny = 1\n") == "y = 1\n"  # cut off before the closing fence
    assert extract_code("y = 1") == "y = 1"


def test_completion_from_output_dispatches_on_the_mode():
    assert completion_from_output("     return a + b", PROMPT, "raw") == "    return a + b"
    answer = "```python\ndef add(a, b):\n  return a+b\n```"
    chat = completion_from_output(answer, PROMPT, "chat", "add")
    assert runs(PROMPT + chat)
    with pytest.raises(ValueError, match="prompt mode must be one of raw, chat"):
        completion_from_output("x", PROMPT, "fim")


class _Tok:
    def __init__(self, template):
        self.chat_template = template
        self.name_or_path = "tiny"

    def apply_chat_template(self, messages, tokenize, add_generation_prompt):
        assert not tokenize and add_generation_prompt
        return f"<user>{messages[0]['content']}</user><assistant>"


def test_render_prompt_raw_is_the_text_and_chat_uses_the_template():
    assert render_prompt(_Tok(None), PROMPT, "raw") == PROMPT
    rendered = render_prompt(_Tok("t"), PROMPT, "chat", instruction="Complete:\n{prompt}")
    assert rendered == f"<user>Complete:\n{PROMPT}</user><assistant>"
    with pytest.raises(ValueError, match="tiny has no chat template; use prompt_mode=raw"):
        render_prompt(_Tok(None), PROMPT, "chat")


def test_chat_answers_lose_their_example_calls_and_asserts():
    answer = (
        "```python\nimport math\n\n@staticmethod\ndef add(a, b):\n    return a + b\n\n"
        "print(add(1, 2))\nassert add(1, 1) == 3\nwhile True:\n    pass\n```"
    )
    completion = completion_from_chat(answer, PROMPT, "add")
    assert "print" not in completion and "while True" not in completion
    assert "import math" in completion and "@staticmethod" in completion


def test_a_bare_signature_prompt_is_closed_before_the_answers_definition():
    prompt = "import math\n\ndef add(a, b):\n"
    completion = completion_from_chat(
        "```python\ndef add(a, b):\n    return a + b\n```", prompt, "add"
    )
    namespace: dict = {}
    exec(compile(prompt + completion, "p", "exec"), namespace)
    assert namespace["add"](2, 3) == 5
