"""Code-generation questions in the sandbox's other languages: JavaScript, C, C++ and Java.

A question in one of these languages is a :class:`~codistill.data.schema.CodegenRecord` whose
``prompt`` is code in that language (a signature to continue, or a comment describing the task,
as MBPP's docstring is for Python) and whose ``tests`` is a test program in that language that
runs after the solution, the layout of MultiPL-E's translations of HumanEval and MBPP:

- JavaScript: top-level code that throws on a wrong answer (``node:assert`` or a ``throw``);
- C and C++: a ``main`` that returns non-zero, calls ``abort``/``exit`` or fails an ``assert``;
- Java: the rest of the class with a ``main`` that throws (``assert`` runs enabled: the sandbox
  starts the JVM with ``-ea``), or JUnit tests.

The program is ``prompt + completion + "\\n" + tests``, one file.

**Reaching the end.** A Python program passes only if the sandbox's worker sees it run to its
end (:mod:`codistill.evaluation.codegen`). A native or node program runs as its own process, so
the harness adds a step after the tests that prints a marker with a fresh random nonce, and a
run passes only if stdout ends with it: ``exit(0)``, ``process.exit(0)`` or ``System.exit(0)``
inside the solution, before the tests finish, fail. C and C++ get this by renaming the tests'
``main`` (``#define main``) and wrapping it; Java through a launcher class that calls the tests'
``main``; JavaScript with a last statement. JUnit tests have no marker (JUnit decides, by its
exit status). A solution's ``#define NDEBUG`` is undone before C and C++ tests, whose own
``#include <assert.h>`` then turns assertions on.

**What it does not stop.** The solution and its tests share one program, as in MultiPL-E, and
nothing like the Python harness's guarded comparisons stands between them: a sample written to
cheat can still pass wrong code, e.g. by reading the nonce from its own source or binary, by
defining glibc's ``__assert_fail`` or other macros the tests use (C, C++), by replacing
``require`` or patching ``node:assert`` (JavaScript), or by returning an object whose
``equals`` is always true (Java). The sandbox still contains such a program; only its verdict
is not to be trusted the way a Python verdict is. For the models' own honest attempts, which
is what SODA and ``codistill eval`` score, the marker catches the early exits.
"""

from __future__ import annotations

import re
import secrets

from codistill.data.schema import CodegenRecord
from codistill.evaluation.sandbox import ExecResult, Job, Limits
from codistill.evaluation.sandbox_languages import java_type_name

NATIVE_LANGUAGES = ("javascript", "c", "cpp", "java")
MARKER_PREFIX = "codistill-end-of-tests-"
_NO_ARGS_MAIN = re.compile(r"\bmain\s*\(\s*(?:void)?\s*\)")
_JAVA_MAIN_CLASS = re.compile(
    r"\b(?:class|interface|enum|record)\s+(\w+)[^{]*\{(?:(?!\b(?:class|interface|enum|record)\s"
    r"+\w+).)*?static\s+(?:final\s+)?void\s+main\s*\(",
    re.S,
)


def new_marker() -> str:
    """A line no program can guess: the prefix and 16 random hex digits."""
    return MARKER_PREFIX + secrets.token_hex(8)


def native_job(
    record: CodegenRecord, completion: str, marker: str, limits: Limits | None = None
) -> Job:
    """The sandbox job that runs ``completion`` against ``record``'s tests (see the module
    doc); a pass requires ``marker`` as the last line of stdout (:func:`reached_end`)."""
    program = f"{record.prompt}{completion}\n{record.tests}\n"
    language = record.language
    if language == "javascript":
        # A statement of its own: ';' ends whatever expression the tests left open.
        end = f"\n;process.stdout.write({_c_string(chr(10) + marker + chr(10))});\n"
        return Job(program + end, "javascript", limits=limits)
    if language in ("c", "cpp"):
        return Job(_c_program(record, completion, marker), language, limits=limits)
    if language == "java":
        if _is_junit(program):
            return Job(program, "java", limits=limits)
        return Job(
            _java_launcher(program, marker),
            "java",
            files={f"{(java_type_name(program) or 'Main')}.java": program},
            limits=limits,
        )
    raise ValueError(f"question {record.id}: no test harness for language {language!r}")


def reached_end(result: ExecResult, marker: str | None) -> ExecResult:
    """``result``, failed when it passed without printing ``marker`` last (None: nothing to
    check, the Python worker checked the end itself)."""
    if marker is None or not result.passed:
        return result
    if result.stdout.rstrip("\n").rsplit("\n", 1)[-1] == marker:
        return result
    return ExecResult(
        "failed",
        result.returncode,
        result.stdout,
        result.stderr,
        result.duration_s,
        "exited before the end of the tests",
    )


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _c_program(record: CodegenRecord, completion: str, marker: str) -> str:
    """prompt + completion, then the tests with their ``main`` renamed, then a ``main`` that
    runs them and prints the marker when they return 0."""
    no_args = _NO_ARGS_MAIN.search(record.tests)
    call = "codistill_tests_main()" if no_args else "codistill_tests_main(argc, argv)"
    stdio = "<stdio.h>" if record.language == "c" else "<cstdio>"
    return (
        f"{record.prompt}{completion}\n"
        # A solution's `#define NDEBUG` would turn off the asserts of the tests' own
        # `#include <assert.h>`. Only directives go here: the tests may open by closing the
        # solution's function (MultiPL-E's `}`), so this line can sit inside its body.
        "#undef NDEBUG\n"
        f"#define main codistill_tests_main\n{_returns_zero(record.tests)}\n#undef main\n"
        f"#include {stdio}\n"
        "int main(int argc, char **argv) {\n"
        "    (void)argc; (void)argv;\n"
        f"    int codistill_rc = {call};\n"
        "    if (codistill_rc == 0) {\n"
        "        fflush(stdout);\n"
        f"        fputs({_c_string(chr(10) + marker + chr(10))}, stdout);\n"
        "        fflush(stdout);\n"
        "    }\n"
        "    return codistill_rc;\n"
        "}\n"
    )


_MAIN_DEFINITION = re.compile(r"\bmain\s*\([^()]*\)\s*\{")


def _returns_zero(tests: str) -> str:
    """``tests`` with ``return 0;`` before the closing brace of ``main``: ``main`` may end
    without a return (it then returns 0), the function it is renamed to may not."""
    found = _MAIN_DEFINITION.search(tests)
    if found is None:
        return tests  # no main: the program fails to link, as it would without the harness
    end = _closing_brace(tests, found.end())
    if end is None:
        return tests  # unbalanced: the compiler says so
    return f"{tests[:end]}\n    return 0;\n{tests[end:]}"


def _closing_brace(code: str, start: int) -> int | None:
    """Index of the ``}`` closing the block opened just before ``start``, skipping string and
    character literals and comments; None if the block never closes."""
    depth, i, n = 1, start, len(code)
    while i < n:
        c = code[i]
        if code.startswith("//", i):
            i = code.find("\n", i)
            if i == -1:
                return None
        elif code.startswith("/*", i):
            i = code.find("*/", i + 2)
            if i == -1:
                return None
            i += 1
        elif c in "\"'":
            i += 1
            while i < n and code[i] != c:
                i += 2 if code[i] == "\\" else 1
        elif c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


_MAIN_HEADS = {
    "c": re.compile(r"^[ \t]*(?:int|void)\s+main\s*\([^()]*\)\s*\{", re.M),
    "java": re.compile(
        r"^[ \t]*(?:public\s+)?static\s+(?:public\s+)?void\s+main\s*\([^()]*\)"
        r"(?:\s*throws\s+[\w.,\s]+?)?\s*\{",
        re.M,
    ),
}


def drop_main(code: str, language: str) -> str:
    """``code`` without its ``main`` (C, C++) or ``main`` method (Java): a solution's own
    demo ``main`` would clash with the one the tests bring. Other languages: ``code``."""
    head = _MAIN_HEADS.get("c" if language == "cpp" else language)
    found = head.search(code) if head else None
    if found is None:
        return code
    end = _closing_brace(code, found.end())
    if end is None:
        return code
    return code[: found.start()] + code[end + 1 :].lstrip("\n")


def _is_junit(program: str) -> bool:
    return "@Test" in program and re.search(r"\borg\.junit\b", program) is not None


def _java_launcher(program: str, marker: str) -> str:
    """A class that runs the tests' ``main`` and then prints the marker."""
    found = _JAVA_MAIN_CLASS.search(program)
    target = found.group(1) if found else (java_type_name(program) or "Main")
    return (
        "public class CodistillLauncher {\n"
        "    public static void main(String[] args) throws Throwable {\n"
        f"        {target}.main(args);\n"
        "        System.out.flush();\n"
        f"        System.out.print({_c_string(chr(10) + marker + chr(10))});\n"
        "        System.out.flush();\n"
        "    }\n"
        "}\n"
    )
