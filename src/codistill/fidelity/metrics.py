"""Fidelity metrics: does the student behave like its teacher on inputs and on their variants?

Every function here is a pure function of numpy arrays (or lists of strings) so that tests call
the math directly. Notation: ``T`` is the teacher, ``S`` the student, ``x`` an original input and
``x'`` a behaviour-preserving variant of it (a metamorphic relation applied to ``x``).

Paired rows. Arrays are aligned row by row: row ``i`` holds one (input, variant) pair, so an
input with three variants occupies three rows and its original prediction is repeated in each.
Pass ``groups`` (the input id of each row) to :func:`bootstrap_ci` / :func:`summarize` so the
bootstrap resamples inputs rather than rows.

Predictions. A classifier's prediction may be given as labels ``[n]`` or as probabilities
``[n, C]`` (rows summing to 1); :func:`predicted_labels` turns the latter into labels with argmax
(ties go to the lowest class index).

Undefined values. A conditional rate with an empty condition (no input the teacher is confident
on, no originally-correct input) is ``nan``, never a made-up 0; :func:`summarize` writes ``nan``
and infinities as ``None`` so the result is valid JSON.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
from numpy.typing import ArrayLike

from codistill.evaluation.passk import pass_at_k
from codistill.evaluation.stats import (
    ConfidenceInterval,
    McNemarResult,
    booleans,
    bootstrap_ci,
    mcnemar,
    same_length,
    summarize,
)

__all__ = [
    "ConfidenceInterval",
    "McNemarResult",
    "agreement",
    "bootstrap_ci",
    "calibration_gap",
    "classifier_fidelity",
    "consistency",
    "correct_to_incorrect_rate",
    "cqs_agreement",
    "expected_calibration_error",
    "flip_rate",
    "flipped",
    "generator_fidelity",
    "high_confidence_preservation",
    "jensen_shannon",
    "mcnemar",
    "mean_jsd",
    "output_agreement",
    "output_consistency",
    "predicted_labels",
    "recode_robustness",
    "same_label",
    "same_output",
    "summarize",
    "teacher_stable_student_flip_rate",
    "undo_renames",
]


# --------------------------------------------------------------------------------------------
# Input checking
# --------------------------------------------------------------------------------------------


def _probabilities(probs: ArrayLike, name: str = "probs") -> np.ndarray:
    p = np.asarray(probs, dtype=float)
    if p.ndim != 2:
        raise ValueError(f"{name} must be [n, C] probabilities, got shape {p.shape}")
    if p.size and (np.any(p < 0) or not np.allclose(p.sum(axis=1), 1.0, atol=1e-6)):
        raise ValueError(f"{name} rows must be non-negative and sum to 1")
    return p


def _mean(values: np.ndarray) -> float:
    return float(values.mean()) if values.size else math.nan


def _ratio(numerator: int | np.integer, denominator: int | np.integer) -> float:
    return float(numerator) / float(denominator) if denominator else math.nan


# --------------------------------------------------------------------------------------------
# Classifiers
# --------------------------------------------------------------------------------------------


def predicted_labels(pred: ArrayLike) -> np.ndarray:
    """Labels ``[n]`` from labels ``[n]`` (returned as is) or probabilities ``[n, C]`` (argmax)."""
    a = np.asarray(pred)
    if a.ndim == 1:
        return a
    if a.ndim == 2:
        return _probabilities(a, "pred").argmax(axis=1)
    raise ValueError(f"predictions must be [n] labels or [n, C] probabilities, got {a.shape}")


def same_label(a: ArrayLike, b: ArrayLike) -> np.ndarray:
    """Per item, ``label(a_i) == label(b_i)`` (bool ``[n]``); ``a``/``b``: labels or probs."""
    la, lb = predicted_labels(a), predicted_labels(b)
    same_length(a=la, b=lb)
    return np.asarray(la == lb, dtype=bool)


def agreement(teacher: ArrayLike, student: ArrayLike) -> float:
    """``mean_i 1[T(x_i) = S(x_i)]``: how often the student predicts the teacher's label."""
    return _mean(same_label(teacher, student))


def consistency(original: ArrayLike, variant: ArrayLike) -> float:
    """One model's ``mean_i 1[M(x_i) = M(x'_i)]``: how often a variant leaves its label alone."""
    return _mean(same_label(original, variant))


def flip_rate(original: ArrayLike, variant: ArrayLike) -> float:
    """Flips counted as any change: ``mean_i 1[M(x_i) != M(x'_i)] = 1 - consistency``."""
    return _mean(~same_label(original, variant))


def correct_to_incorrect_rate(original: ArrayLike, variant: ArrayLike, labels: ArrayLike) -> float:
    """Flips counted as correct -> incorrect, among the inputs the model got right.

    ``#{i : M(x_i) = y_i and M(x'_i) != y_i} / #{i : M(x_i) = y_i}``; ``nan`` when the model got
    no original right.
    """
    o, v, y = predicted_labels(original), predicted_labels(variant), np.asarray(labels)
    same_length(original=o, variant=v, labels=y)
    correct = o == y
    return _ratio(np.sum(correct & (v != y)), np.sum(correct))


def flipped(
    original: ArrayLike, variant: ArrayLike, labels: ArrayLike | None = None, mode: str = "any"
) -> np.ndarray:
    """Per-item flips (bool ``[n]``), the paired outcome :func:`mcnemar` compares.

    Args:
        original: the model's predictions on ``x`` (labels or probabilities).
        variant: its predictions on ``x'``.
        labels: true labels; needed for ``mode="correct_to_incorrect"``.
        mode: ``"any"``: ``M(x) != M(x')``; ``"correct_to_incorrect"``: ``M(x) = y != M(x')``.
    """
    o, v = predicted_labels(original), predicted_labels(variant)
    same_length(original=o, variant=v)
    if mode == "any":
        return np.asarray(o != v, dtype=bool)
    if mode == "correct_to_incorrect":
        if labels is None:
            raise ValueError("mode='correct_to_incorrect' needs labels")
        y = np.asarray(labels)
        same_length(original=o, labels=y)
        return np.asarray((o == y) & (v != y), dtype=bool)
    raise ValueError(f"mode must be 'any' or 'correct_to_incorrect', got {mode!r}")


def teacher_stable_student_flip_rate(teacher_same: ArrayLike, student_same: ArrayLike) -> float:
    """``P(S(x) != S(x') | T(x) = T(x'))``: the student flips where the teacher held steady.

    Works for classifiers and generators alike: pass per-item booleans "the model's output on
    the variant equals its output on the original" (:func:`same_label` or :func:`same_output`).
    ``nan`` when the teacher is stable on no item.
    """
    t, s = booleans(teacher_same, "teacher_same"), booleans(student_same, "student_same")
    same_length(teacher_same=t, student_same=s)
    return _ratio(np.sum(t & ~s), np.sum(t))


def jensen_shannon(p: ArrayLike, q: ArrayLike) -> np.ndarray:
    """Per-row Jensen–Shannon divergence in nats, ``[n]``.

    ``JSD(p, q) = 1/2 KL(p || m) + 1/2 KL(q || m)`` with ``m = (p + q) / 2`` and
    ``0 log 0 = 0``; it is symmetric, 0 iff ``p = q`` and at most ``ln 2`` (disjoint supports).

    Args:
        p: ``[n, C]`` probabilities (e.g. the teacher's).
        q: ``[n, C]`` probabilities (e.g. the student's).
    """
    p, q = _probabilities(p, "p"), _probabilities(q, "q")
    if p.shape != q.shape:
        raise ValueError(f"p and q must have the same shape, got {p.shape} and {q.shape}")
    m = (p + q) / 2

    def kl_to_m(a: np.ndarray) -> np.ndarray:
        # where a > 0, m >= a / 2 > 0, so the log is finite; a = 0 contributes 0.
        ratio = np.divide(a, m, out=np.ones_like(a), where=a > 0)
        return np.sum(np.where(a > 0, a * np.log(ratio), 0.0), axis=1)

    return np.clip(0.5 * kl_to_m(p) + 0.5 * kl_to_m(q), 0.0, math.log(2))


def mean_jsd(p: ArrayLike, q: ArrayLike) -> float:
    """Mean over rows of :func:`jensen_shannon` (nats); use it on originals and on variants."""
    return _mean(jensen_shannon(p, q))


def high_confidence_preservation(
    teacher_probs: ArrayLike, student_probs: ArrayLike, threshold: float = 0.9
) -> float:
    """Among inputs the teacher is confident on, how often is the student confident and agreeing?

    ``#{i : max T_i >= t and max S_i >= t and argmax S_i = argmax T_i} / #{i : max T_i >= t}``;
    ``nan`` when the teacher reaches the threshold on no input.
    """
    if not 0.0 <= threshold <= 1.0:
        raise ValueError(f"threshold must be in [0, 1], got {threshold}")
    t, s = _probabilities(teacher_probs, "teacher_probs"), _probabilities(student_probs)
    if t.shape != s.shape:
        raise ValueError(f"teacher and student probs differ in shape: {t.shape} vs {s.shape}")
    confident = t.max(axis=1) >= threshold
    kept = confident & (s.max(axis=1) >= threshold) & (s.argmax(axis=1) == t.argmax(axis=1))
    return _ratio(np.sum(kept), np.sum(confident))


def expected_calibration_error(probs: ArrayLike, labels: ArrayLike, n_bins: int = 10) -> float:
    """Expected calibration error with equal-width confidence bins (Guo et al., 2017).

    Confidence ``c_i = max_k p_ik``, prediction ``argmax_k p_ik``. Bin ``b`` holds the items
    with ``c_i`` in ``((b-1)/B, b/B]`` (the first bin also takes 0), and

        ECE = sum_b |bin_b| / n * |accuracy(bin_b) - mean confidence(bin_b)|

    Empty bins contribute nothing; ``nan`` for no items.
    """
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    p, y = _probabilities(probs), np.asarray(labels)
    same_length(probs=p, labels=y)
    if not len(y):
        return math.nan
    confidence, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(float)
    inner_edges = np.linspace(0.0, 1.0, n_bins + 1)[1:-1]
    bins = np.digitize(confidence, inner_edges, right=True)
    ece = 0.0
    for b in np.unique(bins):
        members = bins == b
        ece += members.mean() * abs(correct[members].mean() - confidence[members].mean())
    return float(ece)


def calibration_gap(
    teacher_probs: ArrayLike, student_probs: ArrayLike, labels: ArrayLike, n_bins: int = 10
) -> dict[str, float]:
    """Each model's ECE and ``gap = ECE(S) - ECE(T)`` (positive: the student is worse)."""
    t = expected_calibration_error(teacher_probs, labels, n_bins)
    s = expected_calibration_error(student_probs, labels, n_bins)
    return {"teacher_ece": t, "student_ece": s, "gap": s - t}


# --------------------------------------------------------------------------------------------
# Generators
# --------------------------------------------------------------------------------------------


def _substitute(text: str, mapping: Mapping[str, str]) -> str:
    """Replace whole identifiers ``old -> new`` in ``text``, all at once."""
    mapping = {old: new for old, new in mapping.items() if old != new}
    if not mapping:
        return text
    names = sorted(mapping, key=len, reverse=True)
    pattern = re.compile(r"(?<![\w$])(?:" + "|".join(map(re.escape, names)) + r")(?![\w$])")
    return pattern.sub(lambda m: mapping[m.group(0)], text)


def undo_renames(text: str, renames: Mapping[str, str]) -> str:
    """Map a variant's output back to the original's names: each ``new`` becomes its ``old``.

    ``renames`` is the variant's ``old -> new`` map (:class:`~codistill.fidelity.relations.Variant`
    ``.renames``). Whole identifiers only (``count`` does not touch ``counter``), all names at
    once, so a swap ``{"a": "b", "b": "a"}`` is undone correctly. Names inside string literals
    are replaced too: this is a textual normalisation, not a parse.
    """
    return _substitute(text, {new: old for old, new in renames.items()})


def same_output(
    a: Sequence[str],
    b: Sequence[str],
    renames: Sequence[Mapping[str, str] | None] | None = None,
    normalise: Callable[[str], str] | None = None,
) -> np.ndarray:
    """Per item, is ``b_i`` the same output as ``a_i`` up to its variant's renames? (bool ``[n]``)

    With ``r = renames_i`` the test is ``norm(a_i) == norm(undo_renames(b_i, r))`` *and*
    ``norm(rename(a_i, r)) == norm(b_i)``: checking both directions catches an output on the
    variant that still uses an old name (``f(count)`` after ``count -> total``), which mapping
    back alone would call unchanged.

    Args:
        a: outputs (on the originals, or the teacher's).
        b: outputs to compare (on the variants, or the student's).
        renames: per item, the ``old -> new`` renames of the variant ``b_i`` came from (or None);
            a renamed local in the output is then not a difference.
        normalise: applied to both sides after renaming (e.g. whitespace folding).
    """
    n = same_length(a=a, b=b)
    if renames is not None and len(renames) != n:
        raise ValueError(f"renames has {len(renames)} entries for {n} items")
    norm = normalise or (lambda s: s)
    out = np.zeros(n, dtype=bool)
    for i, (x, y) in enumerate(zip(a, b, strict=True)):
        r = renames[i] if renames is not None else None
        if r:
            out[i] = norm(x) == norm(undo_renames(y, r)) and norm(_substitute(x, r)) == norm(y)
        else:
            out[i] = norm(x) == norm(y)
    return out


def output_agreement(
    teacher: Sequence[str], student: Sequence[str], normalise: Callable[[str], str] | None = None
) -> float:
    """Exact-output agreement ``mean_i 1[T(x_i) = S(x_i)]`` (after ``normalise``)."""
    return _mean(same_output(teacher, student, normalise=normalise))


def output_consistency(
    original: Sequence[str],
    variant: Sequence[str],
    renames: Sequence[Mapping[str, str] | None] | None = None,
    normalise: Callable[[str], str] | None = None,
) -> float:
    """One generator's ``mean_i 1[M(x_i) = M(x'_i)]`` with the variant's renames mapped back."""
    return _mean(same_output(original, variant, renames, normalise))


def cqs_agreement(
    teacher_scores: ArrayLike, student_scores: ArrayLike, tolerance: float = 0.05
) -> dict[str, float]:
    """How close the student's per-output code quality scores are to the teacher's.

    Returns ``mean_abs_diff = mean_i |CQS_T,i - CQS_S,i|`` and
    ``within_tolerance = mean_i 1[|CQS_T,i - CQS_S,i| <= tolerance]``.
    """
    if tolerance < 0:
        raise ValueError(f"tolerance must be >= 0, got {tolerance}")
    t, s = np.asarray(teacher_scores, dtype=float), np.asarray(student_scores, dtype=float)
    same_length(teacher_scores=t, student_scores=s)
    diff = np.abs(t - s)
    return {"mean_abs_diff": _mean(diff), "within_tolerance": _mean(diff <= tolerance)}


def recode_robustness(nominal: ArrayLike, perturbed: ArrayLike, k: int = 1) -> dict[str, float]:
    """ReCode's robustness metrics (Wang et al., ACL 2023, Sec. 3.3) from execution results.

    Task ``x`` has ``s`` perturbed prompts ``x_1 .. x_s`` and ``n`` samples per prompt (sample
    ``i`` drawn with the same seed on every prompt; greedy decoding is ``n = 1``). With
    ``c_i(x)`` = 1 if sample ``i`` passes and ``passk(n, c, k) = 1 - C(n-c, k) / C(n, k)``:

    - ``pass_at_k``        = E_x passk(n, sum_i c_i(x), k) on the nominal prompt.
    - ``robust_pass``      RP_s@k = E_x passk(n, rc_s(x), k), rc_s(x) = sum_i min_j c_i(x_j):
      a sample counts only if it passes on *every* one of the s perturbed prompts (worst case;
      the nominal prompt is not part of the minimum, as in ReCode's released ``run_robust.py``).
    - ``robust_drop``      RD_s@k = (Pass@k - RP_s@k) / Pass@k (``nan`` when Pass@k = 0; it can
      be negative when perturbed prompts are solved more often than nominal ones).
    - ``robust_change_minus`` RC^[-]_s@k = E_x passk(n, sum_i 1[c_i(x) = 1, min_j c_i(x_j) = 0], k):
      nominal correct, worst case incorrect.
    - ``robust_change_plus``  RC^[+]_s@k = E_x passk(n, sum_i 1[c_i(x) = 0, max_j c_i(x_j) = 1], k):
      nominal incorrect, best case correct.
    - ``robust_relative``  RR_s@k = RC^[-]_s@k + RC^[+]_s@k: changes in either direction.

    ReCode's released script counts the "+" direction with the worst case as well
    (nominal incorrect and *all* perturbed correct); the two agree when ``s = 1``.

    Args:
        nominal: pass results on the nominal prompts, ``[N]`` (one sample) or ``[N, n]``.
        perturbed: pass results on the perturbed prompts, ``[N, s]`` or ``[N, s, n]``.
        k: the k of @k (``1 <= k <= n``).
    """
    nom, pert = np.asarray(nominal, dtype=bool), np.asarray(perturbed, dtype=bool)
    if nom.ndim == 1:
        nom = nom[:, None]
    if pert.ndim == 2:
        pert = pert[:, :, None]
    if nom.ndim != 2 or pert.ndim != 3:
        raise ValueError(
            f"nominal must be [N] or [N, n] and perturbed [N, s] or [N, s, n], got "
            f"{np.shape(nominal)} and {np.shape(perturbed)}"
        )
    if pert.shape[0] != nom.shape[0] or pert.shape[2] != nom.shape[1]:
        raise ValueError(f"nominal {nom.shape} and perturbed {pert.shape} disagree on N or n")
    if pert.shape[1] < 1:
        raise ValueError("perturbed needs at least one perturbed prompt per task (s >= 1)")
    n = nom.shape[1]
    if not 1 <= k <= n:
        raise ValueError(f"@{k} needs 1 <= k <= n samples per prompt, got n={n}")
    if nom.shape[0] == 0:
        return dict.fromkeys(
            (
                "pass_at_k",
                "robust_pass",
                "robust_drop",
                "robust_change_minus",
                "robust_change_plus",
                "robust_relative",
            ),
            math.nan,
        )

    def expected_passk(counts: np.ndarray) -> float:
        return float(np.mean([pass_at_k(n, int(c), k) for c in counts]))

    worst, best = pert.all(axis=1), pert.any(axis=1)
    nominal_pass = expected_passk(nom.sum(axis=1))
    robust_pass = expected_passk(worst.sum(axis=1))
    minus = expected_passk((nom & ~worst).sum(axis=1))
    plus = expected_passk((~nom & best).sum(axis=1))
    return {
        "pass_at_k": nominal_pass,
        "robust_pass": robust_pass,
        "robust_drop": (nominal_pass - robust_pass) / nominal_pass if nominal_pass else math.nan,
        "robust_change_minus": minus,
        "robust_change_plus": plus,
        "robust_relative": minus + plus,
    }


# --------------------------------------------------------------------------------------------
# Everything at once
# --------------------------------------------------------------------------------------------


def classifier_fidelity(
    teacher_original: ArrayLike,
    teacher_variant: ArrayLike,
    student_original: ArrayLike,
    student_variant: ArrayLike,
    labels: ArrayLike,
    *,
    confidence_threshold: float = 0.9,
    n_bins: int = 10,
    flip_mode: str = "any",
    groups: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every classifier fidelity metric with its bootstrap CI, and McNemar on the flips.

    Args:
        teacher_original, teacher_variant, student_original, student_variant: ``[n, C]``
            probabilities, one row per (input, variant) pair.
        labels: ``[n]`` true labels (a variant keeps its input's label).
        confidence_threshold: for :func:`high_confidence_preservation`.
        n_bins: for :func:`expected_calibration_error` (computed on the originals).
        flip_mode: what McNemar counts as a flip (see :func:`flipped`).
        groups, n_resamples, confidence, seed: as in :func:`summarize`.

    Returns:
        ``{"n", "metrics": {name: {"value", "ci_low", "ci_high"}}, "mcnemar": {...}}``.
    """
    to, tv = _probabilities(teacher_original), _probabilities(teacher_variant)
    so, sv = _probabilities(student_original), _probabilities(student_variant)
    y = np.asarray(labels)
    n = same_length(to=to, tv=tv, so=so, sv=sv, labels=y)
    lt_o, lt_v, ls_o, ls_v = (m.argmax(axis=1) for m in (to, tv, so, sv))
    t_same, s_same = lt_o == lt_v, ls_o == ls_v
    per_item = {
        "teacher_accuracy": lt_o == y,
        "student_accuracy": ls_o == y,
        "agreement": lt_o == ls_o,
        "agreement_variant": lt_v == ls_v,
        "teacher_consistency": t_same,
        "student_consistency": s_same,
        "teacher_flip_rate": ~t_same,
        "student_flip_rate": ~s_same,
        "jsd": jensen_shannon(to, so),
        "jsd_variant": jensen_shannon(tv, sv),
    }

    def c2i(orig: np.ndarray, var: np.ndarray) -> Callable[[np.ndarray], float]:
        return lambda i: _ratio(
            np.sum((orig[i] == y[i]) & (var[i] != y[i])), np.sum(orig[i] == y[i])
        )

    statistics = {
        "teacher_correct_to_incorrect": c2i(lt_o, lt_v),
        "student_correct_to_incorrect": c2i(ls_o, ls_v),
        "teacher_stable_student_flip_rate": lambda i: teacher_stable_student_flip_rate(
            t_same[i], s_same[i]
        ),
        "high_confidence_preservation": lambda i: high_confidence_preservation(
            to[i], so[i], confidence_threshold
        ),
        "teacher_ece": lambda i: expected_calibration_error(to[i], y[i], n_bins),
        "student_ece": lambda i: expected_calibration_error(so[i], y[i], n_bins),
        "ece_gap": lambda i: (
            expected_calibration_error(so[i], y[i], n_bins)
            - expected_calibration_error(to[i], y[i], n_bins)
        ),
    }
    metrics = summarize(
        per_item,
        statistics,
        n_items=n,
        groups=groups,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    test = mcnemar(flipped(to, tv, y, flip_mode), flipped(so, sv, y, flip_mode))
    return {"n": n, "metrics": metrics, "mcnemar": test.as_dict()}


def generator_fidelity(
    teacher_original: Sequence[str],
    teacher_variant: Sequence[str],
    student_original: Sequence[str],
    student_variant: Sequence[str],
    *,
    renames: Sequence[Mapping[str, str] | None] | None = None,
    normalise: Callable[[str], str] | None = None,
    teacher_cqs: ArrayLike | None = None,
    student_cqs: ArrayLike | None = None,
    cqs_tolerance: float = 0.05,
    reference_original: Sequence[str] | None = None,
    reference_variant: Sequence[str] | None = None,
    groups: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, Any]:
    """Every generator fidelity metric with its bootstrap CI, and McNemar on output changes.

    Args:
        teacher_original, teacher_variant, student_original, student_variant: outputs, one per
            (input, variant) row.
        renames: per row, the variant's ``old -> new`` renames, mapped back before comparing an
            output on ``x'`` with the output on ``x``.
        normalise: applied to every output before comparing.
        teacher_cqs, student_cqs: per-row code quality scores of each model's output against
            the reference, for :func:`cqs_agreement` (both or neither).
        cqs_tolerance: the tolerance of ``cqs_within_tolerance``.
        reference_original, reference_variant: per row, the expected output on ``x`` and on
            ``x'`` (the variant's renames applied), for each model's ``correct_to_incorrect``
            rate: among rows whose output on ``x`` is exactly right, the share whose output on
            ``x'`` is not (both or neither).
        groups, n_resamples, confidence, seed: as in :func:`summarize`.
    """
    n = same_length(
        teacher_original=teacher_original,
        teacher_variant=teacher_variant,
        student_original=student_original,
        student_variant=student_variant,
    )
    t_same = same_output(teacher_original, teacher_variant, renames, normalise)
    s_same = same_output(student_original, student_variant, renames, normalise)
    per_item: dict[str, ArrayLike] = {
        "agreement": same_output(teacher_original, student_original, normalise=normalise),
        "agreement_variant": same_output(teacher_variant, student_variant, normalise=normalise),
        "teacher_consistency": t_same,
        "student_consistency": s_same,
        **_cqs_items(teacher_cqs, student_cqs, cqs_tolerance),
    }
    statistics = {
        "teacher_stable_student_change_rate": lambda i: teacher_stable_student_flip_rate(
            t_same[i], s_same[i]
        ),
        **_correct_to_incorrect(
            {
                "teacher": (teacher_original, teacher_variant),
                "student": (student_original, student_variant),
            },
            reference_original,
            reference_variant,
            normalise,
        ),
    }
    metrics = summarize(
        per_item,
        statistics,
        n_items=n,
        groups=groups,
        n_resamples=n_resamples,
        confidence=confidence,
        seed=seed,
    )
    return {"n": n, "metrics": metrics, "mcnemar": mcnemar(~t_same, ~s_same).as_dict()}


def _cqs_items(
    teacher_cqs: ArrayLike | None, student_cqs: ArrayLike | None, tolerance: float
) -> dict[str, np.ndarray]:
    """Per row, ``cqs_mean_abs_diff`` and ``cqs_within_tolerance`` (:func:`cqs_agreement`'s
    parts, bootstrapped with the rest); nothing when neither model's CQS is given."""
    if (teacher_cqs is None) != (student_cqs is None):
        raise ValueError("pass both teacher_cqs and student_cqs, or neither")
    if teacher_cqs is None:
        return {}
    diff = np.abs(np.asarray(teacher_cqs, dtype=float) - np.asarray(student_cqs, dtype=float))
    return {"cqs_mean_abs_diff": diff, "cqs_within_tolerance": diff <= tolerance}


def _correct_to_incorrect(
    outputs: Mapping[str, tuple[Sequence[str], Sequence[str]]],
    reference_original: Sequence[str] | None,
    reference_variant: Sequence[str] | None,
    normalise: Callable[[str], str] | None,
) -> dict[str, Callable[[np.ndarray], float]]:
    """Per model (``outputs[name] = (on x, on x')``), the statistic ``{name}_correct_to_incorrect``:
    among rows right on ``x``, the share wrong on ``x'``; nothing without references."""
    if (reference_original is None) != (reference_variant is None):
        raise ValueError("pass both reference_original and reference_variant, or neither")
    if reference_original is None:
        return {}
    statistics = {}
    for name, (orig, var) in outputs.items():
        right = same_output(orig, reference_original, normalise=normalise)
        still = same_output(var, reference_variant, normalise=normalise)
        statistics[f"{name}_correct_to_incorrect"] = lambda i, right=right, still=still: _ratio(
            np.sum(right[i] & ~still[i]), np.sum(right[i])
        )
    return statistics
