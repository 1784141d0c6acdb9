"""SODA Stage III: difficulty levels from feedback, and how many new questions to ask per level.

The paper's three levels (Sec. 3.4), from the execution result and the judge's score (0..6):

* easy: passed and score >= 4 (the student solves it well);
* medium: passed and 2 <= score < 4 (it works, the code could be better);
* hard: failed and score < 2 (the student struggles).

The three do not cover every case. An item that failed with a score >= 2, passed with a score
< 2, has no score (the judge's answer stayed malformed) or no usable execution result (an
environment error such as a missing module, which the paper sets aside) is ``unclassified``,
with its reason, and counted: never dropped silently.

:func:`allocate` splits a budget of new questions across the levels by a ratio (the paper's
easy:medium:hard = 1:1:2) and picks the seed question each new one is based on.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass, field

LEVELS = ("easy", "medium", "hard")
UNCLASSIFIED = "unclassified"
EASY_SCORE = 4  # "score >= 4": the paper's high-quality threshold
HARD_SCORE = 2  # "score < 2": the paper's low-quality threshold

REASON_NO_EXECUTION = "no execution result"
REASON_UNSCORED = "unscored"
REASON_FAIL_HIGH = "failed but scored >= 2"
REASON_PASS_LOW = "passed but scored < 2"


def classify(passed: bool | None, score: int | None) -> tuple[str, str | None]:
    """The level of one item and, when unclassified, why.

    Args:
        passed: whether the student's solution passed the tests; None when there is no usable
            execution result (not run, or an environment error).
        score: the judge's rubric total 0..6, or None when unscored.

    Returns:
        ``(level, reason)``: a level of ``LEVELS`` with reason None, or ``("unclassified",
        reason)``.
    """
    if passed is None:
        return UNCLASSIFIED, REASON_NO_EXECUTION
    if score is None:
        return UNCLASSIFIED, REASON_UNSCORED
    if passed:
        if score >= EASY_SCORE:
            return "easy", None
        if score >= HARD_SCORE:
            return "medium", None
        return UNCLASSIFIED, REASON_PASS_LOW
    if score < HARD_SCORE:
        return "hard", None
    return UNCLASSIFIED, REASON_FAIL_HIGH


@dataclass
class Levels:
    """Items grouped by level.

    Attributes:
        by_level: level -> ids of its items, in input order (every level present, maybe empty).
        unclassified: ``(id, reason)`` of the items in none of the levels, in input order.
    """

    by_level: dict[str, list[Hashable]]
    unclassified: list[tuple[Hashable, str]]

    def counts(self) -> dict[str, int]:
        """Items per level, unclassified ones per reason (``unclassified: REASON``) and total."""
        counts = {level: len(ids) for level, ids in self.by_level.items()}
        counts[UNCLASSIFIED] = len(self.unclassified)
        reasons = Counter(reason for _, reason in self.unclassified)
        counts.update({f"{UNCLASSIFIED}: {r}": n for r, n in sorted(reasons.items())})
        counts["total"] = sum(len(ids) for ids in self.by_level.values()) + len(self.unclassified)
        return counts


def classify_all(
    ids: Sequence[Hashable], passed: Sequence[bool | None], scores: Sequence[int | None]
) -> Levels:
    """Classifies every item (see :func:`classify`).

    Raises:
        ValueError: the three sequences differ in length.
    """
    if not len(ids) == len(passed) == len(scores):
        raise ValueError(f"{len(ids)} ids, {len(passed)} execution results, {len(scores)} scores")
    levels = Levels(by_level={level: [] for level in LEVELS}, unclassified=[])
    for item, ok, score in zip(ids, passed, scores, strict=True):
        level, reason = classify(ok, score)
        if reason is None:
            levels.by_level[level].append(item)
        else:
            levels.unclassified.append((item, reason))
    return levels


@dataclass
class Allocation:
    """The new questions to ask: per level, one seed id per new question.

    Attributes:
        seeds: level -> seed ids, one entry per new question (a seed repeats only once every
            seed of its level has been used as often).
        quotas: level -> number of new questions.
        shortfall: questions of the budget not allocated (every level with a share is empty).
        notes: what was redistributed or could not be allocated, for the cycle's report.
    """

    seeds: dict[str, list[Hashable]]
    quotas: dict[str, int]
    shortfall: int = 0
    notes: list[str] = field(default_factory=list)


def allocate(
    levels: Mapping[str, Sequence[Hashable]],
    n_new: int,
    ratio: Sequence[float] = (1, 1, 2),
    rng: random.Random | None = None,
) -> Allocation:
    """Decides how many new questions to ask per level, and on which seed questions.

    The budget is split in proportion to ``ratio`` (easy, medium, hard) over the levels that
    have seed questions. A level with no questions gives its share to the other levels with a
    non-zero ratio, in proportion to their ratios (so 1:1:2 with no easy questions becomes 1:2
    between medium and hard); a zero ratio is never overridden, so when every level with a
    share is empty the budget is left unallocated (``shortfall``) rather than spent against the
    ratio. Fractions are rounded by largest remainder (ties: larger ratio first, then hard,
    medium, easy), so the quotas always sum to the allocated budget. Within a level, seeds are
    drawn without replacement in a shuffled order, reshuffled each time the level runs out.

    Args:
        levels: level -> seed ids (e.g. ``Levels.by_level``); missing levels count as empty.
        n_new: number of new questions to ask, >= 0.
        ratio: three non-negative weights for easy, medium, hard, not all zero.
        rng: the random source for the seed draw (``random.Random(0)`` when None).

    Raises:
        ValueError: a bad ``n_new`` or ``ratio``, or an unknown level.
    """
    if isinstance(n_new, bool) or not isinstance(n_new, int) or n_new < 0:
        raise ValueError(f"n_new must be an integer >= 0, got {n_new!r}")
    weights = _check_ratio(ratio)
    unknown = sorted(set(levels) - set(LEVELS))
    if unknown:
        raise ValueError(f"unknown level {unknown[0]!r}; expected one of {', '.join(LEVELS)}")
    rng = rng if rng is not None else random.Random(0)
    pools = {level: list(levels.get(level, ())) for level in LEVELS}
    notes = [
        f"no {level} questions: its share goes to the other levels"
        for level in LEVELS
        if weights[level] > 0 and not pools[level]
    ]
    active = {level: w for level, w in weights.items() if w > 0 and pools[level]}
    quotas = dict.fromkeys(LEVELS, 0)
    shortfall = 0
    if not active and n_new:
        shortfall = n_new
        notes.append(f"{n_new} new questions not allocated: every level with a share is empty")
    elif active:
        quotas.update(_largest_remainder(active, n_new))
    seeds = {level: _draw(pools[level], quotas[level], rng) for level in LEVELS}
    return Allocation(seeds=seeds, quotas=quotas, shortfall=shortfall, notes=notes)


def _check_ratio(ratio: Sequence[float]) -> dict[str, float]:
    values = list(ratio)
    if len(values) != len(LEVELS):
        raise ValueError(f"ratio must have 3 weights (easy, medium, hard), got {ratio!r}")
    for value in values:
        if isinstance(value, bool) or not isinstance(value, int | float) or not value >= 0:
            raise ValueError(f"ratio weights must be numbers >= 0, got {ratio!r}")
        if value == float("inf"):
            raise ValueError(f"ratio weights must be finite, got {ratio!r}")
    if sum(values) == 0:
        raise ValueError(f"ratio must have a weight > 0, got {ratio!r}")
    return dict(zip(LEVELS, values, strict=True))


def _largest_remainder(weights: dict[str, float], total: int) -> dict[str, int]:
    norm = sum(weights.values())
    exact = {level: total * w / norm for level, w in weights.items()}
    quotas = {level: int(x) for level, x in exact.items()}
    order = sorted(
        weights, key=lambda lv: (-(exact[lv] - quotas[lv]), -weights[lv], -LEVELS.index(lv))
    )
    for level in order[: total - sum(quotas.values())]:
        quotas[level] += 1
    return quotas


def _draw(pool: list[Hashable], count: int, rng: random.Random) -> list[Hashable]:
    drawn: list[Hashable] = []
    while len(drawn) < count:
        batch = pool[:]
        rng.shuffle(batch)
        drawn.extend(batch[: count - len(drawn)])
    return drawn
