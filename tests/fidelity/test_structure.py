"""Structural relations preserve behaviour: variants are executed and compared to the originals.

Python fixtures run in-process; every C fixture and variant is linked into one program (one gcc
call) and every Java one into one source file (one javac call, one JVM): the JVM is slow.
"""

from __future__ import annotations

import io
import random
import shutil
from contextlib import redirect_stdout

import pytest

from codistill.fidelity.code import find, parse, parse_shared, parses, walk
from codistill.fidelity.relations import get_relation
from codistill.fidelity.relations._lib.spans import Spans
from tests.fidelity.compiled import run_c, run_java

LANGUAGES = ("java", "python", "c")
INPUTS = (-2, 0, 1, 3, 7)
# Python variants are cheap to run: sample more seeds so (nearly) every site is exercised.
SEEDS = {"python": range(300), "java": range(120), "c": range(120)}
RELATIONS = ("dead_code", "loop_exchange", "if_else_swap", "relational_swap", "statement_swap")

# Each fixture defines `fn(n)`; Java fixtures are class bodies (`static long fn(int n)` plus
# whatever members they need), C fixtures one `long fn(int n)`.
FIXTURES: dict[str, dict[str, list[str]]] = {
    "dead_code": {
        "python": [
            '''def fn(n):
    """Docstring stays first."""
    total = 0
    for i in range(n):
        if i % 3 == 0:
            continue
        total += i
    return total
''',
            """def fn(n):
    if n > 2: return n
    x = n * 2
    x += 1
    return x
""",
            "def fn(n):\n\tt = 0\n\tfor i in range(n):\n\t\tt += i\n\treturn t\n",  # tabs
        ],
        "java": [
            """static long fn(int n) {
    long s = 0;
    for (int i = 0; i < n; i++) {
        if (i == 2) continue;
        s += i;
    }
    if (n > 5) {
        return -s;
    }
    return s;
}""",
            """static class Box {
    int v;
    Box(int n) { super(); v = n; }
    void noop() {}
}
static long fn(int n) { Box b = new Box(n); b.noop(); return b.v * 3; }""",
        ],
        "c": [
            """long fn(int n) {
    long s = 0;
    int i;
    for (i = 0; i < n; i++) {
        if (i == 2) continue;
        s += i;
    }
    switch (n) { case 1: s += 100; break; default: break; }
    return s;
}""",
        ],
    },
    "loop_exchange": {
        "python": [
            """def fn(n):
    out = []
    for i in range(n):  # comment stays
        if i == 2:
            continue
        if i == 5:
            break
        out.append(i)
    k = n
    while k > 0:
        k -= 2
        if k == 1:
            continue
        out.append(k)
    return out
""",
            """def fn(n):
    acc = 0
    for a, (b, c) in [(i, (i * i, 1)) for i in range(n)]:
        acc += a * b + c
    for x in 1, 2, 3:
        acc += x
    for ch in (d for d in str(n)):
        acc += ord(ch)
    return acc
""",
            "def fn(n):\n\tt = 0\n\tfor i in range(n):\n\t\tt += i\n\twhile t > 9:\n\t\tt //= 2\n"
            "\treturn t\n",  # tab indentation
            """def fn(n):
    it = iter([1, 2])
    s = 0
    for v in range(n):
        s += next(it)
    return s
""",
        ],
        "java": [
            """static int c = 0;
static long fn(int n) {
    long s = 0;
    for (int i = 0, j = n; i < j; i++, j--) { s += i * j; }
    for (int i = 0; i < n; i++) { if (i % 2 == 0) continue; s += i; }
    int k = 0;
    for (;;) { if (k > n) break; k += 2; }
    for (k = 0; k < 3; k++) s += k;
    c = 0;
    for (int i = 0; i < n; c++) { int c = 50; s += c; i++; }
    while (n > 0) { n -= 3; s++; }
    return s + k + c;
}""",
        ],
        "c": [
            """long fn(int n) {
    long s = 0;
    int k = 0;
    for (int i = 0, j = n; i < j; i++, j--) { s += i * j; }
    for (int i = 0; i < n; i++) { if (i % 2 == 0) continue; s += i; }
    for (;;) { if (k > n) break; k += 2; }
    for (k = 0; k < 3; k++) s += k;
    for (int i = 0; i < n; i++) { int i = 50; s += i; }
    while (n > 0) { n -= 3; s++; }
    return s + k;
}""",
        ],
    },
    "if_else_swap": {
        "python": [
            """def fn(n):
    if n % 2 == 0:
        r = "even"
    else:
        r = "odd"
    if n > 3: s = 1
    else: s = -1
    if(m := n * 2) > 4:
        s += m
    else:
        s -= m
    return r, s
""",
        ],
        "java": [
            """static long fn(int n) {
    long r;
    if (n % 2 == 0) r = 1; else r = 2;
    if (n > 3) { r *= 10; } else if (n > 0) { r *= 100; }
    if (n < 0) r = -r; else if (n == 0) r = 7; else r += 1;
    return r;
}""",
        ],
        "c": [
            """long fn(int n) {
    long r;
    if (n % 2 == 0) r = 1; else r = 2;
    if (n > 3) { r *= 10; } else if (n > 0) { r *= 100; }
    if (n < 0) r = -r; else if (n == 0) r = 7; else r += 1;
    return r;
}""",
        ],
    },
    "relational_swap": {
        "python": [
            """def fn(n):
    a = [1, 5, 9]
    c = 0
    if n < 3: c += 1
    if a[1] >= n: c += 2
    if n + 1 != 4: c += 4
    if 2 * n == n + 3: c += 8
    return c, n <= 0, n > -1
""",
        ],
        "java": [
            """static long fn(int n) {
    int[] a = {3, 1, 4};
    long c = 0;
    if (n < a.length) c += 1;
    if (a[0] <= n) c += 2;
    if (n * 2 == n + 3) c += 4;
    boolean b = n != 1;
    if (b == (n > 2)) c += 8;
    if (n == 1 == b) c += 16;
    return c;
}""",
        ],
        "c": [
            """long fn(int n) {
    int a[3] = {3, 1, 4};
    long c = 0;
    if (n < 3) c += 1;
    if (a[0] <= n) c += 2;
    if (n * 2 == n + 3) c += 4;
    if (n < 2 == (n > 0)) c += 8;
    if ((n == 1) == (n >= 1)) c += 16;
    return c;
}""",
        ],
    },
    "statement_swap": {
        "python": [
            """def fn(n):
    a = n + 1
    b = 2
    c = a * b
    d = n - 1
    a, b = b, a
    e = 3
    return a, b, c, d, e
""",
            """def fn(n):
    xs = [n]
    q = 10 // (n + 2) if n != -2 else 0
    r = 4
    xs += [q]
    return xs, r
""",
        ],
        "java": [
            """static long fn(int n) {
    int a = n + 1;
    int b = 2;
    long c = a * b;
    int d = n - 1;
    a = d;
    d = 5;
    return a * 1000 + b * 100 + c * 10 + d;
}""",
        ],
        "c": [
            """long fn(int n) {
    int a = n + 1;
    int b = 2;
    long c = a * b;
    int d = n - 1;
    a = d;
    d = 5;
    return a * 1000 + b * 100 + c * 10 + d;
}""",
        ],
    },
}


def _distinct_variants(relation: str, code: str, language: str) -> list[str]:
    found: dict[str, None] = {}
    for seed in SEEDS[language]:
        variant = get_relation(relation).apply(code, language, random.Random(seed))
        if variant is not None:
            found[variant.code] = None
    return list(found)


def _python_behaviour(code: str) -> tuple[list, str, str | None]:
    """Return values (or exception types) on INPUTS, printed output and the docstring."""
    namespace: dict = {}
    out = io.StringIO()
    with redirect_stdout(out):
        exec(compile(code, "<fixture>", "exec"), namespace)
        fn = namespace["fn"]
        results = []
        for x in INPUTS:
            try:
                results.append(("ok", fn(x)))
            except Exception as error:  # the exception type is behaviour too
                results.append(("raise", type(error).__name__))
    return results, out.getvalue(), fn.__doc__


def _programs(language: str) -> dict[str, str]:
    """key -> code for every fixture (``rel:i:orig``) and its variants (``rel:i:v<j>``)."""
    programs = {}
    for relation in RELATIONS:
        for i, code in enumerate(FIXTURES[relation].get(language, [])):
            programs[f"{relation}:{i}:orig"] = code
            for j, variant in enumerate(_distinct_variants(relation, code, language)):
                programs[f"{relation}:{i}:v{j}"] = variant
    return programs


@pytest.fixture(scope="module")
def compiled_outputs(tmp_path_factory) -> dict[str, dict[str, str]]:
    """Outputs of all C and Java fixtures and variants, one compile and one run per language."""
    outputs = {}
    if shutil.which("gcc"):
        outputs["c"] = run_c(_programs("c"), INPUTS, tmp_path_factory.mktemp("c"))
    if shutil.which("javac") and shutil.which("java"):
        outputs["java"] = run_java(_programs("java"), INPUTS, tmp_path_factory.mktemp("java"))
    return outputs


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("relation", RELATIONS)
def test_variants_behave_like_the_original(relation, language, compiled_outputs):
    fixtures = FIXTURES[relation][language]
    if language != "python" and language not in compiled_outputs:
        pytest.skip(f"no {language} toolchain")
    for i, code in enumerate(fixtures):
        variants = _distinct_variants(relation, code, language)
        assert variants, f"{relation} found no site in {language} fixture {i}"
        for j, variant in enumerate(variants):
            assert parses(variant, language), variant
            if language == "python":
                assert _python_behaviour(variant) == _python_behaviour(code), variant
            else:
                outputs = compiled_outputs[language]
                assert outputs[f"{relation}:{i}:v{j}"] == outputs[f"{relation}:{i}:orig"], variant


@pytest.mark.parametrize("language", LANGUAGES)
@pytest.mark.parametrize("relation", RELATIONS)
def test_same_seed_gives_same_variant_and_target_passes_through(relation, language):
    code = FIXTURES[relation][language][0]
    first = get_relation(relation).apply(code, language, random.Random(7), target="t")
    second = get_relation(relation).apply(code, language, random.Random(7), target="t")
    assert first is not None and first == second
    assert first.target == "t" and first.relation == relation and first.language == language


# --- every site is reachable: fixtures with a known number of sites


@pytest.mark.parametrize(
    ("relation", "language", "code", "sites"),
    [
        ("loop_exchange", "python", "for a in b:\n    c = a\nwhile d:\n    d = 0\n", 2),
        ("loop_exchange", "c", "void f(){ for (;;) {} while (x) y(); for (;x;) z(); }", 3),
        ("if_else_swap", "java", "void f(){ if (a) b(); else c(); if (d) {} else {} }", 2),
        ("relational_swap", "python", "x = a < b\ny = c == d\nz = e >= f\n", 3),
        ("statement_swap", "c", "void f(){ int a = 1; int b = 2; int c = 3; }", 2),
        # 3 insertion points x 2 templates
        ("dead_code", "java", "void f(){ a(); b(); return; }", 6),
    ],
)
def test_every_site_is_reachable_over_seeds(relation, language, code, sites):
    found = {
        get_relation(relation).apply(code, language, random.Random(seed)).code
        for seed in range(200)
    }
    assert len(found) == sites


# --- where a relation must not fire


@pytest.mark.parametrize(
    ("relation", "language", "code"),
    [
        ("dead_code", "python", "x = 1\ny = 2\n"),  # no function body
        ("dead_code", "java", "class A { int x = 1; }"),
        ("dead_code", "c", "int x = 1;"),
        ("dead_code", "python", 'def f():\n    """only a docstring"""\n'),
        ("loop_exchange", "python", "for x in y:\n    a = x\nelse:\n    a = 0\n"),
        ("loop_exchange", "python", "while x:\n    x -= 1\nelse:\n    y = 0\n"),
        ("loop_exchange", "python", "async def f():\n    async for x in y:\n        z = x\n"),
        ("loop_exchange", "python", "class A:\n    for x in y:\n        z = x\n"),
        ("loop_exchange", "python", "def f(next):\n    for x in y:\n        z = next\n"),
        ("loop_exchange", "python", "for x.attr in y:\n    z = 1\n"),
        ("loop_exchange", "python", "for x in y: z = x\n"),
        ("loop_exchange", "java", "void f(){ for (int i=0;i<n;i++) { if (a) continue; b(); } }"),
        ("loop_exchange", "c", "void f(){ for (i=0;i<n;i++) switch (i) { case 1: continue; } }"),
        ("loop_exchange", "java", "int f(){ for (int i=0;i<n;i++) { return i; } return 0; }"),
        ("loop_exchange", "java", "void f(){ L: for (int i=0;i<n;i++) { a(); } }"),
        ("loop_exchange", "java", "void f(){ for (int x : xs) {} do { a(); } while (b); }"),
        ("if_else_swap", "python", "if a:\n    b = 1\nelif c:\n    b = 2\nelse:\n    b = 3\n"),
        ("if_else_swap", "python", "if a: b = 1\nelse:\n    b = 2\n"),  # layouts differ
        ("if_else_swap", "java", "void f(){ if (a) b(); if (c) { d(); } }"),
        ("if_else_swap", "java", "void f(){ if (o instanceof String s) a(s); else b(); }"),
        ("relational_swap", "java", "void f(){ x = g(a) < b; y = i++ < n; z = (k = 3) == m; }"),
        ("relational_swap", "java", "void f(){ x = a[i] < b[j]; y = new A() == b; }"),
        ("relational_swap", "python", "x = a < b < c\ny = (w := 3) < v\nz = f(a) == b\n"),
        ("relational_swap", "python", 'x = a in b\ny = a is not b\nz = f"{a}" == b\n'),
        ("relational_swap", "python", 'x = f"{a<b=}"\n'),
        ("relational_swap", "c", "void f(){ assert(a < b); }"),
        ("relational_swap", "c", "#define N 2 || 1\nint f(int x){ return x < N; }"),
        ("relational_swap", "c", "#if A < B\nint x;\n#endif\n"),
        ("statement_swap", "python", "a = 1\nb = a\n"),
        ("statement_swap", "python", "f()\nx = 1\n"),
        ("statement_swap", "python", "xs += ys\nz = w\n"),  # xs may alias w
        ("statement_swap", "python", "x = 1\ny = a[0]\n"),  # at module level x survives
        ("statement_swap", "python", "def f():\n    try:\n        x = 1\n        y = a[0]\n"),
        ("statement_swap", "python", "class A:\n    x = 1\n    y = 2\n"),
        ("statement_swap", "python", "x: int = 1\ny = 2\n"),
        ("statement_swap", "python", "a, b = c\nd = 1\n"),
        ("statement_swap", "java", "void f(){ x = 1; int y = a[0]; }"),
        ("statement_swap", "java", "void f(){ this.x = 1; y = 2; }"),
        ("statement_swap", "java", "void f(){ x = 1; y = this.x; }"),
        ("statement_swap", "java", "void f(){ g(); x = 1; }"),
        ("statement_swap", "java", "void f(){ i++; j = i; }"),
        ("statement_swap", "c", "void f(){ x = 1; y = *p; }"),
        ("statement_swap", "c", "void f(){ *p = 1; y = 2; }"),
        ("statement_swap", "c", "void f(){ int a; a = 2; }"),
    ],
)
def test_relation_does_not_fire_on_unsafe_or_missing_sites(relation, language, code):
    for seed in range(20):
        assert get_relation(relation).apply(code, language, random.Random(seed)) is None


def test_python_statement_swap_may_reorder_raising_code_inside_a_plain_function():
    code = "def f(a):\n    x = 1\n    y = a[0]\n    return x + y\n"
    variant = get_relation("statement_swap").apply(code, "python", random.Random(0))
    assert variant is not None and "    y = a[0]\n    x = 1\n" in variant.code


def test_loop_exchange_wraps_the_body_when_the_update_name_is_redeclared_in_it():
    code = "void f(){ for (int i = 0; i < n; i++) { int i = 5; s += i; } }"
    variant = get_relation("loop_exchange").apply(code, "c", random.Random(0))
    assert variant.code == (
        "void f(){ { int i = 0; while (i < n) { { int i = 5; s += i; } i++; } } }"
    )


def test_dead_code_never_lands_before_a_super_call_or_in_a_switch_body():
    java = "class A { A() { super(); } }"
    assert get_relation("dead_code").apply(java, "java", random.Random(0)) is None
    c = "void f(int n){ switch (n) { case 1: break; } }"
    for seed in range(20):
        variant = get_relation("dead_code").apply(c, "c", random.Random(seed))
        assert variant.code.startswith("void f(int n){ if (0)")


def test_if_else_swap_braces_an_else_if_that_moves_to_the_then_branch():
    code = "void f(){ if (a) x(); else if (b) y(); }"
    variant = get_relation("if_else_swap").apply(code, "java", random.Random(0))
    assert variant.code == "void f(){ if (!(a)) { if (b) y(); } else x(); }"


def test_relational_swap_parenthesizes_a_moved_same_level_comparison():
    code = "int f(){ return a == b == c; }"
    variant = get_relation("relational_swap").apply(code, "c", random.Random(0))
    assert variant.code in ("int f(){ return c == (a == b); }", "int f(){ return b == a == c; }")
    codes = {
        get_relation("relational_swap").apply(code, "c", random.Random(s)).code for s in range(20)
    }
    assert "int f(){ return c == (a == b); }" in codes


# --------------------------------------------------------------------------- shared helpers

_BROKEN = {  # error recovery: ERROR and MISSING nodes must be found like any other node
    "java": "class A { void f() { int x = ; if (x > 1 { g(x, 2); } } }",
    "python": "def f(n):\n    return n +\n    if n not in (1, 2): pass\n",
    "c": '#define M(a) (a + \\\n  1)\nint f(int n) { return M(n) + "s" 1; }\n#if X > 1\n',
}


@pytest.mark.parametrize("language", LANGUAGES)
def test_find_yields_what_a_walk_yields_in_the_same_order(language):
    codes = [code for fixtures in FIXTURES.values() for code in fixtures.get(language, [])]
    for code in [*codes, _BROKEN[language]]:
        root = parse(code, language).root_node
        nodes = list(walk(root))
        kinds = {n.type for n in nodes}
        for node in (root, *nodes[1::7]):  # the root and subtrees
            for kind in kinds:
                expected = [n.id for n in walk(node) if n.type == kind]
                assert [n.id for n in find(node, frozenset({kind}), language)] == expected
        mixed = frozenset(sorted(kinds)[::3]) | {"no_such_node_type"}
        assert [n.id for n in find(root, mixed, language)] == [
            n.id for n in nodes if n.type in mixed
        ]
    assert find(root, frozenset({"no_such_node_type"}), language) == []


def test_parse_shared_parses_each_input_once():
    code = "int f(int n) { return n + 1; }"
    assert parse_shared(code, "c") is parse_shared(code, "c")
    assert parse_shared(code, "c").root_node.text == parse(code, "c").root_node.text
    assert parse_shared(code, "java") is not parse_shared(code, "c")


def test_spans_hold_the_positions_strictly_inside_an_interval():
    spans = Spans([(10, 20), (12, 15), (20, 25), (30, 30), (40, 50), (45, 60)])
    inside = {pos for pos in range(70) if pos in spans}
    assert inside == set(range(11, 20)) | set(range(21, 25)) | set(range(41, 60))
    assert not Spans([]) and 0 not in Spans([])
