"""C scopes: which identifiers are locals and parameters, and where each is visible."""

from __future__ import annotations

from collections.abc import Callable

from tree_sitter import Node

from codistill.fidelity.code import text
from codistill.fidelity.relations._lib.names import _words
from codistill.fidelity.relations._lib.scopes import _children, _Decl, _resolve_blocks, _Scan

_C_FUNCTIONS = frozenset({"function_definition"})
# Macro definitions and directives are text to tree-sitter: a local named in them is opaque.
_C_OPAQUE = frozenset(
    {
        "preproc_def",
        "preproc_function_def",
        "preproc_call",
        "preproc_include",
        "attribute_specifier",
    }
)
_C_ASM_OPERANDS = frozenset({"gnu_asm_output_operand", "gnu_asm_input_operand"})
_C_PREPROC_CONDITIONS = frozenset(
    {"preproc_ifdef", "preproc_if", "preproc_elif", "preproc_elifdef"}
)
_C_DECLARING = frozenset(
    {"function_definition", "declaration", "parameter_declaration", "enumerator"}
)
_C_DECLARATOR_WRAPPERS = frozenset(
    {
        "pointer_declarator",
        "array_declarator",
        "init_declarator",
        "attributed_declarator",
        "function_declarator",
    }
)


def _c_chain(declarator: Node | None) -> list[Node]:
    """The declarator chain down to the declared name (``*(*p)[4]`` -> ..., ``p``)."""
    chain: list[Node] = []
    while declarator is not None:
        chain.append(declarator)
        if declarator.type in _C_DECLARATOR_WRAPPERS:
            declarator = declarator.child_by_field_name("declarator")
        elif declarator.type == "parenthesized_declarator":
            declarator = declarator.named_children[0] if declarator.named_children else None
        else:
            break
    return chain


def _c_name(declarator: Node | None) -> Node | None:
    chain = _c_chain(declarator)
    return chain[-1] if chain and chain[-1].type == "identifier" else None


def _c_is_function(declarator: Node | None) -> bool:
    """``f(int)`` or ``*f(int)`` declares a function; ``(*f)(int)`` a function pointer."""
    chain = _c_chain(declarator)
    return len(chain) >= 2 and chain[-2].type == "function_declarator"


def _c_local_scope(node: Node) -> Node | None:
    """The block a local declaration lives in; None at file level."""
    current = node.parent
    while current is not None:
        if current.type == "compound_statement":
            return current
        if current.type == "for_statement":
            return current
        if current.type in ("translation_unit", "function_definition"):
            return None
        current = current.parent
    return None


def _c_function(node: Node, declare: Callable) -> None:
    """Parameters of a function definition (K&R declarations included) and its name."""
    chain = _c_chain(node.child_by_field_name("declarator"))
    functions = [d for d in chain if d.type == "function_declarator"]
    if not functions:
        return
    own = functions[-1]  # the innermost one: int (*get(void))(int) is get(void)
    declare(_c_name(own.child_by_field_name("declarator")), None)
    params = own.child_by_field_name("parameters")
    for param in params.named_children if params is not None else ():
        if param.type == "parameter_declaration":
            declare(_c_name(param.child_by_field_name("declarator")), node)
        elif param.type == "identifier":
            declare(param, node)
    for child in node.named_children:
        if child.type == "declaration":
            for declarator in child.children_by_field_name("declarator"):
                declare(_c_name(declarator), node)


def _c_declarations(node: Node, declare: Callable) -> None:
    """Declare what a node of a type in ``_C_DECLARING`` declares."""
    t = node.type
    if t == "function_definition":
        _c_function(node, declare)
    elif t == "declaration":
        extern = any(
            c.type == "storage_class_specifier" and text(c) == "extern" for c in node.children
        )
        scope = None if extern else _c_local_scope(node)
        for declarator in node.children_by_field_name("declarator"):
            local = scope is not None and not _c_is_function(declarator)
            declare(_c_name(declarator), scope if local else None)
    elif t == "parameter_declaration":  # prototypes, function-pointer parameters
        declare(_c_name(node.child_by_field_name("declarator")), None)
    elif t == "enumerator":
        declare(node.child_by_field_name("name"), None)


def _scan_c(root: Node) -> _Scan:
    decls: list[_Decl] = []
    refs: list[Node] = []
    opaque: set[str] = set()
    declared: set[int] = set()

    def declare(ident: Node | None, scope: Node | None) -> None:
        if ident is None or ident.id in declared:
            return
        declared.add(ident.id)
        if scope is not None:
            start = ident.start_byte if scope.type != "function_definition" else scope.start_byte
            decls.append(_Decl(text(ident), ident, scope, start))

    stack: list[Node] = [root]
    while stack:
        node = stack.pop()
        t = node.type
        if node.is_error or t in _C_OPAQUE:
            opaque |= _words(text(node))
            continue
        if t == "identifier":
            if node.id not in declared:
                refs.append(node)
            continue
        if t in _C_DECLARING:
            _c_declarations(node, declare)
        if t in _C_PREPROC_CONDITIONS:
            children = []
            for child, fld, _ in _children(node):
                if fld in ("name", "condition"):
                    opaque |= _words(text(child))
                else:
                    children.append(child)
        elif t == "gnu_asm_goto_list":
            continue  # asm goto's labels: label names, which the template refers to (%l[out])
        elif t in _C_ASM_OPERANDS:
            # [t4] "=r" (t4): the bracketed symbol is named by the asm template (%[t4]), not
            # a reference to the local, so only the parenthesised value may be renamed.
            children = [child for child, fld, _ in _children(node) if fld != "symbol"]
        else:
            # Anonymous nodes are tokens (tree-sitter-c aliases no rule to an anonymous name),
            # so they hold no name: skipping them spares a Python object per token.
            children = node.named_children
        stack.extend(reversed(children))
    scan = _resolve_blocks(decls, refs, _C_FUNCTIONS)
    scan.blocked |= opaque
    return scan
