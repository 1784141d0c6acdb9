"""The report's fidelity section: one block per ``fidelity.json`` (``codistill fidelity``).

A per-relation table (validity of the variants, agreement and consistency with bootstrap 95%
intervals, McNemar's p on teacher vs student flips), the attacks side by side with the relative
drop, the gates, and the worst disagreements: the diff of the transformed input next to what
teacher and student answered before and after.
"""

from __future__ import annotations

from pathlib import Path

from codistill.fidelity.render import num, originals_summary, recode_table, relation_table
from codistill.fidelity.runner import CLASSIFIER_TASKS
from codistill.report.render import Block, Table, Text, register_section


def fidelity_section(data) -> list[Block]:
    """The section's blocks: for each ``fidelity.json`` of the report's runs (``data.fidelity``,
    ``(path, document)`` pairs), a summary line and its tables, in the order of the module
    docstring."""
    blocks: list[Block] = []
    for path, doc in data.fidelity:
        blocks += _run_blocks(path, doc)
    return blocks


def _run_blocks(path: Path, doc: dict) -> list[Block]:
    """One ``fidelity.json``'s summary line and tables (those with rows)."""
    title = f"{doc['task']} ({doc['language']}): {path}"
    blocks: list[Block] = [
        Text(
            f"{title}: {doc['n_inputs']} inputs, {doc['n_variants']} verified variants. "
            f"On the originals: {originals_summary(doc)}."
        )
    ]
    header, rows = relation_table(doc)
    blocks.append(
        Table(
            f"relations ({path.name})",
            header,
            rows,
            note="value [95% bootstrap CI over inputs]; validity = verified / generated",
        )
    )
    header, rows = recode_table(doc)
    if rows:
        blocks.append(
            Table(
                f"code generation under the relations ({path.name})",
                header,
                rows,
                note="ReCode (Wang et al. 2023): robust pass = every variant of the input "
                "passes; robust drop = (pass@1 - robust pass) / pass@1",
            )
        )
    tables = (_attack_table(path, doc), _gate_table(doc), _worst_table(path, doc))
    return blocks + [t for t in tables if t is not None]


def _attack_table(path: Path, doc: dict) -> Table | None:
    """ALERT and MHM side by side per model, with the student's relative drop."""
    attacks = doc.get("attacks") or {}
    arows = []
    for method, block in attacks.items():
        if not isinstance(block, dict) or "teacher" not in block:
            continue
        for name in ("teacher", "student"):
            s = block[name]["summary"]
            arows.append(
                [
                    method,
                    name,
                    num(s["attack_success_rate"]),
                    num(s["mean_queries"], 1),
                    num(s["mean_identifier_change_rate"]),
                    num(s["drop"]),
                    num(block["relative_drop"]) if name == "student" else "",
                ]
            )
    if not arows:
        return None
    cols = ["attack", "model", "success rate", "mean queries", "ident. change"]
    return Table(
        f"attacks ({path.name})",
        [*cols, "drop", "relative drop"],
        arows,
        note=f"target: {attacks.get('target')}; budget {attacks.get('budget')} "
        "queries per input; relative drop = student drop / teacher drop - 1",
    )


def _gate_table(doc: dict) -> Table | None:
    """Each ``--fail-under`` / ``--fail-over`` gate with its measured value and verdict."""
    if not doc.get("gates"):
        return None
    return Table(
        "gates",
        ["metric", "rule", "measured", "result"],
        [
            [
                g["metric"],
                f"{g['rule']} {g['threshold']}",
                num(g["value"]),
                "pass" if g["passed"] else "FAIL",
            ]
            for g in doc["gates"]
        ],
    )


def _worst_table(path: Path, doc: dict) -> Table | None:
    """The worst disagreements: the input's diff next to each model's answer before and after."""
    worst = doc.get("worst") or []
    if not worst:
        return None
    kind = "P(class 1)" if doc["task"] in CLASSIFIER_TASKS else "output"
    return Table(
        f"worst disagreements ({path.name})",
        ["relation", "input diff", f"teacher {kind} x → x′", f"student {kind} x → x′"],
        [
            [
                f"{w['relation']} ({w['id']})",
                w["diff"],
                f"{w['teacher_original']}\n→ {w['teacher_variant']}",
                f"{w['student_original']}\n→ {w['student_variant']}",
            ]
            for w in worst
        ],
        code_columns=frozenset({1, 2, 3}),
    )


register_section("fidelity", "Fidelity", fidelity_section, before="training")
