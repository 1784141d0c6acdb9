"""SODA's prompt templates (the paper's Fig. 3) as editable text files.

Four templates ship in ``codistill/soda/templates/``:

* ``correct.txt`` — P_c, a correct solution to a question (Fig. 3A);
* ``faulty.txt`` — P_f, a solution with deliberate errors of the five fault types (Fig. 3B);
* ``judge.txt`` — the six-point scoring rubric; its answer ends with ``Score: N`` (Fig. 3C);
* ``new_questions.txt`` — a new question with tests, per difficulty level (Fig. 3D).

A template file is made of sections, each opened by a line ``<<<name>>>``. ``system`` and
``user`` are the two messages; the other sections are snippets the renderer inserts: the fault
types' one-line definitions in ``faulty.txt`` (``syntax``, ``logic``, ``type``, ``name``,
``timeout``) and the per-level instruction in ``new_questions.txt`` (``easy``, ``medium``,
``hard``). Fields are ``string.Template`` placeholders (``${question}``; a literal dollar is
``$$``) rather than ``str.format`` fields, so braces in code examples need no escaping.

A user may pass a directory holding their own versions of any of the four files; the others
come from the package. Every file is checked when loaded: a section or a placeholder that the
template must have and lacks, or one it does not know, is a ``TemplateError`` naming the file.
The template's sha256 (of the file's bytes) goes into every cache key, so editing a template
invalidates exactly the answers it produced. :func:`parse_new_question` reads the answer format
``new_questions.txt`` asks for (the judge's answer is read by ``soda.judge.parse_score``).
"""

from __future__ import annotations

import ast
import hashlib
import re
import string
from dataclasses import dataclass
from pathlib import Path

from codistill.data.prompts import LANGUAGE_NAMES, extract_code

PACKAGE_TEMPLATES = Path(__file__).resolve().parent / "templates"
FAULT_TYPES = ("syntax", "logic", "type", "name", "timeout")
LEVELS = ("easy", "medium", "hard")

# name -> (placeholders the user message must use, placeholders it may use, snippet sections).
_SPECS: dict[str, tuple[frozenset[str], frozenset[str], tuple[str, ...]]] = {
    "correct": (frozenset({"question"}), frozenset(), ()),
    "faulty": (frozenset({"question", "fault_types"}), frozenset(), FAULT_TYPES),
    "judge": (frozenset({"question", "solution"}), frozenset(), ()),
    "new_questions": (
        frozenset({"question", "level_instruction"}),
        frozenset({"examples", "level"}),
        LEVELS,
    ),
}
TEMPLATE_NAMES = tuple(_SPECS)
_SECTION = re.compile(r"^<<<([a-z_]+)>>>[ \t]*$")
_CREATED = re.compile(r"^[ \t*_]*#\s*Created Instruction\s*#[ \t*_:]*$", re.I | re.M)
_TESTS = re.compile(r"^[ \t*_]*#\s*Tests\s*#[ \t*_:]*$", re.I | re.M)


class TemplateError(ValueError):
    """A template file that cannot be used, or a render call missing a field; one-line message."""


@dataclass(frozen=True)
class Prompt:
    """A rendered prompt: the system and user messages."""

    system: str
    user: str

    def messages(self) -> list[dict[str, str]]:
        """The chat form, for backends with a chat template or an OpenAI-compatible API."""
        return [{"role": "system", "content": self.system}, {"role": "user", "content": self.user}]

    def text(self) -> str:
        """One plain string, for raw completion backends: system, blank line, user."""
        return f"{self.system}\n\n{self.user}"


@dataclass(frozen=True)
class PromptTemplate:
    """One loaded, checked template.

    Attributes:
        name: one of ``TEMPLATE_NAMES``.
        path: the file it was read from.
        sections: section name -> text (``system``, ``user`` and the snippet sections).
        sha256: hex digest of the file's bytes, for cache keys.
    """

    name: str
    path: Path
    sections: dict[str, str]
    sha256: str

    def render(self, **fields: str) -> Prompt:
        """Fills the user message's placeholders.

        Args:
            **fields: one string per placeholder the template uses; a field the template does
                not use is ignored (the defaults use all of theirs, a user's may use fewer of
                the optional ones).

        Returns:
            The rendered ``Prompt``.

        Raises:
            TemplateError: a placeholder the template uses has no field.
        """
        user = string.Template(self.sections["user"])
        missing = [p for p in user.get_identifiers() if p not in fields]
        if missing:
            raise TemplateError(
                f"{self.path}: no value given for placeholder ${{{missing[0]}}} "
                f"(given: {', '.join(sorted(fields)) or 'none'})"
            )
        return Prompt(self.sections["system"], user.substitute(fields))


def load_template(name: str, directory: str | Path | None = None) -> PromptTemplate:
    """Loads and checks one template, from ``directory`` when it holds ``NAME.txt``.

    Args:
        name: one of ``TEMPLATE_NAMES``.
        directory: a folder of user templates overriding the packaged ones, or None.

    Raises:
        TemplateError: unknown name, a directory that does not exist, or a malformed file.
    """
    if name not in _SPECS:
        raise TemplateError(f"unknown template {name!r}; expected one of {', '.join(_SPECS)}")
    path = PACKAGE_TEMPLATES / f"{name}.txt"
    if directory is not None:
        folder = Path(directory)
        if not folder.is_dir():
            raise TemplateError(f"{folder}: template directory does not exist")
        if (folder / f"{name}.txt").is_file():
            path = folder / f"{name}.txt"
    data = path.read_bytes()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise TemplateError(f"{path}: not UTF-8 text ({err.reason} at byte {err.start})") from None
    sections = _parse_sections(text, path)
    _check(name, sections, path)
    return PromptTemplate(name, path, sections, hashlib.sha256(data).hexdigest())


def load_templates(directory: str | Path | None = None) -> dict[str, PromptTemplate]:
    """All four templates, user overrides from ``directory`` first.

    A ``.txt`` file in ``directory`` that is none of the templates is refused, so that a typo in
    a file name (``corect.txt``) does not silently leave the packaged template in use.
    """
    if directory is not None and Path(directory).is_dir():
        for path in sorted(Path(directory).glob("*.txt")):
            if path.stem not in _SPECS:
                raise TemplateError(
                    f"{path}: not a SODA template name; expected one of "
                    + ", ".join(f"{n}.txt" for n in _SPECS)
                )
    return {name: load_template(name, directory) for name in _SPECS}


def templates_sha256(templates: dict[str, PromptTemplate]) -> str:
    """One digest over several templates (name and file hash each), for a stage's cache key."""
    joined = "\n".join(f"{n}:{templates[n].sha256}" for n in sorted(templates))
    return hashlib.sha256(joined.encode()).hexdigest()


def question_text(record) -> str:
    """What the templates show as ``${question}``: the record's prompt, and for a question in
    another language than Python, which language to answer in (a prompt that is a comment
    does not say it, and the models default to Python)."""
    if record.language == "python":
        return record.prompt
    name = LANGUAGE_NAMES[record.language]
    return f"{record.prompt.rstrip()}\n\nWrite the solution in {name}, without a main function."


def render_correct(template: PromptTemplate, question: str) -> Prompt:
    """P_c(x): asks for a correct solution to ``question``."""
    return _expect(template, "correct").render(question=question)


def render_faulty(
    template: PromptTemplate, question: str, fault_types: tuple[str, ...] = FAULT_TYPES
) -> Prompt:
    """P_f(x): asks for a faulty solution with errors of ``fault_types`` (default: all five).

    Asking for one type at a time lets the caller check the solution fails for that reason.
    """
    _expect(template, "faulty")
    if not fault_types:
        raise TemplateError("fault_types must name at least one of " + ", ".join(FAULT_TYPES))
    unknown = [t for t in fault_types if t not in FAULT_TYPES]
    if unknown:
        raise TemplateError(f"unknown fault type {unknown[0]!r}; expected {', '.join(FAULT_TYPES)}")
    listing = "\n".join(f"- {template.sections[t].strip()}" for t in fault_types)
    return template.render(question=question, fault_types=listing)


def render_judge(template: PromptTemplate, question: str, solution: str) -> Prompt:
    """The scoring prompt for one (question, solution) pair."""
    return _expect(template, "judge").render(question=question, solution=solution)


def render_new_question(
    template: PromptTemplate, question: str, level: str, examples: str = ""
) -> Prompt:
    """Asks for a new question with tests inspired by ``question`` of difficulty ``level``.

    Args:
        template: the ``new_questions`` template.
        question: the seed question's text.
        level: ``easy`` (the new one should be harder), ``medium`` or ``hard`` (similar).
        examples: example tests showing the expected form (e.g. the seed question's asserts).
    """
    _expect(template, "new_questions")
    if level not in LEVELS:
        raise TemplateError(f"unknown level {level!r}; expected one of {', '.join(LEVELS)}")
    return template.render(
        question=question,
        level=level,
        level_instruction=template.sections[level].strip(),
        examples=examples.strip() or "(none)",
    )


def _expect(template: PromptTemplate, name: str) -> PromptTemplate:
    if template.name != name:
        raise TemplateError(
            f"{template.path}: expected the {name!r} template, got {template.name!r}"
        )
    return template


def _parse_sections(text: str, path: Path) -> dict[str, str]:
    sections: dict[str, list[str]] = {}
    current: list[str] | None = None
    for number, line in enumerate(text.splitlines(), 1):
        match = _SECTION.match(line)
        if match:
            if match.group(1) in sections:
                raise TemplateError(f"{path}:{number}: section <<<{match.group(1)}>>> repeated")
            current = sections[match.group(1)] = []
        elif current is not None:
            current.append(line)
        elif line.strip():
            raise TemplateError(f"{path}:{number}: text before the first <<<section>>> line")
    return {name: "\n".join(lines).strip("\n") for name, lines in sections.items()}


def _check(name: str, sections: dict[str, str], path: Path) -> None:
    required, optional, snippets = _SPECS[name]
    expected = {"system", "user", *snippets}
    for section in ("system", "user", *snippets):
        if section not in sections:
            raise TemplateError(f"{path}: missing section <<<{section}>>>")
    unknown = sorted(set(sections) - expected)
    if unknown:
        raise TemplateError(
            f"{path}: unknown section <<<{unknown[0]}>>>; expected {', '.join(sorted(expected))}"
        )
    for section, body in sections.items():
        # Only the user message is substituted; elsewhere a placeholder would stay literal.
        stray = string.Template(body).get_identifiers() if section != "user" else []
        if stray:
            raise TemplateError(
                f"{path}: placeholder ${{{stray[0]}}} in <<<{section}>>>; "
                "placeholders belong in <<<user>>>"
            )
    user = string.Template(sections["user"])
    if not user.is_valid():
        raise TemplateError(f"{path}: a '$' in <<<user>>> is not a placeholder (write $$ for '$')")
    used = set(user.get_identifiers())
    missing = sorted(required - used)
    if missing:
        raise TemplateError(f"{path}: missing placeholder ${{{missing[0]}}}")
    unknown = sorted(used - required - optional)
    if unknown:
        known = ", ".join(f"${{{p}}}" for p in sorted(required | optional))
        raise TemplateError(f"{path}: unknown placeholder ${{{unknown[0]}}}; known: {known}")


def parse_new_question(text: str) -> tuple[str, str] | None:
    """The new instruction and its tests from an answer to ``new_questions.txt``.

    The answer must hold a ``#Created Instruction#`` line, the instruction, a ``#Tests#`` line
    and Python tests (fenced or not) that parse and are only ``assert`` statements and imports,
    at least one assert. Anything else is None: a question without runnable tests cannot be
    verified, so it is rejected, never repaired.

    Returns:
        ``(instruction, tests)``, both stripped, or None.
    """
    created = list(_CREATED.finditer(text))
    tests_at = list(_TESTS.finditer(text))
    if len(created) != 1 or len(tests_at) != 1 or tests_at[0].start() < created[0].end():
        return None
    instruction = text[created[0].end() : tests_at[0].start()].strip()
    tests = extract_code(text[tests_at[0].end() :]).strip()
    if not instruction or not tests:
        return None
    try:
        body = ast.parse(tests).body
    except SyntaxError:
        return None
    allowed = (ast.Assert, ast.Import, ast.ImportFrom)
    if not any(isinstance(n, ast.Assert) for n in body) or not all(
        isinstance(n, allowed) for n in body
    ):
        return None
    return instruction, tests
