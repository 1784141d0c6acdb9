"""Linux system calls the sandbox worker needs, through ``ctypes`` (stdlib only).

Used by the worker process (:mod:`codistill.evaluation.sandbox_worker`), which loads only
stdlib modules and its own helpers. Here: the flag values of ``unshare``, ``mount``
and ``prctl``, thin checked wrappers of them, capability sets, and the seccomp filter that
refuses ``socket(AF_UNIX)``, ``io_uring`` and (at ``max_processes=1``) new processes.
"""

from __future__ import annotations

import ctypes
import errno
import os

CLONE_NEWNS = 0x00020000
CLONE_NEWIPC = 0x08000000
CLONE_NEWPID = 0x20000000
CLONE_NEWUSER = 0x10000000
CLONE_NEWNET = 0x40000000
MS_RDONLY, MS_NOSUID, MS_NODEV, MS_NOEXEC = 1, 2, 4, 8
MS_REMOUNT, MS_NOATIME, MS_NODIRATIME, MS_BIND = 32, 1024, 2048, 4096
MS_REC, MS_PRIVATE, MS_RELATIME = 16384, 1 << 18, 1 << 21
PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_KEEPCAPS = 1, 4, 8
PR_CAPBSET_DROP, PR_SET_SECUREBITS, PR_SET_CHILD_SUBREAPER, PR_SET_NO_NEW_PRIVS = 24, 28, 36, 38
SECBIT_NO_SETUID_FIXUP, SECBIT_NO_SETUID_FIXUP_LOCKED = 1 << 2, 1 << 3
PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE = 47, 2
PR_SET_SECCOMP, SECCOMP_MODE_FILTER = 22, 2
MNT_DETACH = 2
CAP_DAC_READ_SEARCH = 2

libc = ctypes.CDLL(None, use_errno=True)
_c_str, _c_ulong = ctypes.c_char_p, ctypes.c_ulong
libc.mount.argtypes = [_c_str, _c_str, _c_str, _c_ulong, _c_str]
libc.prctl.argtypes = [ctypes.c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong]
libc.umount2.argtypes = [_c_str, ctypes.c_int]


def check(ret: int, what: str) -> None:
    """Raise ``OSError`` (with errno and ``what``) when a libc call returned non-zero."""
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    """``prctl(option, arg, arg3, 0, 0)``, checked."""
    check(libc.prctl(option, arg, arg3, 0, 0), f"prctl({option})")


def mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    """``mount(2)``, checked; ``data`` is the file system's options (e.g. ``size=4k``)."""

    def c(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    check(libc.mount(c(source), c(target), c(fstype), flags, c(data or None)), f"mount {target}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def set_capabilities(keep: tuple[int, ...]) -> None:
    """Effective = permitted = inheritable = ``keep``; also ambient, so it survives ``execve``."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    for cap in keep:
        word, bit = divmod(cap, 32)
        data[word].effective |= 1 << bit
        data[word].permitted |= 1 << bit
        data[word].inheritable |= 1 << bit
    check(libc.capset(ctypes.byref(header), data), "capset")
    for cap in keep:
        prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def last_cap() -> int:
    """The highest capability number this kernel knows."""
    try:
        with open("/proc/sys/kernel/cap_last_cap") as fh:
            return int(fh.read())
    except OSError:
        return 40


# ---------------------------------------------------------------------------------------------
# seccomp: no AF_UNIX sockets, and (at max_processes=1) no new processes, only threads

# arch -> (AUDIT_ARCH, syscall numbers); unknown architectures get no filter (see facts).
_SYSCALLS = {
    "x86_64": (0xC000003E, {"socket": 41, "clone": 56, "fork": 57, "vfork": 58, "clone3": 435}),
    "aarch64": (0xC00000B7, {"socket": 198, "clone": 220, "clone3": 435}),
}
_SYSCALLS["x86_64"][1]["io_uring_setup"] = 425  # io_uring can open sockets without socket(2)
_SYSCALLS["aarch64"][1]["io_uring_setup"] = 425
AF_UNIX, CLONE_THREAD = 1, 0x00010000
_RET_ALLOW, _RET_ERRNO = 0x7FFF0000, 0x00050000
_LD_ABS_W, _JEQ_K, _JSET_K, _RET_K = 0x20, 0x15, 0x45, 0x06


def seccomp_program(deny_unix: bool, no_processes: bool, machine: str | None = None) -> list:
    """The classic-BPF filter as ``(code, jt, jf, k)`` tuples, or ``[]`` on an unknown arch.

    Denied: ``socket(AF_UNIX, ...)`` (EACCES; host services listen on Unix sockets that a
    network namespace does not cover), ``io_uring_setup`` (ENOSYS), every syscall of a foreign
    ABI (x32, i386: they would bypass the numbers below) and, with ``no_processes``, ``fork``,
    ``vfork`` and ``clone`` without ``CLONE_THREAD`` (EAGAIN, as RLIMIT_NPROC says it) and
    ``clone3`` (ENOSYS, so that glibc falls back to ``clone`` for threads).
    """
    machine = machine or os.uname().machine
    if machine not in _SYSCALLS:
        return []
    arch, nr = _SYSCALLS[machine]
    prog: list = []
    labels: dict[str, int] = {}
    jumps: list[tuple[int, str, str]] = []

    def emit(code: int, k: int, jt: str | int = 0, jf: str | int = 0) -> None:
        if isinstance(jt, str) or isinstance(jf, str):
            jumps.append((len(prog), jt, jf))
        prog.append([code, 0 if isinstance(jt, str) else jt, 0 if isinstance(jf, str) else jf, k])

    def deny(err: int) -> None:
        emit(_RET_K, _RET_ERRNO | err)

    emit(_LD_ABS_W, 4)  # seccomp_data.arch
    emit(_JEQ_K, arch, 0, "enosys")
    emit(_LD_ABS_W, 0)  # seccomp_data.nr
    emit(_JSET_K, 0x40000000, "enosys", 0)  # x32 on x86_64
    emit(_JEQ_K, nr["io_uring_setup"], "enosys", 0)
    if deny_unix:
        emit(_JEQ_K, nr["socket"], "socket", 0)
    if no_processes:
        emit(_JEQ_K, nr["clone"], "clone", 0)
        emit(_JEQ_K, nr["clone3"], "enosys", 0)
        for name in ("fork", "vfork"):
            if name in nr:
                emit(_JEQ_K, nr[name], "eagain", 0)
    emit(_RET_K, _RET_ALLOW)
    labels["socket"] = len(prog)
    emit(_LD_ABS_W, 16)  # args[0], low 32 bits (little-endian): the domain
    emit(_JEQ_K, AF_UNIX, "eacces", 0)
    emit(_RET_K, _RET_ALLOW)
    labels["clone"] = len(prog)
    emit(_LD_ABS_W, 16)  # args[0]: the flags (x86_64 and aarch64 alike)
    emit(_JSET_K, CLONE_THREAD, 0, "eagain")
    emit(_RET_K, _RET_ALLOW)
    labels["eacces"] = len(prog)
    deny(errno.EACCES)
    labels["eagain"] = len(prog)
    deny(errno.EAGAIN)
    labels["enosys"] = len(prog)
    deny(errno.ENOSYS)
    for at, jt, jf in jumps:
        if isinstance(jt, str):
            prog[at][1] = labels[jt] - at - 1
        if isinstance(jf, str):
            prog[at][2] = labels[jf] - at - 1
    return [tuple(ins) for ins in prog]


class _SockFilter(ctypes.Structure):
    _fields_ = [
        ("code", ctypes.c_uint16),
        ("jt", ctypes.c_uint8),
        ("jf", ctypes.c_uint8),
        ("k", ctypes.c_uint32),
    ]


class _SockFprog(ctypes.Structure):
    _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.POINTER(_SockFilter))]


def install_seccomp(program: list) -> None:
    """Load ``program`` (needs ``PR_SET_NO_NEW_PRIVS`` or CAP_SYS_ADMIN); it binds all children."""
    filters = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
    fprog = _SockFprog(len(program), filters)
    check(
        libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
        "seccomp",
    )
