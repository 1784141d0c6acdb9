"""Bootstrap intervals and McNemar's test: the statistics behind every interval codistill prints.

Pure functions of numpy arrays. ``bootstrap_ci`` is the percentile bootstrap of a per-item metric
(or of any statistic of item indices, so several arrays are resampled together); ``paired_
difference`` is the interval of ``mean(a) - mean(b)`` over the same items, resampled together,
which is what "arm minus baseline on the same test set" needs: item difficulty cancels, so the
interval is much narrower than two separate intervals would suggest. ``mcnemar`` tests paired
binary outcomes (exact match of two models on the same items).

Same ``seed`` and same number of items give the same resamples, so metrics computed with one
seed are paired with each other as well.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
from numpy.typing import ArrayLike


def booleans(values: ArrayLike, name: str) -> np.ndarray:
    b = np.asarray(values)
    if b.ndim != 1:
        raise ValueError(f"{name} must be one boolean per item, got shape {b.shape}")
    return b.astype(bool)


def same_length(**arrays: Any) -> int:
    lengths = {name: len(a) for name, a in arrays.items()}
    if len(set(lengths.values())) > 1:
        raise ValueError(f"arrays must have one entry per item, got lengths {lengths}")
    return next(iter(lengths.values()), 0)


@dataclass(frozen=True)
class ConfidenceInterval:
    """A point estimate and its bootstrap interval (``nan`` where undefined)."""

    value: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float | None]:
        """``{"value", "ci_low", "ci_high"}`` with non-finite numbers as None (JSON-ready)."""
        return {"value": _json(self.value), "ci_low": _json(self.low), "ci_high": _json(self.high)}


def _json(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def _resampler(
    n_items: int, groups: ArrayLike | None, rng: np.random.Generator
) -> Callable[[], np.ndarray]:
    """A function drawing one bootstrap sample of item indices (of items, or of whole groups)."""
    if groups is None:
        return lambda: rng.integers(0, n_items, size=n_items)
    g = np.asarray(groups)
    if len(g) != n_items:
        raise ValueError(f"groups has {len(g)} entries for {n_items} items")
    _, codes = np.unique(g, return_inverse=True)
    order = np.argsort(codes, kind="stable")
    counts = np.bincount(codes)
    starts = np.concatenate(([0], np.cumsum(counts)[:-1]))

    def draw() -> np.ndarray:
        chosen = rng.integers(0, len(counts), size=len(counts))
        c = counts[chosen]
        offsets = np.repeat(starts[chosen] - (np.cumsum(c) - c), c)
        return order[offsets + np.arange(c.sum())]

    return draw


def bootstrap_ci(
    values: ArrayLike | None = None,
    *,
    statistic: Callable[[np.ndarray], float] | None = None,
    n_items: int | None = None,
    groups: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """Percentile bootstrap interval of a per-item metric.

    Two ways to call it:

    - ``bootstrap_ci(values)``: the metric is the mean of per-item ``values`` (agreement is the
      mean of ``1[T = S]``). ``statistic``, if given, maps the resampled values to the metric.
    - ``bootstrap_ci(statistic=f, n_items=n)``: ``f(idx)`` computes the metric on the items at
      the index array ``idx`` (with repeats). Use this for paired or ratio metrics
      (teacher-stable student flips, ECE, high-confidence preservation) so every array is
      resampled with the same indices.

    Each of ``n_resamples`` resamples draws ``n`` item indices with replacement (or, with
    ``groups``, as many groups as there are, keeping each drawn group's items together);
    the interval is the ``(1-confidence)/2`` and ``(1+confidence)/2`` percentiles of the
    resampled metric. Resamples where the metric is ``nan`` (an empty condition) are left out.
    Same ``seed`` and same ``n`` -> same resamples, so metrics computed with one seed are paired.

    Returns:
        The metric on all items and the interval around it.
    """
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    if values is not None:
        v = np.asarray(values, dtype=float)
        if n_items is not None and n_items != len(v):
            raise ValueError(f"n_items={n_items} but {len(v)} values")
        reduce = statistic or (lambda a: float(np.mean(a)) if a.size else math.nan)
        n = len(v)

        def stat(idx: np.ndarray) -> float:
            return reduce(v[idx])
    elif statistic is not None and n_items is not None:
        n, stat = n_items, statistic
    else:
        raise ValueError("pass values, or statistic together with n_items")
    if n == 0:
        return ConfidenceInterval(math.nan, math.nan, math.nan)
    point = float(stat(np.arange(n)))
    draw = _resampler(n, groups, np.random.default_rng(seed))
    samples = np.array([stat(draw()) for _ in range(n_resamples)], dtype=float)
    samples = samples[~np.isnan(samples)]
    if not samples.size:
        return ConfidenceInterval(point, math.nan, math.nan)
    alpha = (1.0 - confidence) / 2
    low, high = np.percentile(samples, [100 * alpha, 100 * (1 - alpha)])
    return ConfidenceInterval(point, float(low), float(high))


@dataclass(frozen=True)
class McNemarResult:
    """McNemar's test on paired binary outcomes.

    Attributes:
        statistic: the chi-square statistic, or ``min(b, c)`` for the exact test.
        p_value: two-sided p-value.
        b: items where only the first outcome is true (teacher flipped, student did not).
        c: items where only the second is true (student flipped, teacher did not).
        method: ``"exact"`` or ``"chi2"``.
    """

    statistic: float
    p_value: float
    b: int
    c: int
    method: str

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def mcnemar(first: ArrayLike, second: ArrayLike, exact_below: int = 25) -> McNemarResult:
    """McNemar's test: do two paired binary outcomes (teacher flipped / student flipped) differ?

    Only discordant pairs matter: ``b = #{first and not second}``, ``c = #{second and not
    first}``. Under H0 each discordant pair is equally likely to go either way.

    - ``b + c < exact_below``: exact binomial test,
      ``p = min(1, 2 * sum_{i=0}^{min(b,c)} C(b+c, i) / 2^(b+c))``, statistic ``min(b, c)``.
    - otherwise: chi-square with Edwards' continuity correction,
      ``X2 = (|b - c| - 1)^2 / (b + c)``, ``p = P(chi2_1 > X2) = erfc(sqrt(X2 / 2))``
      (the conventions of statsmodels' ``mcnemar``).

    With no discordant pair the test has nothing to say: statistic 0, p-value 1.
    """
    a, s = booleans(first, "first"), booleans(second, "second")
    same_length(first=a, second=s)
    b, c = int(np.sum(a & ~s)), int(np.sum(~a & s))
    n = b + c
    if n == 0:
        return McNemarResult(0.0, 1.0, b, c, "exact")
    if n < exact_below:
        tail = sum(math.comb(n, i) for i in range(min(b, c) + 1)) / 2**n
        return McNemarResult(float(min(b, c)), min(1.0, 2.0 * tail), b, c, "exact")
    stat = (abs(b - c) - 1.0) ** 2 / n
    return McNemarResult(stat, math.erfc(math.sqrt(stat / 2.0)), b, c, "chi2")


def summarize(
    per_item: Mapping[str, ArrayLike] | None = None,
    statistics: Mapping[str, Callable[[np.ndarray], float]] | None = None,
    *,
    n_items: int | None = None,
    groups: ArrayLike | None = None,
    n_resamples: int = 1000,
    confidence: float = 0.95,
    seed: int = 0,
) -> dict[str, dict[str, float | None]]:
    """JSON-ready ``{metric: {"value", "ci_low", "ci_high"}}`` for many metrics at once.

    Args:
        per_item: metrics that are the mean of per-item values (``1[T = S]``, per-item JSD).
        statistics: metrics given as ``f(idx) -> float`` over item indices (see
            :func:`bootstrap_ci`); needs ``n_items`` unless ``per_item`` fixes it.
        n_items: the number of items (rows).
        groups: the input id of each row, to resample inputs rather than rows.
        n_resamples, confidence, seed: as in :func:`bootstrap_ci`. Every metric is resampled with
            the same seed, hence the same resamples.
    """
    per_item, statistics = dict(per_item or {}), dict(statistics or {})
    lengths = {len(np.asarray(v)) for v in per_item.values()}
    if n_items is not None:
        lengths.add(n_items)
    if len(lengths) > 1:
        raise ValueError(f"metrics disagree on the number of items: {sorted(lengths)}")
    if statistics and not lengths:
        raise ValueError("statistics need n_items")
    n = lengths.pop() if lengths else 0
    options = {"groups": groups, "n_resamples": n_resamples, "confidence": confidence, "seed": seed}
    out = {}
    for name, values in per_item.items():
        out[name] = bootstrap_ci(values, **options).as_dict()
    for name, fn in statistics.items():
        if name in out:
            raise ValueError(f"metric {name!r} given twice")
        out[name] = bootstrap_ci(statistic=fn, n_items=n, **options).as_dict()
    return out


def paired_difference(
    first: ArrayLike,
    second: ArrayLike,
    *,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> ConfidenceInterval:
    """``mean(first) - mean(second)`` over the same items, with its paired bootstrap interval.

    Both arrays hold one score per item, aligned (item ``i`` of each is the same test input).
    Each resample draws item indices once and applies them to both arrays, so the interval
    reflects only how the two disagree item by item, not how hard the items are.
    """
    a, b = np.asarray(first, dtype=float), np.asarray(second, dtype=float)
    if a.ndim != 1 or b.ndim != 1:
        raise ValueError(f"scores must be 1-D, got shapes {a.shape} and {b.shape}")
    same_length(first=a, second=b)
    return bootstrap_ci(a - b, n_resamples=n_resamples, confidence=confidence, seed=seed)
