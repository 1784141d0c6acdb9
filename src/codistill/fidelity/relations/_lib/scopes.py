"""Parsing a snippet for renaming, and name resolution shared by the block-scoped languages."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from tree_sitter import Node, Tree

from codistill.fidelity.code import parse, parse_shared, text
from codistill.fidelity.relations._lib.names import _words

# --- parsing the snippet --------------------------------------------------------------------

# A bare Java member list or an indented Python method parses inside a class; tree-sitter-java
# also parses a lone method at top level, so the wrapper is only a fallback for worse parses.
_JAVA_FILE_LEVEL = frozenset(
    {
        "package_declaration",
        "import_declaration",
        "class_declaration",
        "interface_declaration",
        "enum_declaration",
        "record_declaration",
        "annotation_type_declaration",
        "module_declaration",
    }
)
_WRAPPERS = {"java": ("class __W {\n", "\n}"), "python": ("class __W:\n", "\n")}
_NON_CODE_LEAVES = frozenset(
    {
        "comment",
        "line_comment",
        "block_comment",
        "string_content",
        "string_fragment",
        "multiline_string_fragment",
        "escape_sequence",
        "character",
    }
)


def _errors(node: Node) -> int:
    count = 0
    stack = [node]
    while stack:
        current = stack.pop()
        if current.is_error or current.is_missing:
            count += 1
        if current.has_error:
            stack.extend(current.children)
    return count


def _parse_snippet(code: str, language: str) -> tuple[Tree, int]:
    """The snippet's tree and the byte length of any wrapper put before it.

    Java without a type or package declaration is tried inside a class too: a member list
    parses at top level without errors, but ``private int count;`` then reads as a local.
    """
    tree = parse_shared(code, language)
    if language == "java":
        top = {child.type for child in tree.root_node.named_children}
        if top & _JAVA_FILE_LEVEL:
            return tree, 0
    elif language != "python" or not tree.root_node.has_error:
        return tree, 0
    elif not code.lstrip("\r\n")[:1].isspace():
        return tree, 0
    prefix, suffix = _WRAPPERS[language]
    wrapped = parse(prefix + code + suffix, language)
    if _errors(wrapped.root_node) <= _errors(tree.root_node) - (language == "python"):
        return wrapped, len(prefix.encode("utf-8"))
    return tree, 0


def _children(node: Node) -> Iterator[tuple[Node, str | None, str | None]]:
    """(child, its field name, the previous sibling's type) for each child."""
    prev = None
    for i, child in enumerate(node.children):
        yield child, node.field_name_for_child(i), prev
        prev = child.type


def _leaf_words(root: Node) -> set[str]:
    """Identifier-like tokens of the tree, outside comments and string contents."""
    words: set[str] = set()
    stack = [root]
    while stack:
        node = stack.pop()
        if node.child_count == 0:
            if node.type not in _NON_CODE_LEAVES:
                words |= _words(text(node))
        else:
            stack.extend(node.children)
    return words


# --- resolution shared by the block-scoped languages ----------------------------------------


@dataclass
class _Scan:
    """A language scanner's verdict: the identifier nodes that belong to local bindings, per
    name (declarations and resolved references), and the names it refuses to rename."""

    targets: dict[str, list[Node]] = field(default_factory=lambda: defaultdict(list))
    blocked: set[str] = field(default_factory=set)


@dataclass(frozen=True)
class _Decl:
    name: str
    node: Node
    scope: Node
    visible_from: int


def _outermost(node: Node, kinds: frozenset[str]) -> int:
    """Id of the outermost ancestor of ``node`` (itself included) whose type is in ``kinds``;
    the root's id when none. Two occurrences with the same id are in the same function."""
    found, current = None, node
    while current is not None:
        if current.type in kinds:
            found = current
        last, current = current, current.parent
    return (found or last).id


def _resolve_blocks(
    decls: list[_Decl],
    refs: list[Node],
    functions: frozenset[str],
    shadowed: Callable[[Node, _Decl], bool] = lambda ref, decl: False,
) -> _Scan:
    """Bind each reference to the innermost declaration in scope at its position."""
    scan = _Scan()
    by_name: dict[str, list[_Decl]] = defaultdict(list)
    for decl in decls:
        by_name[decl.name].append(decl)
        scan.targets[decl.name].append(decl.node)
    unresolved: dict[str, set[int]] = defaultdict(set)
    for ref in refs:
        name, at = text(ref), ref.start_byte
        visible = [
            d
            for d in by_name.get(name, ())
            if d.scope.start_byte <= at < d.scope.end_byte and at >= d.visible_from
        ]
        best = max(
            visible,
            key=lambda d: (d.scope.start_byte, -d.scope.end_byte, d.visible_from),
            default=None,
        )
        if best is not None and not shadowed(ref, best):
            scan.targets[name].append(ref)
        else:
            unresolved[name].add(_outermost(ref, functions))
    for name, roots in unresolved.items():
        if any(_outermost(d.node, functions) in roots for d in by_name.get(name, ())):
            scan.blocked.add(name)  # a local *and* something else in one function: too subtle
    return scan
