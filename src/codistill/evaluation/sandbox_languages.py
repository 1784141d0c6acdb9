"""What the worker runs for each language: the steps (compile, run) and their limits.

:func:`plan` turns a program, its files and its :class:`~.sandbox_policy.Limits` into the
worker's steps: Python runs in the worker's forked interpreter; JavaScript under node; C and
C++ are compiled by gcc/g++ and run; Java is compiled by javac and run under JUnit 4 or 5 when
its sources use them, else from its ``main`` class. Compilers get limits of their own.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from codistill.evaluation.sandbox_policy import (
    COMPILE_MEMORY_MB,
    COMPILE_OPEN_FILES,
    COMPILE_OUTPUT_BYTES,
    COMPILE_PROCESSES,
    RUNTIME_FILES,
    RUNTIME_RESERVE_MB,
    RUNTIME_THREADS,
    Limits,
)
from codistill.evaluation.sandbox_toolchains import Toolchains
from codistill.evaluation.sandbox_verdicts import ExecResult, unavailable


@dataclass
class Step:
    """One process the worker runs: the Python fast path or an ``execve``."""

    role: str  # "compile" or "run"
    argv: list[str] | None = None
    code: str | None = None
    stdin: str | None = None
    timeout_s: float = 10.0
    cpu_s: int = 10
    memory_mb: int = 1024
    processes: int = 1
    open_files: int = 64
    output_bytes: int = 1_000_000
    env: dict[str, str] = field(default_factory=dict)
    no_processes: bool = False  # seccomp refuses fork/vfork/clone of a process (threads pass)

    def request(self) -> dict:
        """The step as the worker reads it (see :mod:`.sandbox_sample`)."""
        return {
            "kind": "python" if self.code is not None else "exec",
            "no_processes": self.no_processes,
            "code": self.code,
            "argv": self.argv,
            "stdin": self.stdin,
            "timeout_s": self.timeout_s,
            "output_cap": self.output_bytes,
            "env": self.env,
            "rlimits": {
                "as": self.memory_mb << 20,
                "cpu": self.cpu_s,
                "nproc": self.processes,
                "nofile": self.open_files,
                "fsize": self.output_bytes,
            },
        }


_JVM_FLAGS = [
    "-XX:+UseSerialGC",  # one GC thread: the JVM's threads count against RLIMIT_NPROC
    "-XX:-UsePerfData",  # no /tmp/hsperfdata (read-only)
    "-XX:CompressedClassSpaceSize=64m",  # smaller reservations: RLIMIT_AS counts them
    "-XX:ReservedCodeCacheSize=64m",
    "-Xshare:auto",
]


def plan(
    tools: Toolchains,
    language: str,
    program: str,
    files: dict[str, str],
    stdin: str | None,
    limits: Limits,
) -> tuple[list[Step], dict[str, str]] | ExecResult:
    """The worker's steps and files for one program, or an ``unavailable`` result."""
    run = {
        "timeout_s": limits.timeout_s,
        "cpu_s": limits.cpu_s,
        "memory_mb": limits.memory_mb,
        "processes": limits.max_processes + RUNTIME_THREADS[language],
        "open_files": limits.max_open_files + RUNTIME_FILES[language],
        "output_bytes": limits.max_output_bytes,
        "stdin": stdin,
        "env": {"OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
        # One process: its address-space limit is then the whole sample's memory (a JVM could
        # otherwise start children, each with its own limit).
        "no_processes": limits.max_processes == 1,
    }
    compile_ = {
        "timeout_s": limits.compile_timeout_s,
        "cpu_s": max(1, int(limits.compile_timeout_s)),
        "memory_mb": COMPILE_MEMORY_MB,
        "processes": COMPILE_PROCESSES,
        "open_files": COMPILE_OPEN_FILES,
        "output_bytes": COMPILE_OUTPUT_BYTES,
    }
    if language == "python":
        return [Step("run", code=program, **run)], files
    if language == "javascript":
        files["main.js"] = program
        run["memory_mb"] += RUNTIME_RESERVE_MB
        argv = [tools.which("node"), f"--max-old-space-size={limits.memory_mb}", "main.js"]
        return [Step("run", argv=argv, **run)], files
    if language in ("c", "cpp"):
        main = "main.c" if language == "c" else "main.cpp"
        files[main] = program
        units = [main] + sorted(f for f in files if f.endswith((".c", ".cc", ".cpp")) and f != main)
        if language == "c":
            cc = [tools.which("gcc"), "-std=gnu17", "-O2", "-o", "main", *units, "-lm"]
        else:
            cc = [tools.which("g++"), "-std=gnu++17", "-O2", "-o", "main", *units]
        return [Step("compile", argv=cc, **compile_), Step("run", argv=["./main"], **run)], files
    return _plan_java(tools, program, files, run, compile_, limits)


def _plan_java(
    tools: Toolchains,
    program: str,
    files: dict[str, str],
    run: dict,
    compile_: dict,
    limits: Limits,
) -> tuple[list[Step], dict[str, str]] | ExecResult:
    """javac every source, then JUnit on the ``@Test`` classes, or else the ``main`` class.

    The program's file is named after its public class (else its first class, else ``Main``).
    Sources that mention ``org.junit.jupiter`` run under JUnit 5, ``org.junit`` under JUnit 4;
    the jars come from the Maven cache and their absence makes the run ``unavailable``.
    """
    name = java_type_name(program) or "Main"
    files[f"{name}.java"] = program
    sources = {rel: text for rel, text in files.items() if rel.endswith(".java")}
    classpath, launcher = ["."], None
    if any("org.junit.jupiter" in text for text in sources.values()):
        jars = tools.junit5()
        runner = tools.junit5_runner(jars) if jars else None
        if runner is None:
            return unavailable(f"java: no complete JUnit 5 in {tools.maven_repo}")
        classpath += [*jars, runner]
        launcher = "CodistillJUnit5Runner"
    elif any(re.search(r"\borg\.junit\b", text) for text in sources.values()):
        jars = tools.junit4()
        if jars is None:
            return unavailable(f"java: no JUnit 4 (with Hamcrest) in {tools.maven_repo}")
        classpath += jars
        launcher = "org.junit.runner.JUnitCore"
    tests = [_java_class(text, rel) for rel, text in sources.items() if "@Test" in text]
    if launcher and tests:
        targets = [launcher, *tests]
    else:  # no tests: the main class, with any JUnit jars still on the classpath
        mains = [rel for rel, t in sources.items() if re.search(r"static\s+void\s+main\s*\(", t)]
        first = f"{name}.java" if f"{name}.java" in mains or not mains else mains[0]
        targets = [_java_class(sources[first], first)]
    cp = os.pathsep.join(classpath)
    javac = [tools.which("javac"), "-J-Xmx512m", "-J-XX:TieredStopAtLevel=1"]
    javac += [f"-J{flag}" for flag in _JVM_FLAGS]
    javac += ["-encoding", "UTF-8", "-nowarn", "-d", ".", "-cp", cp, *sorted(sources)]
    # -ea: a test program's `assert` statements run (the JVM skips them by default).
    java = [tools.which("java"), "-ea", f"-Xmx{limits.memory_mb}m", *_JVM_FLAGS, "-cp", cp]
    java += targets
    compile_ = dict(compile_, memory_mb=COMPILE_MEMORY_MB + RUNTIME_RESERVE_MB)
    run = dict(run, memory_mb=limits.memory_mb + RUNTIME_RESERVE_MB)
    return [Step("compile", argv=javac, **compile_), Step("run", argv=java, **run)], files


def java_type_name(source: str) -> str | None:
    """The type a Java source file must be named after: its public type, else its first."""
    kinds = r"(?:class|interface|enum|record)\s+(\w+)"
    found = re.search(r"\bpublic\s+(?:(?:final|abstract|sealed)\s+)*" + kinds, source)
    found = found or re.search(r"\b" + kinds, source)
    return found.group(1) if found else None


def _java_class(source: str, rel: str) -> str:
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", source, re.M)
    name = Path(rel).stem
    return f"{package.group(1)}.{name}" if package else name
