"""The formatting relation changes layout only: same tokens, same behaviour when executed.

C and Java variants are linked into one program per language (one compile, one run).
"""

from __future__ import annotations

import io
import random
import re
import shutil
from contextlib import redirect_stdout

import pytest

from codistill.fidelity.code import parse, parses, walk
from codistill.fidelity.relations import get_relation
from codistill.fidelity.relations._lib.c_macros import (
    CTextSensitivity,
    c_macros,
    c_text_sensitive,
)
from tests.fidelity.compiled import run_c, run_java

LANGUAGES = ("java", "python", "c")
INPUTS = (-2, 0, 1, 3, 7)
# Python variants are cheap to run: sample more seeds so (nearly) every site is exercised.
SEEDS = {"python": range(300), "java": range(120), "c": range(120)}
COMMENTS = {"comment", "line_comment", "block_comment"}

FIXTURES = {
    "python": [
        '''def fn(n):
    """Doc: a+b, c."""
    label = "a + b, c"
    values = [n, n+1, n * 2]
    total = sum(values)

    if total > 3 and n != 0:
        total = total - 1
    y = n + \\
        1
    msg = f"{total=}, {n+1=}"
    return label, values, total, msg, n ** 2 % 5, y
''',
        """def fn(n):
    # leading comment
    a,b = n,n*2


    return a-b, (a, b)
""",
    ],
    "java": [
        '''static long fn(int n) {
    String s = "a + b, c";
    String block = """
        x + y,
          z
        """;
    int[] v = {n, n+1, n * 2};
    long t = v[0] + v[1] - -v[2];

    /* a, b + c */
    char c = ',';
    return t * 31 + s.hashCode() + block.hashCode() + c;
}''',
    ],
    "c": [
        """#define TWICE(x) ((x) + \\
    (x))
#define STR(x) #x
long fn(int n) {
    const char *s = "a + b, c";
    const char *t = STR(n+1);
    int v[3] = {n, n+1, n * 2};

    long r = v[0] + v[1] - -v[2] + TWICE(n);
    r = r * 31 + s[2] + t[1];
    return r + 0x1e - 1;
}""",
    ],
}


def _variants(code: str, language: str) -> list[str]:
    found: dict[str, None] = {}
    for seed in SEEDS[language]:
        variant = get_relation("formatting").apply(code, language, random.Random(seed))
        if variant is not None:
            found[variant.code] = None
    return list(found)


def _tokens(code: str, language: str) -> list[tuple[str, str]]:
    """Leaf tokens (type, text), comments aside: what formatting must leave unchanged."""
    return [
        (n.type, n.text.decode("utf-8"))
        for n in walk(parse(code, language).root_node)
        if n.child_count == 0 and n.type not in COMMENTS and n.text
    ]


def _python_behaviour(code: str) -> tuple[list, str | None]:
    namespace: dict = {}
    with redirect_stdout(io.StringIO()):
        exec(compile(code, "<fixture>", "exec"), namespace)
    results = []
    for x in INPUTS:
        try:
            results.append(namespace["fn"](x))
        except Exception as error:
            results.append(type(error).__name__)
    return results, namespace["fn"].__doc__


def _programs(language: str) -> dict[str, str]:
    programs = {}
    for i, code in enumerate(FIXTURES[language]):
        programs[f"{i}:orig"] = code
        for j, variant in enumerate(_variants(code, language)):
            programs[f"{i}:v{j}"] = variant
    return programs


@pytest.fixture(scope="module")
def compiled_outputs(tmp_path_factory) -> dict[str, dict[str, str]]:
    outputs = {}
    if shutil.which("gcc"):
        outputs["c"] = run_c(_programs("c"), INPUTS, tmp_path_factory.mktemp("c"))
    if shutil.which("javac") and shutil.which("java"):
        outputs["java"] = run_java(_programs("java"), INPUTS, tmp_path_factory.mktemp("java"))
    return outputs


@pytest.mark.parametrize("language", LANGUAGES)
def test_variants_behave_like_the_original(language, compiled_outputs):
    if language != "python" and language not in compiled_outputs:
        pytest.skip(f"no {language} toolchain")
    for i, code in enumerate(FIXTURES[language]):
        variants = _variants(code, language)
        assert len(variants) > 10
        for j, variant in enumerate(variants):
            if language == "python":
                assert _python_behaviour(variant) == _python_behaviour(code), variant
            else:
                outputs = compiled_outputs[language]
                assert outputs[f"{i}:v{j}"] == outputs[f"{i}:orig"], variant


@pytest.mark.parametrize("language", LANGUAGES)
def test_variants_parse_and_keep_every_token(language):
    for code in FIXTURES[language]:
        for variant in _variants(code, language):
            assert parses(variant, language)
            assert _tokens(variant, language) == _tokens(code, language), variant


def test_python_indentation_is_never_touched():
    def indents(code: str) -> list[str]:
        lines = [line for line in code.splitlines() if line.strip()]
        return [re.match(r"[ \t]*", line).group() for line in lines if line.strip()[0] != "#"]

    for code in FIXTURES["python"]:
        for variant in _variants(code, "python"):
            assert indents(variant) == indents(code), variant


@pytest.mark.parametrize(
    ("language", "untouched"),
    [
        ("python", ['"a + b, c"', 'f"{total=}, {n+1=}"', '"""Doc: a+b, c."""', "n + \\\n"]),
        ("java", ['"a + b, c"', '"""\n        x + y,\n          z\n        """', "','"]),
        ("java", ["/* a, b + c */", "- -v[2]"]),
        ("c", ["#define TWICE(x) ((x) + \\\n    (x))\n#define STR(x) #x\n", "STR(n+1)"]),
        ("c", ['"a + b, c"', "0x1e - 1", "- -v[2]"]),
    ],
)
def test_literals_directives_and_fusable_tokens_are_left_alone(language, untouched):
    for code in FIXTURES[language]:
        for variant in _variants(code, language):
            for fragment in untouched:
                assert fragment in variant or fragment not in code, (fragment, variant)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_kind_of_change_is_reachable(language):
    details = {
        get_relation("formatting").apply(code, language, random.Random(seed)).detail
        for code in FIXTURES[language]
        for seed in range(300)
    }
    wanted = ["space around", "tighten", "comma", "blank line before", "drop blank line", "comment"]
    if language != "python":
        wanted.append("reindent")
    for kind in wanted:
        assert any(d.startswith(kind) or kind in d for d in details), (kind, sorted(details))


@pytest.mark.parametrize("language", LANGUAGES)
def test_same_seed_gives_same_variant_and_target_passes_through(language):
    code = FIXTURES[language][0]
    first = get_relation("formatting").apply(code, language, random.Random(3), target="t")
    assert first == get_relation("formatting").apply(code, language, random.Random(3), target="t")
    assert first.target == "t" and first.relation == "formatting"


@pytest.mark.parametrize("language", LANGUAGES)
def test_nothing_to_change_gives_none(language):
    assert get_relation("formatting").apply("", language, random.Random(0)) is None


def test_c_stringified_and_asserted_arguments_keep_their_spelling():
    code = "void f(int a, int b) {\nassert(a<b);\nLOG(a,b);\n}\n"
    for seed in range(50):
        variant = get_relation("formatting").apply(code, "c", random.Random(seed)).code
        assert "assert(a<b);" in variant and "LOG(a,b);" in variant


def test_c_text_sensitivity_of_a_whole_tree_matches_the_per_node_answer():
    code = """#define LOG(x) puts(#x)
#if LEVEL > 1 && defined(X)
int g;
#elif LEVEL<0
int h;
#endif
void f(int a, int b) {
    assert(a<b && f(a, b));
    LOG(a,b);
    FFMIN(a, g(b + 1));
    printf("%d", a + b);
    if (a) { LOG( (a) ); }
}
"""
    root = parse(code, "c").root_node
    functions = c_macros(root)[1]
    sensitive = CTextSensitivity(root, functions)
    answers = [(n.type, sensitive(n)) for n in walk(root)]
    assert answers == [(n.type, c_text_sensitive(n, functions)) for n in walk(root)]
    assert any(flag for _, flag in answers) and not all(flag for _, flag in answers)
