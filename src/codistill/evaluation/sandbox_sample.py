"""The sample process: what the worker's forked child does before and while the program runs.

Stdlib only, like everything the worker script (:mod:`codistill.evaluation.sandbox_worker`)
loads. :func:`start_sample` never returns: it points fds 0/1/2 at the sample's files, enters a
new IPC namespace and caps its SysV limits, applies the rlimits, drops the capabilities (as
real root: switches to the samples' uid keeping only ``CAP_DAC_READ_SEARCH``), sets
``PR_SET_NO_NEW_PRIVS``, loads the seccomp filter and then runs the program: Python in this
forked interpreter (:func:`run_python`), anything else by ``execve``. Whatever raises before the
program starts is a set-up failure, which the worker reports on the status pipe (fd 3).
"""

from __future__ import annotations

import atexit
import builtins
import errno
import fcntl
import io
import os
import resource
import signal
import sys
import traceback
import types

from codistill.evaluation.sandbox_syscalls import (
    CAP_DAC_READ_SEARCH,
    CLONE_NEWIPC,
    PR_CAPBSET_DROP,
    PR_SET_KEEPCAPS,
    PR_SET_NO_NEW_PRIVS,
    PR_SET_PDEATHSIG,
    PR_SET_SECUREBITS,
    SECBIT_NO_SETUID_FIXUP,
    SECBIT_NO_SETUID_FIXUP_LOCKED,
    check,
    install_seccomp,
    libc,
    prctl,
    seccomp_program,
    set_capabilities,
)


class Containment:
    """How a worker contains its samples, fixed when the worker starts.

    A plain class, not a dataclass: ``dataclasses`` would import ``inspect`` and more into
    every worker, and so into every sample's ``sys.modules``.

    Attributes:
        pid1: The worker is pid 1 of its own namespaces (False: rlimits only).
        sample_uid: The uid samples switch to inside the user namespace; None: the caller's.
        nproc_base: Processes of the samples' uid that are not the sample's (the worker).
        seccomp: Whether this architecture has the seccomp filter.
        max_fd: Every fd from 5 up to this one is closed in the sample.
        last_cap: The highest capability number of the kernel.
    """

    __slots__ = ("pid1", "sample_uid", "nproc_base", "seccomp", "max_fd", "last_cap")

    def __init__(
        self,
        *,
        pid1: bool,
        sample_uid: int | None,
        nproc_base: int,
        seccomp: bool,
        max_fd: int,
        last_cap: int,
    ) -> None:
        self.pid1 = pid1
        self.sample_uid = sample_uid
        self.nproc_base = nproc_base
        self.seccomp = seccomp
        self.max_fd = max_fd
        self.last_cap = last_cap


def start_sample(
    step: dict, work: str, paths: dict, status_w: int, end_w: int, nonce: str, how: Containment
) -> None:
    """Set up the forked child for ``step`` and run its program; never returns.

    Args:
        step: The worker's request for this step (``kind``, ``code`` or ``argv``, ``rlimits``,
            ``env``, ``no_processes``).
        work: The sample's working directory.
        paths: Files for ``stdin``, ``stdout`` and ``stderr``.
        status_w: Write end of the status pipe (set-up failures), closed before the program.
        end_w: Write end of the end pipe (``NONCE PID TAG`` lines, Python only).
        nonce: This run's nonce, unknown to the program's source.
        how: How the worker contains its samples.
    """
    os.setsid()
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    _redirect(paths, status_w, end_w, how.max_fd)
    os.chdir(work)
    limits = step["rlimits"]
    if how.pid1:
        _own_ipc_namespace(limits["as"])
    _apply_rlimits(limits, limits["nproc"] + how.nproc_base)
    _drop_privileges(how)
    if how.seccomp:
        install_seccomp(seccomp_program(True, bool(step.get("no_processes"))))
    env = dict(step.get("env") or {})
    env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
    for key in ("HOME", "TMPDIR", "PWD"):
        env[key] = work
    env.setdefault("LANG", "C.UTF-8")
    if step["kind"] == "python":
        os.close(3)  # the set-up is over: nothing the program does can write a status
        run_python(step["code"], work, env, 4, nonce)
    for sig in (signal.SIGPIPE, signal.SIGXFSZ, signal.SIGINT):
        signal.signal(sig, signal.SIG_DFL)
    os.close(4)
    argv = step["argv"]
    try:
        os.execve(argv[0], argv, env)
    except OSError as exc:
        os.write(2, f"sandbox: cannot execute {argv[0]}: {exc.strerror}\n".encode())
        os.write(3, f"{os.getpid()} exec-failed\n".encode())
        os._exit(127)


def _redirect(paths: dict, status_w: int, end_w: int, max_fd: int) -> None:
    """fds 0/1/2 on the sample's files, the status pipe on 3 and the end pipe on 4."""
    fds = [
        os.open(paths["stdin"], os.O_RDONLY),
        os.open(paths["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        os.open(paths["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
    ]
    for target, fd in enumerate(fds):
        os.dup2(fd, target)
    # Both pipes close-on-exec; every other fd is closed. The status pipe is closed before the
    # program runs.
    moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (status_w, end_w)]
    for target, fd in zip((3, 4), moved, strict=True):
        os.dup2(fd, target, inheritable=False)
    os.closerange(5, max_fd)


def _own_ipc_namespace(memory_bytes: int) -> None:
    """A new IPC namespace with SysV limits capped at the sample's memory."""
    # SysV shared memory and message queues die with this namespace, that is with the sample,
    # and are capped at its memory limit while it runs.
    check(libc.unshare(CLONE_NEWIPC), "unshare(CLONE_NEWIPC)")
    page = os.sysconf("SC_PAGE_SIZE")
    for name, value in (
        ("shmmax", memory_bytes),
        ("shmall", max(1, memory_bytes // page)),
        ("msgmni", 4),
        ("msgmnb", 16384),
    ):
        with open(f"/proc/sys/kernel/{name}", "w") as fh:
            fh.write(f"{value}\n")


def _apply_rlimits(limits: dict, nproc: int) -> None:
    """The step's rlimits (never above a hard limit already in force); no core dumps."""
    for res, soft, hard in (
        (resource.RLIMIT_AS, limits["as"], limits["as"]),
        (resource.RLIMIT_CPU, limits["cpu"], limits["cpu"] + 1),
        (resource.RLIMIT_NPROC, nproc, nproc),
        (resource.RLIMIT_NOFILE, limits["nofile"], limits["nofile"]),
        (resource.RLIMIT_FSIZE, limits["fsize"], limits["fsize"]),
        (resource.RLIMIT_CORE, 0, 0),
    ):
        if soft is None:
            continue
        cur_hard = resource.getrlimit(res)[1]
        if cur_hard != resource.RLIM_INFINITY:
            soft, hard = min(soft, cur_hard), min(hard, cur_hard)
        resource.setrlimit(res, (soft, hard))


def _drop_privileges(how: Containment) -> None:
    if how.pid1 or os.geteuid() == 0:
        keep: tuple[int, ...] = (CAP_DAC_READ_SEARCH,) if how.sample_uid is not None else ()
        for cap in range(how.last_cap + 1):
            if cap not in keep:
                prctl(PR_CAPBSET_DROP, cap)
        if how.sample_uid is not None:
            # access(2) drops the capabilities of a non-root caller unless this bit is
            # set, and javac checks jars with it before it reads them.
            prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED)
            os.setgroups([])
            os.setresgid(how.sample_uid, how.sample_uid, how.sample_uid)
            prctl(PR_SET_KEEPCAPS, 1)
            os.setresuid(how.sample_uid, how.sample_uid, how.sample_uid)
        set_capabilities(keep)
    prctl(PR_SET_NO_NEW_PRIVS, 1)


# ---------------------------------------------------------------------------------------------
# the Python fast path


def run_python(code: str, work: str, env: dict, end_w: int, nonce: str) -> None:
    """Run ``code`` as ``__main__`` in this (forked) interpreter; never returns.

    Exit status follows ``python main.py``: 0 on normal completion or ``sys.exit(0)``; 1 with a
    traceback on stderr for an uncaught exception. On fd ``end_w`` goes ``NONCE PID TAG``:
    ``end`` right after the program's last statement ran (before threads are joined and exit
    handlers run, so neither can fake it), else ``exit:CODE``, ``exception:TYPE`` or ``memory``.
    """
    atexit._clear()  # the worker's exit handlers are not the program's
    os.environ.clear()
    os.environ.update(env)
    _standard_streams()
    path = os.path.join(work, "main.py")
    main = types.ModuleType("__main__")
    main.__file__ = path
    main.__builtins__ = builtins
    sys.modules["__main__"] = main
    sys.argv = [path]
    sys.path.insert(0, work)
    prefix = f"{nonce} {os.getpid()} ".encode()
    del nonce
    tag, exit_code = "end", 0
    try:
        exec(compile(code_source(code, path), path, "exec"), main.__dict__)
        _write_all(end_w, prefix + b"end\n")
    except SystemExit as exc:
        exit_code = _exit_status(exc)
        tag = f"exit:{exit_code}"
    except MemoryError as exc:
        tag, exit_code = "memory", 1
        _print_exception(exc)
    except BaseException as exc:  # noqa: B036 - a test program may raise anything
        tag, exit_code = f"exception:{type(exc).__name__}", 1
        _print_exception(exc)
    if tag != "end":
        _write_all(end_w, prefix + tag.encode("utf-8", "replace")[:100] + b"\n")
    try:  # what the interpreter does at exit: join non-daemon threads, run atexit handlers
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except BaseException:  # noqa: B036
        pass
    if not _flush_streams(end_w, prefix if tag == "end" else None):
        exit_code = exit_code or 1
    os._exit(exit_code)


def _standard_streams() -> None:
    """Fresh ``sys.stdin/stdout/stderr`` on fds 0/1/2, as a new interpreter has them."""
    sys.stdin = io.TextIOWrapper(io.FileIO(0, "r", closefd=False), encoding="utf-8")
    sys.stdout = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(1, "w", closefd=False)), encoding="utf-8"
    )
    sys.stderr = io.TextIOWrapper(
        io.BufferedWriter(io.FileIO(2, "w", closefd=False)),
        encoding="utf-8",
        errors="backslashreplace",
        line_buffering=True,
    )
    sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr


def _exit_status(exc: SystemExit) -> int:
    """The status ``python main.py`` exits with on ``exc`` (printing a non-integer code)."""
    if exc.code is None:
        return 0
    if isinstance(exc.code, int):
        return exc.code & 0xFF
    try:
        print(exc.code, file=sys.stderr)
    except BaseException:  # noqa: B036, S110
        pass
    return 1


def _print_exception(exc: BaseException) -> None:
    """The traceback without :func:`run_python`'s frame, as ``python main.py`` would print it."""
    try:
        traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
    except BaseException:  # noqa: B036
        pass


def _flush_streams(end_w: int, end_prefix: bytes | None) -> bool:
    """Flush stdout and stderr; whether both went through.

    A flush cut by ``RLIMIT_FSIZE`` after the program reached its end (``end_prefix`` given) is
    reported as ``end output-limit``.
    """
    ok = True
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError as exc:
            if exc.errno == errno.EFBIG and end_prefix is not None:
                _write_all(end_w, end_prefix + b"end output-limit\n")
            ok = False
        except BaseException:  # noqa: B036
            ok = False
    return ok


def _write_all(fd: int, data: bytes) -> None:
    try:
        while data:
            data = data[os.write(fd, data) :]
    except OSError:
        pass


def code_source(code: str, path: str) -> str:
    """Write the program where tracebacks and ``inspect`` expect it, and return it."""
    try:
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(code)
    except OSError:
        pass
    return code
