"""Mine assertion-generation records from Python test files with the stdlib ``ast`` module.

What counts as a test:
    * methods whose name starts with ``test`` in a module-level class (or a class nested in one),
      as unittest collects them, whether or not the class derives from ``TestCase`` (mixins
      such as CPython's ``string_tests.BaseTest`` hold many real tests);
    * module-level functions whose name starts with ``test_``, as pytest collects them.

What counts as an assertion, at any depth inside the test's own body (inside ``if``/``for``/
``with``/``try``/``match`` blocks, never inside a nested function or class):
    * a ``self.assert*(...)`` or ``self.fail*(...)`` call used as a statement;
    * a plain ``assert`` statement;
    * a ``with`` whose context manager is ``self.assert*(...)`` (``assertRaises``,
      ``assertWarns``, ``assertLogs``, ...) or ``pytest.raises/warns/deprecated_call(...)``. The
      target is the ``with ...:`` header alone and only the header lines are masked; the body stays
      in the prompt. A ``with`` whose body sits on the header line is masked and targeted whole.

Assertions in helper methods (``check_roundtrip(self, ...)`` called by several tests) are not
mined: a helper has no single test around it to give the prompt its context, and its
assertions would be repeated once per caller if inlined.

Some assertions are found but not turned into records, and are counted: targets longer than
``max_target_chars``; targets holding a multi-line string literal (they cannot be put on one line
without changing the string); statements sharing a line with other code (``x = f(); assert x``,
one-line tests), which cannot be masked by whole lines.

Focal linking (how the method under test is found) is recorded in each record's ``focal_link``
(``"name"``, ``"last_call"`` or ``"none"``) and, finer, counted per rule in
`MiningCounts.focal_link_kinds`. For each assertion, the first rule that finds a definition wins:

1. ``import_name``: a function or method the test calls, resolved through the test module's
   imports (`codistill.data.python_focal`), named like the test (``test_total`` ->
   ``Cart.total``); ``focal_link="name"``, the same for every assertion of the test.
2. ``file_name``: in the module found from the test file's name alone (``tests/test_cart.py``
   -> ``cart.py`` under a source root), the definition named like the test (``"name"``): the
   rule the miner had before imports were resolved.
3. ``import_call`` / ``import_instance`` / ``file_last_call``: the last call up to the end of
   the assertion that either resolves through the imports into the *subject*, the module the
   test file is named after (``tests/test_cart.py`` -> any imported ``cart`` module, e.g.
   ``shop/cart.py``; ``test_http_cookiejar.py`` -> ``http/cookiejar.py``), as a function, a
   class method, a method or property of an instance of an imported class; or, when it does not
   resolve at all, whose bare name the module of rule 2 defines (the other rule of before:
   ``sr = codecs.EncodedFile(...); sr.readline()``). ``"last_call"``.
4. ``import_constructor``: the last constructor call of a class of the subject
   (``Cart()`` -> ``Cart.__init__``), then the last resolved call, not a constructor, *inside the
   assertion* into any other imported module (``import_call``/``import_instance``;
   ``"last_call"``).
5. ``none``.

The test name is the developer's statement of what a test is about, so the name rules come first
(and records linked by name before imports were resolved keep their focal method); a resolved
call is more precise evidence than a bare call name, so a call that resolves is never matched by
its bare name. Calls into
modules other than the subject come last and only from the assertion itself: when the roots hold
every library (the standard library mined against itself) a call made before the assertion is
often a utility (``subprocess.run``, ``os.path.join``), not the code under test, and a
constructor elsewhere usually builds test data (``UserList(data)``).
"""

import ast
import fnmatch
import hashlib
import io
import os
import time
import tokenize
import warnings
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codistill.data.python_focal import FocalLinker
from codistill.data.python_focal_index import (
    FocalDef,
    ModuleInfo,
    dedent,
    leading_ws,
    split_lines,
)
from codistill.data.python_focal_names import class_hint, def_key, name_keys, test_subject
from codistill.data.python_focal_scope import ResolvedCall, TestModuleScope
from codistill.data.schema import PLACEHOLDER, AssertionRecord

__all__ = [
    "DEFAULT_MAX_TARGET_CHARS",
    "DEFAULT_TEST_PATTERNS",
    "FocalDef",
    "FocalLinker",
    "MiningCounts",
    "MiningResult",
    "merge_counts",
    "mine_python_file",
    "mine_python_tree",
    "record_id",
]

DEFAULT_MAX_TARGET_CHARS = 300
DEFAULT_TEST_PATTERNS = ("test_*.py", "*_test.py")

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
_PYTEST_CONTEXTS = frozenset({"raises", "warns", "deprecated_call"})
_OPENERS = frozenset("([{")
_CLOSERS = frozenset(")]}")
_SKIP_TOKENS = frozenset(
    {
        tokenize.COMMENT,
        tokenize.NL,
        tokenize.NEWLINE,
        tokenize.INDENT,
        tokenize.DEDENT,
        tokenize.ENDMARKER,
        tokenize.ENCODING,
    }
)


@dataclass
class MiningCounts:
    """Counters for one mining run; ``assertions_found`` = records + the three ``skipped_*``.

    Attributes:
        files_seen: Files matched by the include patterns.
        files_parsed: Files read and parsed.
        files_skipped_syntax: Files that did not parse.
        files_skipped_unreadable: Files that could not be decoded.
        tests_seen: Test functions and methods found.
        assertions_found: Assertion statements found inside tests.
        skipped_too_long: Assertions whose one-line target exceeds the length limit.
        skipped_multiline_string: Assertions holding a multi-line string literal.
        skipped_unmaskable: Assertions sharing a line with other code.
        records: Records produced.
        focal_links: Records per ``focal_link`` value.
        focal_link_kinds: Records per linking rule (finer than ``focal_link``; see the module
            docstring). Left empty by miners that do not report rules (Java).
    """

    files_seen: int = 0
    files_parsed: int = 0
    files_skipped_syntax: int = 0
    files_skipped_unreadable: int = 0
    tests_seen: int = 0
    assertions_found: int = 0
    skipped_too_long: int = 0
    skipped_multiline_string: int = 0
    skipped_unmaskable: int = 0
    records: int = 0
    focal_links: Counter[str] = field(default_factory=Counter)
    focal_link_kinds: Counter[str] = field(default_factory=Counter)

    def to_dict(self) -> dict[str, int | dict[str, int]]:
        """The counts as a JSON-ready dict (``focal_link_kinds`` only when some were counted)."""
        d: dict[str, int | dict[str, int]] = {
            k: v for k, v in vars(self).items() if not isinstance(v, Counter)
        }
        d["focal_links"] = dict(sorted(self.focal_links.items()))
        if self.focal_link_kinds:
            d["focal_link_kinds"] = dict(sorted(self.focal_link_kinds.items()))
        return d


@dataclass
class MiningResult:
    """Records mined from a tree, with counts and the files that were skipped.

    Attributes:
        records: Records in file order, then source order.
        counts: What was seen, found and skipped.
        skipped_files: ``(path, reason)`` for every file that was not parsed.
        seconds: Wall time of the run.
    """

    records: list[AssertionRecord]
    counts: MiningCounts
    skipped_files: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0


# -- source text helpers ----------------------------------------------------------------------


def _segment(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> str:
    """Source between two ast positions (1-based line, UTF-8 byte column).

    Same result as `ast.get_source_segment`, which re-splits the whole file on every call; this
    reuses the split lines, which matters for files with thousands of assertions.
    """
    (l1, c1), (l2, c2) = start, end
    if l1 == l2:
        return lines[l1 - 1].encode()[c1:c2].decode()
    first = lines[l1 - 1].encode()[c1:].decode()
    last = lines[l2 - 1].encode()[:c2].decode()
    return "\n".join([first, *lines[l1 : l2 - 1], last])


def _alone_on_lines(lines: list[str], start: tuple[int, int], end: tuple[int, int]) -> bool:
    """Whether only whitespace precedes ``start`` and only a comment follows ``end``."""
    before = lines[start[0] - 1].encode()[: start[1]]
    after = lines[end[0] - 1].encode()[end[1] :].strip()
    return not before.strip() and (not after or after.startswith(b"#"))


def _one_line(segment: str) -> str | None:
    """Put a statement on one line; None if it holds a multi-line string literal.

    Tokens are re-joined: spacing within a line is kept, a line break becomes one space (none
    just inside brackets), and comments are dropped since they would swallow the rest.
    """
    seg_lines = segment.split("\n")
    try:
        tokens = [
            t
            for t in tokenize.generate_tokens(io.StringIO(segment).readline)
            if t.type not in _SKIP_TOKENS
        ]
    except (tokenize.TokenError, SyntaxError):
        return None
    out: list[str] = []
    prev: tokenize.TokenInfo | None = None
    for tok in tokens:
        if tok.type == tokenize.STRING and "\n" in tok.string:
            return None
        if prev is not None:
            if tok.start[0] == prev.end[0]:
                out.append(seg_lines[tok.start[0] - 1][prev.end[1] : tok.start[1]])
            elif prev.string not in _OPENERS and tok.string not in _CLOSERS:
                out.append(" ")
        out.append(tok.string)
        prev = tok
    return "".join(out).strip()


def record_id(repository: str, test_path: str, test_name: str, assert_line: int) -> str:
    """A stable id: the same test assertion gets the same id on every run and machine."""
    key = "\0".join([repository, test_path, test_name, str(assert_line)])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


# -- finding tests and assertions -------------------------------------------------------------


def _iter_tests(tree: ast.Module) -> Iterator[tuple[str, _FunctionNode, ast.ClassDef | None]]:
    """Yield ``(qualname, node, class or None)`` for each test, in source order."""
    for node in tree.body:
        if isinstance(node, _FunctionNode) and node.name.startswith("test_"):
            yield node.name, node, None
        elif isinstance(node, ast.ClassDef):
            yield from _class_tests(node, "")


def _class_tests(
    cls: ast.ClassDef, prefix: str
) -> Iterator[tuple[str, _FunctionNode, ast.ClassDef]]:
    qual = prefix + cls.name
    for node in cls.body:
        if isinstance(node, _FunctionNode) and node.name.startswith("test"):
            yield f"{qual}.{node.name}", node, cls
        elif isinstance(node, ast.ClassDef):
            yield from _class_tests(node, qual + ".")


def _is_assert_call(node: ast.expr) -> bool:
    if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Attribute):
        return False
    owner, attr = node.func.value, node.func.attr
    if not isinstance(owner, ast.Name):
        return False
    if owner.id == "self":
        return attr.startswith(("assert", "fail"))
    return owner.id == "pytest" and attr in _PYTEST_CONTEXTS


def _iter_assertions(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Assertion statements in ``body`` at any block depth, in source order."""
    for stmt in body:
        if isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            continue
        if isinstance(stmt, ast.Assert):
            yield stmt
        elif isinstance(stmt, ast.Expr) and _is_assert_call(stmt.value):
            owner = stmt.value.func.value  # type: ignore[attr-defined]
            if owner.id == "self":  # a bare pytest.raises(...) call asserts nothing
                yield stmt
        elif isinstance(stmt, (ast.With, ast.AsyncWith)) and any(
            _is_assert_call(item.context_expr) for item in stmt.items
        ):
            yield stmt
        for child in ast.iter_child_nodes(stmt):
            if isinstance(child, ast.stmt):
                yield from _iter_assertions([child])
            elif isinstance(child, (ast.excepthandler, ast.match_case)):
                yield from _iter_assertions(child.body)


def _header_end(lines: list[str], node: ast.With | ast.AsyncWith) -> tuple[int, int] | None:
    """Position just after the colon closing a ``with`` header."""
    last = node.items[-1]
    anchor = last.optional_vars or last.context_expr
    line, col = anchor.end_lineno, anchor.end_col_offset
    assert line is not None and col is not None
    # Between the last item and the colon there can only be whitespace, ')', ',', line
    # continuations and comments, so the first ':' outside a comment is the header's.
    while line <= len(lines):
        text = lines[line - 1].encode()
        for i in range(col, len(text)):
            char = text[i : i + 1]
            if char == b"#":
                break
            if char == b":":
                return line, i + 1
        line, col = line + 1, 0
    return None


def _target_span(lines: list[str], stmt: ast.stmt) -> tuple[tuple[int, int], tuple[int, int]]:
    start = (stmt.lineno, stmt.col_offset)
    end = (stmt.end_lineno or stmt.lineno, stmt.end_col_offset or 0)
    if isinstance(stmt, (ast.With, ast.AsyncWith)):
        header = _header_end(lines, stmt)
        # A body on the header line cannot be kept while the header is masked by whole lines,
        # so such a `with` is targeted whole.
        if header is not None and header[0] < stmt.body[0].lineno:
            end = header
    return start, end


# -- focal linking ----------------------------------------------------------------------------


def _called_names(node: _FunctionNode) -> list[tuple[tuple[int, int], str]]:
    """``((line, col), name)`` of calls in a test, in source order.

    Calls on ``self`` (assertions, helpers of the test class) and ``pytest`` are left out.
    """
    calls = []
    for sub in ast.walk(node):
        if not isinstance(sub, ast.Call):
            continue
        func = sub.func
        if isinstance(func, ast.Name):
            calls.append(((sub.lineno, sub.col_offset), func.id))
        elif isinstance(func, ast.Attribute):
            if isinstance(func.value, ast.Name) and func.value.id in ("self", "pytest"):
                continue
            calls.append(((sub.lineno, sub.col_offset), func.attr))
    return sorted(calls)


# -- mining -----------------------------------------------------------------------------------


@dataclass
class _FileContext:
    lines: list[str]
    path: str
    repository: str
    linker: FocalLinker | None
    module: ModuleInfo | None  # the module named after the test file (rules 3 and 4)
    scope: TestModuleScope | None  # the test file's imports (rules 1, 2 and 5)
    subject: str | None  # the module name the test file is named after
    max_target_chars: int
    counts: MiningCounts
    has_subject: bool | None = None  # see _has_subject; worked out on first use


@dataclass
class _TestLinks:
    """What one test can be linked to, worked out once for all its assertions."""

    hint: str | None
    import_named: FocalDef | None = None
    file_named: FocalDef | None = None
    resolved: list[ResolvedCall] = field(default_factory=list)
    file_calls: list[tuple[tuple[int, int], str]] = field(default_factory=list)


def _in_subject(ctx: _FileContext, call: ResolvedCall) -> bool:
    if ctx.module is not None and call.defn.path == ctx.module.rel:
        return True
    return ctx.subject is not None and ctx.subject in call.modules


def _test_links(ctx: _FileContext, node: _FunctionNode, cls: ast.ClassDef | None) -> _TestLinks:
    links = _TestLinks(hint=class_hint(cls.name if cls else None))
    if ctx.scope is not None:
        links.resolved = ctx.scope.calls(node, cls)
        # Rule 1: a called definition named like the test; in the subject module first.
        by_key: dict[str, list[ResolvedCall]] = {}
        for call in links.resolved:
            by_key.setdefault(def_key(call.defn.name), []).append(call)
        for key in name_keys(node.name):
            if found := by_key.get(key):
                best = min(
                    found,
                    key=lambda c: (not _in_subject(ctx, c), c.kind == "import_constructor"),
                )
                links.import_named = best.defn
                break
    if ctx.linker is not None and ctx.module is not None:
        links.file_named = ctx.linker.by_name(ctx.module, node.name, cls.name if cls else None)
        if links.file_named is None:
            links.file_calls = _called_names(node)
    return links


def _has_subject(ctx: _FileContext) -> bool:
    """Whether the test file's subject module exists: by its name, or among its imports."""
    if ctx.has_subject is None:
        ctx.has_subject = ctx.module is not None or (
            ctx.scope is not None
            and ctx.subject is not None
            and ctx.scope.imports_module_keyed(ctx.subject)
        )
    return ctx.has_subject


def _last_resolved(
    calls: list[ResolvedCall], stmt_end: tuple[int, int], keep
) -> ResolvedCall | None:
    for call in reversed(calls):
        if call.pos < stmt_end and keep(call):
            return call
    return None


def _link_focal(
    ctx: _FileContext, links: _TestLinks, stmt_start: tuple[int, int], stmt_end: tuple[int, int]
) -> tuple[FocalDef | None, str, str]:
    """``(definition, focal_link, rule)`` for one assertion; see the module docstring."""
    if links.import_named is not None:
        return links.import_named, "name", "import_name"
    if links.file_named is not None:
        return links.file_named, "name", "file_name"
    ctor = "import_constructor"
    subject = _last_resolved(
        links.resolved, stmt_end, lambda c: c.kind != ctor and _in_subject(ctx, c)
    )
    if ctx.module is not None:
        resolved_at = {c.pos for c in links.resolved}
        for pos, name in reversed(links.file_calls):
            if subject is not None and pos <= subject.pos:
                break
            # A call resolved through the imports is known not to be this bare-name match.
            # Exact names only: a call to len() is no evidence that __len__ is under test.
            if pos < stmt_end and pos not in resolved_at:
                if found := ctx.module.lookup(def_key(name), links.hint, name):
                    return found, "last_call", "file_last_call"
    if subject is not None:
        return subject.defn, "last_call", subject.kind
    # Constructors last, and only the subject's: elsewhere a constructor builds test data
    # (`UserList(data)`), it is rarely what the test is about.
    fallback = _last_resolved(
        links.resolved, stmt_end, lambda c: c.kind == ctor and _in_subject(ctx, c)
    )
    # Beside a subject, a call into another module made before the assertion is set-up.
    after = stmt_start if _has_subject(ctx) else (0, 0)
    fallback = fallback or _last_resolved(
        links.resolved, stmt_end, lambda c: c.kind != ctor and c.pos >= after
    )
    if fallback is not None:
        return fallback.defn, "last_call", fallback.kind
    return None, "none", "none"


def _mine_test(
    ctx: _FileContext, node: _FunctionNode, qualname: str, cls: ast.ClassDef | None
) -> list[AssertionRecord]:
    lines, counts = ctx.lines, ctx.counts
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    indent = leading_ws(lines[node.lineno - 1])
    def_alone = not lines[node.lineno - 1].encode()[: node.col_offset].strip()
    func_lines = dedent(lines[first - 1 : node.end_lineno], indent)
    links: _TestLinks | None = None
    records: list[AssertionRecord] = []
    for stmt in _iter_assertions(node.body):
        counts.assertions_found += 1
        start, end = _target_span(lines, stmt)
        if not def_alone or start[0] == node.lineno or not _alone_on_lines(lines, start, end):
            counts.skipped_unmaskable += 1
            continue
        target = _one_line(_segment(lines, start, end))
        if target is None:
            counts.skipped_multiline_string += 1
            continue
        if len(target) > ctx.max_target_chars:
            counts.skipped_too_long += 1
            continue
        stmt_indent = dedent([leading_ws(lines[start[0] - 1])], indent)[0]
        masked = func_lines[: start[0] - first] + [stmt_indent + PLACEHOLDER]
        masked += func_lines[end[0] - first + 1 :]
        # Worked out only for tests with a record to link: most of the cost of mining.
        links = links or _test_links(ctx, node, cls)
        focal, how, rule = _link_focal(ctx, links, start, end)
        records.append(
            AssertionRecord(
                id=record_id(ctx.repository, ctx.path, qualname, start[0]),
                language="python",
                repository=ctx.repository,
                focal_path=focal.path if focal else "",
                focal_name=focal.qualname if focal else "",
                focal_code=focal.code if focal else "",
                test_path=ctx.path,
                test_name=qualname,
                test_code="\n".join(masked),
                target=target,
                assert_line=start[0],
                focal_link=how,  # type: ignore[arg-type]
                split=None,
            )
        )
        counts.focal_links[how] += 1
        if ctx.linker is not None:
            counts.focal_link_kinds[rule] += 1
    counts.records += len(records)
    return records


def _mine_source(
    source: str,
    path: str,
    repository: str,
    linker: FocalLinker | None,
    max_target_chars: int,
    file: Path | None = None,
) -> tuple[list[AssertionRecord], MiningCounts]:
    lines = split_lines(source)
    # CPython's own tests are full of deliberate invalid escapes and `is` comparisons with
    # literals; the SyntaxWarnings they raise at parse time say nothing about the data.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        tree = ast.parse("\n".join(lines), filename=path)
    counts = MiningCounts(files_parsed=1)
    ctx = _FileContext(
        lines=lines,
        path=path,
        repository=repository,
        linker=linker,
        module=linker.module_for(path) if linker else None,
        scope=linker.test_module(tree, file) if linker else None,
        subject=test_subject(path),
        max_target_chars=max_target_chars,
        counts=counts,
    )
    records = []
    for qualname, node, cls in _iter_tests(tree):
        counts.tests_seen += 1
        records.extend(_mine_test(ctx, node, qualname, cls))
    return records, counts


def mine_python_file(
    source: str,
    path: str,
    repository: str,
    *,
    source_roots: Sequence[str | os.PathLike[str]] = (),
    linker: FocalLinker | None = None,
    max_target_chars: int = DEFAULT_MAX_TARGET_CHARS,
) -> list[AssertionRecord]:
    """Mine the assertion records of one Python test file.

    Args:
        source: The file's text.
        path: The file's path relative to the repository; recorded as ``test_path`` and used
            to find the module under test.
        repository: Recorded as ``repository`` and part of every record id.
        source_roots: Directories to look for the module under test in (ignored if ``linker``
            is given). Relative imports are resolved from the first root holding ``path``.
        linker: A `FocalLinker` to reuse, so modules are parsed once across files.
        max_target_chars: Longer targets are skipped (counted by `mine_python_tree`).

    Returns:
        One record per maskable assertion, in source order.

    Raises:
        SyntaxError: ``source`` does not parse (`mine_python_tree` counts and skips these).
    """
    if linker is None and source_roots:
        linker = FocalLinker(source_roots)
    file = None
    if linker is not None:
        file = next((r / path for r in linker.source_roots if (r / path).is_file()), None)
    records, _ = _mine_source(source, path, repository, linker, max_target_chars, file)
    return records


def _iter_test_files(root: Path, include: Sequence[str]) -> Iterator[Path]:
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith((".", "__pycache__")))
        for name in sorted(filenames):
            if any(fnmatch.fnmatchcase(name, pattern) for pattern in include):
                yield Path(dirpath) / name


def merge_counts(total: MiningCounts, part: MiningCounts) -> None:
    """Add one file's counts into a tree's total (files are counted by the tree walk)."""
    for key, value in vars(part).items():
        if isinstance(value, Counter):
            getattr(total, key).update(value)
        elif key != "files_seen":
            setattr(total, key, getattr(total, key) + value)


def mine_python_tree(
    root: str | os.PathLike[str],
    repository: str | None = None,
    *,
    source_roots: Sequence[str | os.PathLike[str]] = (),
    relative_to: str | os.PathLike[str] | None = None,
    include: Sequence[str] = DEFAULT_TEST_PATTERNS,
    max_target_chars: int = DEFAULT_MAX_TARGET_CHARS,
) -> MiningResult:
    """Mine every matching Python file under ``root``.

    Files are visited in sorted order, so the result is the same on every run. A file that
    cannot be decoded or parsed is counted and listed in ``skipped_files``, never fatal.

    Args:
        root: Directory to search recursively (hidden and ``__pycache__`` directories skipped).
        repository: Recorded in every record; defaults to ``root``'s directory name.
        source_roots: Directories holding the modules under test, for focal linking.
        relative_to: Base of the recorded ``test_path``; defaults to ``root``.
        include: Filename patterns (``fnmatch``) of the files to mine.
        max_target_chars: Longer targets are skipped and counted.

    Returns:
        The records, counts and skipped files.
    """
    started = time.perf_counter()
    root = Path(root)
    base = Path(relative_to) if relative_to is not None else root
    repository = repository or root.resolve().name
    linker = FocalLinker(source_roots) if source_roots else None
    result = MiningResult(records=[], counts=MiningCounts())
    for file in _iter_test_files(root, include):
        result.counts.files_seen += 1
        rel = file.relative_to(base).as_posix()
        try:
            with tokenize.open(file) as f:
                source = f.read()
        except (OSError, UnicodeDecodeError, SyntaxError) as err:
            result.counts.files_skipped_unreadable += 1
            result.skipped_files.append((rel, f"unreadable: {err}"))
            continue
        try:
            records, counts = _mine_source(
                source, rel, repository, linker, max_target_chars, file.absolute()
            )
        except (SyntaxError, ValueError, RecursionError) as err:
            result.counts.files_skipped_syntax += 1
            result.skipped_files.append((rel, f"does not parse: {err}"))
            continue
        result.records.extend(records)
        merge_counts(result.counts, counts)
    result.seconds = time.perf_counter() - started
    return result
