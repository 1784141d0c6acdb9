"""AST validity: does a generated snippet parse as code of its language?

A generated assertion is a fragment, not a file, so each snippet is tried in the shapes it may
legitimately take and counts as valid if one of them parses cleanly:

- Java (tree-sitter-java): as statements inside a method body of a class, then as class members
  (a method, a field), then as a compilation unit. Any ERROR or MISSING node makes a shape
  invalid, so ``assertTrue(x)`` without its ``;`` is invalid. A shape also fails if the snippet
  closes the wrapper's braces and continues outside it (``} void g() {``).
- Python (:func:`ast.parse`): as written, then dedented (a statement copied out of an indented
  method body), each also with an indented ``pass`` appended. So a snippet whose last line
  opens a block (``with self.assertRaises(E):``, ``if x:``) is valid: a context-manager header
  is how assertRaises-style assertions begin, and the body that completes it is the code under
  test, not the assertion. ``pass`` cannot complete anything but a block.
  ``ast.parse`` accepts ``return``/``yield``/``await`` outside a function (those are compiler
  checks), so no function wrapper is needed.

Empty or whitespace-only code is invalid (nothing was generated).

With ``javac=True`` a Java snippet must also pass ``javac``'s parser in one of the shapes
tree-sitter accepts; javac is stricter in places (it rejects expression statements that are not
calls or assignments, ``x == 1;``, and modifiers on local variables). Only syntax is judged,
never types or symbols: the wrapper class holds a deliberately unresolvable call ahead of the
snippet. javac stops after parsing when it finds a syntax error, so if it reports that
sentinel's "cannot find symbol", parsing succeeded, whatever other semantic errors (unknown
classes, missing imports) follow. Each javac run starts a JVM (about half a second), so it suits
final evaluation rather than per-step validation.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
import textwrap
from collections.abc import Sequence
from functools import cache
from pathlib import Path

import tree_sitter_java
from tree_sitter import Language, Node, Parser

from codistill.data.prompts import python_parses

LANGUAGES = ("java", "python")

_CLASS = "CodistillWrapper"
_SENTINEL = "codistillSyntaxSentinel"
# Three Java shapes: (name, text before the snippet, text after it).
_JAVA_SHAPES = (
    ("statement", f"class {_CLASS} {{\nvoid codistillMethod() throws Throwable {{\n", "\n}\n}\n"),
    ("member", f"class {_CLASS} {{\n", "\n}\n"),
    ("compilation_unit", "", "\n"),
)
_PUBLIC_TYPE = re.compile(
    r"\bpublic\s+(?:(?:abstract|final|sealed|non-sealed|static|strictfp)\s+)*"
    r"(?:class|interface|enum|record|@interface)\s+([A-Za-z_$][\w$]*)"
)


def is_valid(code: str, language: str, *, javac: bool = False) -> bool:
    """Whether ``code`` parses as a ``language`` snippet (see the module docstring).

    Args:
        code: the generated snippet.
        language: ``"java"`` or ``"python"``.
        javac: for Java, also require javac's parser to accept it (needs ``javac`` on PATH).

    Returns:
        True if some accepted shape of the snippet parses without errors.
    """
    if language not in LANGUAGES:
        raise ValueError(f"language must be one of {LANGUAGES}, got {language!r}")
    if not code.strip():
        return False
    if language == "python":
        return _python_valid(code)
    shapes = java_shapes(code)
    if not javac:
        return bool(shapes)
    # tree-sitter-java is more lenient than javac (it takes `private int x;` or a public class
    # as a statement), so javac gets every shape tree-sitter accepted, in order.
    return any(_javac_accepts(code, shape) for shape in shapes)


def ast_validity(codes: Sequence[str], language: str, *, javac: bool = False) -> dict:
    """AST validity of a batch of snippets.

    Returns:
        ``rate`` (valid / n, 0 for an empty batch), ``valid`` (count), ``n`` and ``per_example``
        (list of bools).
    """
    if isinstance(codes, str):
        raise ValueError("codes must be a list of strings, got a single string")
    flags = [is_valid(code, language, javac=javac) for code in codes]
    return {
        "rate": sum(flags) / len(flags) if flags else 0.0,
        "valid": sum(flags),
        "n": len(flags),
        "per_example": flags,
    }


def javac_available() -> bool:
    """Whether a ``javac`` executable is on PATH."""
    return shutil.which("javac") is not None


# --- Python ------------------------------------------------------------------------------


def _python_valid(code: str) -> bool:
    for text in dict.fromkeys([code, textwrap.dedent(code)]):
        if python_parses(text) or python_parses(_with_block_body(text)):
            return True
    return False


def _with_block_body(code: str) -> str:
    """``code`` plus ``pass`` indented under its last line.

    This completes a snippet whose last line opens a block; ``pass`` cannot complete an
    expression or any other statement, so nothing else turns valid.
    """
    last = [line for line in code.rstrip().split("\n") if line.strip()][-1]
    indent = last[: len(last) - len(last.lstrip())]
    return code.rstrip() + "\n" + indent + "    pass\n"


# --- Java --------------------------------------------------------------------------------


@cache
def _java_parser() -> Parser:
    return Parser(Language(tree_sitter_java.language()))


def java_shapes(code: str) -> list[str]:
    """The shapes (``statement``, ``member``, ``compilation_unit``) in which tree-sitter-java
    parses the snippet without errors; empty if none."""
    shapes = []
    for name, before, after in _JAVA_SHAPES:
        root = _java_parser().parse((before + code + after).encode("utf8")).root_node
        if not root.has_error and _wrapper_intact(root, name):
            shapes.append(name)
    return shapes


def _wrapper_intact(root: Node, shape: str) -> bool:
    """The snippet stayed inside its wrapper: one class, holding one method (statement shape)."""
    if shape == "compilation_unit":
        return True
    top = [n for n in root.named_children if "comment" not in n.type]
    if len(top) != 1 or top[0].type != "class_declaration":
        return False
    if shape == "member":
        return True
    body = top[0].child_by_field_name("body")
    members = [n for n in body.named_children if "comment" not in n.type]
    return len(members) == 1


def _javac_accepts(code: str, shape: str) -> bool:
    """javac's parser accepts the snippet in ``shape`` (semantic errors are ignored)."""
    executable = shutil.which("javac")
    if executable is None:
        raise FileNotFoundError("is_valid(..., javac=True) needs javac on PATH")
    sentinel = f"void {_SENTINEL}Holder() {{ {_SENTINEL}(); }}\n"
    if shape == "statement":
        source = f"class {_CLASS} {{\n{sentinel}void codistillMethod() throws Throwable {{\n"
        source += code + "\n}\n}\n"
        file_name = f"{_CLASS}.java"
    elif shape == "member":
        source = f"class {_CLASS} {{\n{sentinel}{code}\n}}\n"
        file_name = f"{_CLASS}.java"
    else:
        source = f"{code}\nclass {_CLASS} {{\n{sentinel}}}\n"
        public = _PUBLIC_TYPE.search(code)
        file_name = f"{public.group(1) if public else _CLASS}.java"
    with tempfile.TemporaryDirectory(prefix="codistill-javac-") as tmp:
        path = Path(tmp) / file_name
        path.write_text(source, encoding="utf8")
        proc = subprocess.run(
            [
                executable,
                "-proc:none",
                "-XDrawDiagnostics",
                "-d",
                tmp,
                "-encoding",
                "UTF-8",
                str(path),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    if proc.returncode == 0:  # cannot happen with the sentinel, but a clean compile is valid
        return True
    return _SENTINEL in proc.stdout + proc.stderr
