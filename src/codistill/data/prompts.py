"""How a prompt reaches a model and how its answer comes back: raw completion or chat template.

Base models (Gemma 3 270M) continue text, so the task's prompt goes in as it is (``raw``).
Instruct models (the Qwen2.5-Coder ``-Instruct`` models) were tuned on their chat template: in
``chat`` mode the task becomes one user message, the template adds the assistant turn, and the
answer (usually a fenced code block holding the whole function) is turned back into a
completion of the original prompt. Both modes exist for both model kinds; which one a run used
is recorded in its ``run.json``/``metrics.json``.

Everything that touches a model's raw text on the way in or out is here, in one place, so
training, teacher generation and evaluation cannot drift apart.
"""

from __future__ import annotations

import ast
import re
import textwrap

from codistill.data.code_text import function_body
from codistill.data.schema import PLACEHOLDER, AssertionRecord, CodegenRecord

PROMPT_MODES = ("raw", "chat")

# One user message per code-generation task in chat mode. The prompt is given as code to
# complete, and the whole function is asked back in one block so it can be found reliably.
CODEGEN_INSTRUCTION = (
    "Complete the following Python code. Reply with the complete code (imports and the whole "
    "function) in a single ```python code block.\n\n```python\n{prompt}```\n"
)
# Other languages' names and fence tags, for the same instruction.
LANGUAGE_NAMES = {"javascript": "JavaScript", "c": "C", "cpp": "C++", "java": "Java"}


def codegen_instruction(language: str = "python") -> str:
    """:data:`CODEGEN_INSTRUCTION`, for ``language``'s code."""
    if language == "python":
        return CODEGEN_INSTRUCTION
    name = LANGUAGE_NAMES[language]
    return (
        f"Complete the following {name} code. Reply with the complete code in a single "
        f"```{language} code block.\n\n```{language}\n{{prompt}}```\n"
    )


_FENCE = re.compile(r"```[ \t]*([A-Za-z0-9_+-]*)[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL)


def check_prompt_mode(mode: str) -> str:
    if mode not in PROMPT_MODES:
        raise ValueError(f"prompt mode must be one of {', '.join(PROMPT_MODES)}, got {mode!r}")
    return mode


def has_chat_template(tokenizer) -> bool:
    return bool(getattr(tokenizer, "chat_template", None))


def render_prompt(tokenizer, text: str, mode: str, instruction: str = "{prompt}") -> str:
    """The text a model is given for ``text``: itself (``raw``) or one user turn of the model's
    chat template with the assistant turn opened (``chat``).

    Args:
        tokenizer: the model's tokenizer (its ``chat_template`` is used in chat mode).
        text: the task's prompt.
        mode: ``raw`` or ``chat``.
        instruction: chat mode only: the user message, with ``{prompt}`` where ``text`` goes.

    Raises:
        ValueError: an unknown mode, or chat mode for a tokenizer without a chat template.
    """
    if check_prompt_mode(mode) == "raw":
        return text
    if not has_chat_template(tokenizer):
        name = getattr(tokenizer, "name_or_path", "") or "this tokenizer"
        raise ValueError(f"prompt_mode=chat: {name} has no chat template; use prompt_mode=raw")
    message = instruction.replace("{prompt}", text)
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": message}], tokenize=False, add_generation_prompt=True
    )


def chat_template_adds_bos(tokenizer) -> bool:
    """True when the rendered chat text already starts with the BOS token, so encoding it must
    not add another one."""
    bos = getattr(tokenizer, "bos_token", None)
    return bool(bos) and render_prompt(tokenizer, "x", "chat").startswith(bos)


def fix_first_line_indent(completion: str, prompt: str) -> str:
    """Undo the one-space slip the Qwen2.5-Coder models make on the first line of a raw
    completion (``'     return x'`` after a 4-space body), which would not compile.

    The first line is de-indented by one space when it is indented by exactly one space, or by
    one more than the next non-blank line of the completion (or, for a one-line completion, than
    an indentation level of the prompt). Other completions are returned as is.
    """
    lines = completion.split("\n")
    first = lines[0]
    indent = len(first) - len(first.lstrip(" "))
    if not first.strip() or indent == 0:
        return completion
    expected = _next_indents(lines[1:]) or _prompt_indents(prompt)
    # A one-space first line is the slip on a whole program (MBPP-style answers at column 0).
    if indent == 1 or (indent - 1 in expected and indent not in expected):
        lines[0] = first[1:]
    return "\n".join(lines)


def _next_indents(lines: list[str]) -> set[int]:
    for line in lines:
        if line.strip():
            return {len(line) - len(line.lstrip(" "))}
    return set()


def _prompt_indents(prompt: str) -> set[int]:
    """Indentation levels a completion of ``prompt`` may start at: those of the prompt's
    indented lines (a docstring's body included), or 4 when it has none."""
    levels = {len(x) - len(x.lstrip(" ")) for x in prompt.split("\n") if x.strip()}
    levels.discard(0)
    return levels or {4}


# The tags a fenced block of each language carries (besides none at all).
_FENCE_TAGS = {
    "python": ("python", "py", "python3"),
    "javascript": ("javascript", "js", "node"),
    "c": ("c",),
    "cpp": ("cpp", "c++", "cxx"),
    "java": ("java",),
}


def extract_code(response: str, language: str = "python") -> str:
    """The code of a chat answer: the first fenced block tagged ``language`` (or untagged),
    else the first fenced block, else the whole answer (models sometimes skip the fence)."""
    blocks = _FENCE.findall(response)
    tags = ("", *_FENCE_TAGS.get(language, (language,)))
    for tag, body in blocks:
        if tag.lower() in tags:
            return body
    if blocks:
        return blocks[0][1]
    return response


def completion_from_chat(response: str, prompt: str, entry_point: str | None) -> str:
    """Turn a chat answer into a completion of the raw ``prompt``, so ``prompt + completion``
    is the program to test, as for a base model.

    When the answer's code defines ``entry_point`` at top level, its definitions follow the
    prompt on new lines: the prompt's own definition (its docstring is a valid body, or it is
    given ``pass``) is replaced by the answer's, and the prompt's imports stay. Otherwise the
    code is taken as a body continuing the prompt, indented to the prompt's indentation when it
    is not already.
    """
    code = extract_code(response).rstrip() + "\n"
    if entry_point and _defines(code, entry_point):
        return _close_prompt(prompt) + "\n" + definitions_only(code)
    indent = min(_prompt_indents(prompt))
    if code.strip() and not code.startswith(" "):
        code = textwrap.indent(code, " " * indent)
    return code


_DEFINITIONS = (
    ast.Import,
    ast.ImportFrom,
    ast.FunctionDef,
    ast.AsyncFunctionDef,
    ast.ClassDef,
    ast.Assign,
    ast.AnnAssign,
)


def definitions_only(code: str) -> str:
    """``code`` without its top-level statements that are not imports, definitions or
    assignments: chat answers often end with example calls, prints or asserts of their own,
    which are not part of the solution and may fail or block (evalplus sanitises the same
    way). Code that does not parse is returned unchanged."""
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return code
    lines = code.splitlines(keepends=True)
    kept = []
    for node in tree.body:
        if isinstance(node, _DEFINITIONS):
            start = min([node.lineno] + [d.lineno for d in getattr(node, "decorator_list", [])])
            kept.append("".join(lines[start - 1 : node.end_lineno]))
    return "".join(kept)


def _close_prompt(prompt: str) -> str:
    """What makes ``prompt`` a complete program before a whole new definition follows it:
    nothing when it already is one (a HumanEval docstring is a body), else a ``pass`` body for
    a signature that ends it without one."""
    if python_parses(prompt):
        return ""
    for indent in sorted(_prompt_indents(prompt) | {4}):
        body = " " * indent + "pass\n"
        if python_parses(prompt + body):
            return body
    return ""


def python_parses(code: str) -> bool:
    """Whether ``code`` is a valid Python module (a null byte is a ValueError, not a parse)."""
    try:
        ast.parse(code)
    except (SyntaxError, ValueError):
        return False
    return True


def _defines(code: str, name: str) -> bool:
    try:
        tree = ast.parse(code)
    except SyntaxError:
        return bool(re.search(rf"^(async\s+)?def\s+{re.escape(name)}\s*\(", code, re.MULTILINE))
    return any(
        isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name
        for node in tree.body
    )


def _native_chat_completion(code: str, prompt: str, entry_point: str | None) -> str:
    """A chat answer's code as the completion of a prompt in a C-family language.

    A prompt left open at a function's ``{`` (MultiPL-E's; its tests close the function) takes
    the body of the answer's definition of ``entry_point``, or the whole code when the answer
    is only a body. Otherwise (a prompt that is a comment) the code follows the prompt, less
    the prompt's own text where the answer repeats it.
    """
    if entry_point and prompt.rstrip().endswith("{"):
        body = function_body(code, entry_point)
        return (code if body is None else body).strip("\n") + "\n"
    code, head = code.lstrip(), prompt.strip()
    if head and code.startswith(head):
        code = code[len(head) :]
    return code.strip("\n") + "\n"


def completion_from_output(
    output: str,
    prompt: str,
    mode: str,
    entry_point: str | None = None,
    language: str = "python",
) -> str:
    """A model's generated text as a completion of the raw ``prompt``: chat answers through
    :func:`completion_from_chat` (in another language than Python: the answer's code block,
    which follows the prompt as it is), raw continuations through
    :func:`fix_first_line_indent`."""
    if check_prompt_mode(mode) == "chat":
        if language != "python":
            return _native_chat_completion(extract_code(output, language), prompt, entry_point)
        return completion_from_chat(output, prompt, entry_point)
    return fix_first_line_indent(output, prompt)


def assertion_prompt(record: AssertionRecord, style: str = "prefix") -> str:
    """The text a model continues (or, encoder-decoder, reads) to write the missing assertion.

    The focal method (when linked) comes first as context. ``prefix`` then gives the test method
    up to the masked assertion, ending with its indentation, for decoder-only models that
    continue text. ``placeholder`` gives the whole test method with ``<AssertPlaceHolder>``
    where the assertion was (the ATLAS/Methods2Test input), then asks for that line.
    """
    comment = "//" if record.language == "java" else "#"
    parts = []
    if record.focal_code:
        parts.append(f"{comment} Method under test: {record.focal_name}\n{record.focal_code}\n\n")
    if style == "prefix":
        parts.append(f"{comment} Test\n")
        parts.append(record.prompt_prefix())
    elif style == "placeholder":
        parts.append(f"{comment} Test\n{record.test_code.rstrip()}\n")
        parts.append(f"{comment} {PLACEHOLDER}:\n")
    else:
        raise ValueError(f"prompt style must be 'prefix' or 'placeholder', got {style!r}")
    return "".join(parts)


def is_whole_program(record: CodegenRecord) -> bool:
    """Whether ``record`` is answered by a whole program (MBPP-style: ``source`` starting with
    ``mbpp``, its prompt a description) rather than by a continuation of its prompt."""
    return record.source.lower().startswith("mbpp")


def codegen_program(record: CodegenRecord, completion: str) -> str:
    """The whole program a completion of ``record`` stands for.

    MBPP-style records (``source`` starting with ``mbpp``; their prompt is a description) are
    answered by a whole program; a completion that defines the entry point at top level (a chat
    answer, as :func:`codistill.data.prompts.completion_from_chat` returns it) is one too;
    anything else (HumanEval-style bodies, the canonical solutions included) continues the
    prompt.
    """
    if record.language != "python":  # the solution follows the prompt (a comment or signature)
        return record.prompt + completion
    if is_whole_program(record):
        return completion
    defines = rf"^(async\s+)?def\s+{re.escape(record.entry_point)}\s*\("
    if re.search(defines, completion, re.MULTILINE):
        return completion
    return record.prompt + completion


def codegen_texts(
    record: CodegenRecord, tokenizer, mode: str = "raw", solution: str | None = None
) -> tuple[str, str] | None:
    """The prompt a model is given and the target it is trained to write, or None when the
    record has no solution (no ``canonical_solution`` and no ``solution`` given).

    ``raw``: the record's prompt, then the solution text as it continues the prompt (HumanEval:
    the canonical body; MBPP: the whole program after the description). ``chat``: one user turn
    of the tokenizer's chat template asking for the code (:func:`codegen_instruction`), and as
    target the fenced whole program (:func:`codegen_program`), which is what an instruct model's
    answer looks like and what :func:`completion_from_chat` reads back.

    Args:
        record: the problem.
        tokenizer: supplies the chat template in chat mode.
        mode: ``raw`` or ``chat``.
        solution: a completion of the prompt to train on instead of the canonical solution
            (a teacher's output: sequence-level KD).

    Raises:
        ValueError: chat mode with a tokenizer that has no chat template, or an unknown mode.
    """
    solution = record.canonical_solution if solution is None else solution
    if not solution or not solution.strip():
        return None
    prompt = render_prompt(tokenizer, record.prompt, mode, codegen_instruction(record.language))
    if mode == "raw":
        return prompt, solution
    program = codegen_program(record, solution).strip("\n")
    return prompt, f"```{record.language}\n{program}\n```"


def record_texts(
    record: AssertionRecord | CodegenRecord,
    tokenizer,
    prompt_style: str = "prefix",
    prompt_mode: str = "raw",
) -> tuple[str, str] | None:
    """(prompt, target) of any trainable record; None for a code problem without a solution."""
    if isinstance(record, CodegenRecord):
        return codegen_texts(record, tokenizer, prompt_mode)
    return assertion_prompt(record, prompt_style), record.target


TRUNCATIONS = ("left", "middle")


def cut_prompt(
    ids: list[int], limit: int, truncation: str = "left", bos: int | None = None
) -> list[int]:
    """``ids`` cut to at most ``limit`` tokens, a leading ``bos`` kept.

    ``left`` keeps the last tokens: the context nearest the answer. ``middle`` keeps the first
    half and the last half and drops what lies between, so the head of a test method (its
    signature, its setup) stays too; and records that share a head (the assertions of one test
    method, in corpus order) share a token prefix even once cut, which a teacher that reuses a
    prompt prefix (``LlamaCppTeacher``) decodes once. Left-truncation moves the start of every
    cut prompt and shares nothing.
    """
    if len(ids) <= limit:
        return ids
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    keep_bos = bos is not None and bool(ids) and ids[0] == bos
    body, room = ids[int(keep_bos) :], limit - int(keep_bos)
    head = room // 2 if truncation == "middle" else 0
    tail = body[len(body) - (room - head) :] if room > head else []
    return ([bos] if keep_bos else []) + body[:head] + tail


def cut_text(text: str, limit: int, truncation: str = "left") -> str:
    """``text`` cut to at most ``limit`` characters as :func:`cut_prompt` cuts ids: for a
    server that tokenizes the text itself, when no tokenizer is at hand."""
    if len(text) <= limit:
        return text
    if truncation not in TRUNCATIONS:
        raise ValueError(f"truncation must be one of {', '.join(TRUNCATIONS)}, got {truncation!r}")
    head = limit // 2 if truncation == "middle" else 0
    return text[:head] + text[len(text) - (limit - head) :]


def encode_prompts(
    tokenizer,
    records: list[AssertionRecord],
    max_source_tokens: int,
    style: str = "prefix",
    truncation: str = "left",
) -> list[list[int]]:
    """Prompt ids in the tokenizer's own vocabulary, cut as training cuts them
    (:func:`cut_prompt`): what a model is given at inference, outside training's
    teacher-tokenized-and-mapped path."""
    bos = tokenizer.bos_token_id
    return [
        cut_prompt(
            tokenizer(assertion_prompt(r, style))["input_ids"], max_source_tokens, truncation, bos
        )
        for r in records
    ]
