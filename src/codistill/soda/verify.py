"""Run solutions against a question's tests in the sandbox and say why each failed.

A solution is run exactly as ``codistill eval`` scores a completion:
:func:`codistill.evaluation.codegen.base_program` (the record's prompt, the solution, then the
record's tests with guarded asserts), in :class:`codistill.evaluation.sandbox.Sandbox`. The
outcome is one of :data:`OUTCOMES`:

- ``passed``: ran to its end;
- ``syntax``, ``name``, ``type``: an uncaught ``SyntaxError`` (or ``IndentationError``,
  ``TabError``), ``NameError`` (or ``UnboundLocalError``), ``TypeError``;
- ``logic``: an uncaught ``AssertionError``: a test got a wrong answer (or the solution's own
  ``assert`` failed, which this cannot tell apart);
- ``timeout``: the sandbox's wall-clock or CPU limit;
- ``environment``: ``ImportError`` or ``ModuleNotFoundError``, a module the sandbox lacks, or
  no toolchain for the question's language (``unavailable``); the paper keeps such errors apart
  from the solution's faults (Stage II);
- ``other``: any other exception, exhausted memory, an early exit, the output limit, a crash.

Questions in JavaScript, C, C++ and Java (:mod:`codistill.evaluation.codegen_languages`) get
the same outcomes: a compile error is ``environment``, ``name``, ``type`` or ``syntax`` by the
compiler's first error (a missing header or package, an undeclared name, a type mismatch, the
grammar), else ``other``; at run time node's and the JVM's uncaught exception decides
(``SyntaxError``, ``ReferenceError``, ``TypeError``, ``AssertionError``, Java's
``ClassCastException``...), and a C or C++ program that aborts (a failed ``assert``) or exits
non-zero is ``logic``.

Where the exception type comes from: the sandbox's worker catches the program's uncaught
exception and reports ``type(exc).__name__`` on its own status channel, not the program's
stderr (:func:`codistill.evaluation.sandbox_sample.run_python`), and
:func:`codistill.evaluation.sandbox_verdicts.classify` puts it in ``ExecResult.detail`` of a
``failed`` result. No traceback is parsed, so printing a fake one to stderr changes nothing.
What it cannot tell: a class of the program's own that is *named* like a builtin exception
(``class TypeError(Exception)``) counts as that exception; only the class name travels, not its
module. The subclasses mapped explicitly above are the only ones recognised (a
``ZeroDivisionError`` is ``other``, never ``logic``).
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from codistill.data.schema import CodegenRecord
from codistill.evaluation.codegen import test_job
from codistill.evaluation.codegen_languages import EXITED_EARLY, reached_end
from codistill.evaluation.sandbox import ExecResult, Limits, Sandbox
from codistill.soda.faults import FAULT_TYPES, Fault

OUTCOMES = ("passed", *FAULT_TYPES, "environment", "other")
_BY_EXCEPTION = {
    "SyntaxError": "syntax",
    "IndentationError": "syntax",
    "TabError": "syntax",
    "NameError": "name",
    "UnboundLocalError": "name",
    "TypeError": "type",
    "AssertionError": "logic",
    "ImportError": "environment",
    "ModuleNotFoundError": "environment",
}


@dataclass(frozen=True)
class Outcome:
    """Why one solution passed or failed.

    Attributes:
        outcome: One of :data:`OUTCOMES`.
        status: The sandbox's status (``passed``, ``failed``, ``timed_out``...).
        detail: The sandbox's detail: the exception type of a failed Python program.
        message: The last line of stderr (the exception's message), at most 200 characters,
            for reports; never used to classify.
    """

    outcome: str
    status: str
    detail: str
    message: str


def outcome_of(result: ExecResult, language: str = "python") -> str:
    """The :data:`OUTCOMES` class of one sandbox result (see the module doc)."""
    if result.status == "passed":
        return "passed"
    if result.status == "timed_out":
        return "timeout"
    if result.status == "unavailable":  # no toolchain for the language: not the solution's fault
        return "environment"
    if language != "python":
        return _native_outcome(result, language)
    if result.status == "failed":
        return _BY_EXCEPTION.get(result.detail, "other")
    return "other"


# Other languages. Compiler diagnostics (C, C++, Java) come from the compiler, cut to the
# sample's own lines by the sandbox; the first error diagnostic decides (not the source lines
# the compiler quotes under it). A runtime error is read from the program's stderr (node's and
# the JVM's report of the uncaught exception): a sample could print a fake one, which changes
# only which fault it is counted as, never a failure into a pass.
_COMPILE_RULES = (
    (
        "environment",
        r"No such file or directory|package [\w.]+ does not exist|cannot find -l",
    ),
    (
        "name",
        r"cannot find symbol|undeclared|was not declared|has not been declared"
        r"|implicit declaration of function|undefined reference to|is not a member of"
        r"|has no member named|request for member|unknown type name|does not name a type",
    ),
    (
        "type",
        r"incompatible types?|invalid conversion|cannot convert|could not convert"
        r"|no matching function|no match for|invalid operands|bad operand types?"
        r"|cannot be applied to|cannot be converted|possible lossy conversion"
        r"|cannot be dereferenced|conversion from .+ requested|too (?:few|many) arguments"
        r"|conflicting types|array required|subscripted value is",
    ),
    (
        "syntax",
        r"expected|illegal start|reached end of file while parsing|unclosed|stray"
        r"|missing terminating|not a statement|class, interface, enum, or record expected",
    ),
)
# gcc/g++ "file:line:col: error: ..." (or "fatal error"), javac "File.java:line: error: ...".
_DIAGNOSTIC_ERROR = re.compile(r"^[^\s:][^:\n]*:(?:\d+:)+\s*(?:fatal )?error:\s*(.*)$", re.M)
_JS_ERROR = re.compile(r"^(?:Uncaught )?([A-Z]\w*Error|Error)\b", re.MULTILINE)
_JAVA_ERROR = re.compile(r'Exception in thread "[^"]*" ([\w.$]+)')
# Test-framework failures: the tests' own checks did not hold.
_FAILED_CHECKS = ("AssertionError", "AssertionFailedError", "ComparisonFailure")
_RUNTIME_CLASSES = {
    "SyntaxError": "syntax",
    "ReferenceError": "name",
    "TypeError": "type",
    "Error": "logic",  # JavaScript tests that `throw new Error(...)` on a wrong answer
    "ClassCastException": "type",
    "NoClassDefFoundError": "name",
    "NoSuchMethodError": "name",
    "NoSuchFieldError": "name",
    **dict.fromkeys(_FAILED_CHECKS, "logic"),
}


def _native_outcome(result: ExecResult, language: str) -> str:
    text = f"{result.stdout}\n{result.stderr}"
    if result.detail == "compile error":
        found = _DIAGNOSTIC_ERROR.search(text)
        if found is None:  # a linker's complaint is no error diagnostic
            return "name" if "undefined reference to" in text else "other"
        for outcome, pattern in _COMPILE_RULES:
            if re.search(pattern, found.group(1)):
                return outcome
        return "other"
    if result.status not in ("failed", "crashed") or result.detail == EXITED_EARLY:
        return "other"  # memory, output limit, sandbox faults, an exit before the tests ended
    if language == "javascript":
        if "Cannot find module" in text:
            return "environment"
        found = _JS_ERROR.search(result.stderr)
        return _RUNTIME_CLASSES.get(found.group(1), "other") if found else "other"
    if language == "java":
        found = _JAVA_ERROR.search(result.stderr)
        if found:
            return _RUNTIME_CLASSES.get(found.group(1).rsplit(".", 1)[-1], "other")
        # JUnit reports a failed check as a failure and exits 1.
        return "logic" if any(name in text for name in _FAILED_CHECKS) else "other"
    # C and C++: a failed assert() aborts with glibc's message; tests that check by hand
    # return non-zero. Other aborts (an uncaught C++ exception, heap corruption) are "other".
    if result.detail == "SIGABRT" and re.search(r"Assertion [`'].*' failed", result.stderr):
        return "logic"
    return "logic" if result.detail.startswith("exit status") else "other"


def _last_line(text: str) -> str:
    lines = [line for line in text.splitlines() if line.strip()]
    return lines[-1][:200] if lines else ""


def default_limits(timeout_s: float = 5.0) -> Limits:
    """Sandbox limits for verification: ``timeout_s`` of wall clock and as many CPU seconds
    (rounded up): a timeout fault costs one ``timeout_s`` each, so keep it short."""
    return Limits(timeout_s=timeout_s, cpu_s=max(1, math.ceil(timeout_s)))


def run_solutions(
    items: Sequence[tuple[CodegenRecord, str]],
    *,
    sandbox: Sandbox | None = None,
    limits: Limits | None = None,
    workers: int = 2,
) -> list[Outcome]:
    """Run each ``(question, solution)`` against the question's tests, in parallel.

    Args:
        items: Questions with a solution each; the solution is what ``codistill eval`` would
            score as the completion (for MBPP the whole program).
        sandbox: A sandbox to reuse (its workers stay up between calls); None starts one for
            this call and stops it after.
        limits: The limits of every run (default :func:`default_limits`).
        workers: How many programs run at once.

    Returns:
        One :class:`Outcome` per item, in order.

    Raises:
        ValueError: A question has no tests (it cannot judge a solution).
    """
    for record, _ in items:
        if not record.tests.strip():
            raise ValueError(f"question {record.id}: no tests, so no solution can be verified")
    limits = limits or default_limits()
    runs = [test_job(record, solution, limits) for record, solution in items]
    jobs = [job for job, _ in runs]
    if sandbox is None:
        with Sandbox(limits, workers=workers) as box:
            results = box.run_many(jobs, workers=workers)
    else:
        results = sandbox.run_many(jobs, workers=workers)
    results = [reached_end(r, marker) for r, (_, marker) in zip(results, runs, strict=True)]
    return [
        Outcome(outcome_of(r, record.language), r.status, r.detail, _last_line(r.stderr))
        for r, (record, _) in zip(results, items, strict=True)
    ]


def verify_correct_many(items: Sequence[tuple[CodegenRecord, str]], **run_args) -> list[bool]:
    """Whether each solution passes its question's tests (``run_args``: see
    :func:`run_solutions`)."""
    return [o.outcome == "passed" for o in run_solutions(items, **run_args)]


def verify_correct(question: CodegenRecord, source: str, **run_args) -> bool:
    """Whether ``source`` passes ``question``'s tests."""
    return verify_correct_many([(question, source)], **run_args)[0]


def verify_faults(
    items: Sequence[tuple[CodegenRecord, str, str]], **run_args
) -> list[tuple[bool, str]]:
    """For each ``(question, faulty_source, intended_type)``: ``(ok, observed)``, ok when the
    solution fails for the intended reason (``observed == intended_type``).

    A faulty solution that passes, or fails for another reason (an off-by-one that raises
    ``IndexError``, a loop that still ends), is not kept: SODA learns from the fault it was
    told it is looking at. Check the correct solution first (:func:`verify_correct`): a logic
    fault is only a fault where the unmutated solution passes.
    """
    for _, _, intended in items:
        if intended not in FAULT_TYPES:
            raise ValueError(
                f"intended_type must be one of {', '.join(FAULT_TYPES)}, got {intended!r}"
            )
    outcomes = run_solutions([(q, s) for q, s, _ in items], **run_args)
    return [
        (o.outcome == intended, o.outcome)
        for (_, _, intended), o in zip(items, outcomes, strict=True)
    ]


def verify_fault(
    question: CodegenRecord, faulty_source: str, intended_type: str, **run_args
) -> tuple[bool, str]:
    """``(ok, observed)`` for one faulty solution (see :func:`verify_faults`)."""
    return verify_faults([(question, faulty_source, intended_type)], **run_args)[0]


def verified_faults(
    items: Sequence[tuple[CodegenRecord, Fault]], **run_args
) -> list[tuple[Fault, bool, str]]:
    """Run injected faults (:mod:`codistill.soda.faults`) and return each with
    ``(ok, observed)``; feed the result to :func:`summarize`."""
    checked = verify_faults([(q, f.source, f.fault_type) for q, f in items], **run_args)
    return [(fault, ok, seen) for (_, fault), (ok, seen) in zip(items, checked, strict=True)]


def summarize(rows: Iterable[tuple[Fault, bool, str]]) -> dict:
    """How many faults were generated and verified, per fault type and per operator.

    Returns:
        ``{"by_type": {type: {"generated", "verified", "share", "observed"}}, "by_operator":
        {...same...}}``; ``share`` is verified / generated (None when none was generated),
        ``observed`` counts the outcomes seen (why the unverified ones failed to verify).
        Every fault type is listed, with zero counts where none was generated.
    """
    by_type = {t: _Tally() for t in FAULT_TYPES}
    by_operator: dict[str, _Tally] = {}
    for fault, ok, observed in rows:
        for tally in (by_type[fault.fault_type], by_operator.setdefault(fault.operator, _Tally())):
            tally.add(ok, observed)
    return {
        "by_type": {k: v.as_dict() for k, v in by_type.items()},
        "by_operator": {k: by_operator[k].as_dict() for k in sorted(by_operator)},
    }


class _Tally:
    def __init__(self) -> None:
        self.generated = 0
        self.verified = 0
        self.observed: Counter[str] = Counter()

    def add(self, ok: bool, observed: str) -> None:
        self.generated += 1
        self.verified += ok
        self.observed[observed] += 1

    def as_dict(self) -> dict:
        share = self.verified / self.generated if self.generated else None
        return {
            "generated": self.generated,
            "verified": self.verified,
            "share": share,
            "observed": dict(sorted(self.observed.items())),
        }
