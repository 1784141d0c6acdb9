"""``codistill report RUN_DIR... [--out DIR]``: report.html (self-contained) and report.md."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser(
        "report",
        help="HTML + Markdown report of eval, distill, quickstart and sweep run directories",
        description=(
            "Tables and plots from run directories: teacher vs student per metric, efficiency "
            "ratios, training curves, sweep curves, examples. Writes report.html (one file, "
            "plots embedded, works offline), report.md and report_assets/ into --out."
        ),
    )
    p.add_argument(
        "run_dirs",
        nargs="+",
        metavar="RUN_DIR",
        help="eval (metrics.json), distill (run.json + metrics.jsonl), quickstart or sweep dir",
    )
    p.add_argument("--out", help="directory for the report (default: the first RUN_DIR)")
    p.add_argument(
        "--metric",
        default="valid_loss",
        help="sweep metric plotted first (every numeric validation metric is plotted too)",
    )
    p.add_argument("--examples", type=int, default=10, help="examples shown per table (default 10)")
    p.add_argument("--title", default="codistill report", help="page title")
    p.set_defaults(func=run)


def run(args) -> int:
    from codistill.report.render import ReportError, collect, write_report  # lazy: matplotlib

    try:
        if args.examples < 0:
            raise ReportError(f"--examples must be >= 0, got {args.examples}")
        data = collect(
            args.run_dirs, sweep_metric=args.metric, max_examples=args.examples, title=args.title
        )
        paths = write_report(data, args.out or args.run_dirs[0])
    except ReportError as exc:
        print(f"codistill report: error: {exc}", file=sys.stderr)
        return 2
    print(f"report: {paths['html']}  markdown: {paths['markdown']}")
    return 0
