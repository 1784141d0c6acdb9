"""KD step with the online teacher and from a teacher cache vs a plain CE step (quickstart student).

Prints, side by side, the median wall time of one optimizer step and the peak memory of each
mode, with the KD/CE ratios. Each mode runs in its own process, so peak RSS is that mode's own
(``ru_maxrss`` never goes down within a process).

    python benchmarks/kd_step.py --run-dir runs/quickstart [--steps 6 --batch-size 8]

Needs a finished ``codistill quickstart`` run directory (its student and data); ``--teacher DIR``
replaces the embedded Gemma 3 270M (a tiny run directory and teacher make a smoke run). Each mode
builds its run with the training loop's own :func:`~codistill.training.loop.build_run`.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


def _rss_mb() -> float:
    with open("/proc/self/status") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def worker(
    mode: str, run_dir: Path, teacher: str, steps: int, batch_size: int, max_source: int
) -> dict:
    import os
    import tempfile

    from codistill.config.distill import load_distill_config
    from codistill.training.loop import build_run

    # The steps compared are the CPU's: Accelerate would otherwise take a GPU where there is one.
    os.environ["ACCELERATE_USE_CPU"] = "true"
    cached = mode == "cached"
    with tempfile.TemporaryDirectory(prefix="kd-step-") as out:  # run.json; nothing kept
        cfg = load_distill_config(
            "alpha-temperature",
            {
                "student": str(run_dir / "student"),
                "teacher": None if cached else teacher,
                "teacher_cache": str(cache_dir(run_dir)) if cached else None,
                "train_data": str(run_dir / "data" / "train.jsonl"),
                "output_dir": str(Path(out) / "run"),
                "loss": "ce" if mode == "ce" else "alpha_temperature",
                "batch_size": batch_size,
                "epochs": 1,
                "max_train_examples": batch_size * (steps + 1),
                "max_source_tokens": max_source,
                "max_target_tokens": 48,
                "progress": False,
            },
        )
        run, _ = build_run(cfg, resume=False)  # the loop's own: models, data, optimizer
        return {"mode": mode, **_measure(run, steps, batch_size)}


def _measure(run, steps: int, batch_size: int) -> dict:
    """Time ``steps`` optimizer steps of ``run`` after one warm-up step, and its memory."""
    from codistill.training.loop import optimizer_step

    run.student.train()
    weights = run.objective.weights(0, 1)
    rss_loaded = _rss_mb()
    times = []
    tokens = 0
    for step in range(steps + 1):  # step 0 warms up allocator and kernels, not timed
        group = [list(range(step * batch_size, (step + 1) * batch_size))]
        tick = time.perf_counter()
        logged = optimizer_step(run, group, weights, step=step)
        if step:
            times.append(time.perf_counter() - tick)
            tokens += logged["tokens"]
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {
        "median_step_s": statistics.median(times),
        "tokens_per_s": tokens / sum(times),
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": peak,
        "step_peak_over_load_mb": peak - rss_loaded,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run-dir", default="runs/quickstart", type=Path)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--batch-size", type=int, default=8)
    ap.add_argument("--max-source-tokens", type=int, default=128)
    ap.add_argument("--top-k", type=int, default=64, help="k of the teacher cache")
    ap.add_argument(
        "--teacher", help="teacher model directory (default: the embedded Gemma 3 270M)"
    )
    ap.add_argument("--worker", choices=["ce", "kd", "cached"], help=argparse.SUPPRESS)
    args = ap.parse_args()
    teacher = args.teacher or str(_embedded_teacher())
    if args.worker:
        sizes = (args.steps, args.batch_size, args.max_source_tokens)
        print(json.dumps(worker(args.worker, args.run_dir, teacher, *sizes)))
        return
    if not (args.run_dir / "student" / "token_map.json").exists():
        sys.exit(
            f"{args.run_dir}: no quickstart student here; run `codistill quickstart "
            f"--out {args.run_dir}` first"
        )
    ensure_cache(
        args.run_dir, teacher, args.steps, args.batch_size, args.max_source_tokens, args.top_k
    )
    results = {}
    for mode in ("ce", "kd", "cached"):
        out = subprocess.run(
            [
                sys.executable,
                __file__,
                "--worker",
                mode,
                "--run-dir",
                str(args.run_dir),
                "--teacher",
                teacher,
                "--steps",
                str(args.steps),
                "--batch-size",
                str(args.batch_size),
                "--max-source-tokens",
                str(args.max_source_tokens),
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
    ce, kd, cached = results["ce"], results["kd"], results["cached"]
    print(
        f"quickstart student, batch {args.batch_size}, prompts <= {args.max_source_tokens} "
        f"tokens, median of {args.steps} steps after 1 warm-up; cached KD from a top-{args.top_k} "
        "teacher cache (built beforehand, not timed)"
    )
    head = ["CE step", "online KD", "cached KD", "online/CE", "cached/CE"]
    print(f"{'':28}" + "".join(f"{h:>12}" for h in head))
    rows = [
        ("step time (s)", "median_step_s"),
        ("tokens/s", "tokens_per_s"),
        ("peak RSS (MB)", "peak_rss_mb"),
        ("RSS after load (MB)", "rss_after_load_mb"),
        ("step peak over load (MB)", "step_peak_over_load_mb"),
    ]
    for label, key in rows:
        r_kd = kd[key] / ce[key] if ce[key] else float("nan")
        r_cached = cached[key] / ce[key] if ce[key] else float("nan")
        print(
            f"{label:28}{ce[key]:>12.2f}{kd[key]:>12.2f}{cached[key]:>12.2f}"
            f"{r_kd:>11.2f}x{r_cached:>11.2f}x"
        )


def cache_dir(run_dir: Path) -> Path:
    return run_dir / "bench-teacher-cache"


def _embedded_teacher() -> Path:
    from codistill.models.gemma import default_teacher_dir

    return default_teacher_dir()


def ensure_cache(
    run_dir: Path, teacher: str, steps: int, batch_size: int, max_source: int, k: int
) -> None:
    """Cache the teacher over the records the steps use (resumes; a no-op when complete)."""
    from codistill.data.jsonl import read_records
    from codistill.teacher.cache import build_cache

    records = read_records(run_dir / "data" / "train.jsonl")[: batch_size * (steps + 1)]
    build_cache(
        teacher,
        records,
        cache_dir(run_dir),
        k=k,
        max_source_tokens=max_source,
        max_target_tokens=48,
        batch_size=batch_size,
    )


if __name__ == "__main__":
    main()
