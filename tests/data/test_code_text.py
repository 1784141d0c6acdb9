"""Brace-level helpers for C-family code: literals and comments never count as braces."""

from codistill.data.code_text import (
    blank_comments_and_strings,
    closing_brace,
    defines,
    drop_main,
    enclosing_type,
    function_body,
)

CODE = (
    "int f(int a) {\n"
    '    const char *s = "}{\\"}";  // }\n'
    "    /* { */ char c = '}';\n"
    "    if (a) { return 1; }\n"
    "    return 0;\n"
    "}\n"
)


def test_blanking_keeps_offsets_and_newlines():
    plain = blank_comments_and_strings(CODE)
    assert len(plain) == len(CODE) and plain.count("\n") == CODE.count("\n")
    assert "}{" not in plain and "//" not in plain and "'}'" not in plain


def test_the_closing_brace_skips_literals_and_comments():
    assert closing_brace(CODE, CODE.index("{") + 1) == len(CODE) - 2
    assert closing_brace("int f() { if (x) {", 9) is None


def test_function_body_and_definitions():
    assert function_body(CODE, "f").strip().endswith("return 0;")
    assert function_body("// f(1) {\nint g() {}", "f") is None
    assert defines("public static int f(int a) throws E {", "f")
    assert not defines("if (f(1)) { x(); }", "f")


def test_drop_main_leaves_everything_else():
    code = "int add(int a) { return a; }\nint main(void) {\n  return add(1) - 1;\n}\nint z;\n"
    assert drop_main(code, "c") == "int add(int a) { return a; }\nint z;\n"
    assert drop_main(code, "javascript") == code


def test_the_enclosing_type_is_the_innermost_open_one():
    java = (
        "class Outer {\n  // a record of things\n  static class Inner { void g() {} }\n"
        "  public static void main(String[] a) {}\n}\n"
    )
    assert enclosing_type(java, java.index("main")) == "Outer"
    assert enclosing_type(java, java.index("g()")) == "Inner"
    assert enclosing_type("int x;", 3) is None
