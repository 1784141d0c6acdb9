"""``fidelity.json`` as text: the per-relation table, the ReCode table, the attacks and gates.

Shared by ``fidelity.md`` (:func:`render_markdown`) and the report's fidelity section.
"""

from __future__ import annotations

import math

from codistill.config.fidelity import CLASSIFIER_TASKS

HEADLINE = {
    "generator": [
        "agreement",
        "teacher_consistency",
        "student_consistency",
        "teacher_stable_student_change_rate",
    ],
    "classifier": [
        "agreement",
        "teacher_consistency",
        "student_consistency",
        "teacher_stable_student_flip_rate",
        "student_correct_to_incorrect",
        "jsd",
    ],
}


def _fmt_ci(m: dict | None) -> str:
    if not m or m.get("value") is None:
        return "—"
    lo, hi = m.get("ci_low"), m.get("ci_high")
    if lo is None or hi is None:
        return f"{m['value']:.3f}"
    return f"{m['value']:.3f} [{lo:.3f}, {hi:.3f}]"


def relation_table(result: dict) -> tuple[list[str], list[list[str]]]:
    kind = "classifier" if result["task"] in CLASSIFIER_TASKS else "generator"
    cols = HEADLINE[kind]
    measured = result["relations"].get("all", {}).get("metrics", {})
    if kind == "generator" and "student_correct_to_incorrect" in measured:
        cols = [*cols, "student_correct_to_incorrect"]
    if "cqs_mean_abs_diff" in measured:
        cols = [*cols, "cqs_mean_abs_diff", "cqs_within_tolerance"]
    header = ["relation", "validity", "n", *cols, "McNemar p"]
    rows = []
    validity = result["verification"]["per_relation"]
    names = set(result["relations"])
    # every relation that was generated or measured, so none drops out of the table
    for name in [*sorted((set(validity) | names) - {"all"}), "all"]:
        if name not in names and name in validity:
            v = validity[name]
            rate = v.get("validity_rate")
            rows.append(
                [
                    name,
                    "—" if rate is None else f"{rate:.2f} ({v['verified']}/{v['generated']})",
                    "0",
                    *["—"] * len(cols),
                    "—",
                ]
            )
            continue
        block = result["relations"].get(name)
        if block is None:
            continue
        v = validity.get(name, {})
        rate = v.get("validity_rate")
        p = block.get("mcnemar", {}).get("p_value")
        rows.append(
            [
                name,
                ""
                if name == "all"
                else ("—" if rate is None else f"{rate:.2f} ({v['verified']}/{v['generated']})"),
                str(block["n"]),
                *[_fmt_ci(block["metrics"].get(c)) for c in cols],
                "—" if p is None else f"{p:.3g}",
            ]
        )
    return header, rows


def model_label(result: dict, side: str) -> str:
    """A model's path in backticks, and the backend it generated through if there was one."""
    backend = (result.get("options") or {}).get(f"{side}_backend")
    return f"`{result[side]}`" + (f" (through `{backend}`)" if backend else "")


def originals_summary(result: dict) -> str:
    """Each model's quality on the original inputs, e.g. ``teacher pass@1 0.050; student ...``."""
    return "; ".join(
        f"{name} " + ", ".join(f"{k} {num(v)}" for k, v in q.items() if not k.startswith("_"))
        for name, q in (result.get("originals") or {}).items()
    )


def recode_table(result: dict) -> tuple[list[str], list[list[str]]]:
    """Code generation under the relations, ReCode's way, one row per model (none for other
    tasks): pass@1 on the originals, robust pass (every variant of the input passes), robust
    drop ((pass@1 - robust pass) / pass@1), and the shares of inputs whose worst (best) variant
    flips a pass (a fail)."""
    header = ["model", "pass@1", "robust pass", "robust drop", "pass -> fail", "fail -> pass"]
    rows = [
        [
            name,
            num(b["pass_at_k"]),
            num(b["robust_pass"]),
            num(b["robust_drop"]),
            num(b["robust_change_minus"]),
            num(b["robust_change_plus"]),
        ]
        for name, b in (result.get("codegen") or {}).items()
    ]
    return header, rows


def _markdown_table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)] + [
        "| " + " | ".join(r) + " |" for r in rows
    ]


def render_markdown(result: dict) -> str:
    lines = [f"# Fidelity: {result['task']} ({result['language']})", ""]
    lines.append(
        f"teacher {model_label(result, 'teacher')} vs student {model_label(result, 'student')}, "
        f"{result['n_inputs']} inputs, {result['n_variants']} verified variants"
    )
    if result.get("originals"):
        lines.append(f"On the originals: {originals_summary(result)}.")
    lines.append("")
    lines += _markdown_table(*relation_table(result))
    header, rows = recode_table(result)
    if rows:
        lines += ["", "Code generation under the relations (ReCode):", ""]
        lines += _markdown_table(header, rows)
    if result.get("attacks"):
        lines += [
            "",
            "| attack | model | success rate | mean queries | drop | relative drop |",
            "|---|---|---|---|---|---|",
        ]
        for method, block in result["attacks"].items():
            if not isinstance(block, dict) or "teacher" not in block:
                continue
            for name in ("teacher", "student"):
                s = block[name]["summary"]
                rel = block["relative_drop"] if name == "student" else None
                lines.append(
                    f"| {method} | {name} | {num(s['attack_success_rate'])} | "
                    f"{num(s['mean_queries'], 1)} | {num(s['drop'])} | "
                    f"{'' if name == 'teacher' else num(rel)} |"
                )
    if result.get("gates"):
        lines += ["", "Gates:"]
        for g in result["gates"]:
            mark = "PASS" if g["passed"] else "FAIL"
            lines.append(
                f"- {mark} {g['metric']} {g['rule']} {g['threshold']} (measured {num(g['value'])})"
            )
    return "\n".join(lines) + "\n"


def num(x, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "—"
    return f"{x:.{digits}f}"
