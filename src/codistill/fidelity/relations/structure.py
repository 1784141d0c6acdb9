"""Structural relations: dead code, loop exchange, if/else swap, relational swap, statement swap.

Each relation picks one applicable site uniformly with the caller's ``rng`` and rewrites only that
site of the original text (everything else survives byte for byte). The analysis is syntactic: no
types, no alias analysis. So every relation is deliberately conservative and skips a site whenever
*some* typing or aliasing the snippet does not show could make the rewrite change behaviour. A
skipped site costs one variant; a wrong one silently corrupts a fidelity measurement, because
teacher and student would be compared on an input whose expected behaviour changed.

Assumptions every relation makes and cannot check (documented limits): operators on user types
(Python dunders, property getters, Java's implicit ``toString()`` in string concatenation) are
pure and consistent with their reflections (``a < b`` iff ``b > a``); C code does not rely on
undefined behaviour.

The site analysis lives in private helpers under :mod:`codistill.fidelity.relations._lib`
(``sites``, ``loops``, ``branches``, ``effects``, ``c_macros``); this module holds the relations.
"""

from __future__ import annotations

import random

from tree_sitter import Node

from codistill.fidelity.code import Edit, find, parse_shared, text
from codistill.fidelity.relations._lib.branches import _c_java_if_swap, _python_if_swap
from codistill.fidelity.relations._lib.c_macros import CTextSensitivity, _atomic_macro, c_macros
from codistill.fidelity.relations._lib.effects import (
    _PURE,
    _independent,
    _java_c_effects,
    _may_raise,
    _only,
    _python_effects,
    _python_locals_die_with_frame,
)
from codistill.fidelity.relations._lib.loops import (
    _for_to_while,
    _python_for_to_while,
    _python_while_to_for,
    _while_to_for,
)
from codistill.fidelity.relations._lib.sites import (
    _COMMENTS,
    _ancestors,
    _finish,
    _fresh_name,
    _identifiers,
    _indent,
    _indent_unit,
    _line,
    _line_start,
    _pick,
    _scope,
    _statement_lists,
    _statements,
)
from codistill.fidelity.relations.base import Relation, Variant, register_relation

_ALL = ("java", "python", "c")


# --------------------------------------------------------------------------- dead_code

_DEAD_TEMPLATES = {
    "java": ("if (false) {{ int {v} = 0; }}", "if (false) {{ int {v} = 1; {v}++; }}"),
    "c": ("if (0) {{ int {v} = 0; }}", "if (0) {{ int {v} = 1; {v}++; }}"),
    "python": (("{v} = 0",), ("{v} = 1", "{v} += 1")),
}


def _is_docstring(statement: Node) -> bool:
    children = statement.named_children
    return (
        statement.type == "expression_statement"
        and len(children) == 1
        and children[0].type in ("string", "concatenated_string")
    )


def _dead_code_sites(root: Node, data: bytes, language: str) -> list[tuple[Node, int, str]]:
    """(statement list, insertion byte, kind) with kind "before" a statement or "empty" body."""
    sites = []
    for container in _statement_lists(root, language, ("function",)):
        statements = _statements(container)
        if not statements and language != "python":
            sites.append((container, container.children[0].end_byte, "empty"))
        for i, statement in enumerate(statements):
            if statement.type.startswith("preproc") or not statement.is_named:
                continue
            if language == "java" and statement.type == "explicit_constructor_invocation":
                continue  # super(...)/this(...) must stay the first statement
            if language == "c" and statement.type == "declaration":
                continue  # keep C89's declarations-before-code layout intact
            if language == "python":
                if i == 0 and _is_docstring(statement):
                    continue  # code before it would demote the docstring (f.__doc__ changes)
                if _indent(data, statement) is None:
                    continue  # `if x: a; b` -- no line of its own to insert above
            sites.append((container, statement.start_byte, "before"))
    return sites


@register_relation
class DeadCode(Relation):
    """Insert a block that never runs (``if (false)`` / ``if (0)`` / ``if False:``).

    Inserted only *before* an existing statement (or into an empty body): the original compiles,
    so that statement is reachable, hence so is the inserted ``if`` (Java rejects unreachable
    statements; it accepts ``if (false)`` by the JLS conditional-compilation rule, unlike
    ``while (false)``), and an ``if`` can always complete normally, so the following statement
    stays reachable too. The block declares a name that occurs nowhere in the snippet.
    """

    name = "dead_code"
    languages = _ALL
    description = "insert an if-false block that never executes"

    def apply(
        self, code: str, language: str, rng: random.Random, target: str | None = None
    ) -> Variant | None:
        root = parse_shared(code, language).root_node
        data = code.encode("utf-8")
        sites = _dead_code_sites(root, data, language)
        if not sites:
            return None
        container, at, kind = sites[rng.randrange(len(sites))]
        template = _DEAD_TEMPLATES[language][rng.randrange(2)]
        var = _fresh_name(code, "_unused" if language == "python" else "unusedVar")
        line = data[:at].count(b"\n") + 1
        if language == "python":
            indent = data[_line_start(data, at) : at].decode("utf-8")
            unit = _indent_unit(indent)
            body = "".join(f"{indent}{unit}{line_}\n" for line_ in template)
            insertion = f"{indent}if False:\n{body}".format(v=var)
            edit = Edit.insert(_line_start(data, at), insertion)
        else:
            block = template.format(v=var)
            if kind == "empty":
                edit = Edit.insert(at, f" {block} ")
            else:
                statement = next(s for s in _statements(container) if s.start_byte == at)
                indent = _indent(data, statement)
                edit = Edit.insert(at, f"{block}\n{indent}" if indent is not None else f"{block} ")
        return _finish(self.name, code, language, [edit], f"dead code at line {line}", target)


# --------------------------------------------------------------------------- loop_exchange

_LOOPS = frozenset({"for_statement", "while_statement"})


@register_relation
class LoopExchange(Relation):
    """Rewrite a ``for`` loop as a ``while`` loop or the other way round.

    Java/C: ``for`` -> block + ``while`` (see :func:`_for_to_while`), ``while (c)`` ->
    ``for (; c;)``; enhanced for (``for (T x : xs)``) and ``do``/``while`` are left out (an
    iterator rewrite needs the static type of ``xs``). Python: ``for`` -> ``while True`` with an
    explicit iterator, ``while`` -> ``for`` over an endless builtin iterator; loops in class
    bodies are skipped (the helper name would become a class attribute).
    """

    name = "loop_exchange"
    languages = _ALL
    description = "exchange for and while loops"

    def apply(
        self, code: str, language: str, rng: random.Random, target: str | None = None
    ) -> Variant | None:
        root = parse_shared(code, language).root_node
        data = code.encode("utf-8")
        sites = []
        for node in find(root, _LOOPS, language):
            if node.has_error:
                continue
            if language == "python":
                if _scope(node, language) == "class":
                    continue
                if node.type == "for_statement":
                    edits = _python_for_to_while(node, data, code, root)
                else:
                    edits = _python_while_to_for(node, data, code, root)
            elif node.type == "for_statement":
                edits = _for_to_while(node, data, language)
            else:
                edits = _while_to_for(node, data)
            if edits:
                kind = "for->while" if node.type == "for_statement" else "while->for"
                sites.append((edits, f"{kind} at line {_line(node)}"))
        return _pick(self.name, code, language, sites, rng, target)


# --------------------------------------------------------------------------- if_else_swap

_IFS = frozenset({"if_statement"})


@register_relation
class IfElseSwap(Relation):
    """``if (c) A else B`` -> ``if (!(c)) B else A`` (Python: ``if not (c):``).

    Java/C ``else if`` chains are handled: the inner ``if`` is braced when it moves to the then
    branch. Python ``elif`` chains are skipped, as are Java conditions with pattern bindings.
    """

    name = "if_else_swap"
    languages = _ALL
    description = "negate an if condition and swap its branches"

    def apply(
        self, code: str, language: str, rng: random.Random, target: str | None = None
    ) -> Variant | None:
        root = parse_shared(code, language).root_node
        data = code.encode("utf-8")
        sites = []
        for node in find(root, _IFS, language):
            if node.has_error:
                continue
            if language == "python":
                edits = _python_if_swap(node, data)
            else:
                edits = _c_java_if_swap(node, data, language)
            if edits:
                sites.append((edits, f"swap if/else at line {_line(node)}"))
        return _pick(self.name, code, language, sites, rng, target)


# --------------------------------------------------------------------------- relational_swap

_FLIP = {"<": ">", "<=": ">=", ">": "<", ">=": "<=", "==": "==", "!=": "!="}
_COMPARISONS = {
    "java": frozenset({"binary_expression"}),
    "c": frozenset({"binary_expression"}),
    "python": frozenset({"comparison_operator"}),
}


def _comparison_sites(root: Node, language: str) -> list[tuple[Node, Node, Node]]:
    """(left, operator, right) of two-operand comparisons whose operands are safe to swap."""
    objects, functions = c_macros(root) if language == "c" else ({}, set())
    risky_macros = {name for name, value in objects.items() if not _atomic_macro(value)}
    text_sensitive = CTextSensitivity(root, functions) if language == "c" else None
    sites = []
    for node in find(root, _COMPARISONS[language], language):
        if node.has_error:
            continue
        if language == "python":
            operands = [c for c in node.named_children if c.type not in _COMMENTS]
            operators = node.children_by_field_name("operators")
            if len(operands) != 2 or len(operators) != 1:
                continue  # chained `a < b < c` or a comment in the way
            left, operator, right = operands[0], operators[0], operands[1]
        else:
            left = node.child_by_field_name("left")
            operator = node.child_by_field_name("operator")
            right = node.child_by_field_name("right")
            if left is None or operator is None or right is None:
                continue
        if operator.type not in _FLIP:
            continue
        if any(a.type == "interpolation" for a in _ancestors(node)):
            continue  # f"{a<b=}" prints its own source text
        if not (_only(left, _PURE[language]) and _only(right, _PURE[language])):
            continue
        if _may_raise(left, language) and _may_raise(right, language):
            continue  # both may throw: swapping would change which exception surfaces
        if text_sensitive is not None:
            if text_sensitive(node):
                continue
            if (_identifiers(left) | _identifiers(right)) & risky_macros:
                continue
        sites.append((left, operator, right))
    return sites


@register_relation
class RelationalSwap(Relation):
    """``a < b`` -> ``b > a`` (and ``<=``/``>=``; ``==``/``!=`` keep their operator).

    Only for two-operand comparisons whose operands are built from names, literals, field/item
    access and arithmetic (no call, assignment, ``++``/``--``, walrus, f-string), not both able
    to throw (which exception surfaces would change), and in C not inside ``assert``-like
    stringifying macros nor around a snippet macro whose body could regroup.
    """

    name = "relational_swap"
    languages = _ALL
    description = "mirror a comparison (a < b -> b > a)"

    def apply(
        self, code: str, language: str, rng: random.Random, target: str | None = None
    ) -> Variant | None:
        root = parse_shared(code, language).root_node
        sites = []
        for left, operator, right in _comparison_sites(root, language):
            moved = text(left)
            # left-associative: the old left may be a same-level comparison (`a == b == c`),
            # which must be grouped once it becomes the right operand
            if left.type == "binary_expression" and (
                left.child_by_field_name("operator").type in _FLIP
            ):
                moved = f"({moved})"
            edits = [
                Edit.replace(left, text(right)),
                Edit.replace(operator, _FLIP[operator.type]),
                Edit.replace(right, moved),
            ]
            sites.append((edits, f"mirror {text(operator)} at line {_line(operator)}"))
        return _pick(self.name, code, language, sites, rng, target)


# --------------------------------------------------------------------------- statement_swap


@register_relation
class StatementSwap(Relation):
    """Swap two adjacent statements of one block that do not depend on each other.

    Both must be simple (declarations, assignments, ``++``/``--``; no calls, no ``new``, no
    write through a field, index or pointer) with disjoint def/use sets by name. Further skips:
    a C pointer/array read next to an assignment (aliasing); a Python ``x += y`` (``y`` not a
    number literal) next to a statement reading any name (``x`` may be a shared list); a
    statement that may throw next to one that assigns an existing name (Python: unless the
    exception necessarily discards the function's locals). Class bodies are skipped.
    """

    name = "statement_swap"
    languages = _ALL
    description = "swap two adjacent independent statements"

    def apply(
        self, code: str, language: str, rng: random.Random, target: str | None = None
    ) -> Variant | None:
        root = parse_shared(code, language).root_node
        sites = []
        scopes = ("function", "module") if language == "python" else ("function",)
        for container in _statement_lists(root, language, scopes):
            statements = _statements(container)
            if language == "python":
                effects = [_python_effects(s) for s in statements]
                locals_die = _python_locals_die_with_frame(container)
            else:
                effects = [_java_c_effects(s, language) for s in statements]
                locals_die = False
            for i in range(len(statements) - 1):
                first, second = effects[i], effects[i + 1]
                if first is None or second is None or not _independent(first, second, locals_die):
                    continue
                a, b = statements[i], statements[i + 1]
                edits = [Edit.replace(a, text(b)), Edit.replace(b, text(a))]
                sites.append((edits, f"swap statements at lines {_line(a)} and {_line(b)}"))
        return _pick(self.name, code, language, sites, rng, target)
