"""Programmatic fault injection: faulty variants of a verified-correct Python solution.

SODA's Stage I pairs each correct solution with a faulty one of five types (syntax, logic,
type, name, timeout; ``../shared/seeds/soda-self-paced-kd.txt``, Fig. 3B and 4). The paper asks
the teacher for the faulty one; here small mutation operators make them from the correct
solution instead, so faults do not depend on the teacher's willingness to write wrong code, and
the faulty solution differs from the correct one only where the fault is (a contrastive pair
should not also teach formatting): every operator edits the source text at one place, located
with :mod:`ast` (and :mod:`tokenize` for syntax faults), and leaves every other character as
it was.

An operator only proposes a fault; whether it really fails for its intended reason on the
question's tests is settled by running it (:mod:`codistill.soda.verify`): an off-by-one may
raise ``IndexError`` instead of giving a wrong answer, a mutated loop may still end, a changed
line may never run. Each operator is documented with the failure it aims at and how reliably it
gets it.

Operators (name: what it does):

syntax
    ``drop_closing_bracket``: delete one ``)``, ``]`` or ``}`` (an unclosed bracket);
    ``drop_colon``: delete the ``:`` ending a compound-statement header (``if x`` ...);
    ``misspelled_keyword``: ``for``->``fro``, ``return``->``retrun``... where a name, number or
    string follows, so two operands stand side by side. All three always give a SyntaxError at
    compile time (candidates that still compile are dropped).
logic
    ``range_off_by_one``: ``range(a, b)``: ``b`` -> ``b - 1`` (``n + 1`` -> ``n``), ``a`` ->
    ``a + 1``; ``compare_flip``: ``<``<->``<=``, ``>``<->``>=``, ``==``<->``!=``;
    ``arith_swap``: ``+``<->``-``; ``swap_operands``: ``a - b`` -> ``b - a`` for ``-``, ``/``,
    ``//``, ``%``, ``**`` and single ``<``, ``<=``, ``>``, ``>=`` comparisons;
    ``constant_swap``: literal ``0``<->``1``, ``True``<->``False``; ``bool_op_swap``:
    ``and``<->``or``; ``min_max_swap``: ``min``<->``max``; ``negate_condition``: ``if c`` ->
    ``if not c`` (also conditional expressions and comprehension filters);
    ``slice_off_by_one``: ``s[:k]`` -> ``s[:k - 1]``, ``s[1:]`` -> ``s[2:]``. These aim at a
    wrong answer (AssertionError in the tests); they may also crash, loop or still pass.
type
    ``str_operand``: a number literal beside ``+ - / // % **``, an augmented assignment with
    one of them, or an ordering comparison becomes a string (``x + 1`` -> ``x + "1"``,
    ``n < 2`` -> ``n < "2"``): TypeError whenever the other operand is a number (``*`` is left
    out: ``int * str`` repeats the string); ``range_of_sequence``: ``range(len(xs))`` ->
    ``range(xs)``, also inside a bound (``range(len(xs) - 1)`` -> ``range(xs - 1)``): TypeError
    for every sequence; ``iterate_int``: ``for i in range(n)`` ->
    ``for i in n``: TypeError (``int`` is not iterable), since ``range`` accepted ``n``;
    ``sum_str_start``: ``sum(xs)`` -> ``sum(xs, "")``: TypeError whatever ``xs`` holds (sum
    refuses a string start); ``drop_conversion``: ``"n=" + str(n)`` -> ``"n=" + n``, ``",".join(
    map(str, xs))`` -> ``",".join(xs)``: TypeError unless the value already had that type.
name
    ``unbound_name``: one use of a parameter or local variable renamed to a typo of it (last two
    letters swapped, or an ``s`` added...) that no code binds and that is not a builtin:
    NameError when the line runs; ``unbound_call``: the same for the function of a call (a
    builtin or a function of the module, ``len(x)`` -> ``lne(x)``).
timeout
    ``while_true``: a ``while`` condition becomes ``True``; ``skip_update``: in a ``while``
    loop, an assignment to a name its condition reads becomes ``pass`` (the forgotten
    increment); ``busy_loop_at_entry``: ``while True: pass`` inserted as a function's first
    statement (after its docstring): never ends once the function is called. The first two may
    still end by ``return``/``break`` or run out of memory instead.

Line numbers are 1-based lines of the original source. Sources are treated as lines ending in
``\\n``; a lone ``\\r`` line ending is not supported (positions would be off, and the edit is
then refused by its sanity checks rather than misapplied).
"""

from __future__ import annotations

import ast
import builtins
import hashlib
import io
import keyword
import random
import tokenize
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

FAULT_TYPES = ("syntax", "logic", "type", "name", "timeout")


@dataclass(frozen=True)
class Fault:
    """One faulty variant of a solution.

    Attributes:
        fault_type: One of :data:`FAULT_TYPES`.
        operator: The operator that made it (a key of :data:`OPERATORS`).
        line: The line of the original source where the change is (1-based).
        change: What changed, e.g. ``"'<' -> '<='"``.
        source: The whole faulty solution.
    """

    fault_type: str
    operator: str
    line: int
    change: str
    source: str


@dataclass(frozen=True)
class _Edit:
    start: int  # character offsets into the source; start == end inserts
    end: int
    text: str
    line: int
    change: str


class _Source:
    """The source text with ast (UTF-8 byte columns) and tokenize positions as offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.split("\n")
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line) + 1)

    def offset(self, lineno: int, col_byte: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode("utf-8")[:col_byte].decode("utf-8"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)
        return start, self.offset(node.end_lineno, node.end_col_offset)

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]

    def token_offset(self, pos: tuple[int, int]) -> int:
        return self.starts[pos[0] - 1] + pos[1]  # tokenize columns count characters


@dataclass(frozen=True)
class Operator:
    """A mutation operator: its fault type, and a function that yields its candidate edits."""

    name: str
    fault_type: str
    find: Callable[[ast.Module, _Source], Iterator[_Edit]]


# ---- helpers -----------------------------------------------------------------------------------

_ATOMS = (ast.Name, ast.Constant, ast.Call, ast.Attribute, ast.Subscript)


def _in_fstrings(tree: ast.AST) -> set[int]:
    """ids of nodes inside f-strings, whose positions Python 3.11 does not report reliably."""
    return {
        id(inner)
        for node in ast.walk(tree)
        if isinstance(node, ast.JoinedStr)
        for inner in ast.walk(node)
        if inner is not node
    }


def _nodes(tree: ast.AST, kind) -> Iterator:
    skip = _in_fstrings(tree)
    for node in ast.walk(tree):
        if isinstance(node, kind) and id(node) not in skip:
            yield node


def _operand_text(src: _Source, node: ast.expr) -> str:
    text = src.segment(node)
    return text if isinstance(node, _ATOMS) else f"({text})"


def _replace(src: _Source, node: ast.AST, text: str, change: str) -> _Edit:
    start, end = src.span(node)
    return _Edit(start, end, text, node.lineno, change)


def _gap_token(src: _Source, left: ast.AST, right: ast.AST, token: str) -> int | None:
    """Offset of ``token`` between two nodes if it is the only thing there besides brackets and
    blanks (so a comment or a line continuation holding other text never misleads)."""
    start, end = src.span(left)[1], src.span(right)[0]
    gap = src.text[start:end]
    if gap.replace("(", " ").replace(")", " ").split() != [token]:
        return None
    return start + gap.index(token)


def _is_number(node: ast.AST) -> bool:
    return (
        isinstance(node, ast.Constant)
        and isinstance(node.value, int | float)
        and not isinstance(node.value, bool)
    )


def _is_call(node: ast.AST, name: str, nargs: Sequence[int] = (1, 2, 3)) -> bool:
    return (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id == name
        and len(node.args) in nargs
        and not node.keywords
        and not any(isinstance(a, ast.Starred) for a in node.args)
    )


def _tokens(src: _Source) -> list[tokenize.TokenInfo]:
    return list(tokenize.generate_tokens(io.StringIO(src.text).readline))


def _delete_token(src: _Source, tok: tokenize.TokenInfo, change: str) -> _Edit:
    return _Edit(src.token_offset(tok.start), src.token_offset(tok.end), "", tok.start[0], change)


def _own_nodes(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> Iterator[ast.AST]:
    """The nodes of ``fn``'s body, not descending into nested functions, lambdas or classes."""
    stack = list(fn.body)
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if not isinstance(
                child, ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda | ast.ClassDef
            ):
                stack.append(child)


def _identifiers(tree: ast.AST) -> set[str]:
    """Every identifier the module mentions (names, arguments, definitions, imports...)."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            names.add(node.id)
        elif isinstance(node, ast.arg):
            names.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(node.name)
        elif isinstance(node, ast.alias):
            names.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.Global | ast.Nonlocal):
            names.update(node.names)
        elif isinstance(node, ast.Attribute):
            names.add(node.attr)
    return names


def _typo(name: str, taken: set[str]) -> str | None:
    """A plausible misspelling of ``name`` that is bound nowhere and is not a builtin."""
    options = []
    if len(name) >= 3 and name[-1] != name[-2]:
        options.append(name[:-2] + name[-1] + name[-2])
    options += [name + "s", name[:-1] if len(name) >= 3 else "", name + "_", name + "1"]
    for option in options:
        if (
            option.isidentifier()
            and not keyword.iskeyword(option)
            and option not in taken
            and not hasattr(builtins, option)
        ):
            return option
    return None


def _star_import(tree: ast.AST) -> bool:
    # A name could come from ``from m import *``: no name is then surely unbound.
    return any(
        isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names)
        for n in ast.walk(tree)
    )


# ---- syntax ------------------------------------------------------------------------------------


def _drop_closing_bracket(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Delete one closing bracket: the opening one is then never closed."""
    for tok in _tokens(src):
        if tok.type == tokenize.OP and tok.string in ")]}":
            yield _delete_token(src, tok, f"removed {tok.string!r}")


def _drop_colon(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Delete the colon that ends a compound-statement header (a colon outside brackets that
    ends its line): ``expected ':'``."""
    tokens = [t for t in _tokens(src) if t.type not in (tokenize.COMMENT, tokenize.NL)]
    depth = 0
    for tok, after in zip(tokens, tokens[1:], strict=False):
        if tok.type == tokenize.OP and tok.string in "([{":
            depth += 1
        elif tok.type == tokenize.OP and tok.string in ")]}":
            depth -= 1
        elif tok.string == ":" and depth == 0 and after.type == tokenize.NEWLINE:
            yield _delete_token(src, tok, "removed ':'")


_KEYWORD_TYPOS = {
    "def": "dfe",
    "return": "retrun",
    "for": "fro",
    "while": "whlie",
    "if": "fi",
    "elif": "elfi",
    "import": "improt",
    "class": "calss",
}


def _misspelled_keyword(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Misspell a keyword followed by a name, number or string (``retrun x``): two operands side
    by side. Not before ``(``, ``[`` or ``-``: ``retrun (x)`` is a call, a NameError."""
    tokens = _tokens(src)
    operands = (tokenize.NAME, tokenize.NUMBER, tokenize.STRING)
    for tok, after in zip(tokens, tokens[1:], strict=False):
        typo = _KEYWORD_TYPOS.get(tok.string)
        if tok.type == tokenize.NAME and typo and after.type in operands:
            start, end = src.token_offset(tok.start), src.token_offset(tok.end)
            yield _Edit(start, end, typo, tok.start[0], f"{tok.string!r} -> {typo!r}")


# ---- logic -------------------------------------------------------------------------------------


def _range_off_by_one(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """``range``'s stop one lower (``n + 1`` -> ``n``, ``n - 1`` -> ``n - 2``, else ``b - 1``),
    or its explicit start one higher (``0`` -> ``1``, ``i - 1`` -> ``i``, else ``a + 1``)."""
    for call in _nodes(tree, ast.Call):
        if not _is_call(call, "range"):
            continue
        stop = call.args[0] if len(call.args) == 1 else call.args[1]
        yield _replace(src, stop, _shift(src, stop, -1), "range stop - 1")
        if len(call.args) >= 2:
            start = call.args[0]
            yield _replace(src, start, _shift(src, start, +1), "range start + 1")


def _shift(src: _Source, node: ast.expr, delta: int) -> str:
    """Source of ``node`` plus ``delta`` (+1 or -1), folding a literal term where there is one."""
    if isinstance(node, ast.Constant) and type(node.value) is int:
        return str(node.value + delta)
    if (
        isinstance(node, ast.UnaryOp)
        and isinstance(node.op, ast.USub)
        and isinstance(node.operand, ast.Constant)
        and type(node.operand.value) is int
    ):
        return str(delta - node.operand.value)
    if (
        isinstance(node, ast.BinOp)
        and isinstance(node.op, ast.Add | ast.Sub)
        and isinstance(node.right, ast.Constant)
        and type(node.right.value) is int
    ):
        k = node.right.value if isinstance(node.op, ast.Add) else -node.right.value
        left = src.segment(node.left)
        k += delta
        if k == 0:
            return left if isinstance(node.left, _ATOMS) else f"({left})"
        return f"{left} + {k}" if k > 0 else f"{left} - {-k}"
    text = _operand_text(src, node)
    return f"{text} + 1" if delta > 0 else f"{text} - 1"


_FLIPS = {ast.Lt: "<=", ast.LtE: "<", ast.Gt: ">=", ast.GtE: ">", ast.Eq: "!=", ast.NotEq: "=="}
_SYMBOLS = {ast.Lt: "<", ast.LtE: "<=", ast.Gt: ">", ast.GtE: ">=", ast.Eq: "==", ast.NotEq: "!="}


def _compare_flip(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Flip one comparison's strictness or sense: ``<``<->``<=``, ``>``<->``>=``,
    ``==``<->``!=``."""
    for node in _nodes(tree, ast.Compare):
        left = node.left
        for op, right in zip(node.ops, node.comparators, strict=True):
            symbol = _SYMBOLS.get(type(op))
            at = _gap_token(src, left, right, symbol) if symbol else None
            if at is not None:
                new = _FLIPS[type(op)]
                yield _Edit(at, at + len(symbol), new, node.lineno, f"{symbol!r} -> {new!r}")
            left = right


def _arith_swap(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Swap ``+`` and ``-`` in one binary operation (or augmented assignment)."""
    for node in _nodes(tree, ast.BinOp | ast.AugAssign):
        if not isinstance(node.op, ast.Add | ast.Sub):
            continue
        symbol, new = ("+", "-") if isinstance(node.op, ast.Add) else ("-", "+")
        if isinstance(node, ast.BinOp):
            at = _gap_token(src, node.left, node.right, symbol)
        else:
            at = _gap_token(src, node.target, node.value, symbol + "=")
        if at is not None:
            yield _Edit(at, at + 1, new, node.lineno, f"{symbol!r} -> {new!r}")


_NON_COMMUTATIVE = ast.Sub | ast.Div | ast.FloorDiv | ast.Mod | ast.Pow
_ORDERINGS = ast.Lt | ast.LtE | ast.Gt | ast.GtE


def _swap_operands(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Swap the operands of a non-commutative operation (``a - b`` -> ``b - a``) or of a single
    ordering comparison (``a < b`` -> ``b < a``)."""
    for node in _nodes(tree, ast.BinOp | ast.Compare):
        if isinstance(node, ast.BinOp) and isinstance(node.op, _NON_COMMUTATIVE):
            left, right = node.left, node.right
        elif (
            isinstance(node, ast.Compare)
            and len(node.ops) == 1
            and isinstance(node.ops[0], _ORDERINGS)
        ):
            left, right = node.left, node.comparators[0]
        else:
            continue
        start, end = src.span(left)[1], src.span(right)[0]
        middle = src.text[start:end].replace("(", " ").replace(")", " ").strip()
        if not middle or " " in middle:  # a comment or a continuation in between
            continue
        a, b = _operand_text(src, left), _operand_text(src, right)
        if a != b:
            yield _replace(src, node, f"{b} {middle} {a}", f"operands of {middle!r} swapped")


def _constant_swap(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Swap an integer literal ``0`` for ``1`` (and back), or ``True`` for ``False`` (and
    back)."""
    swaps = {"0": "1", "1": "0", "True": "False", "False": "True"}
    for node in _nodes(tree, ast.Constant):
        text = src.segment(node)
        if text in swaps and repr(node.value) == text:
            yield _replace(src, node, swaps[text], f"{text} -> {swaps[text]}")


def _min_max_swap(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Call ``max`` where the solution calls ``min``, or ``min`` where it calls ``max``."""
    for call in _nodes(tree, ast.Call):
        func = call.func
        if (
            isinstance(func, ast.Name)
            and func.id in ("min", "max")
            and src.segment(func)
            in (
                "min",
                "max",
            )
        ):
            new = "max" if func.id == "min" else "min"
            yield _replace(src, func, new, f"{func.id} -> {new}")


def _negate_condition(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Negate the condition of one ``if`` statement, conditional expression or comprehension
    filter: ``if c:`` -> ``if not c:``."""
    tests = []
    for node in _nodes(tree, ast.If | ast.IfExp | ast.comprehension):
        tests += node.ifs if isinstance(node, ast.comprehension) else [node.test]
    for test in tests:
        if isinstance(test, ast.UnaryOp) and isinstance(test.op, ast.Not):
            new = _operand_text(src, test.operand)
        else:
            new = "not " + _operand_text(src, test)
        yield _replace(src, test, new, f"{src.segment(test)!r} -> {new!r}")


def _slice_off_by_one(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """A slice's upper bound one lower or its lower bound one higher: ``s[:k]`` -> ``s[:k - 1]``,
    ``s[1:]`` -> ``s[2:]``."""
    for node in _nodes(tree, ast.Slice):
        if node.upper is not None:
            yield _replace(src, node.upper, _shift(src, node.upper, -1), "slice upper - 1")
        if node.lower is not None:
            yield _replace(src, node.lower, _shift(src, node.lower, +1), "slice lower + 1")


def _bool_op_swap(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Swap one ``and`` for ``or`` or ``or`` for ``and``."""
    for node in _nodes(tree, ast.BoolOp):
        word, new = ("and", "or") if isinstance(node.op, ast.And) else ("or", "and")
        for left, right in zip(node.values, node.values[1:], strict=False):
            at = _gap_token(src, left, right, word)
            if at is not None:
                yield _Edit(at, at + len(word), new, left.end_lineno, f"{word!r} -> {new!r}")


# ---- type --------------------------------------------------------------------------------------

# ``*`` is not here: ``int * str`` repeats the string instead of raising.
_STR_OPS = ast.Add | ast.Sub | ast.Div | ast.FloorDiv | ast.Mod | ast.Pow


def _str_operand(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """A number literal used with ``+ - / // % **`` (or their augmented assignments) or in an
    ordering comparison becomes a string literal: ``x + 1`` -> ``x + "1"``."""
    sites: list[ast.Constant] = []
    for node in _nodes(tree, ast.BinOp | ast.AugAssign | ast.Compare):
        if isinstance(node, ast.BinOp) and isinstance(node.op, _STR_OPS):
            sites += [n for n in (node.left, node.right) if _is_number(n)]
        elif isinstance(node, ast.AugAssign) and isinstance(node.op, _STR_OPS):
            sites += [node.value] if _is_number(node.value) else []
        elif isinstance(node, ast.Compare) and all(isinstance(o, _ORDERINGS) for o in node.ops):
            sites += [n for n in (node.left, *node.comparators) if _is_number(n)]
    seen = set()
    for const in sites:
        text = src.segment(const)
        if id(const) not in seen and text and '"' not in text:
            seen.add(id(const))
            yield _replace(src, const, f'"{text}"', f"{text} -> {text!r} (a string)")


def _range_of_sequence(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """``range(len(xs))`` -> ``range(xs)``, also inside a bound (``range(1, len(xs) - 1)`` ->
    ``range(1, xs - 1)``): a sequence is neither an integer nor a number."""
    for call in _nodes(tree, ast.Call):
        if _is_call(call, "range"):
            for arg in call.args[:2]:
                for inner_call in ast.walk(arg):
                    if _is_call(inner_call, "len", (1,)):
                        inner = _operand_text(src, inner_call.args[0])
                        yield _replace(src, inner_call, inner, f"len({inner}) -> {inner}")


def _iterate_int(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """``for i in range(n)`` -> ``for i in n`` (also in comprehensions)."""
    for node in _nodes(tree, ast.For | ast.AsyncFor | ast.comprehension):
        if _is_call(node.iter, "range", (1,)):
            inner = src.segment(node.iter.args[0])
            line = node.iter.lineno
            start, end = src.span(node.iter)
            yield _Edit(start, end, inner, line, f"range({inner}) -> {inner}")


def _sum_str_start(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """``sum(xs)`` -> ``sum(xs, "")``: ``sum`` refuses a string start, whatever ``xs`` holds."""
    for call in _nodes(tree, ast.Call):
        if _is_call(call, "sum", (1,)):
            arg = call.args[0]
            start, end = src.span(arg)[1], src.span(call)[1]
            if src.text[start:end].strip() == ")":
                yield _Edit(start, start, ', ""', call.lineno, 'sum(...) -> sum(..., "")')


def _drop_conversion(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Drop a ``str()``, ``int()`` or ``float()`` conversion that is an operand of ``+ - * /
    // %`` (``"n=" + str(n)`` -> ``"n=" + n``), or the ``map(str, ...)`` before a ``join``:
    TypeError when the value was not already of the converted type (else it may pass)."""
    for node in _nodes(tree, ast.BinOp | ast.Call):
        if isinstance(node, ast.BinOp) and isinstance(node.op, _STR_OPS | ast.Mult):
            for operand in (node.left, node.right):
                if any(_is_call(operand, f, (1,)) for f in ("str", "int", "float")):
                    inner = _operand_text(src, operand.args[0])
                    name = operand.func.id
                    yield _replace(src, operand, inner, f"{name}({inner}) -> {inner}")
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "join"
            and len(node.args) == 1
            and _is_call(node.args[0], "map", (2,))
            and isinstance(node.args[0].args[0], ast.Name)
            and node.args[0].args[0].id == "str"
        ):
            inner = src.segment(node.args[0].args[1])
            yield _replace(src, node.args[0], inner, f"map(str, {inner}) -> {inner}")


# ---- name --------------------------------------------------------------------------------------


def _function_locals(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    args = fn.args
    every = [*args.posonlyargs, *args.args, *args.kwonlyargs, args.vararg, args.kwarg]
    names = {a.arg for a in every if a is not None}
    for node in _own_nodes(fn):
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            names.add(node.id)
    return names


def _unbound_name(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Rename one use of a parameter or local variable to an unbound misspelling of it."""
    if _star_import(tree):
        return
    taken, skip = _identifiers(tree), _in_fstrings(tree)
    for fn in ast.walk(tree):
        if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
            continue
        local = _function_locals(fn)
        uses = [
            n
            for n in _own_nodes(fn)
            if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load) and n.id in local
        ]
        for use in sorted(uses, key=lambda n: (n.lineno, n.col_offset)):
            typo = _typo(use.id, taken)
            if typo and id(use) not in skip and src.segment(use) == use.id:
                yield _replace(src, use, typo, f"{use.id} -> {typo}")


def _unbound_call(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Misspell the function of one call of a builtin or of a module-level function."""
    if _star_import(tree):
        return
    taken = _identifiers(tree)
    defined = {n.name for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    for call in _nodes(tree, ast.Call):
        func = call.func
        if not isinstance(func, ast.Name) or not (func.id in defined or hasattr(builtins, func.id)):
            continue
        typo = _typo(func.id, taken)
        if typo and src.segment(func) == func.id:
            yield _replace(src, func, typo, f"{func.id} -> {typo}")


# ---- timeout -----------------------------------------------------------------------------------


def _while_true(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """A ``while`` loop's condition becomes ``True``."""
    for node in _nodes(tree, ast.While):
        if not (isinstance(node.test, ast.Constant) and node.test.value is True):
            yield _replace(src, node.test, "True", f"{src.segment(node.test)!r} -> 'True'")


def _skip_update(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """In a ``while`` loop, an assignment (direct in its body) to a name its condition reads
    becomes ``pass``: the loop no longer makes progress."""
    for loop in _nodes(tree, ast.While):
        read = {n.id for n in ast.walk(loop.test) if isinstance(n, ast.Name)}
        for stmt in loop.body:
            if isinstance(stmt, ast.AugAssign):
                targets = [stmt.target]
            elif isinstance(stmt, ast.Assign):
                targets = stmt.targets
            else:
                continue
            assigned = {n.id for t in targets for n in ast.walk(t) if isinstance(n, ast.Name)}
            if assigned & read:
                yield _replace(src, stmt, "pass", f"{src.segment(stmt)!r} -> 'pass'")


def _busy_loop_at_entry(tree: ast.Module, src: _Source) -> Iterator[_Edit]:
    """Insert ``while True: pass`` as a function's first statement, after its docstring."""
    for fn in _nodes(tree, ast.FunctionDef | ast.AsyncFunctionDef):
        body = fn.body
        docstring = (
            isinstance(body[0], ast.Expr)
            and isinstance(body[0].value, ast.Constant)
            and isinstance(body[0].value.value, str)
        )
        if docstring and len(body) == 1:
            continue
        first = body[1] if docstring else body[0]
        line = src.lines[first.lineno - 1]
        indent = line[: len(line.encode("utf-8")[: first.col_offset].decode("utf-8"))]
        if first.lineno <= fn.lineno or indent.strip() or not indent:
            continue  # the body shares a line with the header: no line to insert before
        at = src.starts[first.lineno - 1]
        yield _Edit(at, at, f"{indent}while True: pass\n", first.lineno, "while True: pass")


OPERATORS: dict[str, Operator] = {
    op.name: op
    for op in (
        Operator("drop_closing_bracket", "syntax", _drop_closing_bracket),
        Operator("drop_colon", "syntax", _drop_colon),
        Operator("misspelled_keyword", "syntax", _misspelled_keyword),
        Operator("range_off_by_one", "logic", _range_off_by_one),
        Operator("compare_flip", "logic", _compare_flip),
        Operator("arith_swap", "logic", _arith_swap),
        Operator("swap_operands", "logic", _swap_operands),
        Operator("constant_swap", "logic", _constant_swap),
        Operator("bool_op_swap", "logic", _bool_op_swap),
        Operator("min_max_swap", "logic", _min_max_swap),
        Operator("negate_condition", "logic", _negate_condition),
        Operator("slice_off_by_one", "logic", _slice_off_by_one),
        Operator("str_operand", "type", _str_operand),
        Operator("range_of_sequence", "type", _range_of_sequence),
        Operator("iterate_int", "type", _iterate_int),
        Operator("sum_str_start", "type", _sum_str_start),
        Operator("drop_conversion", "type", _drop_conversion),
        Operator("unbound_name", "name", _unbound_name),
        Operator("unbound_call", "name", _unbound_call),
        Operator("while_true", "timeout", _while_true),
        Operator("skip_update", "timeout", _skip_update),
        Operator("busy_loop_at_entry", "timeout", _busy_loop_at_entry),
    )
}


# ---- public API --------------------------------------------------------------------------------


def _compiles(source: str) -> bool:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. SyntaxWarning for "\d" in a solution's string
        try:
            compile(source, "<fault>", "exec", dont_inherit=True)
        except (SyntaxError, ValueError):
            return False
    return True


def _parse(source: str) -> ast.Module:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return ast.parse(source)
        except (SyntaxError, ValueError) as exc:
            raise ValueError(f"the solution does not parse as Python: {exc}") from None


def candidates(
    source: str, fault_type: str | None = None, operators: Sequence[str] | None = None
) -> list[Fault]:
    """Every fault the operators can make in ``source``, in operator then source order.

    Args:
        source: A whole Python solution (it must parse).
        fault_type: Only this type's operators (one of :data:`FAULT_TYPES`); None: all.
        operators: Only these operators (keys of :data:`OPERATORS`); None: all.

    Returns:
        One :class:`Fault` per site, without duplicates (two edits giving the same faulty
        source count once, under the first operator). A syntax fault is kept only if it fails
        to compile, any other only if it still compiles. An operator without a site adds
        nothing.

    Raises:
        ValueError: ``source`` does not parse, or an unknown fault type or operator.
    """
    if fault_type is not None and fault_type not in FAULT_TYPES:
        raise ValueError(f"fault_type must be one of {', '.join(FAULT_TYPES)}, got {fault_type!r}")
    unknown = sorted(set(operators or ()) - set(OPERATORS))
    if unknown:
        raise ValueError(f"unknown fault operator {unknown[0]!r} (known: {', '.join(OPERATORS)})")
    tree = _parse(source)
    src = _Source(source)
    faults, seen = [], {source}
    for op in OPERATORS.values():
        if (fault_type and op.fault_type != fault_type) or (operators and op.name not in operators):
            continue
        for edit in op.find(tree, src):
            new = source[: edit.start] + edit.text + source[edit.end :]
            if new in seen or _compiles(new) == (op.fault_type == "syntax"):
                continue
            seen.add(new)
            faults.append(Fault(op.fault_type, op.name, edit.line, edit.change, new))
    return faults


def _rng(source: str, seed: int, fault_type: str) -> random.Random:
    # Seeded by the source too: one global seed must not pick the same relative site in every
    # solution. A str seed is hashed with SHA-512 by random, stable across runs and platforms.
    digest = hashlib.sha256(source.encode("utf-8")).hexdigest()
    return random.Random(f"{seed}:{fault_type}:{digest}")


def choose(faults: Sequence[Fault], k: int, rng: random.Random) -> list[Fault]:
    """Up to ``k`` of ``faults``: operators in a random order, taking one random site of each in
    turn, so that an operator with many sites (brackets) does not crowd out the others."""
    by_op: dict[str, list[Fault]] = {}
    for fault in faults:
        by_op.setdefault(fault.operator, []).append(fault)
    order = sorted(by_op)
    rng.shuffle(order)
    for name in order:
        rng.shuffle(by_op[name])
    picked: list[Fault] = []
    while len(picked) < k and any(by_op.values()):
        for name in order:
            if by_op[name] and len(picked) < k:
                picked.append(by_op[name].pop())
    return picked


def sample_faults(
    source: str,
    seed: int = 0,
    per_type: int = 1,
    fault_types: Sequence[str] = FAULT_TYPES,
) -> list[Fault]:
    """Up to ``per_type`` faults of each type for ``source``, chosen by ``seed`` (and the
    source): the same arguments always give the same faults. A type without any site gives
    none."""
    if per_type < 1:
        raise ValueError(f"per_type must be >= 1, got {per_type}")
    picked = []
    for fault_type in fault_types:
        found = candidates(source, fault_type)
        picked += choose(found, per_type, _rng(source, seed, fault_type))
    return picked


def inject(source: str, fault_type: str, seed: int = 0) -> Fault | None:
    """One fault of ``fault_type`` in ``source`` chosen by ``seed``, or None without a site."""
    found = sample_faults(source, seed, 1, (fault_type,))
    return found[0] if found else None
