"""Does distillation pay? Arms scored on the same held-out items, with paired intervals.

An *arm* is one model's predictions on a test set (a KD student, the CE-only student trained
with the same budget from the same init, the teacher, the untouched student). Every metric is
computed per item, so that

- each arm's metric gets a 95% percentile-bootstrap interval over items, and
- each arm minus the baseline arm gets a **paired** interval: one resample of items applied to
  both arms (:func:`codistill.evaluation.stats.paired_difference`), plus McNemar's test on the
  binary metrics (exact match, pass@1 of one greedy sample).

Per-item metrics:

- assertions, against the ground truth and against the teacher's own prediction: exact match
  (whitespace collapsed, case folded by default: the alpha-T paper's comparison),
  format-insensitive match (same code tokens), character similarity and, when asked, the Code
  Quality Score of the item (its sentence-level CodeBLEU, so the mean differs slightly from the
  corpus-level CQS that ``codistill eval`` prints; the interval is about the per-item mean);
- code generation: the item's pass rate on the base tests and on the plus tests (with one greedy
  sample: passed or not).

The gap closed by an arm is ``(arm - baseline) / (teacher - baseline)`` on the teacher-vs-truth
metrics where the teacher is ahead of the baseline, with its bootstrap interval from the same
item resamples.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from codistill import rundir
from codistill.evaluation.assertion_metrics import char_similarity, code_tokens, normalize
from codistill.evaluation.cqs import code_quality_score
from codistill.evaluation.stats import bootstrap_ci, mcnemar, paired_difference

BINARY_METRICS = frozenset({"exact_match", "format_insensitive_match", "pass@1", "pass@1_plus"})


def assertion_item_scores(
    predictions: Sequence[str],
    references: Sequence[str],
    language: str,
    *,
    casefold: bool = True,
    cqs: bool = False,
    embedder: Any = None,
) -> dict[str, np.ndarray]:
    """One score per item for each assertion metric (see the module docs)."""
    if len(predictions) != len(references):
        raise ValueError(f"{len(predictions)} predictions for {len(references)} references")
    pairs = list(zip(predictions, references, strict=True))
    scores = {
        "exact_match": [normalize(p, casefold) == normalize(r, casefold) for p, r in pairs],
        "format_insensitive_match": [
            code_tokens(p, language) == code_tokens(r, language) for p, r in pairs
        ],
        "char_similarity": [char_similarity(p, r) for p, r in pairs],
    }
    if cqs and pairs:
        per = code_quality_score(list(predictions), list(references), language, embedder)
        scores["cqs"] = [e["cqs"] for e in per["per_example"]]
    return {k: np.asarray(v, dtype=float) for k, v in scores.items()}


def codegen_item_scores(rows: Sequence[Mapping[str, Any]], task_ids: Sequence[str]) -> dict:
    """Per task: the fraction of its samples that passed the base tests and the plus tests.

    With one greedy sample per task this is pass@1 of that task (0 or 1); with n samples it is
    the unbiased pass@1 estimate of the task. ``rows`` are ``predictions.jsonl`` rows of one
    model (``task_id``, ``passed``, optional ``passed_plus``: None where the task has no plus
    tests).
    """
    by_task: dict[str, list[Mapping[str, Any]]] = {}
    for row in rows:
        by_task.setdefault(row["task_id"], []).append(row)
    missing = [t for t in task_ids if t not in by_task]
    if missing:
        raise ValueError(f"{len(missing)} tasks have no samples (first: {missing[0]})")
    scores = {"pass@1": [float(np.mean([bool(r["passed"]) for r in by_task[t]])) for t in task_ids]}
    if any(r.get("passed_plus") is not None for r in rows):
        scores["pass@1_plus"] = [
            float(np.mean([_passed_plus(r) for r in by_task[t]])) for t in task_ids
        ]
    return {k: np.asarray(v, dtype=float) for k, v in scores.items()}


def _passed_plus(row: Mapping[str, Any]) -> bool:
    """A sample's plus verdict; a task without plus tests (MBPP beside HumanEval+) counts its
    base tests, as the eval's own pass@1_plus does."""
    plus = row.get("passed_plus")
    return bool(row["passed"] if plus is None else plus)


def compare_arms(
    scores: Mapping[str, Mapping[str, Mapping[str, np.ndarray]]],
    *,
    baseline: str,
    teacher: str | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Intervals for every arm and paired differences against the baseline arm.

    Args:
        scores: ``{arm: {against: {metric: per-item scores}}}`` where ``against`` is
            ``"truth"`` or ``"teacher"``; every array covers the same items in the same order.
        baseline: the arm every other arm is compared with (e.g. the CE-only student).
        teacher: the teacher's arm, if any: the gap each arm closes is measured against it.
        n_resamples, confidence, seed: of the bootstrap; one seed, so every interval is built
            from the same item resamples.

    Returns:
        JSON-ready ``{"n", "baseline", "teacher", "confidence", "arms": {arm: {against:
        {metric: {"value", "ci_low", "ci_high"}}}}, "paired": {arm: {against: {metric: {...,
        "mcnemar"?}}}}, "gap_closed": {arm: {metric: {...}}}}``.
    """
    if baseline not in scores:
        raise ValueError(f"baseline arm {baseline!r} is not among the arms {sorted(scores)}")
    if teacher is not None and teacher not in scores:
        raise ValueError(f"teacher arm {teacher!r} is not among the arms {sorted(scores)}")
    lengths = {len(v) for arm in scores.values() for block in arm.values() for v in block.values()}
    if len(lengths) != 1:
        raise ValueError(f"arms disagree on the number of items: {sorted(lengths)}")
    n = lengths.pop()
    options = {"n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    out: dict[str, Any] = {
        "n": n,
        "baseline": baseline,
        "teacher": teacher,
        "confidence": confidence,
        "n_resamples": n_resamples,
        "arms": {},
        "paired": {},
        "gap_closed": {},
    }
    for arm, blocks in scores.items():
        out["arms"][arm] = {
            against: {m: bootstrap_ci(v, **options).as_dict() for m, v in block.items()}
            for against, block in blocks.items()
        }
        if arm == baseline:
            continue
        out["paired"][arm] = _paired(blocks, scores[baseline], options)
        if teacher is not None and arm != teacher:
            out["gap_closed"][arm] = _gap_closed(
                blocks.get("truth", {}),
                scores[baseline]["truth"],
                scores[teacher]["truth"],
                options,
            )
    return out


def _paired(blocks: Mapping, base_blocks: Mapping, options: dict) -> dict:
    paired: dict[str, dict] = {}
    for against, block in blocks.items():
        base = base_blocks.get(against)
        if base is None:  # the baseline was not scored this way (e.g. against the teacher)
            continue
        paired[against] = {}
        for metric, values in block.items():
            if metric not in base:
                continue
            entry = paired_difference(values, base[metric], **options).as_dict()
            if metric in BINARY_METRICS and _is_binary(values) and _is_binary(base[metric]):
                entry["mcnemar"] = mcnemar(values > 0.5, base[metric] > 0.5).as_dict()
            paired[against][metric] = entry
    return paired


def _gap_closed(arm: Mapping, base: Mapping, teacher: Mapping, options: dict) -> dict:
    out = {}
    for metric in arm.keys() & base.keys() & teacher.keys():
        a, b, t = (np.asarray(x[metric], dtype=float) for x in (arm, base, teacher))
        if t.mean() <= b.mean():  # no gap to close: the baseline is already at the teacher
            continue
        out[metric] = bootstrap_ci(
            statistic=_gap_statistic(a, b, t), n_items=len(a), **options
        ).as_dict()
    return out


def _gap_statistic(a: np.ndarray, b: np.ndarray, t: np.ndarray) -> Callable[[np.ndarray], float]:
    def stat(idx: np.ndarray) -> float:
        gap = float(t[idx].mean() - b[idx].mean())
        return float(a[idx].mean() - b[idx].mean()) / gap if gap != 0 else float("nan")

    return stat


def _is_binary(values: np.ndarray) -> bool:
    return bool(np.all((values == 0) | (values == 1)))


def verdict(entry: Mapping[str, Any]) -> str:
    """``better`` / ``worse`` when the paired interval excludes 0, else ``no clear difference``."""
    low, high = entry.get("ci_low"), entry.get("ci_high")
    if low is None or high is None:
        return "undefined"
    if low > 0:
        return "better"
    if high < 0:
        return "worse"
    return "no clear difference"


def render_comparison(result: Mapping[str, Any], labels: Mapping[str, str] | None = None) -> str:
    """Markdown section "Does distillation pay?" for a :func:`compare_arms` result."""
    labels = dict(labels or {})
    name = lambda arm: labels.get(arm, arm)  # noqa: E731
    pct = int(round(100 * result["confidence"]))
    lines = [
        "## Does distillation pay?",
        "",
        f"{result['n']} held-out items; scores in percent with {pct}% percentile-bootstrap "
        "intervals "
        f"({result['n_resamples']} resamples of the items); each arm minus "
        f"**{name(result['baseline'])}** with a paired interval (same items resampled together) "
        "and McNemar's p for binary metrics.",
    ]
    for against in ("truth", "teacher"):
        table = _table(result, against, name)
        if table:
            title = "ground truth" if against == "truth" else "teacher"
            lines += ["", f"### Against the {title}", "", *table]
    gap = _gap_lines(result, name)
    if gap:
        lines += ["", f"### Share of the teacher–{name(result['baseline'])} gap closed", "", *gap]
    return "\n".join(lines) + "\n"


def _gap_lines(result: Mapping[str, Any], name: Callable[[str], str]) -> list[str]:
    lines = []
    for arm, block in result.get("gap_closed", {}).items():
        parts = [f"{m} {_fmt_ci(ci)}" for m, ci in sorted(block.items()) if ci["value"] is not None]
        if parts:  # none: the teacher is no better than the baseline on any metric
            lines.append(f"- {name(arm)}: " + "; ".join(parts))
    return lines


def _table(result: Mapping[str, Any], against: str, name: Callable[[str], str]) -> list[str]:
    """One Markdown table: every arm's scores against ``against``, and its paired difference."""
    metrics = sorted(
        {m for arm in result["arms"].values() for m in arm.get(against, {})}, key=_metric_order
    )
    if not metrics:
        return []
    lines = ["| arm | " + " | ".join(metrics) + " |", "|---|" + "---|" * len(metrics)]
    for arm, blocks in result["arms"].items():
        cells = []
        for m in metrics:
            ci = blocks.get(against, {}).get(m)
            cell = _fmt_ci(ci) if ci else "—"
            diff = result["paired"].get(arm, {}).get(against, {}).get(m)
            if diff:
                cell += f"<br>Δ {_fmt_ci(diff, signed=True)} ({verdict(diff)}"
                if "mcnemar" in diff:
                    cell += f", p={diff['mcnemar']['p_value']:.3g}"
                cell += ")"
            cells.append(cell)
        lines.append(f"| {name(arm)} | " + " | ".join(cells) + " |")
    return lines


def render_by_benchmark(parts: Mapping[str, Mapping[str, Any]]) -> str:
    """Markdown: the comparison within each benchmark of a pooled code-generation test set."""
    lines = [
        "### Within each benchmark",
        "",
        "The same comparison on each benchmark's tasks alone (a pooled score can hide effects "
        "of opposite sign).",
    ]
    for bench, result in parts.items():
        lines += ["", f"#### {bench} ({result['n']} tasks)", "", *_table(result, "truth", str)]
        gap = _gap_lines(result, str)
        if gap:
            lines += ["", f"Share of the teacher–{result['baseline']} gap closed:", *gap]
    return "\n".join(lines) + "\n"


def benchmark_of(task_id: str) -> str:
    """A code-generation task's benchmark, from its id's prefix (``HumanEval/0``, ``Mbpp/2``)."""
    return task_id.split("/", 1)[0] if "/" in task_id else "other"


_ORDER = ["exact_match", "format_insensitive_match", "char_similarity", "cqs", "pass@1"]


def _metric_order(metric: str) -> tuple[int, str]:
    base = metric.removesuffix("_plus")
    return (_ORDER.index(base) if base in _ORDER else len(_ORDER), metric)


def _fmt_ci(ci: Mapping[str, Any], *, signed: bool = False) -> str:
    """A score and its interval in percent (points for differences)."""

    def f(x: float | None) -> str:
        if x is None:
            return "n/a"
        return f"{100 * x:+.1f}" if signed else f"{100 * x:.1f}"

    return f"{f(ci['value'])} [{f(ci['ci_low'])}, {f(ci['ci_high'])}]"


def read_eval_run(run_dir: str | Path) -> dict[str, Any]:
    """An eval run directory's ``metrics.json`` and the evaluated model's predictions.

    Returns ``{"task", "language", "rows"}`` where ``rows`` are the ``predictions.jsonl`` rows
    (assertions: one per record with ``id``, ``target`` and ``student``; code generation: one per
    sample of the evaluated model).
    """
    run = Path(run_dir)
    metrics_path, rows_path = run / "metrics.json", run / "predictions.jsonl"
    for path in (metrics_path, rows_path):
        if not path.is_file():
            raise FileNotFoundError(
                f"{path}: not found; is {run} a `codistill eval` run directory?"
            )
    metrics = json.loads(metrics_path.read_text())
    rows = []
    with rows_path.open() as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise ValueError(f"{rows_path}:{n}: not JSON ({exc.msg})") from None
    if metrics.get("task") == "codegen":
        rows = [r for r in rows if r.get("model", "student") == "student"]
    return {"task": metrics.get("task"), "language": metrics.get("language"), "rows": rows}


def arm_scores(
    runs: Mapping[str, Mapping[str, Any]],
    *,
    teacher: str | None = None,
    language: str | None = None,
    casefold: bool = True,
    cqs: bool = False,
    embedder: Any = None,
) -> dict[str, dict[str, dict[str, np.ndarray]]]:
    """Per-item scores of every arm (``{arm: read_eval_run(...)}``) on the items they share.

    Every arm must cover the same items (assertion ids, or code-generation task ids); the
    items are taken in the order of the first arm. Assertions are also scored against the
    teacher arm's prediction of the same item.
    """
    tasks = {r["task"] for r in runs.values()}
    if len(tasks) != 1:
        raise ValueError(f"the runs evaluate different tasks: {sorted(map(str, tasks))}")
    task = tasks.pop()
    if task == "codegen":
        ids = _shared_ids(runs, "task_id")
        return {arm: {"truth": codegen_item_scores(run["rows"], ids)} for arm, run in runs.items()}
    if task != "assertion":
        raise ValueError(f"comparison supports assertion and codegen runs, not {task!r}")
    ids = _shared_ids(runs, "id")
    language = language or next((r["language"] for r in runs.values() if r["language"]), None)
    if language is None:
        raise ValueError("the runs do not record their language; pass it (python or java)")
    preds = {arm: _by_id(run["rows"], "student") for arm, run in runs.items()}
    truth_by_id = _by_id(next(iter(runs.values()))["rows"], "target")
    truth = [truth_by_id[i] for i in ids]
    opts = {"casefold": casefold, "cqs": cqs, "embedder": embedder}
    out: dict[str, dict[str, dict[str, np.ndarray]]] = {}
    for arm, by_id in preds.items():
        p = [by_id[i] for i in ids]
        out[arm] = {"truth": assertion_item_scores(p, truth, language, **opts)}
        if teacher is not None and arm != teacher:
            t = [preds[teacher][i] for i in ids]
            out[arm]["teacher"] = assertion_item_scores(p, t, language, **opts)
    return out


def _shared_ids(runs: Mapping[str, Mapping[str, Any]], key: str) -> list[str]:
    id_lists = {arm: list(dict.fromkeys(r[key] for r in run["rows"])) for arm, run in runs.items()}
    first_arm, first = next(iter(id_lists.items()))
    for arm, ids in id_lists.items():
        if set(ids) != set(first):
            only = sorted(set(ids) ^ set(first))
            raise ValueError(
                f"arms {first_arm!r} and {arm!r} were evaluated on different items "
                f"({len(only)} differ, e.g. {only[0]!r}); evaluate every arm on the same file"
            )
    return first


def _by_id(rows: Sequence[Mapping[str, Any]], field: str) -> dict[str, str]:
    return {r["id"]: r.get(field) or "" for r in rows}


def compare_eval_runs(
    run_dirs: Mapping[str, str | Path],
    out: str | Path,
    *,
    baseline: str,
    teacher: str | None = None,
    language: str | None = None,
    casefold: bool = True,
    cqs: bool = False,
    n_resamples: int = 2000,
    seed: int = 0,
) -> tuple[dict[str, Any], str]:
    """``codistill compare``: read the eval runs, compare them, write ``comparison.json`` and
    ``comparison.md`` into ``out`` (atomically); returns the result and its Markdown."""
    runs = {name: read_eval_run(path) for name, path in run_dirs.items()}
    scores = arm_scores(runs, teacher=teacher, language=language, casefold=casefold, cqs=cqs)
    result = compare_arms(
        scores, baseline=baseline, teacher=teacher, n_resamples=n_resamples, seed=seed
    )
    result["runs"] = {name: str(path) for name, path in run_dirs.items()}
    text = render_comparison(result)
    if next(iter(runs.values()))["task"] == "codegen":
        parts = _by_benchmark(runs, scores, baseline, teacher, n_resamples, seed)
        if len(parts) > 1:
            result["by_benchmark"] = parts
            text += "\n" + render_by_benchmark(parts)
    rundir.write_json(Path(out) / "comparison.json", result)
    rundir.write_text(Path(out) / "comparison.md", text)
    return result, text


def _by_benchmark(runs, scores, baseline, teacher, n_resamples, seed) -> dict[str, Any]:
    """:func:`compare_arms` on each benchmark's tasks of a pooled code-generation test set."""
    ids = _shared_ids(runs, "task_id")  # the order arm_scores scored them in
    groups: dict[str, list[int]] = {}
    for i, task_id in enumerate(ids):
        groups.setdefault(benchmark_of(task_id), []).append(i)
    return {
        bench: compare_arms(
            {
                arm: {a: {m: v[idx] for m, v in block.items()} for a, block in blocks.items()}
                for arm, blocks in scores.items()
            },
            baseline=baseline,
            teacher=teacher,
            n_resamples=n_resamples,
            seed=seed,
        )
        for bench, idx in groups.items()
    }
