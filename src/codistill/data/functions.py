"""Code-generation training prompts mined from Python source: documented top-level functions.

Each kept function becomes one ``codegen`` record (`codistill.data.schema.CodegenRecord`) in
HumanEval's shape: the prompt is the module-level imports and constants the function needs, its
decorators, signature and docstring, ending on a fresh line; the canonical solution is the rest
of the function, the body that continues the prompt. Both are the original source text, sliced
by line with `ast` end positions, so comments and layout survive. `build_stdlib_functions` mines
the running interpreter's standard library this way, `build_functions` any source tree.

These records are training data, not benchmarks: ``tests`` is the empty string, since nothing
in the source says what a correct body must do beyond being the reference. Tools that run tests
(evaluation, verified teacher generations) must treat an empty ``tests`` as "no tests".

What is kept, and why. Only functions defined directly in a module's body (methods need their
class, nested functions their closure). Filters, checked in this order; a function is counted
under the first one it fails (`FunctionCounts.dropped`):

* ``redefined``: a later ``def``, assignment or import of the same name in the module
  replaces this function, so the name does not mean it.
* ``no_docstring``, ``short_docstring`` (fewer than ``min_docstring_words`` words): the
  docstring is the task description.
* ``docstring_shares_line``: the docstring does not end its line (``def f(): "doc"; ...``), so
  the prompt cannot end on a fresh line.
* ``body_too_short`` / ``body_too_long``: non-blank body lines after the docstring outside
  ``[min_body_lines, max_body_lines]`` (3 and 40 by default): one-liners teach little and very
  long bodies crowd a small model's context.
* ``writes_module_global``: the function declares ``global`` names: it mutates module state no
  prompt shows.
* ``uses_module_definition``: it refers to a function or class of its own module. Putting the
  helper's source in the prompt would make the prompt long and give away code; leaving it out
  would teach calling functions nobody defined. So such functions are dropped.
* ``uses_module_state``: it refers to a module-level name that is not an unconditional import
  or a short constant (bound in an ``if``/``try``, bound twice, declared ``global`` somewhere,
  a module dunder like ``__name__``, or a constant longer than ``max_constant_lines``).
* ``unresolved_name``: it refers to a name bound nowhere in the module and not a builtin (a
  ``from m import *`` name, a name put in ``globals()`` at run time).
* ``does_not_reparse``: prompt + solution does not parse (a safety net; expected to be 0).

Every other global name the function (its decorators, defaults and annotations included) refers
to is resolved: builtins need nothing; a name bound by an unconditional module-level import gets
that import, narrowed to the names used (relative imports made absolute from the module's
name); a name bound once by a short module-level constant (``_MAXCACHE = 512``) gets that
assignment's source line(s) in the prompt, after the imports, with what the constant itself
needs. So a prompt and its solution run as a module of their own.

After the filters, records are split by unit (the top-level package by default: helpers and
style are shared across a package's modules), exact and near duplicates are removed (5-gram
Jaccard of prompt + solution >= 0.9, `codistill.data.dedup`; evaluation splits win) and the rest
is decontaminated against benchmark prompts and solutions with SODA's rule (5-gram Jaccard >=
0.7, `codistill.data.decontam`).

On CPython 3.11.7's standard library (733 modules, 3,277 top-level functions) 471 functions
pass: the largest losses are no docstring (1,326), uses_module_definition (614) and
body_too_short (426).
"""

import ast
import builtins
import dataclasses
import json
import os
import platform
import symtable
import sys
import time
import tokenize
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from codistill.data.decontam import decontaminate, write_report
from codistill.data.dedup import DEFAULT_NEAR_THRESHOLD, deduplicate, split_priority
from codistill.data.jsonl import write_records, write_text_atomic
from codistill.data.schema import CodegenRecord
from codistill.data.stdlib import SPLITS, assign_split, stdlib_dir

DROP_REASONS = (
    "redefined",
    "no_docstring",
    "short_docstring",
    "docstring_shares_line",
    "body_too_short",
    "body_too_long",
    "writes_module_global",
    "uses_module_definition",
    "uses_module_state",
    "unresolved_name",
    "does_not_reparse",
)

# Directories never mined: test code (the assertion corpus comes from it, and tests are not
# documented library functions), installed third-party packages, caches and build leftovers.
SKIP_DIRS = frozenset(
    {
        "test",
        "tests",
        "idle_test",
        "site-packages",
        "dist-packages",
        "__pycache__",
        "node_modules",
        "build",
    }
)

# Module attributes that builtins also define: in a function they mean the module's own value
# (``__name__`` is the module's name), which a standalone prompt does not have.
_MODULE_DUNDERS = frozenset(
    {"__name__", "__doc__", "__file__", "__spec__", "__loader__", "__package__", "__path__"}
)
_BUILTINS = frozenset(dir(builtins)) - _MODULE_DUNDERS

SplitBy = Literal["package", "module"]


@dataclass
class FunctionCounts:
    """What mining saw and why functions were left out.

    Attributes:
        files_seen: ``.py`` files found.
        files_parsed: Files that parsed.
        files_skipped: Files that could not be read or parsed.
        functions_seen: Top-level functions (``def`` and ``async def``) in parsed files.
        dropped: Functions dropped per filter (see the module docstring), every reason listed.
        kept: Functions that passed every filter.
        with_constants: Kept functions whose prompt carries module-level constants.
        with_imports: Kept functions whose prompt carries imports.
    """

    files_seen: int = 0
    files_parsed: int = 0
    files_skipped: int = 0
    functions_seen: int = 0
    dropped: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DROP_REASONS, 0))
    kept: int = 0
    with_constants: int = 0
    with_imports: int = 0

    def to_dict(self) -> dict[str, Any]:
        """The counts as a JSON-ready dict."""
        return dataclasses.asdict(self)


@dataclass
class FunctionMining:
    """The result of `mine_functions`.

    Attributes:
        records: Kept functions as ``codegen`` records, ``split`` unset, in file order.
        counts: Counts per stage and per drop reason.
        skipped_files: ``(path, why)`` for each file that could not be read or parsed.
        seconds: Wall time.
    """

    records: list[CodegenRecord]
    counts: FunctionCounts
    skipped_files: list[tuple[str, str]]
    seconds: float


@dataclass(frozen=True)
class _Binding:
    """How a module binds one global name.

    ``kind`` is ``"import"`` (unconditional import statements, possibly several, as
    ``(statement, alias)`` pairs), ``"definition"`` (a ``def`` or ``class``), ``"constant"``
    (one unconditional ``NAME = expr`` on whole lines) or ``"state"`` (anything else).
    """

    kind: str
    imports: tuple[tuple[ast.stmt, ast.alias], ...] = ()
    node: ast.stmt | None = None


def module_name(path: Path, root: Path) -> str:
    """The dotted module name of ``path`` with ``root`` as the import root.

    ``json/decoder.py`` -> ``json.decoder``; ``json/__init__.py`` -> ``json``.
    """
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__" and len(parts) > 1:
        parts.pop()
    return ".".join(parts)


def iter_source_files(root: Path) -> Iterator[Path]:
    """Every ``.py`` file under ``root`` in sorted order, skipping `SKIP_DIRS`, hidden
    directories, ``config-*`` (CPython's build configuration) and ``test_*.py`` files."""
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if d not in SKIP_DIRS and not d.startswith((".", "config-")) and d.isidentifier()
        )
        for name in sorted(filenames):
            if name.endswith(".py") and not name.startswith("test_"):
                yield Path(dirpath) / name


def _bound_names(node: ast.AST) -> set[str]:
    """Names a module-level statement binds at module level, looking through compound
    statements but not into function, lambda or class bodies."""
    names: set[str] = set()
    stack = [node]
    while stack:
        n = stack.pop()
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            names.add(n.name)
            continue
        if isinstance(n, ast.Lambda):
            continue
        if isinstance(n, ast.Import | ast.ImportFrom):
            names.update((a.asname or a.name).split(".")[0] for a in n.names if a.name != "*")
        elif isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store | ast.Del):
            names.add(n.id)
        elif isinstance(n, ast.ExceptHandler) and n.name:
            names.add(n.name)
        elif isinstance(n, ast.MatchAs | ast.MatchStar) and n.name:
            names.add(n.name)
        stack.extend(ast.iter_child_nodes(n))
    return names


def _whole_lines(node: ast.stmt, lines: Sequence[str]) -> bool:
    """Whether ``node`` alone occupies its lines (nothing before it, only a comment after)."""
    if node.end_lineno is None or node.end_col_offset is None:
        return False
    if lines[node.lineno - 1][: node.col_offset].strip():
        return False
    rest = lines[node.end_lineno - 1][node.end_col_offset :].strip()
    return not rest or rest.startswith("#")


def _module_bindings(tree: ast.Module, lines: Sequence[str]) -> dict[str, _Binding]:
    """How each module-level name is bound (see `_Binding`)."""
    found: dict[str, list[tuple[str, Any]]] = {}
    for stmt in tree.body:
        if isinstance(stmt, ast.Import | ast.ImportFrom):
            for alias in stmt.names:
                if alias.name == "*":
                    continue
                name = (alias.asname or alias.name).split(".")[0]
                found.setdefault(name, []).append(("import", (stmt, alias)))
        elif isinstance(stmt, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            found.setdefault(stmt.name, []).append(("definition", stmt))
        elif (
            isinstance(stmt, ast.Assign)
            and len(stmt.targets) == 1
            and isinstance(stmt.targets[0], ast.Name)
        ) or (
            isinstance(stmt, ast.AnnAssign)
            and isinstance(stmt.target, ast.Name)
            and stmt.value is not None
        ):
            target = stmt.targets[0] if isinstance(stmt, ast.Assign) else stmt.target
            kind = "constant" if _whole_lines(stmt, lines) else "state"
            found.setdefault(target.id, []).append((kind, stmt))
        else:
            for name in _bound_names(stmt):
                found.setdefault(name, []).append(("state", stmt))
    # A name some function declares global is rebound at run time: it is state, whatever the
    # module-level statement that first binds it looks like.
    declared = {name for n in ast.walk(tree) if isinstance(n, ast.Global) for name in n.names}
    bindings = {}
    for name, entries in found.items():
        kinds = {kind for kind, _ in entries}
        if name in declared or name in _MODULE_DUNDERS:
            bindings[name] = _Binding("state")
        elif kinds == {"import"}:
            bindings[name] = _Binding("import", imports=tuple(obj for _, obj in entries))
        elif len(entries) == 1 and kinds <= {"definition", "constant"}:
            bindings[name] = _Binding(entries[0][0], node=entries[0][1])
        elif kinds == {"definition"}:
            # Redefinitions (the `redefined` filter handles the function itself).
            bindings[name] = _Binding("definition", node=entries[-1][1])
        else:
            bindings[name] = _Binding("state")
    return bindings


def _global_refs(source: str) -> tuple[set[str], set[str]]:
    """Global names a snippet refers to, and those it declares ``global`` and assigns.

    Uses `symtable`, so local variables, parameters, comprehension variables and closures are
    told apart from globals exactly as the compiler does. Names the snippet binds at its own
    top level (the function's or constant's name) are left out: the prompt defines them.
    """
    top = symtable.symtable(source, "<snippet>", "exec")
    refs = {s.get_name() for s in top.get_symbols() if s.is_referenced()}
    own = {s.get_name() for s in top.get_symbols() if s.is_assigned() or s.is_imported()}
    writes: set[str] = set()
    stack = list(top.get_children())
    while stack:
        table = stack.pop()
        for s in table.get_symbols():
            if s.is_global() and s.is_referenced():
                refs.add(s.get_name())
            if s.is_declared_global() and s.is_assigned():
                writes.add(s.get_name())
        stack.extend(table.get_children())
    return refs - own, writes


def _absolute_module(stmt: ast.ImportFrom, module: str, is_package: bool) -> str:
    """The absolute module an ``ImportFrom`` names, resolving ``from . import x``."""
    if not stmt.level:
        return stmt.module or ""
    package = module if is_package else module.rpartition(".")[0]
    parts = package.split(".") if package else []
    if stmt.level > len(parts):
        # Above the mined tree's root: keep it relative rather than guess.
        return "." * stmt.level + (stmt.module or "")
    base = parts[: len(parts) - (stmt.level - 1)]
    return ".".join([*base, *([stmt.module] if stmt.module else [])])


def _render_imports(
    used: Iterable[tuple[ast.stmt, ast.alias]], module: str, is_package: bool
) -> list[str]:
    """Import lines for the used aliases, one line per source statement, in source order."""
    by_stmt: dict[int, tuple[ast.stmt, list[ast.alias]]] = {}
    for stmt, alias in used:
        entry = by_stmt.setdefault(id(stmt), (stmt, []))
        if alias not in entry[1]:
            entry[1].append(alias)
    lines = []
    for stmt, aliases in sorted(by_stmt.values(), key=lambda e: (e[0].lineno, e[0].col_offset)):
        aliases.sort(key=lambda a: (a.lineno, a.col_offset))
        names = ", ".join(a.name + (f" as {a.asname}" if a.asname else "") for a in aliases)
        if isinstance(stmt, ast.ImportFrom):
            lines.append(f"from {_absolute_module(stmt, module, is_package)} import {names}")
        else:
            lines.extend(
                f"import {a.name}" + (f" as {a.asname}" if a.asname else "") for a in aliases
            )
    return lines


@dataclass
class _Needs:
    imports: list[tuple[ast.stmt, ast.alias]] = field(default_factory=list)
    constants: dict[int, ast.stmt] = field(default_factory=dict)


def _resolve(
    names: Iterable[str],
    bindings: Mapping[str, _Binding],
    lines: Sequence[str],
    max_constant_lines: int,
    needs: _Needs,
    seen: set[str],
    entry: str,
) -> str | None:
    """Add what ``names`` need to ``needs``; return a drop reason if one cannot be resolved.

    ``seen`` holds names already handled (the function ``entry`` itself at the start).
    """
    for name in sorted(names):
        if name in seen:
            continue
        seen.add(name)
        binding = bindings.get(name)
        if binding is None:
            if name in _BUILTINS:
                continue
            return "uses_module_state" if name in _MODULE_DUNDERS else "unresolved_name"
        if binding.kind == "import":
            needs.imports.extend(binding.imports)
        elif binding.kind == "definition":
            return "uses_module_definition"
        elif binding.kind == "constant":
            node = binding.node
            assert node is not None and node.end_lineno is not None
            if node.end_lineno - node.lineno + 1 > max_constant_lines:
                return "uses_module_state"
            text = "".join(lines[node.lineno - 1 : node.end_lineno])
            refs, _ = _global_refs(text)
            if entry in refs:
                # Put before the def in the prompt, it would name the function too early.
                return "uses_module_state"
            needs.constants[node.lineno] = node
            reason = _resolve(refs, bindings, lines, max_constant_lines, needs, seen, entry)
            if reason:
                return reason
        else:
            return "uses_module_state"
    return None


@dataclass(frozen=True)
class MiningOptions:
    """Filter settings of `mine_functions` (see the module docstring).

    Attributes:
        min_body_lines: Fewest non-blank body lines after the docstring.
        max_body_lines: Most non-blank body lines after the docstring.
        min_docstring_words: Fewest whitespace-separated words in the docstring.
        max_constant_lines: Longest module-level constant copied into a prompt, in lines.
    """

    min_body_lines: int = 3
    max_body_lines: int = 40
    min_docstring_words: int = 3
    max_constant_lines: int = 3

    def __post_init__(self) -> None:
        for name in ("min_body_lines", "max_body_lines", "min_docstring_words"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.max_constant_lines < 1:
            raise ValueError(f"max_constant_lines must be >= 1, got {self.max_constant_lines}")
        if self.max_body_lines < self.min_body_lines:
            raise ValueError(
                f"max_body_lines ({self.max_body_lines}) must be >= min_body_lines "
                f"({self.min_body_lines})"
            )


def _docstring_node(node: ast.FunctionDef | ast.AsyncFunctionDef) -> ast.Expr | None:
    first = node.body[0]
    if (
        isinstance(first, ast.Expr)
        and isinstance(first.value, ast.Constant)
        and isinstance(first.value.value, str)
    ):
        return first
    return None


def _function_record(
    node: ast.FunctionDef | ast.AsyncFunctionDef,
    lines: Sequence[str],
    bindings: Mapping[str, _Binding],
    module: str,
    is_package: bool,
    options: MiningOptions,
) -> tuple[dict[str, Any] | None, str | None]:
    """The fields of one function's record, or the reason it is dropped."""
    doc = _docstring_node(node)
    if doc is None:
        return None, "no_docstring"
    if len(str(doc.value.value).split()) < options.min_docstring_words:  # type: ignore[attr-defined]
        return None, "short_docstring"
    assert doc.end_lineno is not None and node.end_lineno is not None
    first_body_line = node.body[1].lineno if len(node.body) > 1 else node.end_lineno + 1
    if not _whole_lines(doc, lines) or first_body_line <= doc.end_lineno:
        return None, "docstring_shares_line"
    body = "".join(lines[doc.end_lineno : node.end_lineno])
    body_lines = sum(bool(line.strip()) for line in body.splitlines())
    if body_lines < options.min_body_lines:
        return None, "body_too_short"
    if body_lines > options.max_body_lines:
        return None, "body_too_long"
    start = node.decorator_list[0].lineno if node.decorator_list else node.lineno
    header = "".join(lines[start - 1 : doc.end_lineno])
    refs, writes = _global_refs(header + body)
    if writes:
        return None, "writes_module_global"
    needs = _Needs()
    reason = _resolve(
        refs, bindings, lines, options.max_constant_lines, needs, {node.name}, node.name
    )
    if reason:
        return None, reason
    blocks = []
    imports = _render_imports(needs.imports, module, is_package)
    if imports:
        blocks.append("\n".join(imports) + "\n")
    constants = [needs.constants[k] for k in sorted(needs.constants)]
    if constants:
        blocks.append("".join("".join(lines[c.lineno - 1 : c.end_lineno]) for c in constants))
    prelude = "\n".join(blocks)
    prompt = (prelude + "\n\n" if prelude else "") + _ensure_newline(header)
    solution = _ensure_newline(body)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            ast.parse(prompt + solution)
    except SyntaxError:
        return None, "does_not_reparse"
    return {
        "prompt": prompt,
        "canonical_solution": solution,
        "entry_point": node.name,
        "extra": {
            "module": module,
            "line": node.lineno,
            "imports": len(imports),
            "constants": len(constants),
        },
    }, None


def _ensure_newline(text: str) -> str:
    return text if text.endswith("\n") else text + "\n"


def mine_module(
    source: str, module: str, is_package: bool = False, options: MiningOptions | None = None
) -> tuple[list[dict[str, Any]], Counter[str], int]:
    """Mine one module's source.

    Args:
        source: The module's text.
        module: Its dotted name (for record ids and relative imports).
        is_package: Whether it is a package's ``__init__``.
        options: Filter settings.

    Returns:
        Record fields of each kept function (``prompt``, ``canonical_solution``,
        ``entry_point``, ``extra``), the drop reasons counted, and top-level functions seen.

    Raises:
        SyntaxError: The source does not parse.
    """
    options = options or MiningOptions()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse(source)
    # Split on "\n" only, as the parser counts lines: str.splitlines also breaks at form feeds
    # and other separators old sources hold, which would shift every slice after them.
    lines = source.split("\n")
    lines = [line + "\n" for line in lines[:-1]] + ([lines[-1]] if lines[-1] else [])
    bindings = _module_bindings(tree, lines)
    functions = [n for n in tree.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    kept, dropped = [], Counter()
    for node in functions:
        # The module's last binding of the name is what callers get; an earlier def, or one
        # later rebound by an assignment or a wrapper, is not the function the name means.
        binding = bindings[node.name]
        fields, reason = (
            (None, "redefined")
            if binding.kind != "definition" or binding.node is not node
            else _function_record(node, lines, bindings, module, is_package, options)
        )
        if reason:
            dropped[reason] += 1
        else:
            kept.append(fields)
    return kept, dropped, len(functions)


def mine_functions(
    root: str | os.PathLike[str], source: str, options: MiningOptions | None = None
) -> FunctionMining:
    """Mine every module under ``root`` (see `iter_source_files`) into ``codegen`` records.

    Args:
        root: The import root: module names are paths relative to it.
        source: What each record's ``source`` says (``cpython-3.11.7``, a project name).
        options: Filter settings.

    Returns:
        Records (ids ``{source}:{module}.{function}``, empty ``tests``, ``split`` unset),
        counts and skipped files.
    """
    start = time.perf_counter()
    root = Path(root)
    counts = FunctionCounts()
    records, skipped = [], []
    ids: set[str] = set()
    for path in iter_source_files(root):
        counts.files_seen += 1
        module = module_name(path, root)
        try:
            with tokenize.open(path) as f:  # honours PEP 263 coding cookies
                text = f.read()
            kept, dropped, seen = mine_module(text, module, path.name == "__init__.py", options)
        except (OSError, SyntaxError, UnicodeDecodeError, ValueError) as err:
            counts.files_skipped += 1
            skipped.append((str(path.relative_to(root)), f"{type(err).__name__}: {err}"))
            continue
        counts.files_parsed += 1
        counts.functions_seen += seen
        for reason, n in dropped.items():
            counts.dropped[reason] += n
        for fields in kept:
            rel = path.relative_to(root).as_posix()
            extra = {"path": rel, **fields.pop("extra")}
            counts.with_imports += extra["imports"] > 0
            counts.with_constants += extra["constants"] > 0
            rid = f"{source}:{module}.{fields['entry_point']}"
            if rid in ids:  # foo.py beside foo/__init__.py: both are module "foo"
                rid = f"{source}:{rel}:{fields['entry_point']}"
            ids.add(rid)
            records.append(
                CodegenRecord(
                    id=rid,
                    source=source,
                    tests="",
                    extra=extra,
                    **fields,
                )
            )
    counts.kept = len(records)
    return FunctionMining(records, counts, skipped, time.perf_counter() - start)


def split_unit(record: CodegenRecord, split_by: SplitBy = "package") -> str:
    """The unit a split never divides: the record's top-level package, or its module."""
    module = record.extra["module"]
    return module.split(".")[0] if split_by == "package" else module


@dataclass
class FunctionsReport:
    """Everything `build_functions` did, as written to ``stats.json``."""

    source: str
    root: str
    seed: int
    valid_frac: float
    test_frac: float
    split_by: str
    options: dict[str, Any]
    mining: dict[str, Any]
    mining_seconds: float
    skipped_files: list[str]
    dedup: dict[str, Any]
    decontamination: dict[str, Any]
    records: int
    splits: dict[str, dict[str, int]]
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        """The report as a JSON-ready dict."""
        return dataclasses.asdict(self)


def build_functions(
    root: str | os.PathLike[str],
    out_dir: str | os.PathLike[str],
    benchmark_texts: Mapping[str, Mapping[str, str] | Sequence[str]],
    *,
    source: str | None = None,
    seed: int = 0,
    valid_frac: float = 0.1,
    test_frac: float = 0.1,
    split_by: SplitBy = "package",
    near_dup_threshold: float | None = DEFAULT_NEAR_THRESHOLD,
    decontam_threshold: float = 0.7,
    options: MiningOptions | None = None,
) -> FunctionsReport:
    """Mine, split, deduplicate and decontaminate; write ``train/valid/test.jsonl``,
    ``stats.json`` and ``decontam.json`` (every removed record and its closest benchmark item)
    into ``out_dir``, each atomically.

    Args:
        root: Source tree (its import root).
        out_dir: Output directory, created if needed.
        benchmark_texts: Per benchmark, its texts (`codistill.data.decontam.decontaminate`).
            May be empty, which skips nothing but is recorded.
        source: Each record's ``source``; defaults to ``root``'s directory name.
        seed: Chooses each unit's split.
        valid_frac: Expected fraction of units in the valid split.
        test_frac: Expected fraction of units in the test split.
        split_by: ``"package"`` (top-level package) or ``"module"``.
        near_dup_threshold: 5-gram Jaccard for near duplicates; None removes exact ones only.
        decontam_threshold: 5-gram Jaccard at which a record matches a benchmark item.
        options: Filter settings.

    Raises:
        ValueError: A fraction or ``split_by`` is out of range.
        FileNotFoundError: ``root`` is not a directory.
    """
    start = time.perf_counter()
    _check_split_settings(valid_frac, test_frac, split_by)
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"{root}: not a directory")
    options = options or MiningOptions()
    source = source or root.resolve().name
    mined = mine_functions(root, source, options)
    placed = _assign_splits(mined.records, split_by, seed, valid_frac, test_frac)
    kept, dedup = deduplicate(placed, threshold=near_dup_threshold, priority=split_priority())
    clean, decontam = decontaminate(kept, None, benchmark_texts, threshold=decontam_threshold)
    out = Path(out_dir)
    by_split = _write_splits(out, clean)
    write_report(out / "decontam.json", decontam)
    # stats.json keeps the counts; the per-record lists would swamp it (decontam.json has the
    # removals with their closest benchmark item).
    dedup_dict = {k: v for k, v in dedup.to_dict().items() if k != "duplicates"}
    decontam_dict = {k: v for k, v in decontam.to_dict().items() if k != "removals"}
    report = FunctionsReport(
        source=source,
        root=str(root),
        seed=seed,
        valid_frac=valid_frac,
        test_frac=test_frac,
        split_by=split_by,
        options=dataclasses.asdict(options),
        mining=mined.counts.to_dict(),
        mining_seconds=round(mined.seconds, 2),
        skipped_files=[f"{p}: {why}" for p, why in mined.skipped_files],
        dedup=dedup_dict,
        decontamination={**decontam_dict, "report": "decontam.json"},
        records=len(clean),
        splits=_split_counts(by_split, split_by),
        seconds=round(time.perf_counter() - start, 2),
    )
    write_text_atomic(out / "stats.json", json.dumps(report.to_dict(), indent=2) + "\n")
    return report


def _check_split_settings(valid_frac: float, test_frac: float, split_by: str) -> None:
    """Raise ValueError naming the first split setting out of range (see `build_functions`)."""
    for name, value in (("valid_frac", valid_frac), ("test_frac", test_frac)):
        if not 0 <= value < 1:
            raise ValueError(f"{name} must be in [0, 1), got {value}")
    if valid_frac + test_frac >= 1:
        raise ValueError(f"valid_frac + test_frac must be < 1, got {valid_frac + test_frac}")
    if split_by not in ("package", "module"):
        raise ValueError(f"split_by must be 'package' or 'module', got {split_by!r}")


def _assign_splits(
    records: Iterable[CodegenRecord],
    split_by: SplitBy,
    seed: int,
    valid_frac: float,
    test_frac: float,
) -> list[CodegenRecord]:
    """Copies of ``records`` with ``split`` set from their unit (`split_unit`), so a unit's
    records all land in one split."""
    return [
        dataclasses.replace(
            record, split=assign_split(split_unit(record, split_by), seed, valid_frac, test_frac)
        )
        for record in records
    ]


def _write_splits(out: Path, records: Iterable[CodegenRecord]) -> dict[str, list[CodegenRecord]]:
    """Write ``{split}.jsonl`` for every split (empty ones too) into ``out``; return the records
    per split, in their input order."""
    by_split: dict[str, list[CodegenRecord]] = {s: [] for s in SPLITS}
    for record in records:
        by_split[record.split].append(record)
    for split in SPLITS:
        write_records(out / f"{split}.jsonl", by_split[split])
    return by_split


def _split_counts(
    by_split: Mapping[str, Sequence[CodegenRecord]], split_by: SplitBy
) -> dict[str, dict[str, int]]:
    """Records and distinct split units per split."""
    return {
        s: {
            "records": len(records),
            "units": len({split_unit(r, split_by) for r in records}),
        }
        for s, records in by_split.items()
    }


def stdlib_source() -> str:
    """The ``source`` of stdlib records: ``cpython-3.11.7`` and the like."""
    return f"{sys.implementation.name}-{platform.python_version()}"


def build_stdlib_functions(
    out_dir: str | os.PathLike[str],
    benchmark_texts: Mapping[str, Mapping[str, str] | Sequence[str]],
    **kwargs: Any,
) -> FunctionsReport:
    """`build_functions` on the running interpreter's standard library (tests, site-packages
    and build configuration excluded, see `iter_source_files`)."""
    return build_functions(stdlib_dir(), out_dir, benchmark_texts, source=stdlib_source(), **kwargs)
