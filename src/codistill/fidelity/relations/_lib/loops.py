"""Loop rewrites for ``loop_exchange``: for <-> while in Java, C and Python."""

from __future__ import annotations

import re

from tree_sitter import Node

from codistill.fidelity.code import Edit, find, text, walk
from codistill.fidelity.relations._lib.sites import (
    _BLOCK_TYPES,
    _declared_names,
    _fresh_name,
    _indent,
    _indent_unit,
    _inner,
    _line_start,
    _statements,
)

_LOOPS = frozenset({"for_statement", "while_statement", "do_statement", "enhanced_for_statement"})
_IDENTIFIER = frozenset({"identifier"})
_JUMPS = frozenset(
    {"return_statement", "throw_statement", "break_statement", "continue_statement"}
    | {"yield_statement"}
)


def _java_constant_condition(condition: Node | None) -> bool:
    """Possibly a constant expression (no name or call in it): ``true``, ``1 == 1``."""
    if condition is None:
        return True
    return not any(
        n.type in ("identifier", "method_invocation", "field_access") for n in walk(condition)
    )


def _java_completes(node: Node) -> bool:
    """Conservative JLS 14.22 "can complete normally": False whenever unsure.

    Needed because in the while form the for-update becomes a statement after the body, and
    Java rejects it as unreachable when the body cannot complete normally.
    """
    kind = node.type
    if not node.is_named:
        return kind == ";"
    if kind in _JUMPS:
        return False
    if kind in ("block", "constructor_body"):
        statements = _statements(node)
        return not statements or _java_completes(statements[-1])
    if kind in (
        "expression_statement",
        "local_variable_declaration",
        "assert_statement",
        "enhanced_for_statement",
        "local_class_declaration",
    ):
        return True
    if kind == "if_statement":
        alternative = node.child_by_field_name("alternative")
        return alternative is None or any(
            _java_completes(b) for b in (node.child_by_field_name("consequence"), alternative)
        )
    if kind in ("while_statement", "for_statement"):
        return not _java_constant_condition(node.child_by_field_name("condition"))
    if kind == "synchronized_statement":
        return _java_completes(node.child_by_field_name("body"))
    if kind == "try_statement" or kind == "try_with_resources_statement":
        blocks = [node.child_by_field_name("body")]
        blocks += [c.child_by_field_name("body") for c in node.children if c.type == "catch_clause"]
        finally_ = [c for c in node.children if c.type == "finally_clause"]
        if finally_ and not any(_java_completes(b) for b in finally_[0].named_children):
            return False
        return any(b is not None and _java_completes(b) for b in blocks)
    return False


def _has_own_continue(body: Node) -> bool:
    """A ``continue`` in ``body`` that targets the enclosing loop (unlabelled, not nested)."""
    stack = [body]
    while stack:
        node = stack.pop()
        if node.type == "continue_statement":
            if not any(c.type == "identifier" for c in node.named_children):
                return True
            continue  # labelled: targets a labelled (outer) loop, never this unlabelled one
        if node is not body and node.type in _LOOPS | {"lambda_expression", "class_body"}:
            continue
        stack.extend(node.children)
    return False


def _for_to_while(node: Node, data: bytes, language: str) -> list[Edit] | None:
    """``for (init; cond; update) body`` -> ``{ init; while (cond) { body update; } }``.

    The outer braces keep init declarations scoped as before. Loops whose body has a
    ``continue`` for this loop are skipped when there is an update (the while form would skip
    it); labelled loops are skipped (the label would end up on the block).
    """
    if node.parent is not None and node.parent.type == "labeled_statement":
        return None
    body = node.child_by_field_name("body")
    condition = node.child_by_field_name("condition")
    inits = node.children_by_field_name("init" if language == "java" else "initializer")
    updates = node.children_by_field_name("update")
    if body is None:
        return None
    close = [c for c in node.children if c.type == ")" and c.end_byte <= body.start_byte]
    if not close:
        return None
    declares = any(i.type in ("local_variable_declaration", "declaration") for i in inits)
    init_text = " ".join(text(i) if declares else f"{text(i)};" for i in inits)
    update_text = " ".join(f"{text(u)};" for u in updates)
    if updates and _has_own_continue(body):
        return None
    if updates and language == "java" and not _java_completes(body):
        return None
    default = "true" if language == "java" else "1"
    cond_text = text(condition) if condition is not None else default
    header = (f"{{ {init_text} " if inits else "") + f"while ({cond_text})"
    edits = [Edit(node.start_byte, close[-1].end_byte, header)]
    if updates:
        edits.append(_append_update(body, data, update_text))
    if inits:
        edits.append(Edit.insert(node.end_byte, " }"))
    return edits


def _append_update(body: Node, data: bytes, update_text: str) -> Edit:
    """Put the for-update at the end of the loop body, in the body's own block when that is safe.

    Appending inside the block is safe when no declaration at the block's top level shadows a
    name the update uses; otherwise the body is wrapped so the update sees the loop's scope.
    """
    if body.type in _BLOCK_TYPES:
        declared = set().union(*(_declared_names(s) for s in _statements(body)))
        used = set(re.findall(r"[A-Za-z_]\w*", update_text))
        if not declared & used:
            close = body.children[-1]
            indent = _indent(data, close)
            if indent is None:
                return Edit.insert(close.start_byte, f"{update_text} ")
            statements = _statements(body)
            inner = _indent(data, statements[0]) if statements else None
            unit = (
                inner[len(indent) :]
                if inner and inner.startswith(indent) and len(inner) > len(indent)
                else _indent_unit(indent)
            )
            return Edit.insert(close.start_byte, f"{unit}{update_text}\n{indent}")
    return Edit.replace(body, f"{{ {text(body)} {update_text} }}")


def _while_to_for(node: Node, data: bytes) -> list[Edit]:
    """``while (c) body`` -> ``for (; c;) body`` (same condition, no init, no update)."""
    condition = node.child_by_field_name("condition")
    return [Edit(node.start_byte, condition.end_byte, f"for (; {_inner(data, condition)};)")]


def _python_builtins_unshadowed(root: Node, names: frozenset[str]) -> bool:
    """True when each of ``names`` appears only as the callee of a call (never bound, passed...)."""
    for node in find(root, _IDENTIFIER, "python"):
        if text(node) in names:
            parent = node.parent
            if parent is None or parent.type != "call":
                return False
            if parent.child_by_field_name("function") != node:
                return False
    return True


def _python_simple_target(node: Node) -> bool:
    """An identifier or a (nested) tuple/list of identifiers: binding it runs no user code."""
    if node.type == "identifier":
        return True
    if node.type in ("pattern_list", "tuple_pattern", "list_pattern"):
        return all(_python_simple_target(c) for c in node.named_children)
    if node.type == "list_splat_pattern":
        return [c.type for c in node.named_children] == ["identifier"]
    return False


def _python_loop_layout(node: Node, data: bytes) -> tuple[str, str, Node, Node] | None:
    """(header indent, body indent, colon, first body statement) for a loop with a body on its
    own lines and no else clause; None otherwise."""
    if node.child_by_field_name("alternative") is not None or node.children[0].type == "async":
        return None
    body = node.child_by_field_name("body")
    statements = _statements(body) if body is not None else []
    colons = [c for c in node.children if c.type == ":"]
    if not statements or not colons:
        return None
    outer, inner = _indent(data, node), _indent(data, statements[0])
    if outer is None or inner is None or not inner.startswith(outer) or len(inner) <= len(outer):
        return None
    return outer, inner, colons[0], statements[0]


def _python_for_to_while(node: Node, data: bytes, code: str, root: Node) -> list[Edit] | None:
    """``for x in it:`` -> ``_it = iter(it)`` / ``while True:`` / ``try: x = next(_it)`` /
    ``except StopIteration: break``, then the untouched body.

    Only the ``next()`` call is inside the ``try``, so a StopIteration raised by the body still
    propagates as before; ``continue`` re-enters ``while True`` and fetches the next item, as in
    the for loop. Skipped: ``else`` clauses, ``async for``, targets other than plain names
    (binding an attribute or item could itself raise StopIteration), and snippets that use
    ``iter``/``next``/``StopIteration`` other than as plain calls (possible shadowing).
    """
    layout = _python_loop_layout(node, data)
    left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
    if layout is None or left is None or right is None or not _python_simple_target(left):
        return None
    if not _python_builtins_unshadowed(root, frozenset({"iter", "next", "StopIteration"})):
        return None
    outer, inner, colon, first = layout
    unit = inner[len(outer) :]
    iterator = _fresh_name(code, "_it")
    iterable = text(right) if right.type != "expression_list" else f"({text(right)})"
    header = f"{iterator} = iter({iterable})\n{outer}while True:"
    fetch = (
        f"{inner}try:\n{inner}{unit}{text(left)} = next({iterator})\n"
        f"{inner}except StopIteration:\n{inner}{unit}break\n"
    )
    return [
        Edit(node.start_byte, colon.end_byte, header),
        Edit.insert(_line_start(data, first.start_byte), fetch),
    ]


def _python_while_to_for(node: Node, data: bytes, code: str, root: Node) -> list[Edit] | None:
    """``while c:`` -> ``for _w in iter(int, 1):`` / ``if not (c): break``, then the body.

    ``iter(int, 1)`` calls ``int()`` (always 0) until it returns 1: an endless iterator from
    builtins alone. ``continue`` goes to the next iteration, which re-tests the condition, as
    in the while loop. Skipped: ``else`` clauses and possible shadowing of ``iter``/``int``.
    """
    layout = _python_loop_layout(node, data)
    condition = node.child_by_field_name("condition")
    if layout is None or condition is None:
        return None
    if not _python_builtins_unshadowed(root, frozenset({"iter", "int"})):
        return None
    outer, inner, colon, first = layout
    unit = inner[len(outer) :]
    counter = _fresh_name(code, "_w")
    test = f"{inner}if not ({text(condition)}):\n{inner}{unit}break\n"
    return [
        Edit(node.start_byte, colon.end_byte, f"for {counter} in iter(int, 1):"),
        Edit.insert(_line_start(data, first.start_byte), test),
    ]
