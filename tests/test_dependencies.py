"""Every third-party module the package imports is declared in pyproject.toml.

A package installed by hand on a developer's machine hides a missing declaration until a fresh
machine runs the tests (``lz4`` did exactly that), so every import of ``src/codistill``, those
inside functions included, is checked against the dependencies and extras.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SRC = ROOT / "src" / "codistill"


def _normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def declared_distributions() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    specs = list(project["dependencies"])
    for extra in project.get("optional-dependencies", {}).values():
        specs.extend(extra)
    return {_normalise(re.split(r"[\s\[<>=!~;]", spec, maxsplit=1)[0]) for spec in specs}


def imported_modules(root: Path = SRC, relative_to: Path = ROOT) -> dict[str, str]:
    """Top-level module -> first ``file:line`` importing it (absolute imports only)."""
    found: dict[str, str] = {}
    for path in sorted(root.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            else:
                continue
            for name in names:
                top = name.split(".")[0]
                found.setdefault(top, f"{path.relative_to(relative_to)}:{node.lineno}")
    return found


def third_party(modules: dict[str, str]) -> dict[str, str]:
    return {
        m: where
        for m, where in modules.items()
        if m not in sys.stdlib_module_names and m != "codistill" and not m.startswith("_")
    }


# Modules named unlike their distribution, for when the distribution is not installed here.
KNOWN_DISTRIBUTIONS = {"llama_cpp": "llama-cpp-python", "yaml": "pyyaml", "sklearn": "scikit-learn"}


def distributions_of(module: str) -> set[str]:
    """The distributions that provide ``module``; for one not installed here, the known name
    or its own name (the usual case, and one a reviewer can check)."""
    dists = metadata.packages_distributions().get(module)
    if dists:
        return {_normalise(d) for d in dists}
    return {_normalise(KNOWN_DISTRIBUTIONS.get(module, module))}


def undeclared(modules: dict[str, str], declared: set[str]) -> list[str]:
    return sorted(
        f"{where}: imports {module} (distribution {' or '.join(sorted(distributions_of(module)))})"
        for module, where in third_party(modules).items()
        if not distributions_of(module) & declared
    )


def test_every_third_party_import_is_declared():
    missing = undeclared(imported_modules(), declared_distributions())
    assert not missing, "declare these in pyproject.toml:\n" + "\n".join(missing)


def test_an_undeclared_import_is_found(tmp_path):
    (tmp_path / "mod.py").write_text("def f():\n    import lz4.frame\n    import json\n")
    found = imported_modules(tmp_path, relative_to=tmp_path)
    assert set(found) == {"lz4", "json"}
    assert undeclared(found, {"numpy"}) == ["mod.py:2: imports lz4 (distribution lz4)"]
    assert undeclared(found, {"lz4"}) == []
