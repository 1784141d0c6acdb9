"""C macros: where the spelling of code can reach the output (stringifying macros, ``#if``)."""

from __future__ import annotations

import re

from tree_sitter import Node

from codistill.fidelity.code import find, text
from codistill.fidelity.relations._lib.sites import _ancestors
from codistill.fidelity.relations._lib.spans import Spans

_C_ASSERT_LIKE = frozenset({"assert", "static_assert", "_Static_assert"})
_ALL_CAPS = re.compile(r"^[A-Z_][A-Z0-9_]*$")
_MACRO_DEFINITIONS = frozenset({"preproc_def", "preproc_function_def"})
_PREPROC_CONDITIONALS = frozenset({"preproc_if", "preproc_elif"})


def c_macros(root: Node) -> tuple[dict[str, str], set[str]]:
    """Object-like macros (name -> body) and function-like macro names defined in a C snippet."""
    objects, functions = {}, set()
    for node in find(root, _MACRO_DEFINITIONS, "c"):
        if node.type == "preproc_def":
            value = node.child_by_field_name("value")
            objects[text(node.child_by_field_name("name"))] = text(value).strip() if value else ""
        elif node.type == "preproc_function_def":
            functions.add(text(node.child_by_field_name("name")))
    return objects, functions


def c_text_sensitive(node: Node, function_macros: set[str]) -> bool:
    """True when the spelling of ``node``'s text can reach the program's output in C.

    That is inside a preprocessor condition, or inside the arguments of something that may be a
    stringifying macro (``assert`` prints its argument's text on failure): ``assert``, an
    ALL_CAPS callee, or a function-like macro the snippet defines.
    """
    for ancestor in _ancestors(node):
        if ancestor.type in _PREPROC_CONDITIONALS:
            condition = ancestor.child_by_field_name("condition")
            if condition is not None and (
                condition.start_byte <= node.start_byte < condition.end_byte
            ):
                return True
        if ancestor.type == "call_expression":
            callee = ancestor.child_by_field_name("function")
            if callee is not None and callee.type == "identifier":
                if _may_stringify(text(callee), function_macros):
                    return True
    return False


def _may_stringify(callee: str, function_macros: set[str]) -> bool:
    return callee in _C_ASSERT_LIKE or callee in function_macros or bool(_ALL_CAPS.match(callee))


class CTextSensitivity:
    """:func:`c_text_sensitive` for many nodes of one tree (a relation asks it of every site).

    A node can only be text-sensitive inside the condition of an ``#if``/``#elif`` or inside a
    call of a possibly stringifying macro; the byte spans of those are collected once, and only
    a node starting in one of them needs the walk over its ancestors.
    """

    def __init__(self, root: Node, function_macros: set[str]) -> None:
        self.function_macros = function_macros
        spans = []
        for node in find(root, _PREPROC_CONDITIONALS | {"call_expression"}, "c"):
            if node.type == "call_expression":
                callee = node.child_by_field_name("function")
                if callee is None or callee.type != "identifier":
                    continue
                if not _may_stringify(text(callee), function_macros):
                    continue
                region = node
            else:
                region = node.child_by_field_name("condition")
                if region is None:
                    continue
            # closed [start, end] as an open interval: a descendant may start at either end
            spans.append((region.start_byte - 1, region.end_byte + 1))
        self.spans = Spans(spans)

    def __call__(self, node: Node) -> bool:
        return node.start_byte in self.spans and c_text_sensitive(node, self.function_macros)


def _atomic_macro(value: str) -> bool:
    """A macro body that cannot regroup around a comparison: one token, or one (...) group."""
    if re.fullmatch(r"-?\w+", value):
        return True
    if not value.startswith("("):
        return False
    depth = 0
    for i, ch in enumerate(value):
        depth += ch == "("
        depth -= ch == ")"
        if depth == 0:
            return i == len(value) - 1
    return False
