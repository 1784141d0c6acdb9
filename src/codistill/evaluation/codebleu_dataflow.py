"""GraphCodeBERT's data-flow graph on tree-sitter: the data-flow component of CodeBLEU.

A port of the codebleu 0.7.0 package's DFG extractors (Python, Java) to the current tree-sitter
API, with the package's quirks kept so the numbers agree (see ``codistill.evaluation.codebleu``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import cache

import tree_sitter_java
import tree_sitter_python
from tree_sitter import Language, Node, Parser

_ATOMIC_TYPES = ("string_literal", "string", "character_literal")
Edge = tuple[str, int, str, list[str], list[int]]


@cache
def _parser(language: str) -> Parser:
    grammar = tree_sitter_java if language == "java" else tree_sitter_python
    return Parser(Language(grammar.language()))


def _parse(code: str, language: str) -> Node:
    return _parser(language).parse(code.encode("utf8")).root_node


def normalize_dataflow(edges: list[Edge]) -> list[tuple[str, str, list[str]]]:
    """Rename variables to ``var_0, var_1, ...`` in order of appearance; drop token positions."""
    names: dict[str, str] = {}
    out = []
    for name, _, relation, parents, _ in edges:
        for var in [*parents, name]:
            names.setdefault(var, f"var_{len(names)}")
        out.append((names[name], relation, [names[p] for p in parents]))
    return out


def data_flow(code: str, language: str, *, hash_order: bool = False) -> list[Edge]:
    """GraphCodeBERT's data-flow graph of ``code``: the variables that take part in some edge.

    Args:
        code: source code (comments already removed).
        language: ``"java"`` or ``"python"``.
        hash_order: deduplicate merged parent names with ``list(set(...))`` like the package,
            whose order follows string hashing (``PYTHONHASHSEED``); default: first appearance.

    Returns:
        One ``(variable, token index, relation, parent variables, parent indices)`` per token
        that has parents or is a parent, sorted by token index; relations are ``comesFrom``
        and ``computedFrom``.
    """
    unique = _hash_unique if hash_order else _unique
    walk = _dfg_java if language == "java" else _dfg_python
    try:
        root = _parse(code, language)
        lines = code.split("\n")
        spans = _token_spans(root)
        tokens = _Tokens(
            {span: (i, _span_text(span, lines)) for i, span in enumerate(spans)}, unique
        )
        edges, _ = walk(root, tokens, {})
    except Exception:  # the package gives up (no data flow) on code its walker cannot handle
        edges = []
    edges = sorted(edges, key=lambda e: e[1])
    linked = set()
    for edge in edges:
        if edge[-1]:
            linked.add(edge[1])
        linked.update(edge[-1])
    merged: dict[int, Edge] = {}
    for edge in (e for e in edges if e[1] in linked):
        if edge[1] not in merged:
            merged[edge[1]] = edge
        else:
            old = merged[edge[1]]
            merged[edge[1]] = (
                edge[0],
                edge[1],
                edge[2],
                unique(old[3] + edge[3]),
                unique(old[4] + edge[4]),
            )
    return list(merged.values())


@dataclass(frozen=True)
class _Tokens:
    """What the data-flow walkers share: (token index, text) by span, and the deduplication."""

    code: dict[tuple, tuple[int, str]]
    unique: Callable[[list], list]


def _unique(items: list) -> list:
    """Deduplicate, keeping first appearances: reproducible from run to run."""
    return list(dict.fromkeys(items))


def _hash_unique(items: list) -> list:
    """Deduplicate as the package does; the order depends on ``PYTHONHASHSEED``."""
    return list(set(items))


def _has_subtree(node: Node) -> bool:
    """Whether the package's grammar (0.21) gives this node children.

    tree-sitter-python >= 0.23 parses the operators ``is not`` / ``not in`` as one anonymous
    node with two keyword children; grammar 0.21 has two sibling leaves, both of type
    ``"is not"`` (``"not in"``). Such a node therefore counts as no subtree, and its children
    as tokens that carry its type (see ``_split_operator``).
    """
    return node.child_count > 0 and node.is_named


def _split_operator(node: Node) -> bool:
    return node.child_count > 0 and not node.is_named


def _is_token(node: Node) -> bool:
    return (node.child_count == 0 or node.type in _ATOMIC_TYPES) and node.type != "comment"


def _span(node: Node) -> tuple:
    return (tuple(node.start_point), tuple(node.end_point))


def _token_spans(node: Node) -> list[tuple]:
    if _is_token(node):
        return [_span(node)]
    if _split_operator(node):
        return [_span(child) for child in node.children]
    return [span for child in node.children for span in _token_spans(child)]


def _variable_spans(node: Node, index_to_code) -> list[tuple]:
    """Spans of the tokens under ``node`` whose text differs from their type (not keywords)."""
    if _is_token(node) or _split_operator(node):
        leaves = node.children if _split_operator(node) else [node]
        spans = [_span(leaf) for leaf in leaves]
        return [span for span in spans if node.type != index_to_code[span][1]]
    return [s for child in node.children for s in _variable_spans(child, index_to_code)]


def _span_text(span: tuple, lines: list[str]) -> str:
    # Columns are tree-sitter byte offsets used as str indices, exactly like the package (so
    # non-ASCII text shifts tokens the same way there and here).
    (start_row, start_col), (end_row, end_col) = span
    if start_row == end_row:
        return lines[start_row][start_col:end_col]
    text = lines[start_row][start_col:]
    for row in range(start_row + 1, end_row):
        text += lines[row]
    return text + lines[end_row][:end_col]


def _leaf_flow(node: Node, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    edges: list[Edge] = []
    leaves = node.children if _split_operator(node) else [node]
    for leaf in leaves:
        idx, code = tok.code[_span(leaf)]
        if node.type == code:
            continue
        if code in states:
            edges.append((code, idx, "comesFrom", [code], states[code].copy()))
            continue
        if node.type == "identifier":
            states[code] = [idx]
        edges.append((code, idx, "comesFrom", [], []))
    return edges, states


def _by_index(edges: list[Edge]) -> list[Edge]:
    return sorted(edges, key=lambda e: e[1])


def _while_flow(node: Node, walk, tok, states: dict) -> tuple[list[Edge], dict]:
    """A while loop's body walked twice, so values flowing around the loop are seen (as the
    package's DFG extractors do for both languages)."""
    edges: list[Edge] = []
    for _ in range(2):
        for child in node.children:
            temp, states = walk(child, tok, states)
            edges += temp
    return _merge_loop_edges(edges, tok.unique), states


def _merge_loop_edges(edges: list[Edge], unique: Callable[[list], list]) -> list[Edge]:
    """Loops are walked twice; merge the parents of edges seen on both passes."""
    merged: dict[tuple, list] = {}
    for name, idx, relation, parents, parent_idx in edges:
        key = (name, idx, relation)
        if key not in merged:
            merged[key] = [parents, parent_idx]
        else:
            merged[key][0] = unique(merged[key][0] + parents)
            merged[key][1] = sorted(set(merged[key][1] + parent_idx))
    ordered = sorted(merged.items(), key=lambda item: item[0][1])
    return _by_index([(k[0], k[1], k[2], v[0], v[1]) for k, v in ordered])


def _join_branch_states(branch_states: list[dict]) -> dict:
    joined: dict[str, list[int]] = {}
    for states in branch_states:
        for key, value in states.items():
            if key not in joined:
                joined[key] = value.copy()
            else:
                joined[key] += value
    return {key: sorted(set(value)) for key, value in joined.items()}


def _definition_flow(node: Node, walk, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    """``name = value`` declarations (Java variable_declarator, Python default_parameter)."""
    name = node.child_by_field_name("name")
    value = node.child_by_field_name("value")
    edges: list[Edge] = []
    if value is None:
        for span in _variable_spans(name, tok.code):
            idx, code = tok.code[span]
            edges.append((code, idx, "comesFrom", [], []))
            states[code] = [idx]
        return _by_index(edges), states
    name_spans = _variable_spans(name, tok.code)
    value_spans = _variable_spans(value, tok.code)
    temp, states = walk(value, tok, states)
    edges += temp
    for span1 in name_spans:
        idx1, code1 = tok.code[span1]
        for span2 in value_spans:
            idx2, code2 = tok.code[span2]
            edges.append((code1, idx1, "comesFrom", [code2], [idx2]))
        states[code1] = [idx1]
    return _by_index(edges), states


def _computed_from(left: Node, right: Node, tok: _Tokens, states: dict) -> list[Edge]:
    """Every variable on the left is computed from all variables on the right (Python)."""
    right_spans = _variable_spans(right, tok.code)
    edges = []
    for span in _variable_spans(left, tok.code):
        idx, code = tok.code[span]
        edges.append(
            (
                code,
                idx,
                "computedFrom",
                [tok.code[s][1] for s in right_spans],
                [tok.code[s][0] for s in right_spans],
            )
        )
        states[code] = [idx]
    return edges


def _paired_sides(node: Node) -> tuple[list[Node], list[Node]]:
    """Python ``a, b = x, y``: pair the sides element-wise when their lengths agree."""
    left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
    left_nodes = [x for x in left.children if x.type != ","]
    right_nodes = [x for x in right.children if x.type != ","]
    if len(right_nodes) != len(left_nodes):
        left_nodes, right_nodes = [left], [right]
    if not left_nodes:
        left_nodes = [left]
    if not right_nodes:
        right_nodes = [right]
    return left_nodes, right_nodes


def _dfg_python(node: Node, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    """Port of ``codebleu.parser.DFG.DFG_python`` (GraphCodeBERT)."""
    states = states.copy()
    kind = node.type
    if _is_token(node) or _split_operator(node):
        return _leaf_flow(node, tok, states)
    if kind == "default_parameter":
        return _definition_flow(node, _dfg_python, tok, states)
    if kind in ("assignment", "augmented_assignment", "for_in_clause"):
        if kind == "for_in_clause":
            left_nodes = [node.child_by_field_name("left")]
            right_nodes = [node.children[-1]]
        else:
            if node.child_by_field_name("right") is None:
                return [], states
            left_nodes, right_nodes = _paired_sides(node)
        edges: list[Edge] = []
        for right in right_nodes:
            temp, states = _dfg_python(right, tok, states)
            edges += temp
        for left, right in zip(left_nodes, right_nodes, strict=False):
            edges += _computed_from(left, right, tok, states)
        return _by_index(edges), states
    if kind == "if_statement":
        edges = []
        current = states.copy()
        branches = []
        has_else = False
        for child in node.children:
            if "else" in child.type:
                has_else = True
            if child.type not in ("elif_clause", "else_clause"):
                temp, current = _dfg_python(child, tok, current)
            else:
                temp, branch = _dfg_python(child, tok, states)
                branches.append(branch)
            edges += temp
        return _close_if(edges, branches, current, states, has_else)
    if kind == "for_statement":
        edges = []
        for _ in range(2):
            left_nodes, right_nodes = _paired_sides(node)
            for right in right_nodes:
                temp, states = _dfg_python(right, tok, states)
                edges += temp
            for left, right in zip(left_nodes, right_nodes, strict=False):
                edges += _computed_from(left, right, tok, states)
            if node.children[-1].type == "block":
                temp, states = _dfg_python(node.children[-1], tok, states)
                edges += temp
        return _merge_loop_edges(edges, tok.unique), states
    if kind == "while_statement":
        return _while_flow(node, _dfg_python, tok, states)
    edges = []
    # A comprehension's for-clause binds its variable before the body reads it.
    for child in node.children:
        if child.type == "for_in_clause":
            temp, states = _dfg_python(child, tok, states)
            edges += temp
    for child in node.children:
        if child.type != "for_in_clause":
            temp, states = _dfg_python(child, tok, states)
            edges += temp
    return _by_index(edges), states


def _dfg_java(node: Node, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    """Port of ``codebleu.parser.DFG.DFG_java`` (GraphCodeBERT)."""
    states = states.copy()
    kind = node.type
    if _is_token(node) or _split_operator(node):
        return _leaf_flow(node, tok, states)
    if kind == "variable_declarator":
        return _definition_flow(node, _dfg_java, tok, states)
    if kind == "assignment_expression":
        left, right = node.child_by_field_name("left"), node.child_by_field_name("right")
        edges, states = _dfg_java(right, tok, states)
        edges += _each_from_each(left, right, tok, states)
        return _by_index(edges), states
    if kind == "update_expression":
        return _by_index(_each_from_each(node, node, tok, states)), states
    if kind in ("if_statement", "else"):
        return _java_if_flow(node, tok, states)
    if kind == "for_statement":
        return _java_for_flow(node, tok, states)
    if kind == "enhanced_for_statement":
        return _java_enhanced_for_flow(node, tok, states)
    if kind == "while_statement":
        return _while_flow(node, _dfg_java, tok, states)
    edges = []
    for child in node.children:
        temp, states = _dfg_java(child, tok, states)
        edges += temp
    return _by_index(edges), states


def _each_from_each(left: Node, right: Node, tok: _Tokens, states: dict) -> list[Edge]:
    """Each variable on the left is computed from each one on the right, one edge per pair
    (Java; ``states`` is updated in place)."""
    edges: list[Edge] = []
    value_spans = _variable_spans(right, tok.code)
    for span1 in _variable_spans(left, tok.code):
        idx1, code1 = tok.code[span1]
        for span2 in value_spans:
            idx2, code2 = tok.code[span2]
            edges.append((code1, idx1, "computedFrom", [code2], [idx2]))
        states[code1] = [idx1]
    return edges


def _java_if_flow(node: Node, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    """An ``if`` (or ``else``): branches walked from the state before it, their states joined."""
    edges: list[Edge] = []
    current = states.copy()
    branches = []
    in_branch = False
    has_else = "else" in node.type
    for child in node.children:
        if "else" in child.type:
            has_else = True
        if child.type not in ("if_statement", "else") and not in_branch:
            temp, current = _dfg_java(child, tok, current)
        else:
            # From the first "else" on, children are walked from the state before the if.
            in_branch = True
            temp, branch = _dfg_java(child, tok, states)
            branches.append(branch)
        edges += temp
    return _close_if(edges, branches, current, states, has_else)


def _close_if(edges, branches, current, states, has_else: bool):
    """An if statement's edges and the state after it: the join of every branch's state, the
    last branch walked (``current``) and, without an else, the state before the if."""
    branches.append(current)
    if not has_else:
        branches.append(states)
    return _by_index(edges), _join_branch_states(branches)


def _java_for_flow(node: Node, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    """A ``for`` loop: every child, then again everything after the initialisation."""
    edges: list[Edge] = []
    for child in node.children:
        temp, states = _dfg_java(child, tok, states)
        edges += temp
    after_init = False
    for child in node.children:
        if after_init:
            temp, states = _dfg_java(child, tok, states)
            edges += temp
        elif child.type == "local_variable_declaration":
            after_init = True
    return _merge_loop_edges(edges, tok.unique), states


def _java_enhanced_for_flow(node: Node, tok: _Tokens, states: dict) -> tuple[list[Edge], dict]:
    """``for (T name : value) body``, walked twice like every loop."""
    name = node.child_by_field_name("name")
    value = node.child_by_field_name("value")
    body = node.child_by_field_name("body")
    edges: list[Edge] = []
    for _ in range(2):
        temp, states = _dfg_java(value, tok, states)
        edges += temp
        edges += _each_from_each(name, value, tok, states)
        temp, states = _dfg_java(body, tok, states)
        edges += temp
    return _merge_loop_edges(edges, tok.unique), states
