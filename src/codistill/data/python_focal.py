"""Focal-method linking for the Python miner: the module under test by name and by imports.

`FocalLinker` knows the source roots and finds the code a test exercises in two ways:

* **By the test module's imports** (`FocalLinker.test_module` then `TestModuleScope.calls`):
  ``import a.b``, ``import a.b as c``, ``from a.b import C``, ``from . import m``,
  ``from ..pkg import f`` and ``from m import *`` are resolved against the source roots (each
  root, its ``src/`` folder, then folders up to three levels below it that hold packages), through
  packages' ``__init__`` re-exports. A call is resolved to the function or method it runs: an
  imported function (``f(x)``, ``m.f(x)``), a class method (``C.make()``), a method of an instance
  made from an imported class (``c = C(); c.total()``, ``C().total()``, ``with C() as c`` when
  ``__enter__`` returns ``self``, ``self.c = C()`` in the test or in a set-up method of its class,
  a pytest fixture of the same file returning ``C()``, an annotation ``c: C``), methods inherited
  from base classes that resolve too, properties read on such instances, and constructors
  (``C(...)`` -> ``C.__init__``).
* **By the test file's name** (`FocalLinker.module_for`, `FocalLinker.by_name`): the rules the
  miner had before imports were resolved.

The order in which the miner tries them is in `codistill.data.python_miner`.

Modules that are test code themselves are never linked: files matching ``test_*.py``,
``*_test.py`` or ``conftest.py`` and anything under a ``test``, ``tests`` or ``testing`` folder or a
``test_*`` package (CPython's ``test.support`` helpers, a suite's own helpers).

The type inference is deliberately small and flow-insensitive within a test: a name has the type
of its last assignment before the call (statement order), and a call's result has a type only
when the callee is a class. Nothing is imported or executed.

This module resolves modules and their attributes; the rest, by job:
`codistill.data.python_focal_names` (test and module names, which files are test code),
`codistill.data.python_focal_index` (a parsed module under test, and what a reference can be) and
`codistill.data.python_focal_scope` (one test file's names, and its resolved calls).
"""

import ast
import os
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from codistill.data.python_focal_index import (
    MAX_DEPTH,
    Binding,
    CallableRef,
    ClassInfo,
    ClassRef,
    FocalDef,
    ModuleInfo,
    ModuleRef,
    Ref,
    dotted_name,
    index_module,
)
from codistill.data.python_focal_names import TEST_DIRS, class_hint, is_test_module, name_keys
from codistill.data.python_focal_scope import TestModuleScope

# Folders never searched for packages: installed third-party code, build output, VCS.
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "node_modules", "build", "dist", "__pycache__"}
)
_DISCOVERY_DEPTH = 3


# -- the linker -------------------------------------------------------------------------------


class FocalLinker:
    """Find the focal method of a test among the source roots.

    Through imports, see the module docstring and `TestModuleScope`. By the test file's name:
    ``test_foo.py`` (or ``foo_test.py``) tests ``foo.py`` or ``foo/__init__.py``; inside a test
    package ``test_pkg/test_foo.py`` tests ``pkg/foo.py``, else ``pkg/__init__.py``, and
    ``test_pkg/__init__.py`` tests ``pkg``. Each source root is tried in order. In that module,
    a test is linked to the function or method named like the test (the longest prefix of the
    test name's parts: ``test_split_basic`` -> ``split_basic``, then ``split``), else, per
    assertion, to the last function or method called up to the end of the assertion (calls on
    ``self`` excluded) that the module defines under exactly that name. When several
    definitions share the name, a method of the class the test class is named after
    (``TestCounter`` -> ``Counter``) wins, then a module-level function.
    """

    def __init__(self, source_roots: Sequence[str | os.PathLike[str]] = ()) -> None:
        # Absolute, so that test files found by a walk compare with them whatever the caller's
        # spelling (relative or not); never resolved, so recorded paths keep the roots' form.
        self.source_roots = [Path(r).absolute() for r in source_roots]
        self._files: dict[Path, ModuleInfo | None] = {}
        self._dotted: dict[str, ModuleInfo | None] = {}
        self._primary: list[tuple[Path, Path]] | None = None
        self._bases: list[tuple[Path, Path]] | None = None
        self._attrs: dict[tuple[Path, str], Ref | None] = {}

    # -- by the test file's name --

    def module_candidates(self, test_path: str) -> list[str]:
        """Relative paths of the modules a test file may test, most specific first."""
        p = PurePosixPath(test_path.replace("\\", "/"))
        stem = p.stem
        if stem == "__init__" and p.parent.name.startswith("test_"):
            # Tests kept in a test package's __init__ (CPython's test_dataclasses) test the
            # module the package is named after.
            module = p.parent.name[len("test_") :]
            return [f"{module}.py", f"{module}/__init__.py"]
        if stem.startswith("test_"):
            module = stem[len("test_") :]
        elif stem.endswith("_test"):
            module = stem[: -len("_test")]
        else:
            return []
        package = p.parent.name
        if package.startswith("test_"):
            pkg = package[len("test_") :]
            return [f"{pkg}/{module}.py", f"{pkg}/{module}/__init__.py", f"{pkg}/__init__.py"]
        return [f"{module}.py", f"{module}/__init__.py"]

    def module_for(self, test_path: str) -> ModuleInfo | None:
        """The module named after the test file, or None if none is found or it does not parse."""
        for rel in self.module_candidates(test_path):
            for root in self.source_roots:
                path = root / rel
                if path.is_file() and (found := self._load(path, root)) is not None:
                    return found
        return None

    def by_name(
        self, module: ModuleInfo, test_name: str, test_class: str | None
    ) -> FocalDef | None:
        """The definition of ``module`` named like the test, or None."""
        hint = class_hint(test_class)
        for key in name_keys(test_name):
            if found := module.lookup(key, hint):
                return found
        return None

    # -- through imports --

    def test_module(self, tree: ast.Module, file: Path | None) -> TestModuleScope:
        """The import scope of a parsed test file (``file`` anchors its relative imports)."""
        return TestModuleScope(self, tree, file.parent if file is not None else None)

    def _load(self, path: Path, root: Path, dotted: str | None = None) -> ModuleInfo | None:
        if path not in self._files:
            rel = path.relative_to(root)
            dotted = dotted or dotted_name(rel.parts)
            self._files[path] = index_module(path, rel.as_posix(), dotted)
        return self._files[path]

    def _root_of(self, path: Path) -> Path | None:
        for root in self.source_roots:
            if path.is_relative_to(root):
                return root
        return None

    def _search_bases(self, discovered: bool) -> list[tuple[Path, Path]]:
        """``(root, folder)`` pairs where top-level modules are looked for, in order.

        Each root and its ``src/`` first; with ``discovered``, then the folders below the roots
        that hold packages (searched for only once a module is not found in the first ones).
        """
        bases = [(r, d) for r in self.source_roots for d in (r, r / "src") if d.is_dir()]
        if not discovered:
            return bases
        if self._bases is None:
            self._bases = [
                (r, d)
                for r in self.source_roots
                for d in _package_parents(r)
                if (r, d) not in bases
            ]
        return self._bases

    def _module_in(
        self, folder: Path, parts: Sequence[str], root: Path, dotted: str | None = None
    ) -> ModuleInfo | None:
        """The module ``folder/a/b`` (``b.py``, ``b/__init__.py`` or a namespace folder).

        ``dotted`` names it when ``folder`` is a package's folder (a submodule, a relative
        import); by default it is ``a.b`` for an import base, else taken from the path.
        """
        if not parts or any(not p.isidentifier() for p in parts):
            return None
        rel_parts = (*folder.relative_to(root).parts, *parts)
        base = folder.joinpath(*parts)
        module, package = base.with_name(f"{parts[-1]}.py"), base / "__init__.py"
        if dotted is None and any(
            folder == d for _, d in self._search_bases(self._bases is not None)
        ):
            dotted = ".".join(parts)
        if module.is_file():
            if is_test_module([*rel_parts[:-1], module.name]):
                return None
            return self._load(module, root, dotted)
        if is_test_module([*rel_parts, "__init__.py"]):
            return None
        if package.is_file():
            return self._load(package, root, dotted)
        if base.is_dir():  # a namespace package: only its submodules can be found
            rel = Path(*rel_parts).as_posix()
            info = ModuleInfo(base, rel, dotted or dotted_name(rel_parts), package_dir=base)
            return self._files.setdefault(base, info)
        return None

    def find_module(self, dotted: str) -> ModuleInfo | None:
        """The module an absolute import names, or None when it is not under the source roots."""
        if dotted not in self._dotted:
            parts = dotted.split(".")
            found = None
            for discovered in (False, True):
                for root, folder in self._search_bases(discovered):
                    if (found := self._module_in(folder, parts, root)) is not None:
                        break
                if found is not None:
                    break
            self._dotted[dotted] = found
        return self._dotted[dotted]

    def _relative_module(self, here: Path | None, level: int, dotted: str) -> ModuleInfo | None:
        if here is None:
            return None
        folder = here
        for _ in range(level - 1):
            folder = folder.parent
        root = self._root_of(folder)
        if root is None:
            return None
        if not dotted:  # `from . import x`: the package itself
            return self._module_in(folder.parent, [folder.name], root) if folder != root else None
        return self._module_in(folder, dotted.split("."), root)

    def resolve_binding(self, binding: Binding, here: Path | None, depth: int = 0) -> Ref | None:
        """What an import binding refers to (``here``: the importing file's folder)."""
        if binding.level:
            module = self._relative_module(here, binding.level, binding.module)
        else:
            module = self.find_module(binding.module)
        if module is None:
            return None
        if binding.name is None:
            return ModuleRef(module)
        return self.resolve_attr(module, binding.name, depth + 1)

    def resolve_attr(self, module: ModuleInfo, name: str, depth: int = 0) -> Ref | None:
        """``module.name``: a class, function, submodule, or a name the module imports."""
        key = (module.path, name)
        if key in self._attrs:
            return self._attrs[key]
        if depth > MAX_DEPTH:
            return None
        self._attrs[key] = None  # an import cycle resolves to nothing
        found: Ref | None = None
        here = module.package_dir or module.path.parent
        if name in module.classes:
            found = ClassRef(module, module.classes[name])
        elif name in module.functions:
            found = CallableRef(module.functions[name], via_instance=False)
        elif name in module.imports:
            found = self.resolve_binding(module.imports[name], here, depth)
        if found is None and module.package_dir is not None:
            root = self._root_of(module.package_dir)
            sub_name = f"{module.dotted}.{name}" if module.dotted else None
            if root is not None and (
                sub := self._module_in(module.package_dir, [name], root, sub_name)
            ):
                found = ModuleRef(sub)
        if found is None and not name.startswith("_"):
            for binding in module.star:
                star = self.resolve_binding(binding, here, depth)
                if isinstance(star, ModuleRef):
                    found = self.resolve_attr(star.info, name, depth + 1)
                    if found is not None:
                        break
        self._attrs[key] = found
        return found

    def _resolve_in_module(self, module: ModuleInfo, expr: ast.expr, depth: int) -> Ref | None:
        """A base-class expression (``Base``, ``mod.Base``) evaluated in ``module``."""
        if isinstance(expr, ast.Name):
            return self.resolve_attr(module, expr.id, depth + 1)
        if isinstance(expr, ast.Attribute):
            owner = self._resolve_in_module(module, expr.value, depth + 1)
            if isinstance(owner, ModuleRef):
                return self.resolve_attr(owner.info, expr.attr, depth + 1)
        return None

    def find_method(
        self, module: ModuleInfo, cls: ClassInfo, name: str, depth: int = 0
    ) -> FocalDef | None:
        """``cls.name`` defined on the class or inherited from a base that resolves."""
        if name in cls.methods:
            return cls.methods[name]
        if depth > MAX_DEPTH:
            return None
        for base in cls.bases:
            ref = self._resolve_in_module(module, base, depth)
            if isinstance(ref, ClassRef) and ref.cls is not cls:
                if found := self.find_method(ref.module, ref.cls, name, depth + 1):
                    return found
        return None

    def enters_self(self, module: ModuleInfo, cls: ClassInfo) -> bool:
        """Whether ``with cls(...) as x`` binds the instance itself."""
        enter = self.find_method(module, cls, "__enter__")
        return enter is not None and enter.class_name == cls.name and cls.enter_returns_self


def _package_parents(root: Path) -> list[Path]:
    """Folders up to `_DISCOVERY_DEPTH` below ``root`` that hold a package (monorepo layouts)."""
    found: list[Path] = []
    frontier = [root]
    for _ in range(_DISCOVERY_DEPTH):
        below: list[Path] = []
        for folder in frontier:
            try:
                children = sorted(
                    (e for e in os.scandir(folder) if e.is_dir()), key=lambda e: e.name
                )
            except OSError:
                continue
            for entry in children:
                name = entry.name
                if name.startswith(".") or name in _SKIP_DIRS or name in TEST_DIRS:
                    continue
                child = Path(entry.path)
                if (child / "__init__.py").is_file():
                    if folder not in found:
                        found.append(folder)
                elif not (child / "pyvenv.cfg").is_file():
                    below.append(child)
        frontier = below
    return found
