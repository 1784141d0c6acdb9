"""Source code as tree-sitter trees, and byte-range edits on it: what every relation builds on.

All three languages go through tree-sitter (not Python's ``ast``) so a relation edits the
original text in place: comments, formatting and everything it does not touch survive
byte for byte, which ``ast.unparse`` would not give.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from functools import cache, lru_cache

import tree_sitter_c
import tree_sitter_java
import tree_sitter_python
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

LANGUAGES = ("java", "python", "c")
_GRAMMARS = {"java": tree_sitter_java, "python": tree_sitter_python, "c": tree_sitter_c}


@cache
def _language(language: str) -> Language:
    if language not in _GRAMMARS:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return Language(_GRAMMARS[language].language())


@cache
def parser(language: str) -> Parser:
    """A (cached, per language) tree-sitter parser."""
    return Parser(_language(language))


def parse(code: str, language: str) -> Tree:
    return parser(language).parse(code.encode("utf-8"))


@lru_cache(maxsize=32)
def parse_shared(code: str, language: str) -> Tree:
    """:func:`parse`, cached: the tree of an input that the relations applied to it share.

    Every relation applied to one input (and every attempt of an attack on it) would otherwise
    parse that same input again; parsing is most of a relation's cost. Sharing is safe because
    nothing edits trees in place: callers must not call ``Tree.edit`` on the result. Variants are
    parsed with :func:`parse`/:func:`parses`, never through this cache.
    """
    return parse(code, language)


def parses(code: str, language: str) -> bool:
    """True when tree-sitter parses ``code`` with no ERROR or MISSING node."""
    return not parse(code, language).root_node.has_error


def text(node: Node) -> str:
    return node.text.decode("utf-8")


_QUERY_ESCAPES = str.maketrans({"\\": "\\\\", '"': '\\"', "\n": "\\n", "\r": "\\r", "\t": "\\t"})


@cache
def _type_query(language: str, types: frozenset[str]) -> Query | None:
    """A query capturing every node whose type is in ``types``, named or anonymous (as
    ``node.type`` does not tell them apart); None when the grammar has none of them."""
    grammar = _language(language)
    patterns = []
    for kind in sorted(types):
        if grammar.id_for_node_kind(kind, True) is not None:
            patterns.append(f"({kind})")
        if grammar.id_for_node_kind(kind, False) is not None:
            patterns.append(f'"{kind.translate(_QUERY_ESCAPES)}"')
    return Query(grammar, f"[{' '.join(patterns)}] @node") if patterns else None


def find(node: Node, types: frozenset[str], language: str) -> list[Node]:
    """The nodes under ``node`` (itself included) whose type is in ``types``, in the order
    :func:`walk` yields them (source order, parents first).

    Equivalent to ``[n for n in walk(node) if n.type in types]``, but the walk runs in C as a
    tree-sitter query and only the matching nodes become Python objects: a whole-tree walk in
    Python is what relations on long functions spend their time on. The query's matches of a
    single-node pattern come in the walk's order.
    """
    query = _type_query(language, types)
    if query is None:
        return []
    return [captures["node"][0] for _, captures in QueryCursor(query).matches(node)]


def walk(node: Node) -> Iterator[Node]:
    """Every node under ``node`` (itself included), in source order."""
    stack = [node]
    while stack:
        current = stack.pop()
        yield current
        stack.extend(reversed(current.children))


@dataclass(frozen=True)
class Edit:
    """Replace the bytes ``[start, end)`` of the UTF-8 source with ``new``."""

    start: int
    end: int
    new: str

    @classmethod
    def replace(cls, node: Node, new: str) -> Edit:
        return cls(node.start_byte, node.end_byte, new)

    @classmethod
    def insert(cls, at: int, new: str) -> Edit:
        return cls(at, at, new)


def apply_edits(code: str, edits: Iterable[Edit]) -> str:
    """Apply non-overlapping edits (any order) to ``code``; overlapping edits raise ValueError.

    Offsets are UTF-8 byte offsets, as tree-sitter reports them.
    """
    ordered = sorted(edits, key=lambda e: (e.start, e.end))
    data = code.encode("utf-8")
    out: list[bytes] = []
    pos = 0
    for edit in ordered:
        if edit.start < pos or edit.end < edit.start or edit.end > len(data):
            raise ValueError(f"overlapping or out-of-range edit {edit}")
        out.append(data[pos : edit.start])
        out.append(edit.new.encode("utf-8"))
        pos = edit.end
    out.append(data[pos:])
    return b"".join(out).decode("utf-8")
