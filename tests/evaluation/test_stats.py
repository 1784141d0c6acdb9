import itertools

import numpy as np
import pytest

from codistill.evaluation.stats import bootstrap_ci, mcnemar, paired_difference


def test_paired_difference_matches_a_brute_force_loop():
    rng = np.random.default_rng(1)
    a, b = rng.random(37), rng.random(37)
    got = paired_difference(a, b, n_resamples=500, seed=7)
    # The same resamples drawn by hand: one index draw per resample, applied to both arms.
    draws = np.random.default_rng(7)
    diffs = []
    for _ in range(500):
        idx = draws.integers(0, 37, size=37)
        diffs.append(np.mean(a[idx]) - np.mean(b[idx]))
    low, high = np.percentile(diffs, [2.5, 97.5])
    assert got.value == pytest.approx(a.mean() - b.mean())
    assert (got.low, got.high) == pytest.approx((low, high))


def test_paired_difference_approaches_the_exact_bootstrap_distribution():
    # n = 5 items: all 5^5 equally likely resamples enumerated give the exact bootstrap
    # distribution of the mean difference; many random resamples must land on its percentiles.
    a = np.array([1.0, 0.0, 1.0, 1.0, 0.0])
    b = np.array([0.0, 0.0, 1.0, 0.0, 1.0])
    exact = [np.mean(a[list(i)] - b[list(i)]) for i in itertools.product(range(5), repeat=5)]
    exact_low, exact_high = np.percentile(exact, [2.5, 97.5])
    got = paired_difference(a, b, n_resamples=20000, seed=0)
    assert got.low == pytest.approx(exact_low, abs=0.2 + 1e-9)
    assert got.high == pytest.approx(exact_high, abs=0.2 + 1e-9)
    assert got.low <= got.value <= got.high


def test_pairing_removes_item_difficulty():
    # Item difficulty varies a lot, the second arm is uniformly 0.05 worse: the paired interval
    # is a single point, two separate intervals would overlap heavily.
    rng = np.random.default_rng(0)
    first = rng.random(200)
    second = first - 0.05
    diff = paired_difference(first, second, n_resamples=300)
    assert diff.low == pytest.approx(0.05) and diff.high == pytest.approx(0.05)
    separate_first = bootstrap_ci(first, n_resamples=300)
    separate_second = bootstrap_ci(second, n_resamples=300)
    assert separate_first.low < separate_second.high  # unpaired, they would look the same


def test_paired_difference_refuses_misaligned_arms():
    with pytest.raises(ValueError, match="one entry per item"):
        paired_difference([1, 0, 1], [1, 0])


def test_mcnemar_counts_discordant_pairs_in_order():
    result = mcnemar([1, 1, 1, 0, 0], [0, 0, 1, 1, 0])
    assert (result.b, result.c) == (2, 1)
