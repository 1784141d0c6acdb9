"""One test file's names for focal-method linking: imports, fixtures, locals, ``self.x``.

:class:`TestModuleScope` knows what the module-level names of a test file refer to (through
:class:`~codistill.data.python_focal.FocalLinker`); a function scope adds a test's own
assignments, ``with ... as`` targets, local imports and the ``self.x`` its class sets up, and
resolves the test's calls and property reads to definitions (:class:`ResolvedCall`).
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from codistill.data.python_focal_index import (
    MAX_DEPTH,
    Binding,
    CallableRef,
    ClassRef,
    FocalDef,
    FunctionNode,
    InstanceRef,
    ModuleRef,
    Ref,
    import_bindings,
    top_level,
)
from codistill.data.python_focal_names import module_keys

if TYPE_CHECKING:  # the linker makes scopes; a scope only calls it
    from codistill.data.python_focal import FocalLinker

# Nodes `_walk_body` does not yield: names and constants (read through their parents) and
# expression contexts.
_LEAVES = frozenset({ast.Name, ast.Constant, ast.Load, ast.Store, ast.Del})


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
            class it was reached through (`module_keys`).
    """

    pos: tuple[int, int]
    defn: FocalDef
    kind: str
    modules: tuple[str, ...]


def _is_fixture(node: FunctionNode) -> bool:
    for dec in node.decorator_list:
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("fixture", "yield_fixture"):
            return True
    return False


def _walk_body(node: FunctionNode, nested: bool = False) -> Iterator[ast.AST]:
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
        self.bindings: dict[str, Binding] = {}
        self.star: list[Binding] = []
        for node in top_level(tree.body):
            if isinstance(node, ast.Import | ast.ImportFrom):
                for name, binding in import_bindings(node):
                    if name == "*":
                        self.star.append(binding)
                    else:
                        self.bindings.setdefault(name, binding)
        self.fixtures = {
            n.name: n for n in tree.body if isinstance(n, FunctionNode) and _is_fixture(n)
        }
        self._globals: dict[str, Ref | None] = {}
        self._fixture_refs: dict[str, Ref | None] = {}
        self._class_attrs: dict[ast.ClassDef, dict[str, tuple[_FunctionScope | None, ast.expr]]]
        self._class_attrs = {}
        self._self_refs: dict[tuple[ast.ClassDef, str], Ref | None] = {}

    def global_ref(self, name: str) -> Ref | None:
        """What a module-level name of the test file refers to through its imports."""
        if name not in self._globals:
            found = None
            if name in self.bindings:
                found = self.linker.resolve_binding(self.bindings[name], self.here)
            else:
                for binding in self.star:
                    star = self.linker.resolve_binding(binding, self.here)
                    if isinstance(star, ModuleRef) and (
                        found := self.linker.resolve_attr(star.info, name)
                    ):
                        break
            self._globals[name] = found
        return self._globals[name]

    def imports_module_keyed(self, key: str) -> bool:
        """Whether a module-level import of the file resolves into a module ``key`` names."""
        for name in self.bindings:
            ref = self.global_ref(name)
            if isinstance(ref, ModuleRef):
                dotted = ref.info.dotted
            elif isinstance(ref, ClassRef | InstanceRef):
                dotted = ref.module.dotted
            elif isinstance(ref, CallableRef):
                dotted = ref.defn.module
            else:
                continue
            if key in module_keys(dotted):
                return True
        return False

    def fixture_ref(self, name: str) -> Ref | None:
        """The instance a fixture of this file returns or yields, if it makes one."""
        if name not in self._fixture_refs:
            self._fixture_refs[name] = None  # a fixture using itself resolves to nothing
            scope = _FunctionScope(self, self.fixtures[name], None)
            found = None
            for pos, value in scope.returns:
                if isinstance(found := scope.ref(value, pos), InstanceRef):
                    break
            self._fixture_refs[name] = found if isinstance(found, InstanceRef) else None
        return self._fixture_refs[name]

    def _attrs_of(self, cls: ast.ClassDef) -> dict[str, tuple[_FunctionScope | None, ast.expr]]:
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
                if not isinstance(item, FunctionNode):
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

    def self_attr_ref(self, cls: ast.ClassDef, attr: str, depth: int) -> Ref | None:
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

    def calls(self, node: FunctionNode, test_class: ast.ClassDef | None) -> list[ResolvedCall]:
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
        node: FunctionNode,
        test_class: ast.ClassDef | None,
        nested: bool = False,
    ) -> None:
        self.module = module
        self.node = node
        self.test_class = test_class
        self.assigns: dict[str, list[_Assigned]] = {}
        self.imports: dict[str, Binding] = {}
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
                for name, binding in import_bindings(sub):
                    if name != "*":
                        self.imports.setdefault(name, binding)
            elif isinstance(sub, ast.Return | ast.Yield) and sub.value is not None:
                self.returns.append((_pos(sub), sub.value))
        for entries in self.assigns.values():
            entries.sort(key=lambda e: e[0])
        args = node.args
        self.params = {a.arg for a in args.posonlyargs + args.args + args.kwonlyargs}
        self._imported: dict[str, Ref | None] = {}

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

    def _local_ref(self, key: str, pos: tuple[int, int], depth: int) -> tuple[bool, Ref | None]:
        """``(found, ref)`` for the last local assignment to ``key`` before ``pos``."""
        before = [e for e in self.assigns.get(key, ()) if e[0] < pos]
        if not before:
            return False, None
        at, expr, how = before[-1]
        ref = self.ref(expr, at, depth + 1)
        if how == "annotation":
            return True, InstanceRef(ref.module, ref.cls) if isinstance(ref, ClassRef) else None
        if how == "with":
            linker = self.module.linker
            ok = isinstance(ref, InstanceRef) and linker.enters_self(ref.module, ref.cls)
            return True, ref if ok else None
        return True, ref

    def _name_ref(self, name: str, pos: tuple[int, int], depth: int) -> Ref | None:
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

    def ref(self, expr: ast.expr, pos: tuple[int, int], depth: int = 0) -> Ref | None:
        """What ``expr`` evaluated at ``pos`` refers to, or None when it cannot be told."""
        if depth > MAX_DEPTH:
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
            if isinstance(callee, ClassRef):
                return InstanceRef(callee.module, callee.cls)
        return None

    def _attr_ref(self, owner: Ref | None, attr: str) -> Ref | None:
        linker = self.module.linker
        if isinstance(owner, ModuleRef):
            return linker.resolve_attr(owner.info, attr)
        if isinstance(owner, ClassRef | InstanceRef):
            if found := linker.find_method(owner.module, owner.cls, attr):
                via_instance = isinstance(owner, InstanceRef)
                return CallableRef(found, via_instance, owner.module.dotted)
        return None

    def resolved_calls(self) -> list[ResolvedCall]:
        """Calls and property reads of the body that resolve, in source order."""
        out: list[ResolvedCall] = []
        linker = self.module.linker
        for sub in self.reads:
            pos = _pos(sub)
            if isinstance(sub, ast.Call):
                ref = self.ref(sub.func, pos)
                if isinstance(ref, CallableRef) and not ref.defn.is_property:
                    kind = "import_instance" if ref.via_instance else "import_call"
                    keys = module_keys(ref.defn.module, ref.owner)
                    out.append(ResolvedCall(pos, ref.defn, kind, keys))
                elif isinstance(ref, ClassRef):
                    init = linker.find_method(ref.module, ref.cls, "__init__")
                    if init is not None:
                        kind = "import_constructor"
                        keys = module_keys(init.module, ref.module.dotted)
                        out.append(ResolvedCall(pos, init, kind, keys))
            elif not isinstance(sub.value, ast.Name) or sub.value.id not in ("self", "cls"):
                # A property read on an instance runs the property's method like a call would.
                owner = self.ref(sub.value, pos)
                if isinstance(owner, InstanceRef):
                    found = linker.find_method(owner.module, owner.cls, sub.attr)
                    if found is not None and found.is_property:
                        kind = "import_instance"
                        keys = module_keys(found.module, owner.module.dotted)
                        out.append(ResolvedCall(pos, found, kind, keys))
        out.sort(key=lambda c: c.pos)
        return out
