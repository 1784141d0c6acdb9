"""Gates: ``--fail-under metric=value`` and ``--fail-over`` turned into an exit status.

A gate names a metric of ``fidelity.json`` (see :func:`gate_value`); a metric that is missing or
undefined fails its gate, so a CI job never passes on a number that was not measured.
"""

from __future__ import annotations


class GateError(ValueError):
    """A gate that is not ``METRIC=NUMBER``."""


def parse_gates(text: str | None) -> dict[str, float]:
    """``"agreement=0.9,student_consistency=0.8"`` -> dict; a clear error otherwise."""
    gates: dict[str, float] = {}
    for part in filter(None, (p.strip() for p in (text or "").split(","))):
        name, sep, value = part.partition("=")
        try:
            if not sep or not name.strip():
                raise ValueError
            gates[name.strip()] = float(value)
        except ValueError:
            raise GateError(f"gate {part!r}: expected METRIC=NUMBER, e.g. agreement=0.9") from None
    return gates


def gate_value(result: dict, name: str) -> float | None:
    """A metric by gate name: ``agreement`` (all relations), ``RELATION.agreement``,
    ``attack.METHOD.relative_drop`` / ``attack.METHOD.student.attack_success_rate``,
    ``teacher.accuracy`` / ``student.exact_match`` (originals)."""
    parts = name.split(".")
    if parts[0] == "attack" and len(parts) >= 3:
        node = result.get("attacks", {}).get(parts[1], {})
        if len(parts) == 3:
            return node.get(parts[2])
        return node.get(parts[2], {}).get("summary", {}).get(parts[3])
    if parts[0] in ("teacher", "student") and len(parts) == 2:
        return result.get("originals", {}).get(parts[0], {}).get(parts[1])
    relation, metric = ("all", parts[0]) if len(parts) == 1 else (parts[0], parts[1])
    block = result.get("relations", {}).get(relation)
    if block is None:
        return None
    if metric in block["metrics"]:
        return block["metrics"][metric]["value"]
    return block.get("mcnemar", {}).get(metric)


def check_gates(result: dict, under: dict[str, float], over: dict[str, float]) -> list[dict]:
    """One entry per gate; a metric that is missing or undefined fails its gate."""
    gates = []
    for rule, bounds in ((">=", under), ("<=", over)):
        for name, threshold in bounds.items():
            value = gate_value(result, name)
            ok = value is not None and (value >= threshold if rule == ">=" else value <= threshold)
            gates.append(
                {"metric": name, "rule": rule, "threshold": threshold, "value": value, "passed": ok}
            )
    return gates
