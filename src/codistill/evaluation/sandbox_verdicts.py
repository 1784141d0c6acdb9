"""What happened to a sandboxed program: :class:`ExecResult` and the rules that decide it.

:func:`classify` turns the worker's report of each step into one verdict (the rules are in
:mod:`codistill.evaluation.sandbox`'s docstring); :func:`own_diagnostics` cuts compiler output
down to the sample's own files.
"""

from __future__ import annotations

import os
import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass

from codistill.evaluation.sandbox_policy import Limits

STATUSES = ("passed", "failed", "timed_out", "memory_exceeded", "crashed", "unavailable")
_MEMORY_PATTERNS = (
    "java.lang.OutOfMemoryError",
    "JavaScript heap out of memory",
    "std::bad_alloc",
    "MemoryError",
)


@dataclass
class ExecResult:
    """What happened to one program."""

    status: str  # one of STATUSES
    returncode: int | None  # exit status of the last step run; None if killed by a signal
    stdout: str  # what the program wrote, at most max_output_bytes (the compiler's on error)
    stderr: str
    duration_s: float  # wall time of all steps (compile + run)
    detail: str = ""  # e.g. "AssertionError", "compile error", "SIGSEGV", "output limit"

    @property
    def passed(self) -> bool:
        return self.status == "passed"


def classify(step_results: Sequence[dict], roles: Sequence[str], limits: Limits) -> ExecResult:
    """Turn the worker's per-step reports into one :class:`ExecResult` (see the module doc)."""
    duration = sum(r["duration_s"] for r in step_results)
    last, role = step_results[-1], roles[len(step_results) - 1]

    def result(status: str, detail: str) -> ExecResult:
        return ExecResult(
            status, last["returncode"], last["stdout"], last["stderr"], duration, detail
        )

    stderr = last["stderr"]
    if last["tag"] == "setup-failed":  # the sandbox's own fault, never the program's
        return result("crashed", "sandbox could not set up the sample process")
    if role == "compile":
        if last["timed_out"] or last["signal"] == signal.SIGXCPU:
            return result("timed_out", "compilation timed out")
        if last["returncode"] == 0:  # pragma: no cover - a compile step is never last when ok
            return result("failed", "nothing was run")
        return result("failed", "compile error")
    if last["timed_out"]:
        return result("timed_out", f"wall-clock limit ({limits.timeout_s:g} s)")
    cpu_limited = last["signal"] == signal.SIGXCPU or (
        last["signal"] == signal.SIGKILL and (last["cpu_s"] or 0) >= limits.cpu_s
    )
    if cpu_limited:
        return result("timed_out", f"CPU-time limit ({limits.cpu_s} s)")
    if last["tag"] in ("memory", "exception:MemoryError"):
        return result("memory_exceeded", "MemoryError")
    # Runtimes report exhaustion on stderr; a Python program's own stderr is not evidence
    # (its MemoryError comes back as a tag), unless it died without reporting one.
    memory_line = next((p for p in _MEMORY_PATTERNS if p in stderr), None)
    if memory_line and last["returncode"] != 0 and not last["tag"]:
        return result("memory_exceeded", memory_line)
    if (
        last["stdout_capped"]
        or last["stderr_capped"]
        or last["tag"] == "output-limit"
        or last["signal"] == signal.SIGXFSZ
    ):
        return result("failed", f"output limit ({limits.max_output_bytes} bytes)")
    if last["tag"] == "exec-failed":
        return result("crashed", "could not execute the program")
    if last["signal"] is not None:
        try:
            name = signal.Signals(last["signal"]).name
        except ValueError:
            name = f"signal {last['signal']}"
        return result("crashed", name)
    if last["returncode"] == 0:
        if last.get("reached_end") is False:  # sys.exit(0), os._exit(0) & co. before the end
            how = last["tag"] or "os._exit or an exit handler"
            return result("failed", f"exited before the end of the program ({how})")
        return result("passed", "")
    tag = last["tag"] or ""
    if tag.startswith("exception:"):
        return result("failed", tag.split(":", 1)[1])
    return result("failed", f"exit status {last['returncode']}")


SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".java")
_DIAGNOSTIC = re.compile(r"^(?P<file>[^\s:][^:]*):(?:\d+:)?(?:\d+:)?\s")
_SUMMARY = re.compile(
    r"^(?:\d+ errors?|\d+ warnings?|compilation terminated\.|collect2: error: .*)$"
)


def own_diagnostics(text: str, own_files: Sequence[str]) -> str:
    """Compiler output cut to the diagnostics about the sample's own files.

    A sample can ``#include`` any file the sandbox can read, and the compiler quotes the
    offending lines of that file; so every diagnostic located elsewhere (with its quoted source
    lines and carets) is dropped, and so are "In file included from" chains. Kept: diagnostics in
    ``own_files`` with their quoted lines, error counts and undefined-reference lines of the
    linker (which name the sample's own symbols).
    """
    own = {os.path.normpath(f) for f in own_files}
    kept, keep = [], False
    for line in text.splitlines():
        header = _DIAGNOSTIC.match(line)
        if header and not line.startswith(("In file included", "                 from")):
            name = header.group("file").strip()
            keep = os.path.normpath(name) in own
            if not keep and "undefined reference to" in line:
                kept.append(line)
        elif line.startswith(("In file included", "                 from")):
            keep = False
        elif _SUMMARY.match(line.strip()):
            kept.append(line)
            keep = False
            continue
        elif not line[:1].isspace() and not line.startswith("|"):
            # javac quotes the offending source line without indentation: keep it only
            # after one of our own diagnostics.
            if not keep:
                continue
        if keep:
            kept.append(line)
    return "\n".join(kept) + ("\n" if kept else "")


def unavailable(detail: str) -> ExecResult:
    """The verdict of a program whose toolchain is missing (``detail`` says what is)."""
    return ExecResult("unavailable", None, "", "", 0.0, detail)
