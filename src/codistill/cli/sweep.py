"""``codistill sweep --config X alpha=0.1,0.5 temperature=1,4 --out DIR``."""

from __future__ import annotations

import json


def register(sub) -> None:
    p = sub.add_parser("sweep", help="run a grid of distillations; table + plot")
    p.add_argument("--config", help="YAML file or preset name")
    p.add_argument("--out", required=True, help="sweep directory")
    p.add_argument(
        "--metric",
        default="valid_loss",
        help="validation metric to plot (valid_loss, valid_exact_match, ...)",
    )
    p.add_argument(
        "grid",
        nargs="+",
        metavar="key=v1,v2,...",
        help="swept keys (several values) and fixed overrides (one value)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from codistill.training.sweep import sweep  # lazy: run-time only (torch once it trains)

    rows = sweep(args.config, args.grid, args.out, metric=args.metric)
    print(json.dumps(rows, indent=2, default=str))
    print(f"table: {args.out}/sweep.csv  plot: {args.out}/sweep.png")
    return 0
