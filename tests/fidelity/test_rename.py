"""Renaming locals preserves behaviour: proved by running (Python), compiling and running (Java,
C) the original next to its renamed variants, and by the scope cases a rename must not touch."""

from __future__ import annotations

import random
import shutil
import subprocess
import textwrap

import pytest

from codistill.fidelity.code import parses
from codistill.fidelity.relations import get_relation, relation_names
from codistill.fidelity.relations.rename import (
    RenameError,
    identifier_tokens,
    is_usable_name,
    local_identifiers,
    rename_identifiers,
    rename_target,
)

# --- Python: exec original and renamed, compare on several inputs ---------------------------

PY_PROGRAM = textwrap.dedent(
    '''
    import types

    THRESHOLD = 10
    count = 100  # a module-level name shared with a local below


    def summarize(items, scale=2, *extra, **options):
        """Docstring mentioning total and count."""
        total = 0
        count = 0
        for index, value in enumerate(items):
            if (doubled := value * scale) > THRESHOLD:
                total += doubled + index
            count += 1
        squares = [value * value for value in items if value]
        pairs = {key: value for key, value in zip("abc", items)}

        def helper(value):
            return value + total

        try:
            ratio = total / count
        except ZeroDivisionError as error:
            ratio = type(error).__name__
        holder = types.SimpleNamespace(count=count)
        holder.count += 1
        label = f"{total}:{ratio!r}:{count:>{scale}}"
        scaler = lambda v, w=scale: v * w  # noqa: E731
        ordered = sorted(items, key=lambda item: -item)
        return (total, count, squares, pairs, helper(1), ratio, holder.count, label,
                scaler(3), ordered, extra, options)


    def module_count():
        return count
    '''
)

PY_INPUTS = [((), {}), (([1, 2, 3],), {}), (([5, 0, 7, 9], 3, "x"), {"flag": True}), (([],), {})]


def _run_python(source: str) -> list:
    namespace: dict = {}
    exec(compile(source, "<fixture>", "exec"), namespace)
    calls = [namespace["summarize"](*args or ([4],), **kwargs) for args, kwargs in PY_INPUTS]
    return [*calls, namespace["module_count"]()]


def test_python_locals_are_the_function_locals_only():
    assert local_identifiers(PY_PROGRAM, "python") == [
        "items",
        "scale",
        "extra",
        "options",
        "total",
        "count",
        "index",
        "value",
        "doubled",
        "squares",
        "pairs",
        "key",
        "ratio",
        "error",
        "holder",
        "label",
        "scaler",
        "v",
        "w",
        "ordered",
        "item",
    ]


@pytest.mark.parametrize("relation", ["rename_placeholder", "rename_synonym"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_python_renamed_program_returns_the_same_results(relation, seed):
    variant = get_relation(relation).apply(PY_PROGRAM, "python", random.Random(seed))
    assert variant is not None and variant.code != PY_PROGRAM
    assert set(variant.renames) == set(local_identifiers(PY_PROGRAM, "python"))
    assert _run_python(variant.code) == _run_python(PY_PROGRAM)


def test_python_attribute_kwarg_module_name_and_strings_are_untouched():
    out = rename_identifiers(PY_PROGRAM, "python", {"count": "tally", "key": "k2"})
    assert "types.SimpleNamespace(count=tally)" in out
    assert "holder.count += 1" in out
    assert "sorted(items, key=lambda item: -item)" in out  # the kwarg, not the local key
    assert "{k2: value for k2, value in" in out
    assert "count = 100" in out and "return count\n" in out  # module level and its user
    assert "mentioning total and count" in out
    assert "{tally:>{scale}}" in out  # f-string interpolation is code


def test_python_nested_function_lambda_and_comprehension_scopes():
    source = textwrap.dedent(
        """
        def outer(x):
            y = [x * 2 for x in x]          # the first iterable is the parameter
            def inner(x):
                return len(x) + len(y)
            f = lambda x: len(x) - 1
            return inner(x) + f(x), y
        """
    )
    out = rename_identifiers(source, "python", {"x": "n", "y": "acc"})
    assert "[n * 2 for n in n]" in out and "lambda n: len(n) - 1" in out
    for arg in ([1, 2], [], [7]):
        a: dict = {}
        b: dict = {}
        exec(source, a)
        exec(out, b)
        assert a["outer"](arg) == b["outer"](arg)


def test_python_global_nonlocal_class_body_imports_and_dynamic_scopes_are_never_renamed():
    source = textwrap.dedent(
        """
        import os as system
        G = 0
        class Box:
            size = 3
            def grow(self, by):
                step = by * self.size
                return step
        def bump():
            global G
            G += 1
            counter = 0
            def inc():
                nonlocal counter
                counter += 1
            return counter
        def introspect(a):
            b = a
            return locals()
        def recurse(n):
            return recurse(n=n - 1) if n else 0
        """
    )
    names = local_identifiers(source, "python")
    assert names == ["by", "step"]
    for refused in ("G", "counter", "size", "system", "a", "b", "n", "self", "Box", "grow"):
        with pytest.raises(RenameError):
            rename_identifiers(source, "python", {refused: "fresh"})


def test_python_indented_method_is_parsed_inside_a_class():
    method = (
        "    def area(self, width, height):\n"
        "        result = width * height\n"
        "        return result\n"
    )
    assert local_identifiers(method, "python") == ["width", "height", "result"]
    out = rename_identifiers(method, "python", {"result": "out"})
    assert out == method.replace("result", "out")


def test_new_names_that_collide_or_are_reserved_are_refused():
    cases = {
        "count": "total",  # another local
        "total": "THRESHOLD",  # a module-level name
        "index": "types",  # an imported module
        "value": "len",  # a builtin
        "ratio": "class",  # a keyword
        "label": "match",  # a soft keyword
        "items": "2items",  # not an identifier
        "extra": "__hidden",  # reserved prefix
        "holder": "helper",  # a nested function's name
    }
    for old, new in cases.items():
        with pytest.raises(RenameError):
            rename_identifiers(PY_PROGRAM, "python", {old: new})
    with pytest.raises(RenameError, match="both become"):
        rename_identifiers(PY_PROGRAM, "python", {"total": "fresh", "count": "fresh"})
    with pytest.raises(RenameError, match="not a renameable"):
        rename_identifiers(PY_PROGRAM, "python", {"summarize": "fresh"})
    assert not is_usable_name("print", "python") and is_usable_name("print", "java")
    assert "THRESHOLD" in identifier_tokens(PY_PROGRAM, "python")


# --- Java: compile and run the original and its variants in one javac + one java -------------

JAVA_MAIN = """
public class Main {
    private int count = 100;
    static int total = 7;

    int count() { return count; }

    public String run(int[] values, String text) {
        int count = 0;
        int result = 0;
        for (int value : values) {
            count++;
            result += value;
        }
        this.count += count;
        java.util.function.IntBinaryOperator add = (a, b) -> a + b;
        java.util.function.IntUnaryOperator twice = x -> x * 2;
        StringBuilder out = new StringBuilder();
        try (java.io.StringReader reader = new java.io.StringReader(text)) {
            out.append((char) reader.read());
        } catch (java.io.IOException error) {
            out.append(error.getMessage());
        }
        outer:
        for (int i = 0; i < 3; i++) {
            for (int j = 0; j < 3; j++) {
                if (i * j == 2) break outer;
                result += i + j;
            }
        }
        Object boxed = text;
        if (boxed instanceof String s && !s.isEmpty()) result += s.length();
        Runnable task = new Runnable() {
            int count = 5;
            public void run() { count++; total += count; }
        };
        task.run();
        switch (count) {
            case 0: int zero = 1; result += zero; break;
            default: result += add.applyAsInt(count, twice.applyAsInt(result));
        }
        return result + ":" + count + ":" + this.count + ":" + count() + ":" + total + ":" + out;
    }

    public static void main(String[] args) {
        System.out.println(new Main().run(new int[] {3, 1, 4}, "hi"));
        System.out.println(new Main().run(new int[] {}, "x"));
    }
}
"""

JAVA_BARE = """public static int sumPositive(int[] numbers, int limit) {
    int sum = 0;
    for (int n : numbers) if (n > 0 && sum < limit) sum += n;
    return sum;
}"""


def test_java_locals_exclude_fields_methods_labels_and_anonymous_class_fields():
    assert local_identifiers(JAVA_MAIN, "java") == [
        "values",
        "text",
        "result",
        "value",
        "add",
        "a",
        "b",
        "twice",
        "x",
        "out",
        "reader",
        "error",
        "i",
        "j",
        "boxed",
        "s",
        "task",
        "zero",
        "args",
    ]
    # ``count`` is a local of run() but the anonymous class's field ``count`` is used inside
    # run() too: too subtle to rename, so it is blocked.
    with pytest.raises(RenameError):
        rename_identifiers(JAVA_MAIN, "java", {"count": "n"})


def test_java_field_with_the_same_name_as_a_local_is_untouched():
    source = """class Counter {
    int count;
    int count() { return count; }
    void add(int by) { int count = by * 2; this.count += count; }
}"""
    out = rename_identifiers(source, "java", {"count": "delta", "by": "step"})
    assert (
        out
        == """class Counter {
    int count;
    int count() { return count; }
    void add(int step) { int delta = step * 2; this.count += delta; }
}"""
    )


def test_java_keywords_java_lang_names_and_collisions_are_refused():
    for new in ("int", "var", "String", "System", "Integer", "_", "out", "Main", "total", "1x"):
        with pytest.raises(RenameError):
            rename_identifiers(JAVA_MAIN, "java", {"result": new})


@pytest.mark.skipif(shutil.which("javac") is None or shutil.which("java") is None, reason="no JDK")
def test_java_renamed_class_and_bare_method_compile_and_behave_the_same(tmp_path):
    rng = random.Random(3)
    placeholder = get_relation("rename_placeholder").apply(JAVA_MAIN, "java", rng)
    synonym = get_relation("rename_synonym").apply(JAVA_MAIN, "java", rng)
    bare = get_relation("rename_synonym").apply(JAVA_BARE, "java", rng)
    assert placeholder and synonym and bare
    assert "this.count += " in synonym.code and "int count() { return count; }" in synonym.code
    sources = {"orig": JAVA_MAIN, "ph": placeholder.code, "syn": synonym.code}
    files = []
    for package, code in sources.items():
        path = tmp_path / package / "Main.java"  # a public class needs its own file name
        path.parent.mkdir()
        path.write_text(f"package {package};\n{code}")
        files.append(str(path))
    for name, method in (("BareOrig", JAVA_BARE), ("BareNew", bare.code)):
        path = tmp_path / f"{name}.java"
        path.write_text(f"package bare;\npublic class {name} {{\n{method}\n}}\n")
        files.append(str(path))
    runner = tmp_path / "Runner.java"
    runner.write_text(
        """public class Runner { public static void main(String[] a) {
    orig.Main.main(a); ph.Main.main(a); syn.Main.main(a);
    int[] xs = {4, -2, 9, 1};
    System.out.println(bare.BareOrig.sumPositive(xs, 10) + " " + bare.BareNew.sumPositive(xs, 10));
} }"""
    )
    files.append(str(runner))
    out_dir = tmp_path / "classes"
    subprocess.run(["javac", "-d", str(out_dir), *files], check=True, capture_output=True)
    result = subprocess.run(
        ["java", "-cp", str(out_dir), "Runner"], check=True, capture_output=True, text=True
    )
    lines = result.stdout.splitlines()
    assert len(lines) == 7
    assert lines[0:2] == lines[2:4] == lines[4:6]
    left, right = lines[6].split()
    assert left == right


# --- C: gcc the original and the renamed program, compare stdout ----------------------------

C_PROGRAM = r"""
#include <stdio.h>
#include <string.h>

#define SCALE 3
#define TWICE(v) ((v) * 2)

struct stats { int count; int total; };

static int compare(const void *a, const void *b) { return *(const int *)a - *(const int *)b; }

static int summarize(struct stats *p, const int *values, int n,
                     int (*cmp)(const void *, const void *), char label[])
{
    int count = 0, total = 0, *cursor = NULL, buffer[8] = {0};
    struct stats local = { .count = 1, .total = 2 };
    for (int i = 0; i < n && i < 8; i++) {
        buffer[i] = values[i];
        count++;
        total += TWICE(values[i]) * SCALE;
    }
    cursor = &buffer[0];
    p->count = count;
    p->total = total + local.count + local.total;
    if (n > 1 && cmp(&buffer[0], &buffer[1]) > 0) goto count;
    total += *cursor;
count:
    { int count = 40; total += count; }
    return total + (int)strlen(label);
}

int main(void)
{
    struct stats s = {0, 0};
    int data[] = {5, 3, 8};
    char name[] = "abc";
    int r = summarize(&s, data, 3, compare, name);
    printf("%d %d %d\n", r, s.count, s.total);
    r = summarize(&s, data + 1, 1, compare, name);
    printf("%d %d %d\n", r, s.count, s.total);
    return 0;
}
"""

DEVIGN_LIKE = r"""static av_cold int decode_init(AVCodecContext *avctx)
{
    MyContext *s = avctx->priv_data;
    int i, ret;
    DECLARE_ALIGNED(16, uint8_t, scratch)[64];
    FFSWAP(int, s->a, s->b);
    if ((ret = ff_init(&s->dsp)) < 0)
        return ret;
    for (i = 0; i < 64; i++)
        s->table[i] = scratch[i] + FFMIN(i, 3);
    return 0;
}"""


def test_c_locals_exclude_members_labels_macros_and_prototype_parameters():
    assert local_identifiers(C_PROGRAM, "c") == [
        "a",
        "b",
        "p",
        "values",
        "n",
        "cmp",
        "label",
        "count",
        "total",
        "cursor",
        "buffer",
        "local",
        "i",
        "s",
        "data",
        "name",
        "r",
    ]


def test_c_member_label_and_designator_with_a_local_name_are_untouched():
    out = rename_identifiers(C_PROGRAM, "c", {"count": "tally", "local": "init"})
    assert "p->count = tally;" in out and ".count = 1" in out and "init.count" in out
    assert "goto count;" in out and "\ncount:\n" in out
    assert "{ int tally = 40; total += tally; }" in out
    assert "struct stats { int count; int total; };" in out


def test_c_unknown_macros_and_error_regions_only_block_their_own_names():
    assert not parses(DEVIGN_LIKE, "c")
    assert local_identifiers(DEVIGN_LIKE, "c") == ["avctx", "s", "i", "ret"]
    out = rename_identifiers(DEVIGN_LIKE, "c", {"ret": "err", "i": "k"})
    assert "if ((err = ff_init(&s->dsp)) < 0)\n        return err;" in out
    assert "FFMIN(k, 3)" in out and "DECLARE_ALIGNED(16, uint8_t, scratch)" in out
    for refused in ("strlen", "size_t", "NULL", "_Reserved", "data"):
        with pytest.raises(RenameError):
            rename_identifiers(C_PROGRAM, "c", {"total": refused})


C_ASM_GOTO = r"""int jump(int x)
{
    int out = x;
    asm goto("jmp %l[out]" : : "r"(x) : : out);
    return 0;
out:
    return out;
}
"""

C_INLINE_ASM = r"""int twice(int a)
{
    int t4, x = a;
    __asm__ volatile("lea (%[x],%[x]), %[t4]\n\t" : [t4] "=&r"(t4) : [x] "r"(x));
    return t4;
}
"""


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_c_inline_asm_operand_symbols_keep_their_template_names(tmp_path):
    # Found on Devign: renaming [t4] with the local t4 left %[t4] in the template undefined.
    out = rename_identifiers(C_INLINE_ASM, "c", {"t4": "doubled", "x": "value", "a": "n"})
    assert '[t4] "=&r"(doubled)' in out and '[x] "r"(value)' in out
    assert "%[t4]" in out and "return doubled;" in out
    goto = C_ASM_GOTO
    renamed = rename_identifiers(goto, "c", {"out": "res"})
    assert ": : out);" in renamed and "\nout:\n    return res;" in renamed
    out += "\n" + renamed
    source = tmp_path / "asm.c"
    source.write_text(out)
    check = subprocess.run(["gcc", "-fsyntax-only", str(source)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr


@pytest.mark.skipif(shutil.which("gcc") is None, reason="no gcc")
def test_c_renamed_program_compiles_and_prints_the_same(tmp_path):
    rng = random.Random(5)
    variants = [
        get_relation("rename_placeholder").apply(C_PROGRAM, "c", rng),
        get_relation("rename_synonym").apply(C_PROGRAM, "c", rng),
    ]
    outputs = []
    for i, code in enumerate([C_PROGRAM] + [v.code for v in variants]):
        source, binary = tmp_path / f"p{i}.c", tmp_path / f"p{i}"
        source.write_text(code)
        subprocess.run(
            ["gcc", "-std=c99", "-Wall", "-Werror", "-o", str(binary), str(source)],
            check=True,
            capture_output=True,
        )
        outputs.append(subprocess.run([str(binary)], capture_output=True, text=True).stdout)
    assert outputs[0] and outputs[0] == outputs[1] == outputs[2]


# --- targets and the relations themselves ---------------------------------------------------


def test_target_renaming_skips_members_methods_strings_comments_and_kwargs():
    mapping = {"expected": "want", "result": "out", "size": "n", "total": "acc"}
    assert (
        rename_target("assertEquals(expected, result.size()); // result", "java", mapping)
        == "assertEquals(want, out.size()); // result"
    )
    assert rename_target('assertEquals("result", size(result))', "java", mapping) == (
        'assertEquals("result", size(out))'
    )
    assert (
        rename_target('self.assertEqual(total, f(total=total, note="total"))', "python", mapping)
        == 'self.assertEqual(acc, f(total=acc, note="total"))'
    )
    assert rename_target("assert p->size == size && s.total", "c", mapping) == (
        "assert p->size == n && s.total"
    )


def test_target_renaming_falls_back_to_tokens_when_the_target_does_not_parse():
    mapping = {"result": "out", "total": "acc"}
    assert rename_target('assertEquals(result, "a(result', "java", mapping) == (
        'assertEquals(out, "a(result'
    )
    assert rename_target("self.assertEqual(obj.total, g(total=total", "python", mapping) == (
        "self.assertEqual(obj.total, g(total=acc"
    )


def test_relations_are_registered_for_all_three_languages():
    for language in ("java", "python", "c"):
        assert {"rename_placeholder", "rename_synonym"} <= set(relation_names(language))


def test_relations_rename_the_target_and_are_deterministic_per_seed():
    target = "assertEquals(6, total);"
    placeholder = get_relation("rename_placeholder").apply(JAVA_BARE, "java", random.Random(0))
    assert placeholder.renames == {"numbers": "var0", "limit": "var1", "sum": "var2", "n": "var3"}
    synonym = get_relation("rename_synonym")
    first = synonym.apply(JAVA_BARE.replace("sum", "total"), "java", random.Random(9), target)
    again = synonym.apply(JAVA_BARE.replace("sum", "total"), "java", random.Random(9), target)
    assert first == again
    assert first.target == f"assertEquals(6, {first.renames['total']});"
    assert all(is_usable_name(new, "java") for new in first.renames.values())


def test_placeholders_skip_names_already_in_the_code_or_target():
    code = "def f(a, var0):\n    var1 = a + var0\n    return var1\n"
    variant = get_relation("rename_placeholder").apply(code, "python", random.Random(0), "var3")
    assert variant.renames == {"a": "var2", "var0": "var4", "var1": "var5"}


def test_relations_return_none_without_locals():
    for relation in ("rename_placeholder", "rename_synonym"):
        rule = get_relation(relation)
        assert rule.apply("x = 1\nprint(x)\n", "python", random.Random(0)) is None
        assert rule.apply("class A { int f() { return 1; } }", "java", random.Random(0)) is None
