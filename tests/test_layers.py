"""codistill's packages import downwards only (issue: one direction of dependencies).

Every ``import`` of the package is checked, including those inside functions, against the
order below; a new package or top-level module needs its place in it. The known upward imports
still to be removed are listed; the list may only shrink (a fixed one must leave it).

An import inside a function is for a heavy or optional dependency only (torch, transformers,
numpy, matplotlib, an optional extra such as llama_cpp or an embedded model's package; in
``cli/`` also what only that command runs, see ``codistill/cli/__init__.py``: every start of
``codistill`` imports every subcommand module), and says so: ``# lazy: <why>`` on its line or on
the comment line just above it (one comment may head a block of such imports). The standard
library is never imported lazily. Building the command line (``codistill --help``, and the start
of every subcommand) imports none of the heavy ones.
"""

import ast
import re
import subprocess
import sys
from pathlib import Path

import codistill

ORDER = [
    "files",
    "rundir",
    "data",
    "models",
    "losses",
    "config",
    "evaluation",
    "teacher",
    "training",
    "soda",
    "fidelity",
    "report",
    "quickstart",
    "reproduce",
    "reproduce_codegen",
    "cli",
]
KNOWN_UPWARD: set[tuple[str, str]] = set()
LAZY_REASON = re.compile(r"#\s*lazy:\s*\S")
ROOT = Path(codistill.__file__).parent


def _layer(module: str) -> str | None:
    parts = module.split(".")
    return parts[1] if parts[0] == "codistill" and len(parts) > 1 else None


def _imports():
    for path in ROOT.rglob("*.py"):
        parts = path.relative_to(ROOT.parent).with_suffix("").parts
        module = ".".join(p for p in parts if p != "__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                yield module, node.module
            elif isinstance(node, ast.Import):
                for alias in node.names:
                    yield module, alias.name


def test_every_package_has_a_place_in_the_order():
    placed = {p.stem if p.is_file() else p.name for p in ROOT.iterdir()}
    placed = {p for p in placed if not p.startswith("__") and p != "configs"}  # YAML presets
    assert placed <= set(ORDER), f"give {sorted(placed - set(ORDER))} a place in ORDER"


def test_imports_only_point_down_the_order():
    upward = set()
    for module, target in _imports():
        src, dst = _layer(module), _layer(target)
        if src is None or dst is None or src == dst:
            continue
        if ORDER.index(dst) > ORDER.index(src):
            upward.add((module, ".".join(target.split(".")[:3])))
    new = upward - KNOWN_UPWARD
    assert not new, f"imports against the layer order: {sorted(new)}"
    fixed = KNOWN_UPWARD - upward
    assert not fixed, f"no longer imported upwards, remove from KNOWN_UPWARD: {sorted(fixed)}"


def _function_imports():
    """(file relative to the package, its lines, import node) for every in-function import."""
    for path in sorted(ROOT.rglob("*.py")):
        text = path.read_text()
        seen = set()
        for fn in ast.walk(ast.parse(text)):
            if not isinstance(fn, ast.FunctionDef | ast.AsyncFunctionDef):
                continue
            for node in ast.walk(fn):
                if isinstance(node, ast.Import | ast.ImportFrom) and node.lineno not in seen:
                    seen.add(node.lineno)  # a nested function's imports are walked twice
                    yield path.relative_to(ROOT).as_posix(), text.splitlines(), node


def _has_reason(lines: list[str], node: ast.stmt, starts: dict[int, int]) -> bool:
    """A ``# lazy:`` comment on the import's lines, or above it across the imports of its block
    (the groups isort separates by a blank line included).

    ``starts`` maps the last line of each in-function import of the file to its first line.
    """
    if any(LAZY_REASON.search(line) for line in lines[node.lineno - 1 : node.end_lineno]):
        return True
    row = node.lineno - 1  # 1-based number of the line above
    while row >= 1:
        line = lines[row - 1].strip()
        if not line and row - 1 in starts:  # the blank line between isort's groups of a block
            row -= 1
        elif row in starts:  # the import above in the same block: its reason covers this one
            if any(LAZY_REASON.search(x) for x in lines[starts[row] - 1 : row]):
                return True
            row = starts[row] - 1
        elif line.startswith("#"):
            if LAZY_REASON.search(line):
                return True
            row -= 1
        else:
            return False
    return False


def _unexplained_imports() -> dict[str, list[str]]:
    found = list(_function_imports())
    starts: dict[str, dict[int, int]] = {}
    for rel, _, node in found:
        starts.setdefault(rel, {})[node.end_lineno] = node.lineno
    missing: dict[str, list[str]] = {}
    for rel, lines, node in found:
        if not _has_reason(lines, node, starts[rel]):
            missing.setdefault(rel, []).append(f"{rel}:{node.lineno}: {ast.unparse(node)}")
    return missing


def test_every_import_inside_a_function_says_why_it_is_lazy():
    missing = [line for _, lines in sorted(_unexplained_imports().items()) for line in lines]
    assert not missing, "hoist these to the module top, or add `# lazy: <why>`:\n" + "\n".join(
        missing
    )


def test_the_standard_library_is_never_imported_lazily():
    stdlib = set(sys.stdlib_module_names)
    lazy = [
        f"{rel}:{node.lineno}: {ast.unparse(node)}"
        for rel, _, node in _function_imports()
        for name in (
            [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
        )
        if name.split(".")[0] in stdlib
    ]
    assert not lazy, "the standard library is cheap to import, hoist:\n" + "\n".join(lazy)


def test_the_lazy_import_check_finds_an_unexplained_import():
    source = (
        "def f():\n    import torch\n\n"
        "def g():\n    # lazy: torch\n    import torch\n    import numpy\n\n"
        "def h():\n    import torch  # lazy: torch\n\n"
        "def k():\n    x = 1  # lazy: not a comment line above\n    import torch\n\n"
        "def m():\n    # lazy: torch\n    import torch\n\n    from a import b\n\n"
        "def n():\n    import torch  # lazy: torch\n\n    import numpy\n"
    )
    lines = source.splitlines()
    nodes = [n for n in ast.walk(ast.parse(source)) if isinstance(n, ast.Import | ast.ImportFrom)]
    starts = {n.end_lineno: n.lineno for n in nodes}
    verdicts = {n.lineno: _has_reason(lines, n, starts) for n in nodes}
    assert verdicts == {
        2: False,
        6: True,
        7: True,
        10: True,
        14: False,
        18: True,
        20: True,
        23: True,
        25: True,
    }


HEAVY = ("torch", "transformers", "numpy", "gguf", "matplotlib", "scipy", "peft", "llama_cpp")


def test_building_the_command_line_imports_no_heavy_module():
    # A fresh interpreter: this one has long imported torch for other tests.
    code = (
        "import sys\n"
        "from codistill.cli.main import build_parser\n"
        "build_parser()\n"
        f"print(','.join(sorted(m for m in {HEAVY!r} if m in sys.modules)))\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    heavy = done.stdout.strip()
    assert not heavy, (
        f"`codistill --help` imports {heavy}; import it inside the run function (# lazy: ...); "
        f"find who pulls it with: {sys.executable} -X importtime -c 'from codistill.cli.main "
        "import build_parser; build_parser()'"
    )
