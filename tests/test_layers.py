"""codistill's packages import downwards only (issue: one direction of dependencies).

Every ``import`` of the package is checked, including those inside functions, against the
order below; a new package or top-level module needs its place in it. The known upward imports
still to be removed are listed; the list may only shrink (a fixed one must leave it).
"""

import ast
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
    "fidelity",
    "report",
    "quickstart",
    "reproduce",
    "cli",
]
KNOWN_UPWARD = {
    ("codistill.teacher.cache", "codistill.training.batches"),
    ("codistill.teacher.cache", "codistill.training.step"),
}
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
