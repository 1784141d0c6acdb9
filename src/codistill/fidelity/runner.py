"""``codistill fidelity``: teacher vs student on originals, verified variants and under attack.

Pipeline (one task, one teacher-student pair)::

    records -> items               what each relation transforms (valid code) + expected output
    relations -> variants          every registered relation, ``variants`` draws per input
    verify -> kept variants        parse / javac / gcc with stubs / same test outcomes
    models -> outputs              batched, cached by input hash (fidelity.models)
    metrics -> per relation        agreement, consistency, flips, JSD, ECE... with bootstrap CIs
    attacks -> per model           ALERT and MHM renaming under a query budget, relative drop
    gates -> exit status           ``--fail-under metric=value`` (and ``--fail-over``)

:func:`run_fidelity` is these steps in four stages: :func:`prepare_variants` (records to kept
variants), :func:`run_models`, :func:`score` (metrics, and the attacks of
:mod:`codistill.fidelity.attack_run`) and :func:`write_result` (gates, ``fidelity.json``,
``fidelity.md``); its settings are a :class:`~codistill.config.fidelity.FidelityConfig`.

Tasks: ``assertion`` (Java/Python AssertionRecord), ``codegen`` (Python CodegenRecord: HumanEval+
or MBPP), ``clone`` (CloneRecord pairs: the relation transforms the first method of the pair) and
``defect`` (DefectRecord C functions).

Assertion generation: the masked assertion's place is held by a call statement the relations
never touch (``__codistill_hole__();``), so a variant still says where the assertion goes; the
model sees the variant with ``<AssertPlaceHolder>`` put back, and verification sees it with the
(renamed) target assertion in place, i.e. real code. Code generation follows ReCode's
partial-code setting: relations transform the whole reference program (prompt + canonical
solution), which is verified by running the tests (same per-assert outcomes as the original), and
the model is given the variant up to the end of the docstring plus the first ``partial`` share of
the body's statements, and completes it.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from codistill import rundir
from codistill.config.fidelity import (
    CLASSIFIER_TASKS,
    FIDELITY_TASKS,
    FidelityConfig,
    check_fidelity_config,
)
from codistill.config.fields import ConfigError
from codistill.data.jsonl import read_records
from codistill.data.schema import PLACEHOLDER
from codistill.evaluation.assertion_metrics import code_tokens
from codistill.evaluation.cqs import code_quality_score
from codistill.fidelity import metrics as fm
from codistill.fidelity.attack_run import attack_candidates, run_attacks
from codistill.fidelity.gates import check_gates
from codistill.fidelity.inputs import (  # noqa: F401 (assertion_record, codegen_input: re-exported)
    HOLE,
    FidelityError,
    Item,
    assertion_record,
    codegen_input,
    codegen_passes,
    model_inputs,
    similarity,
    verify_text,
)
from codistill.fidelity.relations import get_relation, relation_names
from codistill.fidelity.render import render_markdown
from codistill.fidelity.verify import VerificationStats, VerifyItem, verify_many
from codistill.files import sha256_file as file_sha256
from codistill.models.registry import resolve_model

TASKS = FIDELITY_TASKS


@dataclass
class FidelityOptions(FidelityConfig):
    """A :class:`~codistill.config.fidelity.FidelityConfig` plus where progress lines go.

    ``fidelity.json`` records every field but ``log`` as ``options``.
    """

    log: Callable[[str], None] = print


# --------------------------------------------------------------------------- tasks


def held_out(records: list, teacher_dir: str, data_path: str) -> tuple[list, str]:
    """For a classifier teacher trained by ``codistill classifier`` on this very file, only the
    test part of its split (by id, the same seed and fractions): fidelity must not be measured
    on what the teacher was trained on. Any other data is used whole."""
    # lazy: torch, transformers (only a classifier teacher needs them)
    from codistill.models.classifier import CLASSIFIER_FILE
    from codistill.training.classifier.splits import split_records

    meta_path = Path(teacher_dir) / CLASSIFIER_FILE
    if not meta_path.is_file():
        return records, "all records (no classifier.json)"
    meta = json.loads(meta_path.read_text())
    split = meta.get("split") or {}
    if meta.get("data_sha256") != file_sha256(data_path) or "fractions" not in split:
        return records, "all records (the teacher was trained on another file)"
    test = split_records(records, split["fractions"], split["seed"])["test"]
    return test, f"the test part of the teacher's split ({len(test)} of {len(records)})"


def load_items(
    task: str, path: str, max_records: int | None, teacher: str | None = None
) -> list[Item]:
    """Read ``path`` as ``task`` records and turn them into items (first ``max_records``;
    classifier tasks: of the teacher's held-out part, see :func:`held_out`)."""
    if task not in TASKS:
        raise FidelityError(f"task must be one of {', '.join(TASKS)}, got {task!r}")
    if task in CLASSIFIER_TASKS:
        from codistill.training.classifier.splits import load_task_records  # lazy: torch

        records = load_task_records(task, path)  # codistill JSONL or the CodeXGLUE file as is
    else:
        records = read_records(path, task=task)
    if task in CLASSIFIER_TASKS and teacher is not None:
        records, _ = held_out(records, teacher, path)
    records = records[: max_records or None]
    if not records:
        raise FidelityError(f"{path}: no {task} records")
    items = []
    for r in records:
        if task == "assertion":
            end = ";" if r.language == "java" else ""
            code = r.test_code.replace(PLACEHOLDER, f"{HOLE}(){end}", 1)
            items.append(Item(r.id, r.language, code, r.target, None, r))
        elif task == "codegen":
            if r.language != "python":  # ReCode's partial code and its relations parse Python
                raise FidelityError(
                    f"{path}: record {r.id} is in {r.language}; codegen fidelity takes Python "
                    "records only"
                )
            if not r.tests.strip():
                raise FidelityError(
                    f"{path}: record {r.id} has no tests; codegen fidelity verifies variants "
                    "and judges models by running them"
                )
            if not r.canonical_solution:
                continue  # nothing to transform and verify against the tests
            code = r.prompt + r.canonical_solution
            items.append(Item(r.id, "python", code, None, None, r))
        elif task == "clone":
            items.append(Item(r.id, r.language, r.code1, None, int(r.label), r))
        else:
            items.append(Item(r.id, r.language, r.code, None, int(r.label), r))
    if not items:
        raise FidelityError(f"{path}: no record has a reference solution to transform")
    return items


# --------------------------------------------------------------------------- variants


@dataclass
class Row:
    """One verified (input, variant) pair."""

    item: int
    relation: str
    code: str
    target: str | None
    renames: dict[str, str]
    detail: str


def _rng(seed: int, *parts: object) -> random.Random:
    digest = hashlib.sha256(json.dumps([seed, *map(str, parts)]).encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "little"))


def make_variants(items: list[Item], relations: list[str], n: int, seed: int):
    """Candidates per (item, relation): distinct variants that differ from the input."""
    candidates: list[tuple[int, str, Any]] = []
    applicable: dict[str, int] = defaultdict(int)
    for i, item in enumerate(items):
        for name in relations:
            rel = get_relation(name)
            if item.language not in rel.languages:
                continue
            seen = set()
            for v in range(n):
                try:
                    variant = rel.apply(
                        item.code, item.language, _rng(seed, item.id, name, v), item.target
                    )
                except Exception as exc:  # noqa: BLE001 - a relation bug must not end the run
                    variant = None
                    applicable[f"{name}:error:{type(exc).__name__}"] += 1
                if variant is None or variant.code == item.code or variant.code in seen:
                    continue
                seen.add(variant.code)
                applicable[name] += 1
                candidates.append((i, name, variant))
    return candidates, dict(applicable)


def verify_candidates(items: list[Item], candidates, mode: str, partial: float):
    """Verify every candidate; returns kept rows and per-relation validity counts."""
    by_item: dict[int, list[int]] = defaultdict(list)
    for c, (i, _, _) in enumerate(candidates):
        by_item[i].append(c)
    order = sorted(by_item)
    batch = []
    for i in order:
        item = items[i]
        originals = verify_text(item, item.code, item.target)
        variants = [
            verify_text(item, candidates[c][2].code, candidates[c][2].target) for c in by_item[i]
        ]
        if item.record is not None and hasattr(item.record, "tests"):
            batch.append(
                VerifyItem(
                    originals, variants, "python", item.record.tests, item.record.entry_point
                )
            )
        else:
            batch.append(VerifyItem(originals, variants, item.language))
    checked = verify_many(batch, mode=mode) if batch else []
    stats = VerificationStats.of(checked)
    per_relation: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    rows: list[Row] = []
    rejected: list[dict] = []
    for i, result in zip(order, checked, strict=True):
        for c, verdict in zip(by_item[i], result.verdicts, strict=True):
            _, name, variant = candidates[c]
            counts = per_relation[name]
            counts["generated"] += 1
            counts[f"checked_{verdict.level}"] += 1
            if verdict.ok:
                counts["verified"] += 1
                rows.append(
                    Row(
                        i, name, variant.code, variant.target, dict(variant.renames), variant.detail
                    )
                )
            else:
                counts["rejected"] += 1
                if len(rejected) < 20:
                    rejected.append(
                        {"id": items[i].id, "relation": name, "reason": verdict.reason[:300]}
                    )
    validity = {
        name: {**c, "validity_rate": c["verified"] / c["generated"] if c["generated"] else None}
        for name, c in per_relation.items()
    }
    return rows, validity, stats.as_dict(), rejected


# --------------------------------------------------------------------------- models


# --------------------------------------------------------------------------- the run


def _jsonable(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: _jsonable(v) for k, v in x.items()}
    if isinstance(x, list | tuple):
        return [_jsonable(v) for v in x]
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    return x


@dataclass
class Variants:
    """Stage 1's product: the inputs, and their verified variants with the verification report."""

    items: list[Item]
    language: str
    relations: list[str]
    rows: list[Row]
    verification: dict


@dataclass
class Outputs:
    """Stage 2's product: what each model was given and what it answered.

    ``outputs[name] = (originals, variants)``: ``originals`` maps an item's index to the model's
    output on it (items whose input could be built: ``ok_items``), ``variants`` lists the outputs
    on ``var_inputs``, one per row of ``rows`` (the verified variants the model sees differently
    from their original).
    """

    orig_inputs: list
    ok_items: list[int]
    rows: list[Row]
    var_inputs: list
    outputs: dict[str, tuple[dict, Any]]


def run_fidelity(opts: FidelityConfig, log: Callable[[str], None] | None = None) -> dict:
    """Run everything and write ``fidelity.json`` (atomically) into ``opts.out``.

    Four stages: :func:`prepare_variants` (inputs, variants, verification), :func:`run_models`
    (teacher and student on originals and variants, cached), :func:`score` (metrics, quality on
    the originals, worst cases, attacks) and :func:`write_result` (gates, files).

    Args:
        opts: the run's settings; a :class:`FidelityOptions` also carries ``log``.
        log: where progress lines go (default: ``opts.log``, else ``print``).

    Raises:
        FidelityError: a bad setting, input, relation, backend or masked LM, before any model
            runs.
    """
    log = log or getattr(opts, "log", print)
    try:
        check_fidelity_config(opts)
    except ConfigError as exc:
        raise FidelityError(str(exc)) from exc
    alert_names = attack_candidates(opts)  # a bad --attack-mlm fails before any model runs
    _check_backends(opts)
    variants = prepare_variants(opts, log)
    # embedded / embedded:NAME on either side: converted once, then a plain directory.
    opts = replace(opts, teacher=resolve_model(opts.teacher), student=resolve_model(opts.student))
    models = load_models(opts)
    try:
        ran = run_models(opts, variants, models, log)
        result = score(opts, variants, ran, models, alert_names, log)
    finally:  # stop the servers a backend started, also when something failed
        for model in models.values():
            model.close()
    return write_result(opts, result)


def prepare_variants(opts: FidelityConfig, log: Callable[[str], None]) -> Variants:
    """Stage 1: read the inputs, apply the relations, verify every variant."""
    items = load_items(opts.task, opts.data, opts.max_records, opts.teacher)
    language = items[0].language
    known = relation_names(language)
    relations = known if not opts.relations else opts.relations
    unknown = [r for r in relations if r not in relation_names()]
    if unknown:
        raise FidelityError(f"unknown relation(s) {unknown}; known: {', '.join(relation_names())}")
    log(f"{len(items)} {opts.task} inputs ({language}); relations: {', '.join(relations)}")

    candidates, applicable = make_variants(items, relations, opts.variants, opts.seed)
    log(f"{len(candidates)} candidate variants; verifying ({opts.verify})")
    mode = "parse" if opts.verify == "parse" else "compile"
    rows, validity, vstats, rejected = verify_candidates(items, candidates, mode, opts.partial)
    for name in relations:
        validity.setdefault(name, {"generated": 0, "verified": 0, "validity_rate": None})
        validity[name]["applicable_inputs"] = applicable.get(name, 0)
    log(f"{len(rows)} verified variants")
    verification = {"per_relation": validity, "summary": vstats, "rejected": rejected}
    return Variants(items, language, relations, rows, verification)


def load_models(opts: FidelityConfig) -> dict[str, Any]:
    """The teacher and the student: classifiers, or generators (in-process or a backend)."""
    from codistill.fidelity.models import DEFAULT_CACHE_DIR, Classifier, Generator  # lazy: torch

    cache_dir = Path(opts.cache_dir) if opts.cache_dir else DEFAULT_CACHE_DIR / "fidelity"
    if opts.task in CLASSIFIER_TASKS:
        return {
            side: Classifier(getattr(opts, side), batch_size=opts.batch_size, cache_dir=cache_dir)
            for side in ("teacher", "student")
        }
    gen = {
        "mode": "code" if opts.task == "codegen" else "line",
        "max_source_tokens": opts.max_source_tokens,
        "truncation": opts.truncation,
        "max_new_tokens": opts.max_new_tokens or (256 if opts.task == "codegen" else 48),
        "batch_size": opts.batch_size,
        "cache_dir": cache_dir,
    }
    return {
        side: Generator(getattr(opts, side), backend=getattr(opts, f"{side}_backend"), **gen)
        for side in ("teacher", "student")
    }


def run_models(
    opts: FidelityConfig, variants: Variants, models: dict[str, Any], log: Callable[[str], None]
) -> Outputs:
    """Stage 2: each model on every original and on every variant it sees differently."""
    items = variants.items
    orig_inputs = [model_inputs(opts.task, it, it.code, it.target, opts) for it in items]
    rows, var_inputs = [], []
    for row in variants.rows:
        x = model_inputs(opts.task, items[row.item], row.code, row.target, opts)
        if x is None or orig_inputs[row.item] is None:
            continue
        if x == orig_inputs[row.item]:
            continue  # the change fell outside what the model sees (codegen: past the cut)
        rows.append(row)
        var_inputs.append(x)
    ok_items = [i for i, x in enumerate(orig_inputs) if x is not None]
    log(f"running teacher and student on {len(ok_items)} originals and {len(rows)} variants")
    classifier = opts.task in CLASSIFIER_TASKS
    outputs = {}
    for name, model in models.items():
        o = model([orig_inputs[i] for i in ok_items])
        v = model(var_inputs) if var_inputs else ([] if not classifier else np.zeros((0, 2)))
        outputs[name] = ({i: o[k] for k, i in enumerate(ok_items)}, v)
        log(f"{name}: cache {model.cache.hits} hits, {model.cache.misses} computed")
    return Outputs(orig_inputs, ok_items, rows, var_inputs, outputs)


def score(
    opts: FidelityConfig,
    variants: Variants,
    ran: Outputs,
    models: dict[str, Any],
    alert_names: tuple[str, Any] = ("synonyms", None),
    log: Callable[[str], None] = print,
) -> dict:
    """Stage 3: the result document (everything but the gates): per-relation metrics, each
    model's quality on the originals, ReCode's robustness, the worst cases and the attacks."""
    items, rows, outputs = variants.items, ran.rows, ran.outputs
    classifier = opts.task in CLASSIFIER_TASKS
    result: dict[str, Any] = {
        "task": opts.task,
        "language": variants.language,
        "teacher": opts.teacher,
        "student": opts.student,
        "data": opts.data,
        "n_inputs": len(items),
        "n_variants": len(rows),
        "relations_requested": variants.relations,
        "options": {k: v for k, v in vars(opts).items() if k != "log"},
        "verification": variants.verification,
    }
    per_relation = defaultdict(list)
    for r_i, row in enumerate(rows):
        per_relation[row.relation].append(r_i)
    per_relation["all"] = list(range(len(rows)))
    cqs = None
    if opts.cqs and opts.task == "assertion":
        cqs = _variant_cqs(rows, outputs, variants.language)
    result["relations"] = {
        name: _relation_metrics(opts, items, rows, outputs, idx, cqs)
        for name, idx in per_relation.items()
        if idx
    }
    result["originals"] = _original_quality(opts, items, ran.ok_items, ran.orig_inputs, outputs)
    if opts.task == "codegen" and rows:
        result["codegen"] = _codegen_robustness(
            items, rows, ran.var_inputs, outputs, result["originals"]
        )
    result["worst"] = _worst(opts, items, rows, outputs, ran.orig_inputs, classifier)
    if opts.attacks and opts.attack_records:
        result["attacks"] = run_attacks(
            opts,
            items,
            ran.ok_items,
            ran.orig_inputs,
            outputs,
            models,
            classifier,
            alert_names,
            result["originals"],
            log,
        )
    return result


def write_result(opts: FidelityConfig, result: dict) -> dict:
    """Stage 4: the gates' verdicts, then ``fidelity.json`` and ``fidelity.md`` in ``opts.out``."""
    result["gates"] = check_gates(result, opts.fail_under, opts.fail_over)
    result["passed"] = all(g["passed"] for g in result["gates"])
    out = Path(opts.out)
    out.mkdir(parents=True, exist_ok=True)
    rundir.write_json(out / "fidelity.json", _jsonable(result))
    (out / "fidelity.md").write_text(render_markdown(result))
    return result


def _relation_metrics(opts, items, rows, outputs, idx: list[int], cqs) -> dict:
    """Fidelity metrics with intervals over the variant rows ``idx`` (one relation, or all)."""
    groups = [rows[j].item for j in idx]
    originals = {name: [outputs[name][0][rows[j].item] for j in idx] for name in outputs}
    on_variants = {name: [outputs[name][1][j] for j in idx] for name in outputs}
    if opts.task in CLASSIFIER_TASKS:
        return fm.classifier_fidelity(
            np.array(originals["teacher"]),
            np.array(on_variants["teacher"]),
            np.array(originals["student"]),
            np.array(on_variants["student"]),
            [items[rows[j].item].label for j in idx],
            groups=groups,
            n_resamples=opts.n_resamples,
            seed=opts.seed,
        )
    refs = opts.task == "assertion"  # code generation's correctness is its tests (ReCode table)
    return fm.generator_fidelity(
        originals["teacher"],
        on_variants["teacher"],
        originals["student"],
        on_variants["student"],
        renames=[rows[j].renames for j in idx],
        normalise=str.strip,
        reference_original=[items[rows[j].item].target or "" for j in idx] if refs else None,
        reference_variant=[rows[j].target or "" for j in idx] if refs else None,
        teacher_cqs=None if cqs is None else [cqs["teacher"][j] for j in idx],
        student_cqs=None if cqs is None else [cqs["student"][j] for j in idx],
        groups=groups,
        n_resamples=opts.n_resamples,
        seed=opts.seed,
    )


def _variant_cqs(rows, outputs, language: str) -> dict[str, list[float]]:
    """Per variant row, each model's Code Quality Score against the row's target (the reference
    assertion with the variant's renames applied), for ``cqs_agreement``."""
    from codistill.models.embedder import SentenceEmbedder  # lazy: torch

    if not rows:
        return {"teacher": [], "student": []}
    embedder = SentenceEmbedder()  # one MiniLM for both models
    targets = [row.target or "" for row in rows]
    scores = {}
    for name in ("teacher", "student"):
        preds = [str(v) for v in outputs[name][1]]
        cqs = code_quality_score(preds, targets, language, embedder)
        scores[name] = [e["cqs"] for e in cqs["per_example"]]
    return scores


def _original_quality(opts, items, ok_items, orig_inputs, outputs) -> dict:
    """Each model's quality on the originals (accuracy, exact match or pass@1)."""
    out = {}
    for name in ("teacher", "student"):
        o = outputs[name][0]
        if opts.task in CLASSIFIER_TASKS:
            acc = [int(np.argmax(o[i]) == items[i].label) for i in ok_items]
            out[name] = {"accuracy": float(np.mean(acc)) if acc else None}
        elif opts.task == "assertion":
            em = [o[i].strip() == items[i].target.strip() for i in ok_items]
            # Same code tokens, layout aside (spaced Methods2Test-style text vs compact oracles).
            tok = [
                code_tokens(o[i], items[i].language)
                == code_tokens(items[i].target, items[i].language)
                for i in ok_items
            ]
            sim = [similarity(o[i], items[i].target) for i in ok_items]
            out[name] = {
                "exact_match": float(np.mean(em)),
                "format_insensitive_match": float(np.mean(tok)),
                "char_similarity": float(np.mean(sim)),
            }
        else:
            passed = codegen_passes(
                [items[i] for i in ok_items],
                [orig_inputs[i] for i in ok_items],
                [o[i] for i in ok_items],
            )
            out[name] = {"pass@1": float(np.mean(passed)) if passed else None}
            out[name]["_passed"] = dict(zip([items[i].id for i in ok_items], passed, strict=True))
    return out


def _codegen_robustness(items, rows, var_inputs, outputs, originals) -> dict:
    """ReCode's robust metrics per model: pass@1 on the original, robust pass (the original and
    every verified variant pass), robust drop and robust change, over inputs with variants."""
    out = {}
    for name in ("teacher", "student"):
        passed = codegen_passes([items[r.item] for r in rows], var_inputs, list(outputs[name][1]))
        by_item: dict[int, list[bool]] = defaultdict(list)
        for r, p in zip(rows, passed, strict=True):
            by_item[r.item].append(p)
        ids = sorted(by_item)
        width = min(len(by_item[i]) for i in ids)
        nominal = [originals[name]["_passed"][items[i].id] for i in ids]
        # ReCode uses s variants per input; inputs with more keep their first s (same s for all).
        perturbed = [by_item[i][:width] for i in ids]
        out[name] = {
            "inputs": len(ids),
            "variants_per_input": width,
            **fm.recode_robustness(nominal, perturbed, k=1),
        }
    return out


def _worst(opts, items, rows, outputs, orig_inputs, classifier) -> list[dict]:
    """Variants where the teacher kept its output and the student changed it, first."""
    scored = []
    for j, row in enumerate(rows):
        i = row.item
        t0, s0 = outputs["teacher"][0][i], outputs["student"][0][i]
        t1, s1 = outputs["teacher"][1][j], outputs["student"][1][j]
        if classifier:
            t_same = int(np.argmax(t0)) == int(np.argmax(t1))
            s_same = int(np.argmax(s0)) == int(np.argmax(s1))
            shift = float(abs(np.asarray(s0)[1] - np.asarray(s1)[1]))
            show = [f"{np.asarray(x)[1]:.3f}" for x in (t0, t1, s0, s1)]
        else:
            back = fm.undo_renames
            t_same = back(str(t1), row.renames).strip() == str(t0).strip()
            s_same = back(str(s1), row.renames).strip() == str(s0).strip()
            shift = 1 - similarity(back(str(s1), row.renames), str(s0))
            show = [str(x) for x in (t0, t1, s0, s1)]
        if s_same:
            continue
        diff = "".join(
            difflib.unified_diff(
                items[i].code.splitlines(True),
                row.code.splitlines(True),
                "original",
                "variant",
                n=1,
            )
        )
        scored.append(
            (
                (t_same, shift),
                {
                    "id": items[i].id,
                    "relation": row.relation,
                    "detail": row.detail,
                    "teacher_stable": t_same,
                    "diff": diff[:3000],
                    "teacher_original": show[0],
                    "teacher_variant": show[1],
                    "student_original": show[2],
                    "student_variant": show[3],
                },
            )
        )
    scored.sort(key=lambda s: (not s[0][0], -s[0][1]))
    return [s[1] for s in scored[: opts.worst]]


def _check_backends(opts: FidelityConfig) -> None:
    """Refuses a malformed backend spec or a missing GGUF file before anything slow runs (a
    llama.cpp server itself starts on the first uncached input); a backend for a classifier is
    refused by :meth:`FidelityConfig.check`."""
    from codistill.fidelity.models import check_backend_spec  # lazy: torch

    for side in ("teacher", "student"):
        spec = getattr(opts, f"{side}_backend")
        if spec is None:
            continue
        try:
            check_backend_spec(spec)
        except (OSError, ValueError) as exc:
            raise FidelityError(f"--{side}-backend: {exc}") from exc
