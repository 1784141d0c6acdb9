"""End-to-end cost of each `codistill reproduce` stage: wall time, peak memory, tokens/s.

Reads the ``stage.json`` every stage writes (wall seconds and peak resident memory of the
process while it ran) and, where the stage knows it, its throughput: training arms report the
mean tokens/s of their logged steps, evaluations the generation tokens/s of batch-1 decoding.
Without ``--root`` it first runs the ``smoke`` study into a temporary directory (tiny models:
checks the accounting, not the machine). A resumed training stage counts only the last run.

    python benchmarks/reproduce_stages.py [--root runs/reproduce] [--study alpha-t|codegen]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path


def stage_rows(root: Path) -> list[dict]:
    rows = []
    for marker in sorted(root.glob("*/stage.json"), key=lambda p: p.stat().st_mtime):
        cost = json.loads(marker.read_text())
        row = {"dir": marker.parent.name, **cost, "tokens_per_s": None}
        metrics = marker.parent / "run" / "metrics.jsonl"
        if metrics.exists():
            speeds = [
                json.loads(line).get("tokens_per_s")
                for line in metrics.read_text().splitlines()
                if '"kind": "train"' in line
            ]
            speeds = [s for s in speeds if s]
            row["tokens_per_s"] = statistics.mean(speeds) if speeds else None
        eval_metrics = marker.parent / "eval" / "metrics.json"
        if eval_metrics.exists():
            student = json.loads(eval_metrics.read_text())["models"]["student"]
            row["tokens_per_s"] = student.get("efficiency", {}).get("tokens_per_s")
        rows.append(row)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", help="a reproduce --out directory (default: run smoke)")
    parser.add_argument("--study", default="alpha-t", help="alpha-t, trident or codegen")
    args = parser.parse_args()
    root = Path(args.root) if args.root else None
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="reproduce-bench-"))
        if args.study == "codegen":
            from codistill.reproduce_codegen import CodegenOptions, reproduce_codegen

            reproduce_codegen(CodegenOptions(budget="smoke", out=str(root)))
        else:
            from codistill.reproduce import StudyOptions, reproduce

            reproduce(StudyOptions(study=args.study, budget="smoke", out=str(root)))
    rows = stage_rows(root)
    if not rows:
        raise SystemExit(f"{root}: no stage.json found; is it a `codistill reproduce --out` dir?")
    print(f"| stage | wall s | peak RSS MB | tokens/s |  ({root})")
    print("|---|---|---|---|")
    for r in rows:
        speed = "—" if r["tokens_per_s"] is None else f"{r['tokens_per_s']:.0f}"
        print(f"| {r['dir']} | {r['seconds']:.1f} | {r['peak_rss_mb']:.0f} | {speed} |")
    print(
        f"| total | {sum(r['seconds'] for r in rows):.1f} | "
        f"{max(r['peak_rss_mb'] for r in rows):.0f} | |"
    )


if __name__ == "__main__":
    main()
