import random
from collections import Counter

import pytest

from codistill.soda.difficulty import (
    LEVELS,
    REASON_FAIL_HIGH,
    REASON_NO_EXECUTION,
    REASON_PASS_LOW,
    REASON_UNSCORED,
    allocate,
    classify,
    classify_all,
)


@pytest.mark.parametrize(
    ("passed", "score", "expected"),
    [
        (True, 6, ("easy", None)),
        (True, 4, ("easy", None)),
        (True, 3, ("medium", None)),
        (True, 2, ("medium", None)),
        (False, 1, ("hard", None)),
        (False, 0, ("hard", None)),
        (True, 1, ("unclassified", REASON_PASS_LOW)),
        (False, 2, ("unclassified", REASON_FAIL_HIGH)),
        (False, 6, ("unclassified", REASON_FAIL_HIGH)),
        (True, None, ("unclassified", REASON_UNSCORED)),
        (None, 5, ("unclassified", REASON_NO_EXECUTION)),
    ],
)
def test_classify_follows_the_paper_boundaries(passed, score, expected):
    assert classify(passed, score) == expected


def test_classify_all_keeps_every_item_and_counts_reasons():
    ids = ["a", "b", "c", "d", "e", "f", "g"]
    passed = [True, True, False, False, True, None, False]
    scores = [5, 2, 0, 3, None, 6, 4]
    levels = classify_all(ids, passed, scores)
    assert levels.by_level == {"easy": ["a"], "medium": ["b"], "hard": ["c"]}
    assert levels.unclassified == [
        ("d", REASON_FAIL_HIGH),
        ("e", REASON_UNSCORED),
        ("f", REASON_NO_EXECUTION),
        ("g", REASON_FAIL_HIGH),
    ]
    counts = levels.counts()
    assert counts["unclassified"] == 4 and counts["total"] == len(ids)
    assert counts[f"unclassified: {REASON_FAIL_HIGH}"] == 2
    assert counts["easy"] + counts["medium"] + counts["hard"] + counts["unclassified"] == len(ids)


def test_classify_all_refuses_sequences_of_different_lengths():
    with pytest.raises(ValueError, match="2 ids, 1 execution results, 2 scores"):
        classify_all(["a", "b"], [True], [1, 2])


POOLS = {"easy": ["e1", "e2"], "medium": ["m1", "m2", "m3"], "hard": ["h1", "h2", "h3", "h4"]}


def test_allocate_follows_the_default_1_1_2_ratio():
    alloc = allocate(POOLS, 8, rng=random.Random(0))
    assert alloc.quotas == {"easy": 2, "medium": 2, "hard": 4}
    assert alloc.shortfall == 0 and alloc.notes == []
    for level in LEVELS:
        assert len(alloc.seeds[level]) == alloc.quotas[level]
        assert set(alloc.seeds[level]) <= set(POOLS[level])


@pytest.mark.parametrize(
    ("ratio", "n_new", "expected"),
    [
        ((1, 1, 1), 9, {"easy": 3, "medium": 3, "hard": 3}),
        ((0, 0, 1), 5, {"easy": 0, "medium": 0, "hard": 5}),
        ((1, 1, 2), 5, {"easy": 1, "medium": 1, "hard": 3}),  # remainder to the larger ratio
        ((1, 1, 1), 2, {"easy": 0, "medium": 1, "hard": 1}),  # ties: hard, then medium
        ((1, 1, 2), 0, {"easy": 0, "medium": 0, "hard": 0}),
    ],
)
def test_allocate_quotas_sum_to_the_budget_for_any_ratio(ratio, n_new, expected):
    alloc = allocate(POOLS, n_new, ratio=ratio)
    assert alloc.quotas == expected
    assert sum(alloc.quotas.values()) == n_new


def test_an_empty_level_gives_its_share_to_the_others_in_their_ratio():
    pools = {"easy": [], "medium": ["m1"], "hard": ["h1", "h2"]}
    alloc = allocate(pools, 9, ratio=(1, 1, 2))
    assert alloc.quotas == {"easy": 0, "medium": 3, "hard": 6}
    assert alloc.notes == ["no easy questions: its share goes to the other levels"]


def test_a_zero_ratio_is_never_overridden_and_the_budget_left_is_reported():
    pools = {"easy": ["e1"], "medium": ["m1"], "hard": []}
    alloc = allocate(pools, 4, ratio=(0, 0, 1))
    assert alloc.quotas == {"easy": 0, "medium": 0, "hard": 0}
    assert alloc.shortfall == 4
    assert any("4 new questions not allocated" in note for note in alloc.notes)


def test_seeds_are_drawn_evenly_before_any_repeats():
    alloc = allocate(POOLS, 28, ratio=(0, 0, 1), rng=random.Random(3))
    assert Counter(alloc.seeds["hard"]) == {"h1": 7, "h2": 7, "h3": 7, "h4": 7}
    first_round = alloc.seeds["hard"][:4]
    assert sorted(first_round) == POOLS["hard"]


def test_allocation_is_deterministic_given_the_rng_and_varies_with_it():
    draws = [allocate(POOLS, 40, rng=random.Random(seed)).seeds for seed in (1, 1, 2)]
    assert draws[0] == draws[1]
    assert draws[0] != draws[2]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n_new": -1}, "n_new must be an integer >= 0"),
        ({"n_new": 2.5}, "n_new must be an integer >= 0"),
        ({"n_new": 4, "ratio": (1, 1)}, "ratio must have 3 weights"),
        ({"n_new": 4, "ratio": (1, -1, 2)}, "weights must be numbers >= 0"),
        ({"n_new": 4, "ratio": (1, float("nan"), 2)}, "weights must be numbers >= 0"),
        ({"n_new": 4, "ratio": (0, 0, 0)}, "ratio must have a weight > 0"),
    ],
)
def test_allocate_refuses_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        allocate(POOLS, **kwargs)


def test_allocate_refuses_an_unknown_level():
    with pytest.raises(ValueError, match="unknown level 'trivial'"):
        allocate({"trivial": ["t"]}, 1)
