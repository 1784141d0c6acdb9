"""Code-generation questions in the sandbox's other languages: JavaScript, C, C++ and Java.

A question in one of these languages is a :class:`~codistill.data.schema.CodegenRecord` whose
``prompt`` is code in that language (a signature to continue, or a comment describing the task,
as MBPP's docstring is for Python) and whose ``tests`` is a test program in that language that
runs after the solution, the layout of MultiPL-E's translations of HumanEval and MBPP:

- JavaScript: top-level code that throws on a wrong answer (``node:assert`` or a ``throw``);
- C and C++: a ``main`` that returns non-zero, calls ``abort``/``exit`` or fails an ``assert``;
- Java: the rest of the class with a ``main`` that throws (``assert`` runs enabled: the sandbox
  starts the JVM with ``-ea``), or JUnit tests.

The program is ``prompt + completion + "\\n" + tests``, one file (Java: the solution's
top-level types lose ``public``, since the file is named after the tests' public class). Tests
need what they import: MultiPL-E's Java prompts import ``org.javatuples``, whose jar is not on
this machine, so those fail to compile (SODA counts that as ``environment``).

**Reaching the end.** A Python program passes only if the sandbox's worker sees it run to its
end (:mod:`codistill.evaluation.codegen`). A native or node program runs as its own process, so
the harness prints a marker with a fresh random nonce once the tests are done, and a run passes
only if stdout ends with it: ``exit(0)``, ``process.exit(0)`` or ``System.exit(0)`` inside the
solution, before the tests finish, fail. C and C++: the tests' ``main`` is renamed
(``#define main``) and wrapped, and in C the tests' own ``exit`` goes through the harness, so
tests that end with ``exit(0)`` pass. Java: a launcher class calls the ``main`` of the class
around the tests' ``main`` (a solution's demo ``main`` never runs). JavaScript: the marker is
written on ``beforeExit``, when the event loop is empty (async tests included), which never
comes after an uncaught error or ``process.exit``. JUnit tests have no marker (JUnit decides,
by its exit status). A solution's ``#define NDEBUG`` is undone before C and C++ tests, whose
own ``#include <assert.h>`` then turns assertions on. Tests must fail by throwing, aborting or
exiting non-zero: node's ``console.assert`` only prints.

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

from codistill.data.code_text import blank_comments_and_strings, closing_brace, enclosing_type
from codistill.data.schema import CodegenRecord
from codistill.evaluation.sandbox import ExecResult, Job, Limits
from codistill.evaluation.sandbox_languages import java_type_name

NATIVE_LANGUAGES = ("javascript", "c", "cpp", "java")
MARKER_PREFIX = "codistill-end-of-tests-"
_NO_ARGS_MAIN = re.compile(r"\bmain\s*\(\s*(?:void)?\s*\)")
_JAVA_MAIN = re.compile(r"\bstatic\s+(?:final\s+)?void\s+main\s*\(")
_PUBLIC_TYPE = re.compile(
    r"^public\s+((?:(?:final|abstract|sealed|non-sealed|strictfp)\s+)*"
    r"(?:class|interface|enum|record)\s)",
    re.M,
)


def new_marker() -> str:
    """A line no program can guess: the prefix and 16 random hex digits."""
    return MARKER_PREFIX + secrets.token_hex(8)


def native_job(
    record: CodegenRecord, completion: str, marker: str, limits: Limits | None = None
) -> Job:
    """The sandbox job that runs ``completion`` against ``record``'s tests (see the module
    doc); a pass requires ``marker`` as the last line of stdout (:func:`reached_end`)."""
    language = record.language
    if language == "javascript":
        # When the event loop has nothing left (async tests included); never after an uncaught
        # error or a process.exit. The `;` ends whatever expression the tests left open.
        end = (
            "\n;process.once('beforeExit', () => "
            f"process.stdout.write({_c_string(chr(10) + marker + chr(10))}));\n"
        )
        return Job(f"{record.prompt}{completion}\n{record.tests}\n{end}", language, limits=limits)
    if language in ("c", "cpp"):
        return Job(_c_program(record, completion, marker), language, limits=limits)
    if language == "java":
        # Top-level types of the solution lose `public`: one file holds them and the tests'.
        solution = _PUBLIC_TYPE.sub(r"\1", completion)
        program = f"{record.prompt}{solution}\n{record.tests}\n"
        if _is_junit(program):
            return Job(program, "java", limits=limits)
        tests_at = len(program) - len(record.tests) - 1
        return Job(
            _java_launcher(program, tests_at, marker),
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
        EXITED_EARLY,
    )


EXITED_EARLY = "exited before the end of the tests"


def _c_string(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def _c_program(record: CodegenRecord, completion: str, marker: str) -> str:
    """prompt + completion, then the tests with their ``main`` renamed, then a ``main`` that
    runs them and prints the marker when they return 0 (C: also when they ``exit(0)``)."""
    no_args = _NO_ARGS_MAIN.search(record.tests)
    call = "codistill_tests_main()" if no_args else "codistill_tests_main(argc, argv)"
    c = record.language == "c"
    say = f"fputs({_c_string(chr(10) + marker + chr(10))}, stdout)"
    # C tests may end with exit(0): only theirs is redirected (the macro follows the solution),
    # to a function declared before the prompt and defined after the tests. C++ keeps exit as
    # is (a macro would also rewrite std::exit).
    prelude = (
        "#include <stdio.h>\n#include <stdlib.h>\nstatic void codistill_exit(int);\n" if c else ""
    )
    redirect = "#define exit(code) codistill_exit(code)\n" if c else ""
    exit_fn = (
        "static void codistill_exit(int code) {\n"
        f"    if (code == 0) {{ fflush(stdout); {say}; fflush(stdout); }}\n"
        "    exit(code);\n"
        "}\n"
        if c
        else ""
    )
    return (
        f"{prelude}{record.prompt}{completion}\n"
        # A solution's `#define NDEBUG` would turn off the asserts of the tests' own
        # `#include <assert.h>`. Only directives go here: the tests may open by closing the
        # solution's function (MultiPL-E's `}`), so these lines can sit inside its body.
        f"#undef NDEBUG\n{redirect}"
        f"#define main codistill_tests_main\n{_returns_zero(record.tests)}\n#undef main\n"
        f"{'#undef exit' + chr(10) if c else ''}"
        f"#include {'<stdio.h>' if c else '<cstdio>'}\n"
        f"{exit_fn}"
        "int main(int argc, char **argv) {\n"
        "    (void)argc; (void)argv;\n"
        f"    int codistill_rc = {call};\n"
        "    if (codistill_rc == 0) {\n"
        "        fflush(stdout);\n"
        f"        {say};\n"
        "        fflush(stdout);\n"
        "    }\n"
        "    return codistill_rc;\n"
        "}\n"
    )


_MAIN_DEFINITION = re.compile(r"\bmain\s*\([^()]*\)\s*\{")


def _returns_zero(tests: str) -> str:
    """``tests`` with ``return 0;`` before the closing brace of ``main``: ``main`` may end
    without a return (it then returns 0), the function it is renamed to may not."""
    found = _MAIN_DEFINITION.search(blank_comments_and_strings(tests))
    if found is None:
        return tests  # no main: the program fails to link, as it would without the harness
    end = closing_brace(tests, found.end())
    if end is None:
        return tests  # unbalanced: the compiler says so
    return f"{tests[:end]}\n    return 0;\n{tests[end:]}"


def _is_junit(program: str) -> bool:
    return "@Test" in program and re.search(r"\borg\.junit\b", program) is not None


def _java_launcher(program: str, tests_at: int, marker: str) -> str:
    """A class that runs the tests' ``main`` (the class around the first ``main`` of the
    tests, which start at ``tests_at``; a solution's own ``main`` is never run) and then
    prints the marker."""
    found = _JAVA_MAIN.search(blank_comments_and_strings(program), tests_at)
    target = enclosing_type(program, found.start()) if found else None
    target = target or java_type_name(program) or "Main"
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
