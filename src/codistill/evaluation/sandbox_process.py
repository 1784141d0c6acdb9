"""The host's side of one sandbox worker process: start it, talk to it, stop it.

:class:`WorkerProcess` starts ``python -I sandbox_worker.py`` (:data:`WORKER_SCRIPT`, a file
path: the worker is a script, not an import of codistill) with the minimal environment of
:func:`~.sandbox_policy.worker_environment` in a session of its own, reads the facts it reports,
and exchanges one request frame and one response frame per sample
(:mod:`.sandbox_protocol`).
"""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from codistill.evaluation.sandbox_policy import worker_environment
from codistill.evaluation.sandbox_protocol import read_frame, write_frame

WORKER_SCRIPT = Path(__file__).with_name("sandbox_worker.py")


class SandboxError(RuntimeError):
    """The sandbox itself could not do its job (not a verdict on a program)."""


class WorkerLost(Exception):
    """The worker died, or did not answer in time; it is closed."""


class NamespacesRefused(Exception):
    """The kernel refused the worker its namespaces (it reported so and exited)."""


class WorkerProcess:
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
                raise NamespacesRefused(hello["error"])
            raise SandboxError(hello["error"])
        self.facts: dict = hello["facts"]

    def _receive(self, timeout_s: float) -> dict:
        fd = self.proc.stdout.fileno()
        ready, _, _ = select.select([fd], [], [], timeout_s)
        frame = read_frame(fd) if ready else None
        if frame is None:
            self.close()
            if not ready:
                raise WorkerLost(f"no answer in {timeout_s:g} s")
            raise WorkerLost(f"it exited {self.stderr_tail.strip()[-500:]}".strip())
        return frame

    def request(self, payload: dict, timeout_s: float) -> dict:
        try:
            write_frame(self.proc.stdin.fileno(), payload)
        except OSError as exc:
            self.close()
            raise WorkerLost(f"worker gone: {exc}") from exc
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
