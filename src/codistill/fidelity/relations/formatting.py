"""The ``formatting`` relation: whitespace and comment changes that keep the token stream.

A change of layout is the weakest metamorphic relation and the one a robust model must shrug
off: the program's tokens (and so its behaviour) are untouched. The edits here only add or
remove whitespace *between* tokens, whole blank lines, or comment lines, and only where that
cannot merge two tokens or reach the program's output:

- never inside string/char literals (Python f-strings included: ``f"{a+b=}"`` prints its own
  source text) or comments;
- never on C preprocessor lines (``#define`` is line-based) or on a line that continues a
  backslash-ended one;
- in C, never inside the arguments of what may be a stringifying macro (``assert(a<b)`` prints
  ``a<b`` on failure), see :func:`~codistill.fidelity.relations._lib.c_macros.c_text_sensitive`;
- in Python, never leading indentation (it is syntax).
"""

from __future__ import annotations

import random
import re
from bisect import bisect_right
from itertools import accumulate

from tree_sitter import Node

from codistill.fidelity.code import Edit, find, parse_shared, text
from codistill.fidelity.relations._lib.c_macros import CTextSensitivity, c_macros
from codistill.fidelity.relations._lib.sites import _finish
from codistill.fidelity.relations._lib.spans import Spans
from codistill.fidelity.relations.base import Relation, Variant, register_relation

_PROTECTED = {
    "java": frozenset({"string_literal", "character_literal", "line_comment", "block_comment"}),
    "c": frozenset(
        {"string_literal", "char_literal", "concatenated_string", "system_lib_string", "comment"}
    ),
    "python": frozenset({"string", "concatenated_string", "comment"}),
}
_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
_BINARY = {
    "java": frozenset({"binary_expression"}),
    "c": frozenset({"binary_expression"}),
    "python": frozenset({"binary_operator", "comparison_operator"}),
}
_COMMA = frozenset({","})
_CONTAINERS = {
    "java": frozenset({"program", "class_body", "block", "constructor_body"}),
    "c": frozenset({"translation_unit", "compound_statement"}),
    "python": frozenset({"module", "block"}),
}
_COMMENT_TEXT = {
    "java": ("// note", "// see below", "// step"),
    "c": ("/* note */", "/* see below */", "/* step */"),
    "python": ("# note", "# see below", "# step"),
}
# Characters that can end / start an operand and never fuse with a symbolic operator's
# characters into another token (`a - -b` -> `a--b` would; `a / *p` -> `a/*p` opens a comment).
_FUSE_SAFE_LEFT = frozenset(b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_)]\"'")
_FUSE_SAFE_RIGHT = frozenset(
    b"abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_([\"'"
)
_ENDS_IN_NUMBER = re.compile(r"(?<![\w.])\.?\d[\w.]*$")


class _Layout:
    """Where in a snippet layout may change: line offsets and the byte ranges to leave alone."""

    def __init__(self, code: str, language: str, root: Node) -> None:
        self.data = code.encode("utf-8")
        self.language = language
        self.lines = self.data.split(b"\n")  # without their newlines
        self.starts = list(accumulate((len(line) + 1 for line in self.lines[:-1]), initial=0))
        self.literals = Spans(
            (n.start_byte, n.end_byte) for n in find(root, _PROTECTED[language], language)
        )
        self.frozen_rows: set[int] = set()  # C directive lines and backslash continuations
        previous_continues = False
        directive = False
        for row, line in enumerate(self.lines):
            if not previous_continues:
                directive = language == "c" and line.lstrip().startswith(b"#")
            if previous_continues or directive:
                self.frozen_rows.add(row)
            previous_continues = line.rstrip(b"\r").endswith(b"\\")
        self.text_sensitive = CTextSensitivity(root, c_macros(root)[1]) if language == "c" else None

    def row(self, pos: int) -> int:
        """The 0-based line ``pos`` is on."""
        return bisect_right(self.starts, pos) - 1

    def inside_literal(self, pos: int) -> bool:
        """``pos`` lies strictly inside a string, char literal or comment."""
        return pos in self.literals

    def free(self, node: Node) -> bool:
        """Layout around ``node`` may change: not in a literal, comment, frozen line or
        stringifying C macro argument."""
        if self.inside_literal(node.start_byte) or self.row(node.start_byte) in self.frozen_rows:
            return False
        return self.text_sensitive is None or not self.text_sensitive(node)


def _operator_sites(root: Node, layout: _Layout) -> list[tuple[list[Edit], str]]:
    """Toggle `a+b` <-> `a + b` around one binary operator."""
    data, sites = layout.data, []
    for node in find(root, _BINARY[layout.language], layout.language):
        if node.has_error:
            continue
        operands = [c for c in node.named_children if c.type not in _COMMENTS]
        operators = [c for c in node.children if not c.is_named]
        if len(operands) != 2 or len(operators) != 1:
            continue
        (left, right), op = operands, operators[0]
        symbol = text(op)
        if not symbol or symbol[0].isalpha() or not layout.free(op):
            continue  # keyword operators (`in`, `is`, `and`) need their spaces
        before, after = data[left.end_byte : op.start_byte], data[op.end_byte : right.start_byte]
        line = f"line {layout.row(op.start_byte) + 1}"
        if before == after == b"":
            edits = [Edit.insert(op.start_byte, " "), Edit.insert(op.end_byte, " ")]
            sites.append((edits, f"space around {symbol} at {line}"))
        elif before == after == b" ":
            if data[left.end_byte - 1] not in _FUSE_SAFE_LEFT:
                continue
            if data[right.start_byte] not in _FUSE_SAFE_RIGHT:
                continue
            if symbol in ("+", "-") and _ENDS_IN_NUMBER.search(text(left)):
                continue  # C pp-numbers: `0x1e - 1` -> `0x1e-1` would be one (invalid) token
            edits = [
                Edit(left.end_byte, op.start_byte, ""),
                Edit(op.end_byte, right.start_byte, ""),
            ]
            sites.append((edits, f"tighten {symbol} at {line}"))
    return sites


def _comma_sites(root: Node, layout: _Layout) -> list[tuple[list[Edit], str]]:
    """Toggle `f(a,b)` <-> `f(a, b)` after one comma (a comma fuses with nothing)."""
    data, sites = layout.data, []
    for node in find(root, _COMMA, layout.language):
        if node.is_named or not layout.free(node):
            continue
        parent = node.parent
        if parent is None or parent.has_error:
            continue
        end = node.end_byte
        following = data[end : end + 2]
        line = f"line {layout.row(end) + 1}"
        if following[:1] and not following[:1].isspace():
            sites.append(([Edit.insert(end, " ")], f"space after comma at {line}"))
        elif len(following) == 2 and following[:1] == b" " and not following[1:].isspace():
            sites.append(([Edit(end, end + 1, "")], f"tighten comma at {line}"))
    return sites


def _statement_line_starts(root: Node, layout: _Layout) -> list[tuple[int, str]]:
    """(line start, indentation) of statements that begin their own, unfrozen line."""
    found = []
    for container in find(root, _CONTAINERS[layout.language], layout.language):
        if container.has_error:
            continue
        for statement in container.named_children:
            if statement.type in _PROTECTED[layout.language] or statement.type.startswith(
                "preproc"
            ):
                continue
            row = layout.row(statement.start_byte)
            start = layout.starts[row]
            indent = layout.data[start : statement.start_byte]
            if indent.strip(b" \t") or row in layout.frozen_rows or not layout.free(statement):
                continue
            found.append((start, indent.decode("utf-8")))
    return sorted(set(found))


def _blank_line_sites(
    line_starts: list[tuple[int, str]], layout: _Layout
) -> list[tuple[list[Edit], str]]:
    return [
        ([Edit.insert(start, "\n")], f"blank line before line {layout.row(start) + 1}")
        for start, _ in line_starts
    ]


def _comment_sites(
    line_starts: list[tuple[int, str]], layout: _Layout
) -> list[tuple[list[Edit], str]]:
    """A comment line before a statement; its wording is picked per site deterministically."""
    sites = []
    comments = _COMMENT_TEXT[layout.language]
    for i, (start, indent) in enumerate(line_starts):
        comment = comments[i % len(comments)]
        sites.append(
            (
                [Edit.insert(start, f"{indent}{comment}\n")],
                f"comment at line {layout.row(start) + 1}",
            )
        )
    return sites


def _blank_line_removal_sites(layout: _Layout) -> list[tuple[list[Edit], str]]:
    """Drop one whitespace-only line (not inside a literal, not ending a continuation)."""
    sites = []
    for row in range(len(layout.starts) - 1):  # the last line has no newline to drop
        start = layout.starts[row]
        if layout.lines[row].strip() or row in layout.frozen_rows:
            continue
        if layout.inside_literal(start) or (start > 0 and layout.inside_literal(start - 1)):
            continue
        sites.append(([Edit(start, layout.starts[row + 1], "")], f"drop blank line {row + 1}"))
    return sites


def _indented_lines(layout: _Layout) -> list[tuple[int, int]]:
    """(line start, leading spaces) of the lines whose indentation may be rescaled (Java/C).

    Lines indented with tabs, inside literals/comments (Java text blocks strip indentation
    relative to their content!) or frozen are left as they are.
    """
    lines = []
    for row, (start, line) in enumerate(zip(layout.starts, layout.lines, strict=True)):
        width = len(line) - len(line.lstrip(b" "))
        if not line.strip() or width == 0 or line[width : width + 1] == b"\t":
            continue
        if row in layout.frozen_rows or layout.inside_literal(start):
            continue
        lines.append((start, width))
    return lines


def _reindent(lines: list[tuple[int, int]], rng: random.Random) -> tuple[list[Edit], str]:
    """Change the indentation width consistently: n levels of the smallest indent found become
    n levels of another width (2, 4 or 8), any remainder (alignment) is kept."""
    unit = min(width for _, width in lines)
    new_unit = rng.choice([u for u in (2, 4, 8) if u != unit])
    edits = [
        Edit(start, start + width, " " * ((width // unit) * new_unit + width % unit))
        for start, width in lines
    ]
    return edits, f"reindent {unit} -> {new_unit} spaces"


@register_relation
class Formatting(Relation):
    """Change layout only: operator or comma spacing, a blank line, a comment line, indentation.

    A kind of change is picked uniformly among the applicable ones, then one site of that kind
    uniformly (so a snippet with many operators still gets blank-line or comment variants).
    Indentation width changes are Java/C only (Python indentation is syntax).
    """

    name = "formatting"
    languages = ("java", "python", "c")
    description = "change whitespace/comments without changing tokens"

    def apply(
        self, code: str, language: str, rng: random.Random, target: str | None = None
    ) -> Variant | None:
        root = parse_shared(code, language).root_node
        layout = _Layout(code, language, root)
        line_starts = _statement_line_starts(root, layout)  # blank lines and comments go there
        kinds = [
            _operator_sites(root, layout),
            _comma_sites(root, layout),
            _blank_line_sites(line_starts, layout),
            _blank_line_removal_sites(layout),
            _comment_sites(line_starts, layout),
        ]
        indented = _indented_lines(layout) if language != "python" else []
        if indented:
            kinds.append(["reindent"])
        kinds = [k for k in kinds if k]
        if not kinds:
            return None
        sites = kinds[rng.randrange(len(kinds))]
        site = sites[rng.randrange(len(sites))]
        edits, detail = _reindent(indented, rng) if site == "reindent" else site
        return _finish(self.name, code, language, edits, detail, target)
