"""The worker process of :mod:`codistill.evaluation.sandbox` (stdlib only, run as a script).

:class:`~codistill.evaluation.sandbox.Sandbox` starts it as ``python -I sandbox_worker.py ROOT``;
this docstring covers the mechanics, the other module's the guarantees.

Start-up (once per worker, ~60 ms with the interpreter; a trivial sample then costs ~5 ms):

1. ``unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWNET | CLONE_NEWPID)``. When the caller is
   real root, a helper forked *before* the unshare writes the id maps (only a process privileged
   in the parent namespace may map more than its own id): namespace uid 0 -> real 0 for the worker
   itself and namespace uid 1 -> real 65534 ("nobody") for the samples. The samples must not be
   real root: the kernel never applies ``RLIMIT_NPROC`` to real uid 0, so a fork bomb run as root
   is not contained. An ordinary user maps its own uid to namespace uid 0 and samples run as that.
2. Fork: the child is pid 1 of the new pid namespace; it is the worker proper. The original
   process only waits for it, so that killing the process the parent started takes everything
   down (pid 1 dies of ``PR_SET_PDEATHSIG``, the kernel then kills the whole pid namespace).
3. Mounts (private to the worker): a fresh ``/proc`` for the pid namespace, a private tmpfs
   over ``/tmp`` (the host's, with its Unix sockets, is out of sight; ``--bind`` directories
   from it are carried over read-only), empty read-only tmpfs over ``/run``, ``/var/tmp``,
   ``/dev/shm``, ``/dev/mqueue``, empty mounts over the ``--hide`` paths (benchmark files), then
   every other mount but ``/proc`` is remounted read-only (keeping the flags the kernel locked,
   as bubblewrap does). The loopback interface of the empty network namespace is brought up, so
   ``localhost`` works and nothing else does.

Per sample: a fresh tmpfs mounted at ``/tmp/sN`` (its working directory, stdin, stdout,
stderr), then ``fork()``. The child calls ``setsid()``, points fds 0/1/2 at files (stdout/stderr
are capped by ``RLIMIT_FSIZE``), enters a new IPC namespace and caps its SysV limits, applies the
rlimits, drops its capabilities (as real root: switches to uid 65534 keeping only
``CAP_DAC_READ_SEARCH``, so that it can still read an interpreter installed under a private home
such as ``/root/.pyenv``), sets ``PR_SET_NO_NEW_PRIVS``, loads the seccomp filter
(:func:`seccomp_program`) and then either ``exec()``s the Python program in a fresh ``__main__``
(the fast path: no interpreter start-up) or ``execve()``s a toolchain command. The worker waits
on a pidfd with the wall-clock timeout, then ``kill(-1, SIGKILL)`` -- from pid 1 that reaches
every process left in the namespace and nothing outside it -- reaps them all and unmounts the
sample's tmpfs (deleting whatever it made, however deep) before the next sample.

Two pipes per sample: fd 3 ("status") carries set-up failures and is closed before the program
runs (close-on-exec for ``execve``); fd 4 ("end", Python only) carries ``NONCE PID TAG`` lines,
and only lines with the run's nonce count: ``end`` is written right after the program's last
statement, so a program that exits early never passes.

Without user namespaces (or with ``--no-namespaces``) the same happens minus steps 1-3 and the
IPC namespace: samples run as the caller, on the real filesystem and network, in a temporary
directory under ``ROOT`` (deleted by :func:`remove_tree`); the worker is a child subreaper and
kills the sample's process group and any orphans it adopted.

Protocol on fds 0 (requests) and 1 (responses): frames of a 4-byte big-endian length followed
by UTF-8 JSON. The first frame the worker sends describes the isolation it achieved.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import json
import os
import resource
import select
import signal
import socket
import struct
import sys
import time
import traceback

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
SAMPLE_OUTER_UID = 65534  # real uid of samples when the caller is root ("nobody")
_STATVFS_TO_MS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}

_libc = ctypes.CDLL(None, use_errno=True)
_c_str, _c_ulong = ctypes.c_char_p, ctypes.c_ulong
_libc.mount.argtypes = [_c_str, _c_str, _c_str, _c_ulong, _c_str]
_libc.prctl.argtypes = [ctypes.c_int, _c_ulong, _c_ulong, _c_ulong, _c_ulong]
_libc.umount2.argtypes = [_c_str, ctypes.c_int]
# Host paths hidden from samples by an empty read-only tmpfs: where Unix sockets and shared
# memory of the host's services live (a read-only mount does not stop connect()).
MASKED_DIRS = ("/run", "/var/run", "/var/tmp", "/dev/shm", "/dev/mqueue", "/var/lib/docker")
SAMPLES_DIR = "/tmp"  # inside the namespaces: a private tmpfs over the host's /tmp


def _check(ret: int, what: str) -> None:
    if ret != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _prctl(option: int, arg: int = 0, arg3: int = 0) -> None:
    _check(_libc.prctl(option, arg, arg3, 0, 0), f"prctl({option})")


def _mount(source: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    def c(text: str | None) -> bytes | None:
        return None if text is None else text.encode()

    _check(_libc.mount(c(source), c(target), c(fstype), flags, c(data or None)), f"mount {target}")


class _CapHeader(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _CapData(ctypes.Structure):
    _fields_ = [
        ("effective", ctypes.c_uint32),
        ("permitted", ctypes.c_uint32),
        ("inheritable", ctypes.c_uint32),
    ]


def _set_capabilities(keep: tuple[int, ...]) -> None:
    """Effective = permitted = inheritable = ``keep``; also ambient, so it survives ``execve``."""
    header = _CapHeader(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3
    data = (_CapData * 2)()
    for cap in keep:
        word, bit = divmod(cap, 32)
        data[word].effective |= 1 << bit
        data[word].permitted |= 1 << bit
        data[word].inheritable |= 1 << bit
    _check(_libc.capset(ctypes.byref(header), data), "capset")
    for cap in keep:
        _prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, cap)


def _last_cap() -> int:
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


def _install_seccomp(program: list) -> None:
    """Load ``program`` (needs ``PR_SET_NO_NEW_PRIVS`` or CAP_SYS_ADMIN); it binds all children."""
    filters = (_SockFilter * len(program))(*[_SockFilter(*ins) for ins in program])
    fprog = _SockFprog(len(program), filters)
    _check(
        _libc.prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, ctypes.addressof(fprog), 0, 0),
        "seccomp",
    )


# ---------------------------------------------------------------------------------------------
# framing


def read_frame(fd: int) -> dict | None:
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


def write_frame(fd: int, obj: dict) -> None:
    body = json.dumps(obj).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------------------------------------
# start-up


def _write_id_maps(pid: int, sample_uid: int) -> None:
    for kind in ("uid", "gid"):
        with open(f"/proc/{pid}/{kind}_map", "w") as fh:
            fh.write(f"0 0 1\n{sample_uid} {SAMPLE_OUTER_UID} 1\n")


def _unshare(network: bool) -> dict:
    """Enter fresh user/mount/pid(/net) namespaces; returns how samples will run."""
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | (0 if network else CLONE_NEWNET)
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        _check(_libc.unshare(flags), "unshare")
        with open("/proc/self/setgroups", "w") as fh:
            fh.write("deny")
        with open("/proc/self/uid_map", "w") as fh:
            fh.write(f"0 {uid} 1\n")
        with open("/proc/self/gid_map", "w") as fh:
            fh.write(f"0 {gid} 1\n")
        # The worker shares the samples' uid, so it and its waiting parent count towards
        # their RLIMIT_NPROC.
        return {"sample_uid": None, "nproc_base": 2}
    go_r, go_w = os.pipe()
    done_r, done_w = os.pipe()
    me = os.getpid()
    helper = os.fork()
    if helper == 0:  # still in the parent namespaces, still privileged there
        code = 1
        try:
            os.close(go_w)
            if os.read(go_r, 1) == b"g":
                _write_id_maps(me, 1)
                code = 0
        finally:
            os.write(done_w, bytes([code]))
            os._exit(code)
    os.close(go_r)
    os.close(done_w)
    try:
        _check(_libc.unshare(flags), "unshare")
        os.write(go_w, b"g")
    finally:
        os.close(go_w)
        ok = os.read(done_r, 1) == b"\x00"
        os.waitpid(helper, 0)
        os.close(done_r)
    if not ok:
        raise OSError(errno.EPERM, "could not write the uid/gid maps of the user namespace")
    return {"sample_uid": 1, "nproc_base": 0}


def _become_pid1() -> None:
    """Fork; the parent waits and mirrors the child's exit, the child is the worker proper."""
    alive_r, alive_w = os.pipe()  # the parent holds the write end until it dies
    pid = os.fork()
    if pid:
        os.close(alive_r)
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: os.kill(pid, signal.SIGKILL))
        while True:
            try:
                _, status = os.waitpid(pid, 0)
                break
            except InterruptedError:
                continue
        os._exit(os.waitstatus_to_exitcode(status) & 0xFF)
    os.close(alive_w)
    _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.set_blocking(alive_r, False)
    try:
        os.read(alive_r, 1)
        os._exit(1)  # end of file: the parent died before PR_SET_PDEATHSIG was in place
    except BlockingIOError:
        pass
    os.close(alive_r)


def _mount_points() -> list[str]:
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4]
            for esc, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
                mp = mp.replace(esc, ch)
            points.append(mp)
    return points


def _setup_mounts(binds: list[str], hides: list[str]) -> dict:
    """Private mounts: fresh /proc, a private /tmp, host socket dirs masked, the rest read-only.

    ``binds`` (host directories under /tmp the samples need, e.g. the JUnit 5 launcher) are
    carried into the private /tmp read-only; ``hides`` (benchmark files) are masked by an empty
    read-only file or directory.
    """
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    facts: dict = {"proc": True, "readonly_failures": [], "masked": [], "hidden": []}
    try:
        _mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        facts["proc"] = False
    # O_PATH fds reach the bind sources after the private /tmp hides them.
    sources = []
    for path in binds:
        try:
            sources.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
        except OSError:
            continue
    _mount("tmpfs", SAMPLES_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in sources:
        os.makedirs(path, exist_ok=True)
        _mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    empty_file = os.path.join(SAMPLES_DIR, ".empty")
    os.close(os.open(empty_file, os.O_WRONLY | os.O_CREAT, 0o444))
    for path in MASKED_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                flags = MS_NOSUID | MS_NODEV | MS_RDONLY
                _mount("tmpfs", path, "tmpfs", flags, "size=4k,mode=0755")
                facts["masked"].append(path)
            except OSError as exc:
                facts["readonly_failures"].append(f"{path}: {exc.strerror}")
    for path in hides:
        try:
            if os.path.isdir(path):
                _mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
            elif os.path.exists(path):
                _mount(empty_file, path, None, MS_BIND)
            else:
                continue
            facts["hidden"].append(path)
        except OSError as exc:
            facts["readonly_failures"].append(f"{path}: {exc.strerror}")
    # /proc stays writable: the per-sample IPC limits are set through it (samples are not
    # root and cannot write it); /tmp holds the per-sample tmpfs mounts.
    for mp in dict.fromkeys(_mount_points()):
        if mp in ("/proc", SAMPLES_DIR) or mp in facts["masked"]:
            continue
        try:
            current = os.statvfs(mp).f_flag
            flags = MS_REMOUNT | MS_BIND | MS_RDONLY
            flags |= sum(ms for st, ms in _STATVFS_TO_MS.items() if current & st)
            _mount(None, mp, None, flags)
        except OSError as exc:
            facts["readonly_failures"].append(f"{mp}: {exc.strerror}")
    return facts


def remove_tree(path: str) -> int:
    """Delete the directory ``path`` without recursion and without long paths.

    A sample may nest directories thousands deep: deeper than Python's recursion limit and
    than ``PATH_MAX``, so this walks down with ``chdir`` one level at a time (run it only when
    nothing else uses the tree: a finished sample's). Directories are made writable first, as a
    sample may have taken its own permissions away. Returns how many entries were left.
    """
    failures = 0
    home = os.open(".", os.O_RDONLY)
    names: list[str] = []  # the directories we are in, below ``path``
    failed: list[set[str]] = [set()]  # per level: entries that could not be deleted
    try:
        os.chdir(path)
        while True:
            descended = False
            for entry in os.scandir("."):
                if entry.name in failed[-1]:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    try:
                        os.chmod(entry.name, 0o700)
                        os.chdir(entry.name)
                    except OSError:
                        failed[-1].add(entry.name)
                        failures += 1
                        continue
                    names.append(entry.name)
                    failed.append(set())
                    descended = True
                    break
                try:
                    os.unlink(entry.name)
                except OSError:
                    failed[-1].add(entry.name)
                    failures += 1
            if descended:
                continue
            if not names:
                break
            name = names.pop()
            failed.pop()
            os.chdir("..")
            try:
                os.rmdir(name)
            except OSError:
                failed[-1].add(name)
                failures += 1
    except OSError:
        failures += 1
    finally:
        os.fchdir(home)
        os.close(home)
    try:
        os.rmdir(path)
    except OSError:
        failures += 1
    return failures


def _loopback_up() -> bool:
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, req))[1]
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
        return True
    except OSError:
        return False


class NamespaceError(OSError):
    """The namespaces could not be set up."""


class Worker:
    def __init__(
        self,
        root: str,
        namespaces: bool,
        network: bool,
        tmpfs_mb: int,
        binds: list[str] | None = None,
        hides: list[str] | None = None,
    ) -> None:
        self.root = os.path.realpath(root)
        self.tmpfs_mb = tmpfs_mb
        self.counter = 0
        self.facts: dict = {"namespaces": False, "network_isolated": False}
        self.sample_uid: int | None = None
        self.nproc_base = 0
        self.pid1 = False
        if namespaces:
            try:
                how = _unshare(network)
                _become_pid1()
                self.pid1 = True
                self.sample_uid, self.nproc_base = how["sample_uid"], how["nproc_base"]
                self.facts.update(_setup_mounts(binds or [], hides or []))
            except OSError as exc:
                # Half-entered namespaces are no state to go on from: the parent starts a
                # fresh worker with --no-namespaces if it may fall back.
                raise NamespaceError(str(exc)) from exc
            self.facts["namespaces"] = True
            self.facts["network_isolated"] = not network
            if not network:
                self.facts["loopback"] = _loopback_up()
        if not self.pid1:
            _prctl(PR_SET_CHILD_SUBREAPER, 1)
        # Real root never hits RLIMIT_NPROC; samples run as root only in the fallback mode.
        sample_is_root = os.geteuid() == 0 and self.sample_uid is None
        self.facts["nproc_enforced"] = not sample_is_root and (self.pid1 or os.geteuid() != 0)
        self.facts["pid_namespace"] = self.pid1
        self.facts["ipc_namespace"] = self.pid1  # one per sample, see _child
        self.facts["readonly_fs"] = self.pid1 and not self.facts.get("readonly_failures")
        self.facts["host_tmp_hidden"] = self.pid1
        self.seccomp = bool(seccomp_program(True, True))
        self.facts["seccomp"] = self.seccomp
        self.facts["unix_sockets_blocked"] = self.seccomp
        self.facts["environment"] = sorted(os.environ)  # names only: what samples could read
        _prctl(PR_SET_DUMPABLE, 0)
        self.max_fd = os.sysconf("SC_OPEN_MAX")
        self.last_cap = _last_cap()

    # ---- one request ------------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        self.counter += 1
        if self.pid1:
            # A tmpfs per sample: unmounting it deletes whatever the sample made, however deep.
            base = os.path.join(SAMPLES_DIR, f"s{self.counter}")
            os.mkdir(base, 0o755)
            _mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, f"size={self.tmpfs_mb}m,mode=0755")
        else:
            base = os.path.join(self.root, f"s{self.counter}")
            os.makedirs(base)
        work, io_dir = os.path.join(base, "work"), os.path.join(base, "io")
        try:
            os.mkdir(work)
            os.mkdir(io_dir, mode=0o700)
            for rel, content in (request.get("files") or {}).items():
                path = os.path.join(work, rel)
                os.makedirs(os.path.dirname(path), exist_ok=True)
                with open(path, "w", encoding="utf-8") as fh:
                    fh.write(content)
            if self.sample_uid is not None:
                for dirpath, dirnames, filenames in os.walk(work):
                    for name in [dirpath] + [
                        os.path.join(dirpath, n) for n in dirnames + filenames
                    ]:
                        os.chown(name, self.sample_uid, self.sample_uid)
            results = []
            for step in request["steps"]:
                res = self.run_step(step, work, io_dir)
                results.append(res)
                if res["returncode"] != 0:
                    break
            return {"steps": results}
        finally:
            if self.pid1:
                _libc.umount2(base.encode(), MNT_DETACH)
                try:
                    os.rmdir(base)
                except OSError:
                    pass
            else:
                remove_tree(base)

    def run_step(self, step: dict, work: str, io_dir: str) -> dict:
        paths = {name: os.path.join(io_dir, name) for name in ("stdin", "stdout", "stderr")}
        with open(paths["stdin"], "w", encoding="utf-8") as fh:
            fh.write(step.get("stdin") or "")
        # Two channels: "status" for the set-up only (closed before the program runs, so no
        # program can write it) and "end" for the Python fast path, where only lines that start
        # with this run's nonce count: a program that exits early never reaches the line that
        # writes it.
        status_r, status_w = os.pipe()
        end_r, end_w = os.pipe()
        nonce = os.urandom(16).hex()
        start = time.perf_counter()
        pid = os.fork()
        if pid == 0:
            try:
                os.close(status_r)
                os.close(end_r)
                self._child(step, work, paths, status_w, end_w, nonce)
            except BaseException:  # noqa: B036 - the child must never return into the worker
                # Only the set-up can get here: the program's own errors are handled below.
                try:
                    os.write(2, traceback.format_exc().encode())
                    os.write(3, f"{os.getpid()} setup-failed\n".encode())
                except OSError:
                    pass
            finally:
                os._exit(126)
        os.close(status_w)
        os.close(end_w)
        timed_out, status, usage = self._wait(pid, step["timeout_s"])
        duration = time.perf_counter() - start
        self._kill_leftovers(pid)
        setup_tag = _tag(_drain(status_r), str(pid))
        end_tag = _tag(_drain(end_r), f"{nonce} {pid}")
        cap = step["output_cap"]
        out = {
            "returncode": None,
            "signal": None,
            "timed_out": timed_out,
            "duration_s": duration,
            "cpu_s": (usage.ru_utime + usage.ru_stime) if usage else None,
            "maxrss_kb": usage.ru_maxrss if usage else None,
            "tag": setup_tag or end_tag,
            # Python fast path: whether the program ran to its last line (None: not known)
            "reached_end": end_tag in ("end", "end output-limit")
            if step["kind"] == "python"
            else None,
        }
        if status is not None:
            if os.WIFSIGNALED(status):
                out["signal"] = os.WTERMSIG(status)
            else:
                out["returncode"] = os.WEXITSTATUS(status)
        for name in ("stdout", "stderr"):
            try:
                size = os.path.getsize(paths[name])
                with open(paths[name], "rb") as fh:
                    data = fh.read(cap)
            except OSError:
                size, data = 0, b""
            out[name] = data.decode("utf-8", "replace")
            out[f"{name}_capped"] = size >= cap
        return out

    def _wait(self, pid: int, timeout_s: float):
        deadline = time.monotonic() + timeout_s
        timed_out = False
        try:
            pidfd = os.pidfd_open(pid)
        except OSError:
            pidfd = None
        try:
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if pidfd is not None:
                    ready, _, _ = select.select([pidfd], [], [], left)
                    if ready:
                        break
                else:
                    got, status, usage = os.wait4(pid, os.WNOHANG)
                    if got:  # already reaped: nothing below may wait for it again
                        return False, status, usage
                    time.sleep(min(left, 0.005))
        finally:
            if pidfd is not None:
                os.close(pidfd)
        if timed_out:
            for kill in (os.killpg, os.kill):
                try:
                    kill(pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
        _, status, usage = os.wait4(pid, 0)
        return timed_out, status, usage

    def _kill_leftovers(self, pid: int) -> None:
        """Nothing a sample started may outlive it."""
        if self.pid1:
            try:
                os.kill(-1, signal.SIGKILL)  # pid 1: everyone else in this pid namespace
            except ProcessLookupError:
                pass
            while True:
                try:
                    os.waitpid(-1, 0)
                except ChildProcessError:
                    return
        try:
            os.killpg(pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        me = str(os.getpid())
        for _ in range(50):  # orphans are re-parented to us: we are a child subreaper
            orphans = []
            for entry in os.listdir("/proc"):
                if entry.isdigit():
                    try:
                        with open(f"/proc/{entry}/stat", "rb") as fh:
                            stat = fh.read().decode("ascii", "replace")
                    except OSError:
                        continue
                    if stat[stat.rfind(")") + 2 :].split()[1] == me:
                        orphans.append(int(entry))
            if not orphans:
                return
            for child in orphans:
                try:
                    os.kill(child, signal.SIGKILL)
                    os.waitpid(child, 0)
                except (ProcessLookupError, ChildProcessError, PermissionError):
                    pass

    # ---- the sample process -----------------------------------------------------------------

    def _child(
        self, step: dict, work: str, paths: dict, status_w: int, end_w: int, nonce: str
    ) -> None:
        os.setsid()
        _prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        fds = [
            os.open(paths["stdin"], os.O_RDONLY),
            os.open(paths["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
            os.open(paths["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600),
        ]
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        # The status pipe moves to fd 3 and the end pipe to fd 4, both close-on-exec; every
        # other fd is closed. The status pipe is closed before the program runs.
        moved = [fcntl.fcntl(fd, fcntl.F_DUPFD, 5) for fd in (status_w, end_w)]
        for target, fd in zip((3, 4), moved, strict=True):
            os.dup2(fd, target, inheritable=False)
        os.closerange(5, self.max_fd)
        os.chdir(work)
        limits = step["rlimits"]
        if self.pid1:
            # SysV shared memory and message queues die with this namespace, that is with the
            # sample, and are capped at its memory limit while it runs.
            _check(_libc.unshare(CLONE_NEWIPC), "unshare(CLONE_NEWIPC)")
            page = os.sysconf("SC_PAGE_SIZE")
            for name, value in (
                ("shmmax", limits["as"]),
                ("shmall", max(1, limits["as"] // page)),
                ("msgmni", 4),
                ("msgmnb", 16384),
            ):
                with open(f"/proc/sys/kernel/{name}", "w") as fh:
                    fh.write(f"{value}\n")
        nproc = limits["nproc"] + self.nproc_base
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
        self._drop_privileges()
        if self.seccomp:
            _install_seccomp(seccomp_program(True, bool(step.get("no_processes"))))
        env = dict(step.get("env") or {})
        env.setdefault("PATH", "/usr/local/bin:/usr/bin:/bin")
        for key in ("HOME", "TMPDIR", "PWD"):
            env[key] = work
        env.setdefault("LANG", "C.UTF-8")
        if step["kind"] == "python":
            os.close(3)  # the set-up is over: nothing the program does can write a status
            _run_python(step["code"], work, env, 4, nonce)
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

    def _drop_privileges(self) -> None:
        if self.pid1 or os.geteuid() == 0:
            keep: tuple[int, ...] = (CAP_DAC_READ_SEARCH,) if self.sample_uid is not None else ()
            for cap in range(self.last_cap + 1):
                if cap not in keep:
                    _prctl(PR_CAPBSET_DROP, cap)
            if self.sample_uid is not None:
                # access(2) drops the capabilities of a non-root caller unless this bit is
                # set, and javac checks jars with it before it reads them.
                _prctl(PR_SET_SECUREBITS, SECBIT_NO_SETUID_FIXUP | SECBIT_NO_SETUID_FIXUP_LOCKED)
                os.setgroups([])
                os.setresgid(self.sample_uid, self.sample_uid, self.sample_uid)
                _prctl(PR_SET_KEEPCAPS, 1)
                os.setresuid(self.sample_uid, self.sample_uid, self.sample_uid)
            _set_capabilities(keep)
        _prctl(PR_SET_NO_NEW_PRIVS, 1)


def _drain(fd: int) -> bytes:
    """What is buffered in pipe ``fd`` (every writer is gone), then close it."""
    chunks = []
    try:
        os.set_blocking(fd, False)
        while True:
            chunk = os.read(fd, 1 << 16)
            if not chunk:
                break
            chunks.append(chunk)
    except BlockingIOError:
        pass
    finally:
        os.close(fd)
    return b"".join(chunks)


def _tag(data: bytes, prefix: str) -> str:
    """The last tag on a line that starts with ``prefix`` (other lines are not ours)."""
    tag = ""
    for line in data.decode("utf-8", "replace").splitlines():
        if line.startswith(prefix + " "):
            tag = line[len(prefix) + 1 :]
    return tag


def _run_python(code: str, work: str, env: dict, end_w: int, nonce: str) -> None:
    """Run ``code`` as ``__main__`` in this (forked) interpreter; never returns.

    Exit status follows ``python main.py``: 0 on normal completion or ``sys.exit(0)``; 1 with a
    traceback on stderr for an uncaught exception. On fd ``end_w`` goes ``NONCE PID TAG``:
    ``end`` right after the program's last statement ran (before threads are joined and exit
    handlers run, so neither can fake it), else ``exit:CODE``, ``exception:TYPE`` or ``memory``.
    """
    import atexit
    import builtins
    import io
    import types

    atexit._clear()  # the worker's exit handlers are not the program's

    os.environ.clear()
    os.environ.update(env)
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
        if exc.code is None:
            exit_code = 0
        elif isinstance(exc.code, int):
            exit_code = exc.code & 0xFF
        else:
            exit_code = 1
            try:
                print(exc.code, file=sys.stderr)
            except BaseException:  # noqa: B036, S110
                pass
        tag = f"exit:{exit_code}"
    except MemoryError as exc:
        tag, exit_code = "memory", 1
        try:
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        except BaseException:  # noqa: B036
            pass
    except BaseException as exc:  # noqa: B036 - a test program may raise anything
        tag, exit_code = f"exception:{type(exc).__name__}", 1
        try:  # without this frame, as ``python main.py`` would print it
            traceback.print_exception(type(exc), exc, exc.__traceback__.tb_next)
        except BaseException:  # noqa: B036
            pass
    if tag != "end":
        _write_all(end_w, prefix + tag.encode("utf-8", "replace")[:100] + b"\n")
    try:  # what the interpreter does at exit: join non-daemon threads, run atexit handlers
        if "threading" in sys.modules:
            sys.modules["threading"]._shutdown()
        atexit._run_exitfuncs()
    except BaseException:  # noqa: B036
        pass
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError as exc:
            if exc.errno == errno.EFBIG and tag == "end":
                _write_all(end_w, prefix + b"end output-limit\n")
            exit_code = exit_code or 1
        except BaseException:  # noqa: B036
            exit_code = exit_code or 1
    os._exit(exit_code)


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


def main(argv: list[str]) -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("root", help="directory for the samples' working directories")
    parser.add_argument("--no-namespaces", action="store_true", help="rlimits only")
    parser.add_argument("--network", action="store_true", help="keep the host network")
    parser.add_argument("--tmpfs-mb", type=int, default=512, help="size of each sample's tmpfs")
    parser.add_argument("--bind", action="append", default=[], help="host dir samples may read")
    parser.add_argument("--hide", action="append", default=[], help="path samples may not read")
    args = parser.parse_args(argv)
    # The protocol moves off 0/1 so that no sample can inherit it by accident.
    proto_in, proto_out = os.dup(0), os.dup(1)
    devnull = os.open(os.devnull, os.O_RDWR)
    os.dup2(devnull, 0)
    os.dup2(devnull, 1)
    try:
        worker = Worker(
            args.root, not args.no_namespaces, args.network, args.tmpfs_mb, args.bind, args.hide
        )
    except NamespaceError as exc:
        write_frame(proto_out, {"error": f"namespaces: {exc}", "namespaces_failed": True})
        return 1
    except Exception as exc:  # noqa: BLE001 - reported to the parent instead
        write_frame(proto_out, {"error": f"worker start-up failed: {exc!r}"})
        return 1
    write_frame(proto_out, {"ready": True, "facts": worker.facts, "pid": os.getpid()})
    while True:
        request = read_frame(proto_in)
        if request is None:
            return 0
        try:
            response = worker.handle(request)
        except Exception:  # noqa: BLE001
            response = {"error": traceback.format_exc()}
        write_frame(proto_out, response)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
