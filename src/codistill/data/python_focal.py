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
"""

import ast
import fnmatch
import os
import tokenize
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

_FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# Modules whose files match these, or that live under these folders, are test code.
_TEST_FILE_PATTERNS = ("test_*.py", "*_test.py", "conftest.py")
_TEST_DIRS = frozenset({"test", "tests", "testing"})
# Folders never searched for packages: installed third-party code, build output, VCS.
_SKIP_DIRS = frozenset(
    {"site-packages", "dist-packages", "node_modules", "build", "dist", "__pycache__"}
)
_DISCOVERY_DEPTH = 3
# Re-export chains (package __init__ -> submodule -> ...) and base-class chains are followed
# this far; real ones are 1-3 long, and the bound stops import cycles.
_MAX_DEPTH = 6
_PROPERTY_DECORATORS = frozenset({"property", "cached_property"})
# Nodes `_walk_body` does not yield: names and constants (read through their parents) and
# expression contexts.
_LEAVES = frozenset({ast.Name, ast.Constant, ast.Load, ast.Store, ast.Del})


# -- source text helpers ----------------------------------------------------------------------


def split_lines(source: str) -> list[str]:
    """Lines as ``ast`` counts them (only ``\\n``, ``\\r\\n`` and ``\\r`` end a line)."""
    # str.splitlines also splits on form feeds and other separators, which would shift every
    # line number after them.
    return source.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def leading_ws(line: str) -> str:
    """The line's indentation."""
    return line[: len(line) - len(line.lstrip(" \t"))]


def dedent(lines: Sequence[str], indent: str) -> list[str]:
    """Remove ``indent`` from the lines that start with it."""
    # Only the def's own indentation is removed; lines that lack it (continuations of
    # triple-quoted strings, blank lines) are kept as they are so string contents survive.
    return [line[len(indent) :] if line.startswith(indent) else line for line in lines]


def function_source(lines: list[str], node: _FunctionNode) -> str:
    """A def's source with its decorators, dedented to column 0."""
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    indent = leading_ws(lines[node.lineno - 1])
    return "\n".join(dedent(lines[first - 1 : node.end_lineno], indent))


# -- test names -------------------------------------------------------------------------------


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
    if any(d in _TEST_DIRS or d.startswith("test_") for d in dirs):
        return True
    return any(fnmatch.fnmatchcase(name, p) for p in _TEST_FILE_PATTERNS)


# -- indexed modules --------------------------------------------------------------------------


@dataclass(frozen=True)
class FocalDef:
    """A function or method of a module under test.

    Attributes:
        path: Path of its file, relative to the source root it was found under.
        name: Its own name (``update``).
        qualname: ``Class.method`` or the function name.
        class_name: The enclosing class, or None for a module-level function.
        code: Its source with decorators, dedented to column 0.
        is_property: Decorated with ``@property`` or ``@cached_property``: read, not called.
        module: The dotted name of its module (``shop.cart``), as far as it is known.
    """

    path: str
    name: str
    qualname: str
    class_name: str | None
    code: str
    is_property: bool = False
    module: str = ""


@dataclass(frozen=True)
class _Binding:
    """What an import statement binds a name to: ``from {level dots}{module} import {name}``."""

    module: str
    level: int = 0
    name: str | None = None  # None: the module itself (``import a.b``, ``import a.b as c``)


@dataclass
class ClassInfo:
    """A class of an indexed module: its methods and its base-class expressions."""

    name: str
    methods: dict[str, FocalDef]
    bases: list[ast.expr]
    enter_returns_self: bool


@dataclass
class ModuleInfo:
    """An indexed module: its definitions, by name and by test-name key, and its imports.

    Attributes:
        path: The file (or, for a namespace package, the folder).
        rel: ``path`` relative to the source root it was found under.
        dotted: The module's dotted name (``shop.cart``).
        package_dir: The folder of a package (submodules live there), else None.
        defs: Functions and methods by `def_key`, for the by-name rules.
        functions: Module-level functions by name.
        classes: Module-level classes by name.
        imports: Names bound by the module's imports.
        star: Modules imported with ``*``.
    """

    path: Path
    rel: str
    dotted: str
    package_dir: Path | None = None
    defs: dict[str, list[FocalDef]] = field(default_factory=dict)
    functions: dict[str, FocalDef] = field(default_factory=dict)
    classes: dict[str, ClassInfo] = field(default_factory=dict)
    imports: dict[str, _Binding] = field(default_factory=dict)
    star: list[_Binding] = field(default_factory=list)

    def lookup(self, key: str, hint: str | None, exact: str | None = None) -> FocalDef | None:
        """The definition with this `def_key` (and exact name if given), best first.

        Preferred: the exact spelling, then a method of the class the test class is named
        after (``hint``), then a module-level function, then the first definition in the file.
        """
        found = self.defs.get(key, [])
        if exact is not None:
            found = [d for d in found if d.name == exact]
        if not found:
            return None

        def rank(d: FocalDef) -> tuple[bool, bool, bool]:
            cls = (d.class_name or "").lower()
            return (def_key(d.name) != d.name.lower(), cls != hint, d.class_name is not None)

        return min(found, key=rank)


def _top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those inside top-level ``if``/``try`` blocks."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from _top_level(stmt.body + stmt.orelse)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            blocks = stmt.body + stmt.orelse + stmt.finalbody
            blocks += [s for h in stmt.handlers for s in h.body]
            yield from _top_level(blocks)


def _import_bindings(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, _Binding]]:
    """``(bound name, binding)`` per alias; ``("*", ...)`` for a star import."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                yield alias.asname, _Binding(alias.name)
            else:
                # `import a.b` binds `a`; `a.b` is then reached as an attribute (a submodule).
                yield alias.name.split(".")[0], _Binding(alias.name.split(".")[0])
        return
    if node.module == "__future__":
        return
    for alias in node.names:
        if alias.name == "*":  # the module itself; its names are looked up on use
            yield "*", _Binding(node.module or "", node.level)
        else:
            yield alias.asname or alias.name, _Binding(node.module or "", node.level, alias.name)


def _is_property(node: _FunctionNode) -> bool:
    for dec in node.decorator_list:
        name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
        if name in _PROPERTY_DECORATORS:
            return True
    return False


def _returns_self(node: _FunctionNode) -> bool:
    return any(
        isinstance(sub, ast.Return) and isinstance(sub.value, ast.Name) and sub.value.id == "self"
        for sub in ast.walk(node)
    )


def dotted_name(rel_parts: Sequence[str]) -> str:
    """``("src", "shop", "cart.py")`` -> ``shop.cart``; ``__init__.py`` is its package."""
    parts = [p.removesuffix(".py") for p in rel_parts]
    if parts and parts[-1] == "__init__":
        parts.pop()
    if len(parts) > 1 and parts[0] == "src":
        parts.pop(0)
    return ".".join(parts)


def index_module(path: Path, rel: str, dotted: str) -> ModuleInfo | None:
    """Parse a module file into a `ModuleInfo`; None if it cannot be read or parsed."""
    try:
        with tokenize.open(path) as f:
            source = f.read()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            tree = ast.parse(source)
    except (OSError, UnicodeDecodeError, SyntaxError, ValueError, RecursionError):
        return None
    lines = split_lines(source)
    is_init = path.name == "__init__.py"
    info = ModuleInfo(
        path=path, rel=rel, dotted=dotted, package_dir=path.parent if is_init else None
    )

    def add(node: _FunctionNode, class_name: str | None) -> FocalDef:
        qual = f"{class_name}.{node.name}" if class_name else node.name
        code = function_source(lines, node)
        d = FocalDef(rel, node.name, qual, class_name, code, _is_property(node), dotted)
        info.defs.setdefault(def_key(node.name), []).append(d)
        return d

    for node in _top_level(tree.body):
        if isinstance(node, _FunctionNode):
            info.functions.setdefault(node.name, add(node, None))
        elif isinstance(node, ast.ClassDef):
            methods: dict[str, FocalDef] = {}
            enter_self = False
            for item in node.body:
                if isinstance(item, _FunctionNode):
                    methods.setdefault(item.name, add(item, node.name))
                    if item.name in ("__enter__", "__aenter__"):
                        enter_self = _returns_self(item)
            cls = ClassInfo(node.name, methods, list(node.bases), enter_self)
            info.classes.setdefault(node.name, cls)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for name, binding in _import_bindings(node):
                if name == "*":
                    info.star.append(binding)
                else:
                    info.imports.setdefault(name, binding)
    return info


# -- what an expression refers to -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class _Module:
    info: ModuleInfo


@dataclass(frozen=True, eq=False)
class _Class:
    module: ModuleInfo
    cls: ClassInfo


@dataclass(frozen=True, eq=False)
class _Instance:
    module: ModuleInfo
    cls: ClassInfo


@dataclass(frozen=True, eq=False)
class _Callable:
    defn: FocalDef
    via_instance: bool
    owner: str = ""  # the dotted module of the class it was reached through, if any


_Ref = _Module | _Class | _Instance | _Callable


@dataclass(frozen=True)
class ResolvedCall:
    """A call (or property read) in a test resolved to the definition it runs.

    Attributes:
        pos: ``(line, column)`` of the call in the test file.
        defn: The function or method.
        kind: ``"import_call"`` (a function, or a method through its class),
            ``"import_instance"`` (a method or property of an instance of an imported class) or
            ``"import_constructor"`` (``C(...)`` -> ``C.__init__``).
        modules: The names a test file may give the module defining it, or the module of the
            class it was reached through (`_module_keys`).
    """

    pos: tuple[int, int]
    defn: FocalDef
    kind: str
    modules: tuple[str, ...]


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
        self._attrs: dict[tuple[Path, str], _Ref | None] = {}

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

    def test_module(self, tree: ast.Module, file: Path | None) -> "TestModuleScope":
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

    def resolve_binding(self, binding: _Binding, here: Path | None, depth: int = 0) -> _Ref | None:
        """What an import binding refers to (``here``: the importing file's folder)."""
        if binding.level:
            module = self._relative_module(here, binding.level, binding.module)
        else:
            module = self.find_module(binding.module)
        if module is None:
            return None
        if binding.name is None:
            return _Module(module)
        return self.resolve_attr(module, binding.name, depth + 1)

    def resolve_attr(self, module: ModuleInfo, name: str, depth: int = 0) -> _Ref | None:
        """``module.name``: a class, function, submodule, or a name the module imports."""
        key = (module.path, name)
        if key in self._attrs:
            return self._attrs[key]
        if depth > _MAX_DEPTH:
            return None
        self._attrs[key] = None  # an import cycle resolves to nothing
        found: _Ref | None = None
        here = module.package_dir or module.path.parent
        if name in module.classes:
            found = _Class(module, module.classes[name])
        elif name in module.functions:
            found = _Callable(module.functions[name], via_instance=False)
        elif name in module.imports:
            found = self.resolve_binding(module.imports[name], here, depth)
        if found is None and module.package_dir is not None:
            root = self._root_of(module.package_dir)
            sub_name = f"{module.dotted}.{name}" if module.dotted else None
            if root is not None and (
                sub := self._module_in(module.package_dir, [name], root, sub_name)
            ):
                found = _Module(sub)
        if found is None and not name.startswith("_"):
            for binding in module.star:
                star = self.resolve_binding(binding, here, depth)
                if isinstance(star, _Module):
                    found = self.resolve_attr(star.info, name, depth + 1)
                    if found is not None:
                        break
        self._attrs[key] = found
        return found

    def _resolve_in_module(self, module: ModuleInfo, expr: ast.expr, depth: int) -> _Ref | None:
        """A base-class expression (``Base``, ``mod.Base``) evaluated in ``module``."""
        if isinstance(expr, ast.Name):
            return self.resolve_attr(module, expr.id, depth + 1)
        if isinstance(expr, ast.Attribute):
            owner = self._resolve_in_module(module, expr.value, depth + 1)
            if isinstance(owner, _Module):
                return self.resolve_attr(owner.info, expr.attr, depth + 1)
        return None

    def find_method(
        self, module: ModuleInfo, cls: ClassInfo, name: str, depth: int = 0
    ) -> FocalDef | None:
        """``cls.name`` defined on the class or inherited from a base that resolves."""
        if name in cls.methods:
            return cls.methods[name]
        if depth > _MAX_DEPTH:
            return None
        for base in cls.bases:
            ref = self._resolve_in_module(module, base, depth)
            if isinstance(ref, _Class) and ref.cls is not cls:
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
                if name.startswith(".") or name in _SKIP_DIRS or name in _TEST_DIRS:
                    continue
                child = Path(entry.path)
                if (child / "__init__.py").is_file():
                    if folder not in found:
                        found.append(folder)
                elif not (child / "pyvenv.cfg").is_file():
                    below.append(child)
        frontier = below
    return found


# -- one test file's scope ----------------------------------------------------------------------


def _is_fixture(node: _FunctionNode) -> bool:
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("fixture", "yield_fixture"):
            return True
    return False


def _walk_body(node: _FunctionNode, nested: bool = False) -> Iterator[ast.AST]:
    """Nodes of a function's body (not its decorators or defaults), in no particular order.

    Names, constants and expression contexts are not yielded.

    Nested classes are never entered; nested functions and lambdas only with ``nested``: a
    test's inner coroutines and callbacks run the code under test, a fixture's do not return
    its value.
    """
    stop = (
        ast.ClassDef
        if nested
        else (ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)
    )
    # ast.iter_child_nodes by hand, without the leaves no caller looks at: this walk runs over
    # every test, and the generic one was most of the linker's cost.
    stack: list[ast.AST] = list(node.body)
    while stack:
        sub = stack.pop()
        yield sub
        if isinstance(sub, stop):
            continue
        for name in sub._fields:
            value = getattr(sub, name, None)
            if isinstance(value, list):
                stack.extend(v for v in value if isinstance(v, ast.AST) and type(v) not in _LEAVES)
            elif isinstance(value, ast.AST) and type(value) not in _LEAVES:
                stack.append(value)


def _pos(node: ast.AST) -> tuple[int, int]:
    return node.lineno, node.col_offset  # type: ignore[attr-defined]


class TestModuleScope:
    """What the names of one test file refer to: its imports and its pytest fixtures."""

    __test__ = False  # not a pytest test class, whatever its name

    def __init__(self, linker: FocalLinker, tree: ast.Module, here: Path | None) -> None:
        self.linker = linker
        self.here = here
        self.bindings: dict[str, _Binding] = {}
        self.star: list[_Binding] = []
        for node in _top_level(tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name, binding in _import_bindings(node):
                    if name == "*":
                        self.star.append(binding)
                    else:
                        self.bindings.setdefault(name, binding)
        self.fixtures = {
            n.name: n for n in tree.body if isinstance(n, _FunctionNode) and _is_fixture(n)
        }
        self._globals: dict[str, _Ref | None] = {}
        self._fixture_refs: dict[str, _Ref | None] = {}
        self._class_attrs: dict[ast.ClassDef, dict[str, tuple[_FunctionScope | None, ast.expr]]]
        self._class_attrs = {}
        self._self_refs: dict[tuple[ast.ClassDef, str], _Ref | None] = {}

    def global_ref(self, name: str) -> _Ref | None:
        """What a module-level name of the test file refers to through its imports."""
        if name not in self._globals:
            found = None
            if name in self.bindings:
                found = self.linker.resolve_binding(self.bindings[name], self.here)
            else:
                for binding in self.star:
                    star = self.linker.resolve_binding(binding, self.here)
                    if isinstance(star, _Module) and (
                        found := self.linker.resolve_attr(star.info, name)
                    ):
                        break
            self._globals[name] = found
        return self._globals[name]

    def imports_module_keyed(self, key: str) -> bool:
        """Whether a module-level import of the file resolves into a module ``key`` names."""
        for name in self.bindings:
            ref = self.global_ref(name)
            if isinstance(ref, _Module):
                dotted = ref.info.dotted
            elif isinstance(ref, _Class | _Instance):
                dotted = ref.module.dotted
            elif isinstance(ref, _Callable):
                dotted = ref.defn.module
            else:
                continue
            if key in _module_keys(dotted):
                return True
        return False

    def fixture_ref(self, name: str) -> _Ref | None:
        """The instance a fixture of this file returns or yields, if it makes one."""
        if name not in self._fixture_refs:
            self._fixture_refs[name] = None  # a fixture using itself resolves to nothing
            scope = _FunctionScope(self, self.fixtures[name], None)
            found = None
            for pos, value in scope.returns:
                if isinstance(found := scope.ref(value, pos), _Instance):
                    break
            self._fixture_refs[name] = found if isinstance(found, _Instance) else None
        return self._fixture_refs[name]

    def _attrs_of(self, cls: ast.ClassDef) -> dict[str, tuple["_FunctionScope | None", ast.expr]]:
        """Class-body names of a test class, then ``self.x`` set up for all its tests.

        Set-up methods are ``setUp``-like (``setUp``, ``setUpClass``, ``asyncSetUp``,
        ``setup_method``, ...), ``__init__`` and fixtures; other tests' assignments are not
        looked at (each test's own ``self.x = ...`` is one of its locals).
        """
        if cls not in self._class_attrs:
            attrs: dict[str, tuple[_FunctionScope | None, ast.expr]] = {}
            for item in cls.body:
                if isinstance(item, ast.Assign):
                    for target in item.targets:
                        if isinstance(target, ast.Name):
                            attrs.setdefault(target.id, (None, item.value))
            for item in cls.body:
                if not isinstance(item, _FunctionNode):
                    continue
                name = item.name.lower()
                if (
                    name.startswith(("setup", "asyncsetup"))
                    or name == "__init__"
                    or (_is_fixture(item))
                ):
                    scope = _FunctionScope(self, item, None)
                    for key, entries in scope.assigns.items():
                        if key.startswith("self."):
                            attrs.setdefault(key[len("self.") :], (scope, entries[0][1]))
            self._class_attrs[cls] = attrs
        return self._class_attrs[cls]

    def self_attr_ref(self, cls: ast.ClassDef, attr: str, depth: int) -> _Ref | None:
        """What ``self.attr`` refers to in the tests of ``cls`` (set once for all of them)."""
        key = (cls, attr)
        if key not in self._self_refs:
            self._self_refs[key] = None  # `self.a = self.a.copy()` resolves to nothing
            found = None
            if (entry := self._attrs_of(cls).get(attr)) is not None:
                scope, expr = entry
                if scope is None:  # a class attribute: `factory = Cart`
                    found = self.global_ref(expr.id) if isinstance(expr, ast.Name) else None
                else:
                    end = (scope.node.end_lineno or scope.node.lineno) + 1
                    found = scope.ref(expr, (end, 0), depth + 1)
            self._self_refs[key] = found
        return self._self_refs[key]

    def calls(self, node: _FunctionNode, test_class: ast.ClassDef | None) -> list[ResolvedCall]:
        """The calls and property reads of a test that resolve to a definition, in source order."""
        return _FunctionScope(self, node, test_class, nested=True).resolved_calls()


_Assigned = tuple[tuple[int, int], ast.expr, str]  # (position, expression, how it binds)


class _FunctionScope:
    """Local names of one function: assignments, ``with ... as``, local imports, ``self.x``.

    One walk of the body collects them, and (for a test) its calls and attribute reads.
    ``self.x = ...`` is kept as the local ``"self.x"``.
    """

    def __init__(
        self,
        module: TestModuleScope,
        node: _FunctionNode,
        test_class: ast.ClassDef | None,
        nested: bool = False,
    ) -> None:
        self.module = module
        self.node = node
        self.test_class = test_class
        self.assigns: dict[str, list[_Assigned]] = {}
        self.imports: dict[str, _Binding] = {}
        self.returns: list[tuple[tuple[int, int], ast.expr]] = []
        self.reads: list[ast.Call | ast.Attribute] = []
        for sub in _walk_body(node, nested=nested):
            if isinstance(sub, ast.Call):
                self.reads.append(sub)
            elif isinstance(sub, ast.Attribute):
                if isinstance(sub.ctx, ast.Load):
                    self.reads.append(sub)
            elif isinstance(sub, ast.Assign):
                for target in sub.targets:
                    self._add(target, _pos(sub), sub.value, "value")
            elif isinstance(sub, ast.AnnAssign):
                self._add(sub.target, _pos(sub), sub.annotation, "annotation")
            elif isinstance(sub, ast.NamedExpr):
                self._add(sub.target, _pos(sub), sub.value, "value")
            elif isinstance(sub, ast.With | ast.AsyncWith):
                for item in sub.items:
                    if item.optional_vars is not None:
                        self._add(item.optional_vars, _pos(sub), item.context_expr, "with")
            elif isinstance(sub, ast.Import | ast.ImportFrom):
                for name, binding in _import_bindings(sub):
                    if name != "*":
                        self.imports.setdefault(name, binding)
            elif isinstance(sub, ast.Return | ast.Yield) and sub.value is not None:
                self.returns.append((_pos(sub), sub.value))
        for entries in self.assigns.values():
            entries.sort(key=lambda e: e[0])
        args = node.args
        self.params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        self._imported: dict[str, _Ref | None] = {}

    def _add(self, target: ast.expr, pos: tuple[int, int], expr: ast.expr, how: str) -> None:
        if isinstance(target, ast.Name):
            key = target.id
        elif (
            isinstance(target, ast.Attribute)
            and isinstance(target.value, ast.Name)
            and target.value.id in ("self", "cls")
        ):
            key = f"self.{target.attr}"
        else:
            return
        self.assigns.setdefault(key, []).append((pos, expr, how))

    def _local_ref(self, key: str, pos: tuple[int, int], depth: int) -> tuple[bool, _Ref | None]:
        """``(found, ref)`` for the last local assignment to ``key`` before ``pos``."""
        before = [e for e in self.assigns.get(key, ()) if e[0] < pos]
        if not before:
            return False, None
        at, expr, how = before[-1]
        ref = self.ref(expr, at, depth + 1)
        if how == "annotation":
            return True, _Instance(ref.module, ref.cls) if isinstance(ref, _Class) else None
        if how == "with":
            linker = self.module.linker
            ok = isinstance(ref, _Instance) and linker.enters_self(ref.module, ref.cls)
            return True, ref if ok else None
        return True, ref

    def _name_ref(self, name: str, pos: tuple[int, int], depth: int) -> _Ref | None:
        found, ref = self._local_ref(name, pos, depth)
        if found:
            return ref
        if name in self.imports:
            if name not in self._imported:
                linker, here = self.module.linker, self.module.here
                self._imported[name] = linker.resolve_binding(self.imports[name], here)
            return self._imported[name]
        if name in self.params:
            if name in self.module.fixtures and self.node.name != name:
                return self.module.fixture_ref(name)
            return None
        return self.module.global_ref(name)

    def ref(self, expr: ast.expr, pos: tuple[int, int], depth: int = 0) -> _Ref | None:
        """What ``expr`` evaluated at ``pos`` refers to, or None when it cannot be told."""
        if depth > _MAX_DEPTH:
            return None
        if isinstance(expr, ast.Name):
            return self._name_ref(expr.id, pos, depth)
        if isinstance(expr, ast.Attribute):
            value = expr.value
            if isinstance(value, ast.Name) and value.id in ("self", "cls"):
                found, ref = self._local_ref(f"self.{expr.attr}", pos, depth)
                if found:
                    return ref
                if self.test_class is not None:
                    return self.module.self_attr_ref(self.test_class, expr.attr, depth)
                return None
            owner = self.ref(value, pos, depth + 1)
            return self._attr_ref(owner, expr.attr)
        if isinstance(expr, ast.Call):
            callee = self.ref(expr.func, pos, depth + 1)
            if isinstance(callee, _Class):
                return _Instance(callee.module, callee.cls)
        return None

    def _attr_ref(self, owner: _Ref | None, attr: str) -> _Ref | None:
        linker = self.module.linker
        if isinstance(owner, _Module):
            return linker.resolve_attr(owner.info, attr)
        if isinstance(owner, _Class | _Instance):
            if found := linker.find_method(owner.module, owner.cls, attr):
                via_instance = isinstance(owner, _Instance)
                return _Callable(found, via_instance, owner.module.dotted)
        return None

    def resolved_calls(self) -> list[ResolvedCall]:
        """Calls and property reads of the body that resolve, in source order."""
        out: list[ResolvedCall] = []
        linker = self.module.linker
        for sub in self.reads:
            pos = _pos(sub)
            if isinstance(sub, ast.Call):
                ref = self.ref(sub.func, pos)
                if isinstance(ref, _Callable) and not ref.defn.is_property:
                    kind = "import_instance" if ref.via_instance else "import_call"
                    keys = _module_keys(ref.defn.module, ref.owner)
                    out.append(ResolvedCall(pos, ref.defn, kind, keys))
                elif isinstance(ref, _Class):
                    init = linker.find_method(ref.module, ref.cls, "__init__")
                    if init is not None:
                        kind = "import_constructor"
                        keys = _module_keys(init.module, ref.module.dotted)
                        out.append(ResolvedCall(pos, init, kind, keys))
            elif not isinstance(sub.value, ast.Name) or sub.value.id not in ("self", "cls"):
                # A property read on an instance runs the property's method like a call would.
                owner = self.ref(sub.value, pos)
                if isinstance(owner, _Instance):
                    found = linker.find_method(owner.module, owner.cls, sub.attr)
                    if found is not None and found.is_property:
                        kind = "import_instance"
                        keys = _module_keys(found.module, owner.module.dotted)
                        out.append(ResolvedCall(pos, found, kind, keys))
        out.sort(key=lambda c: c.pos)
        return out


def _module_keys(*modules: str) -> tuple[str, ...]:
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
