"""Test names and module names for focal-method linking (:mod:`codistill.data.python_focal`).

How a test's name, its class's name and its file's name are turned into keys that definitions
and modules are matched with, and which modules count as test code (never linked).
"""

import fnmatch
from collections.abc import Iterator, Sequence
from pathlib import PurePosixPath

# Modules whose files match these, or that live under these folders, are test code.
_TEST_FILE_PATTERNS = ("test_*.py", "*_test.py", "conftest.py")
TEST_DIRS = frozenset({"test", "tests", "testing"})


def name_parts(name: str) -> list[str]:
    """``test_split_basic`` -> [split, basic]; ``testSplitLines`` -> [split, lines]."""
    rest = name[4:] if name.lower().startswith("test") else name
    parts: list[str] = []
    for chunk in rest.split("_"):
        word = ""
        for i, char in enumerate(chunk):
            if word and char.isupper() and not chunk[i - 1].isupper():
                parts.append(word.lower())
                word = ""
            word += char
        if word:
            parts.append(word.lower())
    return parts


def name_keys(test_name: str) -> Iterator[str]:
    """Keys a definition named like the test may have, longest first."""
    parts = name_parts(test_name)
    for k in range(len(parts), 0, -1):
        for joiner in ("_", ""):
            key = joiner.join(parts[:k])
            if len(key) >= 2:
                yield key


def class_hint(test_class: str | None) -> str | None:
    """``TestCounter`` / ``CounterTests`` -> ``counter``: the class a test class likely covers."""
    if not test_class:
        return None
    name = test_class
    for suffix in ("TestCase", "Tests", "Test"):
        name = name.removesuffix(suffix)
    for prefix in ("TestCase", "Tests", "Test"):
        name = name.removeprefix(prefix)
    return name.lower().strip("_") or None


def def_key(name: str) -> str:
    """How definitions are matched to test names: without underscores at the ends, lower case."""
    return name.strip("_").lower()


def test_subject(test_path: str) -> str | None:
    """The module a test file is named after: ``tests/test_cart.py`` -> ``cart``."""
    p = PurePosixPath(test_path.replace("\\", "/"))
    if p.stem == "__init__" and p.parent.name.startswith("test_"):
        return def_key(p.parent.name[len("test_") :])
    if p.stem.startswith("test_"):
        return def_key(p.stem[len("test_") :])
    if p.stem.endswith("_test"):
        return def_key(p.stem[: -len("_test")])
    return None


def is_test_module(rel_parts: Sequence[str]) -> bool:
    """Whether a module at this path (parts relative to where it was found) is test code."""
    *dirs, name = rel_parts
    if any(d in TEST_DIRS or d.startswith("test_") for d in dirs):
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in _TEST_FILE_PATTERNS)


def module_keys(*modules: str) -> tuple[str, ...]:
    """Names a test file may give these modules, matched with `test_subject`.

    Each module itself and the packages holding it, alone or with their parents:
    ``http.cookiejar`` -> ``cookiejar``, ``http_cookiejar``, ``http``. A method reached through
    an instance is keyed by its class's module and by the module defining it (a base class).
    """
    keys: list[str] = []
    for dotted in modules:
        parts = [def_key(p) for p in dotted.split(".") if p]
        keys += ["_".join(parts[i:]) for i in range(len(parts) - 1, -1, -1)]
        keys += ["_".join(parts[:i]) for i in range(1, len(parts))]
    return tuple(dict.fromkeys(keys))
