"""The worker process of :mod:`codistill.evaluation.sandbox` (stdlib only, run as a script).

:class:`~codistill.evaluation.sandbox.Sandbox` starts it as ``python -I sandbox_worker.py ROOT``
(through :mod:`.sandbox_process`); this docstring covers the mechanics, the other module's the
guarantees. This file holds the worker's loop (one request, one sample, at a time) and its
clean-up; its helpers, stdlib only too and loaded from the same folder, are
:mod:`.sandbox_namespaces` (start-up steps 1-3), :mod:`.sandbox_sample` (the sample process),
:mod:`.sandbox_syscalls` (``ctypes`` calls, the seccomp filter) and :mod:`.sandbox_protocol`.

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
stderr), then ``fork()``. The child (:mod:`.sandbox_sample`) calls ``setsid()``, points fds
0/1/2 at files (stdout/stderr are capped by ``RLIMIT_FSIZE``), enters a new IPC namespace and
caps its SysV limits, applies the rlimits, drops its capabilities (as real root: switches to uid
65534 keeping only ``CAP_DAC_READ_SEARCH``, so that it can still read an interpreter installed
under a private home such as ``/root/.pyenv``), sets ``PR_SET_NO_NEW_PRIVS``, loads the seccomp
filter (:func:`~.sandbox_syscalls.seccomp_program`) and then either ``exec()``s the Python
program in a fresh ``__main__`` (the fast path: no interpreter start-up) or ``execve()``s a
toolchain command. The worker waits on a pidfd with the wall-clock timeout, then
``kill(-1, SIGKILL)`` -- from pid 1 that reaches every process left in the namespace and nothing
outside it -- reaps them all and unmounts the sample's tmpfs (deleting whatever it made, however
deep) before the next sample.

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

import argparse
import os
import select
import signal
import sys
import time
import traceback

if not __package__:
    # Run as a script (``python -I``: no folder on sys.path, and an installed codistill may be
    # another version): the helpers below are the files beside this one, imported under their
    # package names through stand-in packages, so that no ``__init__`` runs in the worker.
    import types

    _here = os.path.dirname(os.path.abspath(__file__))
    for _name, _path in (("codistill", os.path.dirname(_here)), ("codistill.evaluation", _here)):
        _package = types.ModuleType(_name)
        _package.__path__ = [_path]
        sys.modules[_name] = _package

from codistill.evaluation.sandbox_namespaces import (
    SAMPLES_DIR,
    become_pid1,
    enter_namespaces,
    loopback_up,
    setup_mounts,
)
from codistill.evaluation.sandbox_protocol import read_frame, write_frame
from codistill.evaluation.sandbox_sample import Containment, start_sample
from codistill.evaluation.sandbox_syscalls import (
    MNT_DETACH,
    MS_NODEV,
    MS_NOSUID,
    PR_SET_CHILD_SUBREAPER,
    PR_SET_DUMPABLE,
    last_cap,
    libc,
    mount,
    prctl,
    seccomp_program,
)


class NamespaceError(OSError):
    """The namespaces could not be set up."""


class Worker:
    """The worker proper: its namespaces (if any), its facts, and one sample at a time."""

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
                how = enter_namespaces(network)
                become_pid1()
                self.pid1 = True
                self.sample_uid, self.nproc_base = how["sample_uid"], how["nproc_base"]
                self.facts.update(setup_mounts(binds or [], hides or []))
            except OSError as exc:
                # Half-entered namespaces are no state to go on from: the parent starts a
                # fresh worker with --no-namespaces if it may fall back.
                raise NamespaceError(str(exc)) from exc
            self.facts["namespaces"] = True
            self.facts["network_isolated"] = not network
            if not network:
                self.facts["loopback"] = loopback_up()
        if not self.pid1:
            prctl(PR_SET_CHILD_SUBREAPER, 1)
        # Real root never hits RLIMIT_NPROC; samples run as root only in the fallback mode.
        sample_is_root = os.geteuid() == 0 and self.sample_uid is None
        self.facts["nproc_enforced"] = not sample_is_root and (self.pid1 or os.geteuid() != 0)
        self.facts["pid_namespace"] = self.pid1
        self.facts["ipc_namespace"] = self.pid1  # one per sample, see sandbox_sample
        self.facts["readonly_fs"] = self.pid1 and not self.facts.get("readonly_failures")
        self.facts["host_tmp_hidden"] = self.pid1
        seccomp = bool(seccomp_program(True, True))
        self.facts["seccomp"] = seccomp
        self.facts["unix_sockets_blocked"] = seccomp
        self.facts["environment"] = sorted(os.environ)  # names only: what samples could read
        prctl(PR_SET_DUMPABLE, 0)
        self.containment = Containment(
            pid1=self.pid1,
            sample_uid=self.sample_uid,
            nproc_base=self.nproc_base,
            seccomp=seccomp,
            max_fd=os.sysconf("SC_OPEN_MAX"),
            last_cap=last_cap(),
        )

    # ---- one request ------------------------------------------------------------------------

    def handle(self, request: dict) -> dict:
        self.counter += 1
        if self.pid1:
            # A tmpfs per sample: unmounting it deletes whatever the sample made, however deep.
            base = os.path.join(SAMPLES_DIR, f"s{self.counter}")
            os.mkdir(base, 0o755)
            mount("tmpfs", base, "tmpfs", MS_NOSUID | MS_NODEV, f"size={self.tmpfs_mb}m,mode=0755")
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
                libc.umount2(base.encode(), MNT_DETACH)
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
                start_sample(step, work, paths, status_w, end_w, nonce, self.containment)
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


def main(argv: list[str]) -> int:
    """Start the worker and answer requests until the host closes fd 0."""
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
