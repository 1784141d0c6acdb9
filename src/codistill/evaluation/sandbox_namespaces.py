"""The worker's namespaces and mounts (start-up steps 1-3 of :mod:`.sandbox_worker`).

Stdlib only, like everything the worker script loads. :func:`enter_namespaces` enters fresh
user, mount, pid and network namespaces (with the uid maps that keep samples from being real
root), :func:`become_pid1` forks the worker proper as pid 1 of the new pid namespace,
:func:`setup_mounts` gives it a private ``/tmp``, masks the host's socket directories and the
hidden paths and makes every other mount read-only, and :func:`loopback_up` brings up the empty
network namespace's loopback.
"""

from __future__ import annotations

import errno
import fcntl
import os
import signal
import socket
import struct

from codistill.evaluation.sandbox_syscalls import (
    CLONE_NEWNET,
    CLONE_NEWNS,
    CLONE_NEWPID,
    CLONE_NEWUSER,
    MS_BIND,
    MS_NOATIME,
    MS_NODEV,
    MS_NODIRATIME,
    MS_NOEXEC,
    MS_NOSUID,
    MS_PRIVATE,
    MS_RDONLY,
    MS_REC,
    MS_RELATIME,
    MS_REMOUNT,
    PR_SET_PDEATHSIG,
    check,
    libc,
    mount,
    prctl,
)

SAMPLE_OUTER_UID = 65534  # real uid of samples when the caller is root ("nobody")
_STATVFS_TO_MS = {
    os.ST_NOSUID: MS_NOSUID,
    os.ST_NODEV: MS_NODEV,
    os.ST_NOEXEC: MS_NOEXEC,
    os.ST_NOATIME: MS_NOATIME,
    os.ST_NODIRATIME: MS_NODIRATIME,
    os.ST_RELATIME: MS_RELATIME,
}
# Host paths hidden from samples by an empty read-only tmpfs: where Unix sockets and shared
# memory of the host's services live (a read-only mount does not stop connect()).
MASKED_DIRS = ("/run", "/var/run", "/var/tmp", "/dev/shm", "/dev/mqueue", "/var/lib/docker")
SAMPLES_DIR = "/tmp"  # inside the namespaces: a private tmpfs over the host's /tmp


def _write_id_maps(pid: int, sample_uid: int) -> None:
    for kind in ("uid", "gid"):
        with open(f"/proc/{pid}/{kind}_map", "w") as fh:
            fh.write(f"0 0 1\n{sample_uid} {SAMPLE_OUTER_UID} 1\n")


def enter_namespaces(network: bool) -> dict:
    """Enter fresh user/mount/pid(/net) namespaces; returns how samples will run."""
    flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | (0 if network else CLONE_NEWNET)
    uid, gid = os.geteuid(), os.getegid()
    if uid != 0:
        check(libc.unshare(flags), "unshare")
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
        check(libc.unshare(flags), "unshare")
        os.write(go_w, b"g")
    finally:
        os.close(go_w)
        ok = os.read(done_r, 1) == b"\x00"
        os.waitpid(helper, 0)
        os.close(done_r)
    if not ok:
        raise OSError(errno.EPERM, "could not write the uid/gid maps of the user namespace")
    return {"sample_uid": 1, "nproc_base": 0}


def become_pid1() -> None:
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
    prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
    os.set_blocking(alive_r, False)
    try:
        os.read(alive_r, 1)
        os._exit(1)  # end of file: the parent died before PR_SET_PDEATHSIG was in place
    except BlockingIOError:
        pass
    os.close(alive_r)


def _mount_points() -> list[str]:
    """Every mount point of this mount namespace, unescaped."""
    points = []
    with open("/proc/self/mountinfo") as fh:
        for line in fh:
            mp = line.split()[4]
            for esc, ch in (("\\040", " "), ("\\011", "\t"), ("\\012", "\n"), ("\\134", "\\")):
                mp = mp.replace(esc, ch)
            points.append(mp)
    return points


def setup_mounts(binds: list[str], hides: list[str]) -> dict:
    """Private mounts: fresh /proc, a private /tmp, host socket dirs masked, the rest read-only.

    ``binds`` (host directories under /tmp the samples need, e.g. the JUnit 5 launcher) are
    carried into the private /tmp read-only; ``hides`` (benchmark files) are masked by an empty
    read-only file or directory.
    """
    mount(None, "/", None, MS_REC | MS_PRIVATE)
    facts: dict = {"proc": True, "readonly_failures": [], "masked": [], "hidden": []}
    try:
        mount("proc", "/proc", "proc", MS_NOSUID | MS_NODEV | MS_NOEXEC)
    except OSError:
        facts["proc"] = False
    # O_PATH fds reach the bind sources after the private /tmp hides them.
    sources = []
    for path in binds:
        try:
            sources.append((path, os.open(path, os.O_PATH | os.O_DIRECTORY)))
        except OSError:
            continue
    mount("tmpfs", SAMPLES_DIR, "tmpfs", MS_NOSUID | MS_NODEV, "size=1m,mode=0755")
    for path, fd in sources:
        os.makedirs(path, exist_ok=True)
        mount(f"/proc/self/fd/{fd}", path, None, MS_BIND | MS_REC)
        os.close(fd)
    empty_file = os.path.join(SAMPLES_DIR, ".empty")
    os.close(os.open(empty_file, os.O_WRONLY | os.O_CREAT, 0o444))
    for path in MASKED_DIRS:
        if os.path.isdir(path) and not os.path.islink(path):
            try:
                flags = MS_NOSUID | MS_NODEV | MS_RDONLY
                mount("tmpfs", path, "tmpfs", flags, "size=4k,mode=0755")
                facts["masked"].append(path)
            except OSError as exc:
                facts["readonly_failures"].append(f"{path}: {exc.strerror}")
    for path in hides:
        try:
            if os.path.isdir(path):
                mount("tmpfs", path, "tmpfs", MS_NOSUID | MS_NODEV | MS_RDONLY, "size=4k")
            elif os.path.exists(path):
                mount(empty_file, path, None, MS_BIND)
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
            mount(None, mp, None, flags)
        except OSError as exc:
            facts["readonly_failures"].append(f"{mp}: {exc.strerror}")
    return facts


def loopback_up() -> bool:
    """Bring up ``lo`` of the (empty) network namespace; whether it worked."""
    siocgifflags, siocsifflags, iff_up = 0x8913, 0x8914, 0x1
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            req = struct.pack("16sH14x", b"lo", 0)
            flags = struct.unpack("16sH14x", fcntl.ioctl(sock, siocgifflags, req))[1]
            fcntl.ioctl(sock, siocsifflags, struct.pack("16sH14x", b"lo", flags | iff_up))
        return True
    except OSError:
        return False
