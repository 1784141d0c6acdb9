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


# --- cutting long prompts -------------------------------------------------------------------


def test_a_prompt_within_the_limit_is_not_cut():
    from codistill.data.prompts import cut_prompt

    assert cut_prompt([1, 5, 6], 3, "middle", bos=1) == [1, 5, 6]


def test_left_truncation_keeps_bos_and_the_last_tokens():
    from codistill.data.prompts import cut_prompt

    ids = [1, *range(10, 20)]
    assert cut_prompt(ids, 5, "left", bos=1) == [1, 16, 17, 18, 19]
    assert cut_prompt(list(range(10, 20)), 4, "left", bos=None) == [16, 17, 18, 19]


def test_middle_truncation_keeps_bos_the_first_half_and_the_last_half():
    from codistill.data.prompts import cut_prompt

    ids = [1, *range(10, 20)]
    assert cut_prompt(ids, 6, "middle", bos=1) == [1, 10, 11, 17, 18, 19]
    assert cut_prompt(list(range(10, 20)), 5, "middle") == [10, 11, 17, 18, 19]


def test_middle_truncation_keeps_a_prefix_shared_by_growing_prompts():
    """The assertions of one test method: each prompt extends the previous one. Cut from the
    left they share no prefix once long; cut in the middle they share the head."""
    from codistill.data.prompts import cut_prompt

    method = list(range(100, 160))
    shorter, longer = method[:40], method[:55]
    left = cut_prompt(shorter, 32, "left"), cut_prompt(longer, 32, "left")
    middle = cut_prompt(shorter, 32, "middle"), cut_prompt(longer, 32, "middle")
    assert left[0][0] != left[1][0]
    assert middle[0][:16] == middle[1][:16] == method[:16]
    assert middle[1][16:] == method[55 - 16 : 55]


def test_an_unknown_truncation_is_refused_by_name():
    from codistill.data.prompts import cut_prompt

    with pytest.raises(ValueError, match="truncation must be one of left, middle, got 'right'"):
        cut_prompt([1, 2, 3], 2, "right")


def test_encode_prompts_cuts_as_training_does(tiny_setup):
    import dataclasses

    from codistill.data.batches import tokenize_records
    from codistill.data.prompts import encode_prompts
    from codistill.models.loading import load_tokenizer
    from tests.helpers import make_records

    tok = load_tokenizer(tiny_setup["teacher"])
    lines = "".join(f"    v{i} = f({i})\n" for i in range(30))
    (base,) = make_records(1, "test")
    record = dataclasses.replace(base, test_code=base.test_code.replace("    <", lines + "    <"))
    for truncation in ("left", "middle"):
        (ids,) = encode_prompts(tok, [record], 24, truncation=truncation)
        examples, stats = tokenize_records(
            [record], tok, max_source_tokens=24, max_target_tokens=16, truncation=truncation
        )
        assert stats.truncated_prompts == 1 and len(ids) == 24
        assert ids == examples[0].prompt_ids
    left, middle = (encode_prompts(tok, [record], 24, truncation=t)[0] for t in ("left", "middle"))
    assert left[-11:] == middle[-11:] and left[:12] != middle[:12]


def test_cut_text_cuts_characters_as_cut_prompt_cuts_ids():
    from codistill.data.prompts import cut_prompt, cut_text

    text = "abcdefghij"
    for truncation in ("left", "middle"):
        ids = cut_prompt(list(text), 5, truncation)
        assert cut_text(text, 5, truncation) == "".join(ids)
    assert cut_text(text, 5, "middle") == "abhij" and cut_text(text, 20, "middle") == text
    with pytest.raises(ValueError, match="truncation must be one of"):
        cut_text(text, 5, "right")
