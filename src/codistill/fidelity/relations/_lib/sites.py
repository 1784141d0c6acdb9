"""What the structural relations share: statement lists, indentation, fresh names, and
turning a chosen site's edits into a variant."""

from __future__ import annotations

import random
from collections.abc import Iterator

from tree_sitter import Node

from codistill.fidelity.code import Edit, apply_edits, find, parse_shared, parses, text, walk
from codistill.fidelity.relations.base import Variant

_COMMENTS = frozenset({"comment", "line_comment", "block_comment"})
_FUNCTIONS = {
    "java": frozenset(
        {
            "method_declaration",
            "constructor_declaration",
            "compact_constructor_declaration",
            "lambda_expression",
        }
    ),
    "c": frozenset({"function_definition"}),
    "python": frozenset({"function_definition", "lambda"}),
}
_CLASSES = {
    "java": frozenset(
        {"class_body", "interface_body", "enum_body", "annotation_type_body", "record_body"}
    ),
    "c": frozenset(),
    "python": frozenset({"class_definition"}),
}
_STATEMENT_LISTS = {
    "java": frozenset({"block", "constructor_body"}),
    "c": frozenset({"compound_statement"}),
    "python": frozenset({"block", "module"}),
}


_BLOCK_TYPES = frozenset({"block", "compound_statement"})


# --------------------------------------------------------------------------- shared helpers


def _ancestors(node: Node) -> Iterator[Node]:
    current = node.parent
    while current is not None:
        yield current
        current = current.parent


def _scope(node: Node, language: str) -> str:
    """What the code at ``node`` runs in (nearest enclosing): "function", "class" or "module".

    Relations that add names or reorder code stay out of class bodies: there an extra name is a
    new attribute and order is observable (dataclass fields, Enum members, Java initialisers).
    """
    for ancestor in _ancestors(node):
        if ancestor.type in _FUNCTIONS[language]:
            return "function"
        if ancestor.type in _CLASSES[language]:
            return "class"
    return "module"


def _statements(container: Node) -> list[Node]:
    """The statements of a block (named children minus comments)."""
    return [c for c in container.named_children if c.type not in _COMMENTS]


def _statement_lists(root: Node, language: str, scopes: tuple[str, ...]) -> list[Node]:
    """Error-free statement containers whose code runs in one of ``scopes``."""
    found = []
    for node in find(root, _STATEMENT_LISTS[language], language):
        if node.has_error:
            continue
        if language == "c" and node.parent is not None and node.parent.type == "switch_statement":
            continue  # statements there hang off case labels; inserting before a label is odd C
        if language == "python" and node.type == "module":
            scope = "module"
        else:
            scope = _scope(node, language)
        if scope in scopes:
            found.append(node)
    return found


def _line_start(data: bytes, pos: int) -> int:
    return data.rfind(b"\n", 0, pos) + 1


def _indent(data: bytes, node: Node) -> str | None:
    """The whitespace before ``node`` on its line; None when ``node`` is not first on its line."""
    prefix = data[_line_start(data, node.start_byte) : node.start_byte]
    return prefix.decode("utf-8") if not prefix.strip(b" \t") else None


def _indent_unit(indent: str) -> str:
    return "\t" if indent and set(indent) == {"\t"} else "    "


def _fresh_name(code: str, base: str) -> str:
    """``base`` (or ``base1``, ``base2``, ...) such that it occurs nowhere in ``code``.

    A substring test, stricter than an identifier test, so the name cannot collide with anything
    (a string, a comment, a longer identifier) the snippet already contains.
    """
    name, i = base, 0
    while name in code:
        i += 1
        name = f"{base}{i}"
    return name


def _identifiers(node: Node) -> set[str]:
    return {
        text(n)
        for n in walk(node)
        if n.type in ("identifier", "type_identifier", "field_identifier")
    }


def _inner(data: bytes, parenthesized: Node) -> str:
    """The text between the parentheses of a ``parenthesized_expression``."""
    return data[parenthesized.start_byte + 1 : parenthesized.end_byte - 1].decode("utf-8")


def _line(node: Node) -> int:
    return node.start_point[0] + 1


def _finish(
    relation: str, code: str, language: str, edits: list[Edit], detail: str, target: str | None
) -> Variant | None:
    """The variant, or None when it is unchanged or breaks a snippet that parsed before.

    The parse check is a safety net, not the proof of correctness (the tests execute variants).
    The original's tree is the one its relations share; the variant is parsed afresh.
    """
    new = apply_edits(code, edits)
    if new == code:
        return None
    if not parse_shared(code, language).root_node.has_error and not parses(new, language):
        return None
    return Variant(relation=relation, language=language, code=new, target=target, detail=detail)


def _pick(
    relation: str,
    code: str,
    language: str,
    sites: list[tuple[list[Edit], str]],
    rng: random.Random,
    target: str | None,
) -> Variant | None:
    if not sites:
        return None
    edits, detail = sites[rng.randrange(len(sites))]
    return _finish(relation, code, language, edits, detail, target)


def _declared_identifiers(statement: Node) -> list[Node]:
    """The identifier nodes a Java/C declaration statement declares."""
    found = []
    if statement.type == "local_variable_declaration":
        for declarator in statement.children_by_field_name("declarator"):
            found.append(declarator.child_by_field_name("name"))
    elif statement.type == "declaration":
        for declarator in statement.children_by_field_name("declarator"):
            current = declarator
            while current is not None and current.type != "identifier":
                current = current.child_by_field_name("declarator")
            found.append(current)
    elif statement.type in ("local_class_declaration", "class_declaration"):
        found.append(statement.child_by_field_name("name"))
    return [n for n in found if n is not None]


def _declared_names(statement: Node) -> set[str]:
    return {text(n) for n in _declared_identifiers(statement)}
