"""Indexed modules for focal-method linking: definitions, classes and imports of a source file.

:func:`index_module` parses one module of the code under test (nothing is imported or run) into
a :class:`ModuleInfo`: its functions and methods as :class:`FocalDef` (source included), its
classes and what its import statements bind. The references at the end (:data:`Ref`) are what
an expression of a test resolves to: a module, a class, an instance of one, or a callable.
"""

import ast
import tokenize
import warnings
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from codistill.data.python_focal_names import def_key

FunctionNode = ast.FunctionDef | ast.AsyncFunctionDef
# Re-export chains (package __init__ -> submodule -> ...) and base-class chains are followed
# this far; real ones are 1-3 long, and the bound stops import cycles.
MAX_DEPTH = 6
_PROPERTY_DECORATORS = frozenset({"property", "cached_property"})


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


def function_source(lines: list[str], node: FunctionNode) -> str:
    """A def's source with its decorators, dedented to column 0."""
    first = min([d.lineno for d in node.decorator_list] + [node.lineno])
    indent = leading_ws(lines[node.lineno - 1])
    return "\n".join(dedent(lines[first - 1 : node.end_lineno], indent))


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
class Binding:
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
    imports: dict[str, Binding] = field(default_factory=dict)
    star: list[Binding] = field(default_factory=list)

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


def top_level(body: list[ast.stmt]) -> Iterator[ast.stmt]:
    """Module-level statements, including those inside top-level ``if``/``try`` blocks."""
    for stmt in body:
        yield stmt
        if isinstance(stmt, ast.If):
            yield from top_level(stmt.body + stmt.orelse)
        elif isinstance(stmt, ast.Try | ast.TryStar):
            blocks = stmt.body + stmt.orelse + stmt.finalbody
            blocks += [s for h in stmt.handlers for s in h.body]
            yield from top_level(blocks)


def import_bindings(node: ast.Import | ast.ImportFrom) -> Iterator[tuple[str, Binding]]:
    """``(bound name, binding)`` per alias; ``("*", ...)`` for a star import."""
    if isinstance(node, ast.Import):
        for alias in node.names:
            if alias.asname:
                yield alias.asname, Binding(alias.name)
            else:
                # `import a.b` binds `a`; `a.b` is then reached as an attribute (a submodule).
                yield alias.name.split(".")[0], Binding(alias.name.split(".")[0])
        return
    if node.module == "__future__":
        return
    for alias in node.names:
        if alias.name == "*":  # the module itself; its names are looked up on use
            yield "*", Binding(node.module or "", node.level)
        else:
            yield alias.asname or alias.name, Binding(node.module or "", node.level, alias.name)


def _is_property(node: FunctionNode) -> bool:
    for dec in node.decorator_list:
        name = dec.attr if isinstance(dec, ast.Attribute) else getattr(dec, "id", "")
        if name in _PROPERTY_DECORATORS:
            return True
    return False


def _returns_self(node: FunctionNode) -> bool:
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

    def add(node: FunctionNode, class_name: str | None) -> FocalDef:
        qual = f"{class_name}.{node.name}" if class_name else node.name
        code = function_source(lines, node)
        d = FocalDef(rel, node.name, qual, class_name, code, _is_property(node), dotted)
        info.defs.setdefault(def_key(node.name), []).append(d)
        return d

    for node in top_level(tree.body):
        if isinstance(node, FunctionNode):
            info.functions.setdefault(node.name, add(node, None))
        elif isinstance(node, ast.ClassDef):
            methods: dict[str, FocalDef] = {}
            enter_self = False
            for item in node.body:
                if isinstance(item, FunctionNode):
                    methods.setdefault(item.name, add(item, node.name))
                    if item.name in ("__enter__", "__aenter__"):
                        enter_self = _returns_self(item)
            cls = ClassInfo(node.name, methods, list(node.bases), enter_self)
            info.classes.setdefault(node.name, cls)
        elif isinstance(node, ast.Import | ast.ImportFrom):
            for name, binding in import_bindings(node):
                if name == "*":
                    info.star.append(binding)
                else:
                    info.imports.setdefault(name, binding)
    return info


# -- what an expression refers to -------------------------------------------------------------


@dataclass(frozen=True, eq=False)
class ModuleRef:
    info: ModuleInfo


@dataclass(frozen=True, eq=False)
class ClassRef:
    module: ModuleInfo
    cls: ClassInfo


@dataclass(frozen=True, eq=False)
class InstanceRef:
    module: ModuleInfo
    cls: ClassInfo


@dataclass(frozen=True, eq=False)
class CallableRef:
    defn: FocalDef
    via_instance: bool
    owner: str = ""  # the dotted module of the class it was reached through, if any


Ref = ModuleRef | ClassRef | InstanceRef | CallableRef
