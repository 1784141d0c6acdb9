"""``codistill fidelity``'s attacks: ALERT and MHM on the teacher and on the student, apart.

:func:`run_attacks` picks the inputs (the same for both models), turns each model into the
attack's oracle on each input (:func:`_attack_query`: renamed codes in, one
:class:`~codistill.fidelity.attacks.Outcome` each out) and reports each model's accuracy drop and
the student's drop relative to the teacher's. The searches themselves are
:mod:`codistill.fidelity.attacks`; ALERT's substitute names come from the synonym table or a
masked LM (:func:`attack_candidates`).

The runner imports this module inside its functions: this one imports the runner's items and
model inputs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from codistill.config.fidelity import CLASSIFIER_TASKS, FidelityConfig
from codistill.fidelity.attacks import Outcome, attack_inputs, relative_drop, summarize_attacks
from codistill.fidelity.inputs import FidelityError, Item, codegen_passes, model_inputs, similarity
from codistill.fidelity.relations.rename import local_identifiers, rename_target


def attack_candidates(opts: FidelityConfig) -> tuple[str, Any]:
    """ALERT's source of substitute names: ``("synonyms", None)`` (the synonym table), or
    ``("mlm:<dir name>", source)`` for the masked LM at ``opts.attack_mlm``
    (:class:`codistill.fidelity.mlm.MaskedLmCandidates`)."""
    if not opts.attack_mlm:
        return "synonyms", None
    from codistill.fidelity.mlm import MaskedLmCandidates  # lazy: torch, transformers

    try:
        source = MaskedLmCandidates.load(opts.attack_mlm)
    except (OSError, ValueError) as exc:
        raise FidelityError(
            f"--attack-mlm (attack_mlm) {opts.attack_mlm!r}: cannot load a masked LM: {exc}"
        ) from exc
    return f"mlm:{source.name}", source


def run_attacks(
    opts: FidelityConfig,
    items: list[Item],
    ok_items: list[int],
    orig_inputs: list,
    outputs: dict[str, tuple[dict, Any]],
    models: dict[str, Any],
    classifier: bool,
    candidates: tuple[str, Any] = ("synonyms", None),
    originals: dict | None = None,
    log: Callable[[str], None] = print,
) -> dict:
    """ALERT and MHM on teacher and student separately; relative drop of the student.

    Args:
        opts: the run's settings (``attacks``, ``attack_records``, ``attack_budget``,
            ``attack_target``, ``seed``).
        items, ok_items, orig_inputs, outputs: the runner's inputs and what each model answered
            on the originals (:class:`codistill.fidelity.runner.Outputs`).
        models: ``{"teacher": model, "student": model}``, queried again on renamed inputs.
        classifier: whether the task is a classification task.
        candidates: :func:`attack_candidates`, ALERT's substitute names.
        originals: the runner's ``_original_quality``, whose pass/fail per input picks the
            code-generation inputs.
        log: where the per-attack progress line goes.

    Returns:
        The ``attacks`` block of ``fidelity.json``: target, budget, inputs, how they were
        chosen, and per method each model's summary and first successes plus the relative drop.
    """
    target_mode = opts.attack_target
    if target_mode == "auto":
        target_mode = "reference" if classifier else "self"
    chosen, selection = _attacked_inputs(opts, items, ok_items, originals)
    language = items[0].language
    report: dict[str, Any] = {
        "target": target_mode,
        "budget": opts.attack_budget,
        "inputs": len(chosen),
        "selection": selection,
        "candidates": candidates[0],
    }
    for method in opts.attacks:
        per_model = {}
        for name in ("teacher", "student"):
            inputs = [
                (
                    items[i].code,
                    _attack_query(
                        opts, items[i], models[name], outputs[name][0][i], classifier, target_mode
                    ),
                )
                for i in chosen
            ]
            # Only ALERT takes masked-LM candidates; MHM keeps the synonym table.
            extra = {"mlm_candidates": candidates[1]} if method == "alert" else {}
            results = attack_inputs(
                inputs, language, method, seed=opts.seed, budget=opts.attack_budget, **extra
            )
            summary = summarize_attacks(results)
            examples = [r.as_dict() for r in results if r.success][:3]
            per_model[name] = {"summary": summary, "successes": examples}
        td = per_model["teacher"]["summary"]["drop"]
        sd = per_model["student"]["summary"]["drop"]
        rel = relative_drop(sd, td) if td is not None and sd is not None else None
        per_model["relative_drop"] = rel
        report[method] = per_model
        log(f"attack {method}: teacher drop {td}, student drop {sd}, relative {rel}")
    return report


def _attacked_inputs(opts, items, ok_items, originals) -> tuple[list[int], str]:
    """The inputs both models are attacked on (the same for both), and how they were chosen."""
    chosen, selection = ok_items, "the first inputs"
    if opts.task == "codegen":
        # An attack can only break a passing solution: with weak models most of the first
        # inputs fail for both and would spend the budget on nothing. Both models still get
        # the same inputs, so their drops (and the relative drop) compare like for like.
        solved = {iid for q in (originals or {}).values() for iid, ok in q["_passed"].items() if ok}
        chosen = [i for i in ok_items if items[i].id in solved]
        selection = "the first inputs the teacher or the student solves"
    return chosen[: opts.attack_records], selection


def _attack_query(opts, item: Item, model, own, classifier: bool, target_mode: str):
    """The attack's oracle for one model on one input: renamed codes -> :class:`Outcome` each.

    An identifier renamed in the code is renamed in what the answer is judged against (the
    reference assertion, or ``own``: the model's output on the original), so a rename alone
    never counts as a changed answer.
    """
    original_ids = local_identifiers(item.code, item.language)

    def query(codes: list[str]) -> list[Outcome]:
        xs, refs = [], []
        for code in codes:
            mapping = dict(zip(original_ids, local_identifiers(code, item.language), strict=False))
            mapping = {a: b for a, b in mapping.items() if a != b}
            if classifier:
                xs.append(model_inputs(opts.task, item, code, None, opts))
                refs.append(item.label)
                continue
            target = rename_target(item.target, item.language, mapping) if item.target else None
            xs.append(model_inputs(opts.task, item, code, target, opts))
            ref = (
                target
                if target_mode == "reference"
                else rename_target(str(own), item.language, mapping)
            )
            refs.append(ref)
        return _outcomes(opts.task, item, model(xs), xs, refs, own)

    return query


def _outcomes(task: str, item: Item, got, xs: list, refs: list, own) -> list:
    """Score a model's answers ``got`` on attack inputs ``xs`` against ``refs``: how close each
    is to the right answer (what an attack drives down) and whether it is right."""
    if task in CLASSIFIER_TASKS:
        return [
            Outcome(float(p[y]), int(np.argmax(p)) == y) for p, y in zip(got, refs, strict=True)
        ]
    if task == "codegen":
        passed = codegen_passes([item] * len(xs), xs, got)
        return [
            Outcome(float(p) + 0.1 * similarity(g, str(own)), bool(p))
            for p, g in zip(passed, got, strict=True)
        ]
    return [
        Outcome(similarity(g, r or ""), (g or "").strip() == (r or "").strip())
        for g, r in zip(got, refs, strict=True)
    ]
