"""``codistill quickstart``: the whole pipeline on the embedded defaults (~20 min, 2 cores)."""

from __future__ import annotations

import dataclasses

from codistill.quickstart import QuickstartOptions, quickstart


def register(sub) -> None:
    p = sub.add_parser(
        "quickstart",
        help="end-to-end demo: Gemma 3 270M -> 4-layer student on "
        "stdlib test assertions; teacher vs students table",
    )
    for f in dataclasses.fields(QuickstartOptions):
        flag = "--" + f.name.replace("_", "-")
        kind = f.type if isinstance(f.type, type) else str
        if f.name == "teacher":
            p.add_argument(flag, default=None, help="teacher dir (default: embedded Gemma 3 270M)")
        else:
            p.add_argument(
                flag,
                type={"int": int, "float": float, "str": str}.get(str(f.type), kind),
                default=f.default,
                help=f"(default: {f.default})",
            )
    p.set_defaults(func=run)


def run(args) -> int:
    opts = QuickstartOptions(
        **{f.name: getattr(args, f.name) for f in dataclasses.fields(QuickstartOptions)}
    )
    quickstart(opts)
    return 0
