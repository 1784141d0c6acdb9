"""Adversarial identifier-renaming attacks on one model at a time, under a query budget.

Two black-box attacks that only rename local identifiers (so the program's behaviour is
unchanged) and search for a renaming that makes the model wrong:

- **ALERT** (Yang et al., ICSE 2022, "Natural Attack for Pre-trained Models of Code"): natural
  substitute names; a greedy pass over identifiers ranked by importance, then a genetic
  algorithm when the greedy pass fails (:func:`alert_attack`).
- **MHM** (Zhang et al., AAAI 2020, "Generating Adversarial Examples for Source Code Models via
  Metropolis-Hastings Modifier"): Metropolis–Hastings sampling over renamings
  (:func:`mhm_attack`).

The model interface
-------------------
A model is a batched callable ``query(codes: list[str]) -> list[Outcome]``, one
:class:`Outcome` per code, in order, for *one* input (it knows that input's reference):

- ``score``: the model's confidence in, or quality of, the correct answer. For a classifier the
  probability of the true label; for a generator e.g. the similarity of its output to the
  reference. Attacks push it down.
- ``correct``: whether the model is right on that code (classifier: argmax is the true label;
  generator: e.g. the output passes the tests or matches the reference).

An attack on an input the model gets right succeeds when some renaming makes ``correct`` False.
An input the model already gets wrong is not attacked. Every distinct code sent to ``query``
costs one query (the original included); repeats are answered from a cache keyed by the code
text and cost nothing. No attack sends more than ``budget`` codes to ``query``.

Renaming
--------
The default :class:`Renamer` uses :func:`codistill.fidelity.relations.rename.local_identifiers`,
:func:`~codistill.fidelity.relations.rename.rename_identifiers` (which raises ``RenameError`` on
an invalid or colliding name; such candidates are skipped) and
:func:`codistill.fidelity.synonyms.candidate_names`. Pass your own ``renamer`` to attack another
language or to test without tree-sitter. Every variant is the *original* code renamed with the
full ``old -> new`` map, so a result's ``renames`` reproduces its ``adversarial_code``.

Every attack is deterministic given ``seed`` (and a deterministic model).
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from difflib import SequenceMatcher
from functools import partial
from typing import Any, Protocol

from codistill.fidelity.relations.rename import RenameError, local_identifiers, rename_identifiers
from codistill.fidelity.synonyms import candidate_names

__all__ = [
    "AttackResult",
    "MlmCandidates",
    "Outcome",
    "Query",
    "Renamer",
    "alert_attack",
    "attack_inputs",
    "default_renamer",
    "mhm_attack",
    "relative_drop",
    "summarize_attacks",
    "token_changes",
]


@dataclass(frozen=True)
class Outcome:
    """What the model does on one code: ``score`` of the correct answer, and ``correct``."""

    score: float
    correct: bool


class _OutcomeLike(Protocol):
    score: float
    correct: bool


Query = Callable[[list[str]], Sequence[_OutcomeLike]]
"""``query(codes) -> outcomes``: the model on a batch of variants of one input (see module)."""

MlmCandidates = Callable[[str, str, str, int], list[str]]
"""``mlm_candidates(code, language, name, k) -> names``: e.g. a masked LM's top-k fills for the
positions of ``name`` in ``code`` (ALERT uses CodeBERT's, filtered by embedding similarity)."""


@dataclass(frozen=True)
class Renamer:
    """The three renaming operations an attack needs (injectable for tests/other languages).

    Attributes:
        identifiers: ``(code, language) -> names`` of the renamable locals, in source order.
        rename: ``(code, language, {old: new}) -> code``; raises one of ``errors`` when a new
            name is invalid or collides.
        candidates: ``(name, k, rng) -> up to k`` natural substitute names for ``name``.
        errors: the exceptions that mean "this renaming is not allowed; skip it".
    """

    identifiers: Callable[[str, str], list[str]]
    rename: Callable[[str, str, Mapping[str, str]], str]
    candidates: Callable[[str, int, random.Random], list[str]]
    errors: tuple[type[BaseException], ...] = (ValueError,)


def default_renamer(language: str | None = None) -> Renamer:
    """The tree-sitter renamer of :mod:`codistill.fidelity.relations.rename` and the synonym
    table of :mod:`codistill.fidelity.synonyms`; ``language`` picks the
    candidates' naming style (camelCase for Java, snake_case otherwise)."""
    candidates = partial(candidate_names, language=language)
    return Renamer(local_identifiers, rename_identifiers, candidates, (RenameError, ValueError))


@dataclass
class AttackResult:
    """One input's attack.

    Attributes:
        method: ``"alert"`` or ``"mhm"``.
        success: a renaming made the model wrong (only possible when ``original_correct``).
        original_correct: the model was right on the original (otherwise nothing was attacked).
        queries: codes sent to the model, the original included (never more than the budget).
        original_score: the model's score on the original.
        adversarial_score: its score on ``adversarial_code``.
        adversarial_code: the successful variant; on failure the lowest-scoring variant found
            (the original when none scored lower).
        renames: ``old -> new`` names that turn the original into ``adversarial_code``.
        identifiers_total: renamable identifiers in the original.
        tokens_total, tokens_changed: whitespace tokens of the original, and how many of them
            ``adversarial_code`` does not keep (:func:`token_changes`).
        stage: where the attack succeeded: ``"greedy"``, ``"genetic"`` (ALERT) or ``"mhm"``;
            empty on failure.
    """

    method: str
    success: bool
    original_correct: bool
    queries: int
    original_score: float
    adversarial_score: float
    adversarial_code: str
    renames: dict[str, str] = field(default_factory=dict)
    identifiers_total: int = 0
    tokens_total: int = 0
    tokens_changed: int = 0
    stage: str = ""

    @property
    def identifiers_changed(self) -> int:
        return len(self.renames)

    @property
    def identifier_change_rate(self) -> float:
        """Renamed identifiers / renamable identifiers (0 when there are none)."""
        return self.identifiers_changed / self.identifiers_total if self.identifiers_total else 0.0

    @property
    def token_change_rate(self) -> float:
        """Changed whitespace tokens / tokens of the original (0 for an empty original)."""
        return self.tokens_changed / self.tokens_total if self.tokens_total else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "method": self.method,
            "success": self.success,
            "original_correct": self.original_correct,
            "queries": self.queries,
            "original_score": self.original_score,
            "adversarial_score": self.adversarial_score,
            "adversarial_code": self.adversarial_code,
            "renames": dict(self.renames),
            "identifiers_total": self.identifiers_total,
            "identifiers_changed": self.identifiers_changed,
            "identifier_change_rate": self.identifier_change_rate,
            "tokens_total": self.tokens_total,
            "tokens_changed": self.tokens_changed,
            "token_change_rate": self.token_change_rate,
            "stage": self.stage,
        }


def token_changes(original: str, adversarial: str) -> tuple[int, int]:
    """``(changed, total)``: whitespace tokens of ``original`` that ``adversarial`` does not keep
    (outside the longest matching blocks of a token diff), and the original's token count."""
    a, b = original.split(), adversarial.split()
    kept = sum(m.size for m in SequenceMatcher(None, a, b, autojunk=False).get_matching_blocks())
    return len(a) - kept, len(a)


# --------------------------------------------------------------------------------------------
# The search state shared by both attacks: budgeted, cached queries and the best variant so far
# --------------------------------------------------------------------------------------------

_Key = frozenset[tuple[str, str]]


def _key(mapping: Mapping[str, str]) -> _Key:
    return frozenset((old, new) for old, new in mapping.items() if old != new)


class _Search:
    def __init__(
        self,
        code: str,
        language: str,
        query: Query,
        budget: int,
        renamer: Renamer,
        batch_size: int,
    ) -> None:
        if budget < 1:
            raise ValueError(f"budget must be >= 1 (the original costs a query), got {budget}")
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        self.code, self.language, self.renamer = code, language, renamer
        self._query, self.budget, self.batch_size = query, budget, batch_size
        self.used = 0
        self._by_code: dict[str, Outcome] = {}
        self._variants: dict[_Key, str | None] = {}
        self.original: Outcome | None = None
        self.names: list[str] = []
        self.best: tuple[float, dict[str, str], str] | None = None
        self.win: tuple[dict[str, str], str, Outcome, str] | None = None

    # -- queries -------------------------------------------------------------------------------
    @property
    def exhausted(self) -> bool:
        return self.used >= self.budget

    @property
    def done(self) -> bool:
        return self.win is not None or self.exhausted

    def _ask(self, codes: list[str]) -> list[Outcome | None]:
        """Outcomes of ``codes`` (cached, or queried while the budget lasts; None past it)."""
        todo = list(dict.fromkeys(c for c in codes if c not in self._by_code))
        todo = todo[: max(self.budget - self.used, 0)]
        if todo:
            answers = list(self._query(todo))
            if len(answers) != len(todo):
                raise ValueError(f"query returned {len(answers)} outcomes for {len(todo)} codes")
            self.used += len(todo)
            for c, o in zip(todo, answers, strict=True):
                self._by_code[c] = Outcome(float(o.score), bool(o.correct))
        return [self._by_code.get(c) for c in codes]

    @property
    def original_score(self) -> float:
        return self.original.score if self.original is not None else math.nan

    def start(self) -> bool:
        """Query the original; True when there is something to attack."""
        (self.original,) = self._ask([self.code])
        if self.original is None or not self.original.correct:
            return False
        try:
            names = self.renamer.identifiers(self.code, self.language)
        except self.renamer.errors:  # code the renamer cannot read has nothing to rename
            names = []
        self.names = list(dict.fromkeys(names))
        self.best = (self.original.score, {}, self.code)
        return bool(self.names) and not self.exhausted

    # -- variants ------------------------------------------------------------------------------
    def variant(self, mapping: Mapping[str, str]) -> str | None:
        """The original renamed with ``mapping``, or None when the renamer refuses it."""
        key = _key(mapping)
        if key not in self._variants:
            try:
                self._variants[key] = self.renamer.rename(self.code, self.language, dict(key))
            except self.renamer.errors:
                self._variants[key] = None
        return self._variants[key]

    def outcome(self, mapping: Mapping[str, str]) -> Outcome | None:
        code = self.variant(mapping)
        return None if code is None else self._by_code.get(code)

    def evaluate(
        self, mappings: Sequence[Mapping[str, str]], stage: str, can_succeed: bool = True
    ) -> list[Outcome | None]:
        """Outcomes of renamings, in batches of ``batch_size``; stops at the first success.

        None for a renaming the renamer refuses or one left unevaluated (budget, success).
        ``can_succeed=False`` (ALERT's placeholder probes) neither wins nor counts as best.
        """
        out: list[Outcome | None] = [None] * len(mappings)
        for start in range(0, len(mappings), self.batch_size):
            if self.done:
                break
            chunk = range(start, min(start + self.batch_size, len(mappings)))
            valid = [(i, c) for i in chunk if (c := self.variant(mappings[i])) is not None]
            answers = self._ask([c for _, c in valid])
            for (i, code), o in zip(valid, answers, strict=True):
                out[i] = o
                if o is None or not can_succeed:
                    continue
                mapping = {old: new for old, new in mappings[i].items() if old != new}
                if not o.correct and self.win is None:
                    self.win = (mapping, code, o, stage)
                if self.best is None or o.score < self.best[0]:
                    self.best = (o.score, mapping, code)
        return out

    def result(self, method: str) -> AttackResult:
        original = self.original or Outcome(math.nan, False)
        if self.win is not None:
            mapping, code, outcome, stage = self.win
            score = outcome.score
        elif self.best is not None:
            score, mapping, code = self.best
            stage = ""
        else:
            mapping, code, score, stage = {}, self.code, original.score, ""
        changed, total = token_changes(self.code, code)
        return AttackResult(
            method=method,
            success=self.win is not None,
            original_correct=original.correct,
            queries=self.used,
            original_score=original.score,
            adversarial_score=score,
            adversarial_code=code,
            renames=dict(mapping),
            identifiers_total=len(self.names),
            tokens_total=total,
            tokens_changed=changed,
            stage=stage,
        )


def _unused_name(base: str, taken: Iterable[str]) -> str:
    taken = set(taken)
    if base not in taken:
        return base
    i = 0
    while f"{base}{i}" in taken:
        i += 1
    return f"{base}{i}"


# --------------------------------------------------------------------------------------------
# ALERT
# --------------------------------------------------------------------------------------------


def alert_attack(
    code: str,
    language: str,
    query: Query,
    *,
    budget: int = 1000,
    seed: int = 0,
    n_candidates: int = 30,
    renamer: Renamer | None = None,
    mlm_candidates: MlmCandidates | None = None,
    genetic: bool = True,
    population_size: int = 20,
    max_generations: int = 50,
    crossover_rate: float = 0.7,
    placeholder: str = "unk",
    batch_size: int = 32,
) -> AttackResult:
    """ALERT: natural renamings, greedy by identifier importance, then a genetic algorithm.

    1. Candidates: up to ``n_candidates`` substitutes per identifier, from ``mlm_candidates``
       when given, else ``renamer.candidates`` (the synonym table); names already in the code
       are dropped.
    2. Importance: each identifier with candidates is renamed to a neutral placeholder
       (``placeholder``, made unique); importance = ``score(x) - score(x with placeholder)``.
       These probes cost queries but never count as a success (a placeholder is not natural).
    3. Greedy: in decreasing importance, try every candidate of the identifier on top of the
       substitutions kept so far; stop at the first variant the model gets wrong, else keep the
       candidate with the lowest score if it is lower than the current one.
    4. Genetic (``genetic=True``, when greedy failed): chromosomes are ``old -> new`` maps.
       The initial population is the greedy result plus one random substitution per identifier
       (topped up with random ones) up to ``population_size``; fitness =
       ``score(x) - score(variant)``. Each generation makes ``population_size`` children: with
       probability ``crossover_rate`` a one-point crossover (in importance order) of two parents
       drawn with probability proportional to shifted fitness, else a parent with one identifier
       re-drawn from its candidates. Parents and children compete; the fittest
       ``population_size`` survive. Stops at a success, the budget or ``max_generations``.

    Args:
        code: the original input (the model must be right on it to be attacked).
        language: passed to the renamer (``"java"``, ``"python"``, ``"c"``).
        query: the model (module docstring).
        budget: most codes sent to ``query``, the original included.
        seed: makes the attack deterministic.
        batch_size: most codes per ``query`` call; the attack stops after the batch that
            succeeds, so smaller batches waste fewer queries.
    """
    renamer = renamer or default_renamer(language)
    rng = random.Random(seed)
    s = _Search(code, language, query, budget, renamer, batch_size)
    if not s.start():
        return s.result("alert")
    subs = _alert_substitutes(s, rng, n_candidates, mlm_candidates)
    names = [n for n in s.names if subs[n]]
    if not names:
        return s.result("alert")
    order = _by_importance(s, names, subs, placeholder)
    if s.done:
        return s.result("alert")
    current = _greedy(s, order, subs)
    if genetic and not s.done:
        _genetic(s, order, subs, current, rng, population_size, max_generations, crossover_rate)
    return s.result("alert")


def _alert_substitutes(
    s: _Search, rng: random.Random, n_candidates: int, mlm_candidates: MlmCandidates | None
) -> dict[str, list[str]]:
    """ALERT step 1: up to ``n_candidates`` substitutes per identifier, none already a name in
    the code (see :func:`alert_attack`)."""
    taken = set(s.names)
    subs: dict[str, list[str]] = {}
    for name in s.names:
        if mlm_candidates is not None:
            raw = mlm_candidates(s.code, s.language, name, n_candidates)
        else:
            raw = s.renamer.candidates(name, n_candidates, rng)
        subs[name] = [c for c in dict.fromkeys(raw) if c not in taken][:n_candidates]
    return subs


def _by_importance(
    s: _Search, names: list[str], subs: dict[str, list[str]], placeholder: str
) -> list[str]:
    """ALERT step 2: ``names``, most important first (the score lost when an identifier is
    renamed to a neutral placeholder); the probes cost queries but never count as a success."""
    unk = _unused_name(placeholder, set(s.names) | {c for cs in subs.values() for c in cs})
    probes = s.evaluate([{n: unk} for n in names], "importance", can_succeed=False)
    importance = {
        n: s.original_score - o.score if o is not None else -math.inf
        for n, o in zip(names, probes, strict=True)
    }
    return sorted(names, key=lambda n: -importance[n])  # stable: ties keep source order


def _greedy(s: _Search, order: list[str], subs: dict[str, list[str]]) -> dict[str, str]:
    """ALERT step 3: per identifier in ``order``, the candidate that lowers the score most on
    top of those kept so far; records a success in ``s`` and stops there, or at the budget."""
    current: dict[str, str] = {}
    current_score = s.original_score
    for name in order:
        trials = [{**current, name: c} for c in subs[name] if c not in current.values()]
        outcomes = s.evaluate(trials, "greedy")
        if s.done:
            break
        scored = [(o.score, t) for t, o in zip(trials, outcomes, strict=True) if o is not None]
        if scored:
            score, trial = min(scored, key=lambda st: st[0])
            if score < current_score:
                current, current_score = trial, score
    return current


def _genetic(
    s: _Search,
    genes: list[str],
    subs: dict[str, list[str]],
    start: dict[str, str],
    rng: random.Random,
    population_size: int,
    max_generations: int,
    crossover_rate: float,
) -> None:
    """ALERT's GA-Attack; records a success in ``s`` (see :func:`alert_attack`, step 4)."""
    if population_size < 2:
        raise ValueError(f"population_size must be >= 2, got {population_size}")
    original_score = s.original_score

    def mutate(parent: Mapping[str, str]) -> dict[str, str]:
        child = dict(parent)
        gene = rng.choice(genes)
        used = {v for k, v in child.items() if k != gene}
        options = [c for c in subs[gene] if c != child.get(gene) and c not in used]
        if options:
            child[gene] = rng.choice(options)
        return child

    def crossover(a: Mapping[str, str], b: Mapping[str, str]) -> dict[str, str]:
        cut = rng.randrange(1, len(genes)) if len(genes) > 1 else 0
        child = {g: a[g] for g in genes[:cut] if g in a}
        child.update({g: b[g] for g in genes[cut:] if g in b})
        return child

    def fitness(mapping: Mapping[str, str]) -> float:
        o = s.outcome(mapping)
        return -math.inf if o is None else original_score - o.score

    population = [dict(start)] if start else []
    population += [{g: rng.choice(subs[g])} for g in genes][: population_size - len(population)]
    while len(population) < population_size:
        population.append(mutate({}))
    s.evaluate(population, "genetic")

    for _ in range(max_generations):
        if s.done:
            return
        alive = [p for p in population if math.isfinite(fitness(p))] or [{}]
        scores = [fitness(p) if p else 0.0 for p in alive]
        low = min(scores)
        weights = [f - low + 1e-6 for f in scores]
        children = []
        for _ in range(population_size):
            if len(alive) > 1 and rng.random() < crossover_rate:
                a, b = rng.choices(alive, weights=weights, k=2)
                children.append(crossover(a, b))
            else:
                children.append(mutate(rng.choices(alive, weights=weights, k=1)[0]))
        s.evaluate(children, "genetic")
        pool = {_key(p): p for p in alive + children if math.isfinite(fitness(p))}
        population = sorted(pool.values(), key=fitness, reverse=True)[:population_size]
        if not population:
            population = [{}]


# --------------------------------------------------------------------------------------------
# MHM
# --------------------------------------------------------------------------------------------


def mhm_attack(
    code: str,
    language: str,
    query: Query,
    *,
    budget: int = 1000,
    seed: int = 0,
    n_candidates: int = 8,
    max_iterations: int | None = None,
    renamer: Renamer | None = None,
    batch_size: int = 32,
) -> AttackResult:
    """MHM: Metropolis–Hastings sampling over renamings of the model's input.

    The chain's target density is ``pi(x) ∝ 1 - score(x)`` (MHM: one minus the probability of
    the true label), so it drifts towards variants the model is unsure about. Each iteration:

    1. pick an identifier uniformly at random and draw up to ``n_candidates`` substitute names
       (``renamer.candidates``; names in use are skipped);
    2. query the variants (current renaming + that identifier -> candidate); any variant the
       model gets wrong is a success;
    3. propose the candidate with the lowest score (MHM's sampling step as implemented for its
       comparisons in ALERT) and accept it with probability
       ``alpha = min(1, (1 - score(x') + eps) / (1 - score(x) + eps))``, the MH ratio
       ``pi(x') / pi(x)`` with the proposal treated as symmetric (``eps = 1e-10``).

    Stops at a success, when the budget is spent, or after ``max_iterations`` (default: the
    budget, so the chain ends even when every proposal is already cached).

    Args:
        code, language, query, budget, seed, renamer, batch_size: as in :func:`alert_attack`.
        n_candidates: candidates per iteration; 1 gives a plain random-walk proposal.
    """
    renamer = renamer or default_renamer(language)
    rng = random.Random(seed)
    s = _Search(code, language, query, budget, renamer, batch_size)
    if not s.start():
        return s.result("mhm")
    current: dict[str, str] = {}
    current_score = s.original_score
    eps = 1e-10
    for _ in range(budget if max_iterations is None else max_iterations):
        if s.done:
            break
        name = rng.choice(s.names)
        in_use = set(s.names) | {v for k, v in current.items() if k != name}
        pool = [
            c
            for c in dict.fromkeys(renamer.candidates(name, n_candidates, rng))
            if c not in in_use and c != current.get(name)
        ]
        trials = [{**current, name: c} for c in pool]
        outcomes = s.evaluate(trials, "mhm")
        scored = [(o.score, t) for t, o in zip(trials, outcomes, strict=True) if o is not None]
        if s.done or not scored:
            continue
        score, proposal = min(scored, key=lambda st: st[0])
        alpha = min(1.0, (1.0 - score + eps) / (1.0 - current_score + eps))
        if rng.random() < alpha:
            current, current_score = proposal, score
    return s.result("mhm")


# --------------------------------------------------------------------------------------------
# Many inputs, and what to report
# --------------------------------------------------------------------------------------------

_ATTACKS = {"alert": alert_attack, "mhm": mhm_attack}


def attack_inputs(
    inputs: Sequence[tuple[str, Query]],
    language: str,
    method: str = "alert",
    *,
    seed: int = 0,
    **options: Any,
) -> list[AttackResult]:
    """Attack every ``(code, query)`` pair with ``method`` (``"alert"`` or ``"mhm"``).

    Input ``i`` is attacked with seed ``seed * 1_000_003 + i``, so results do not depend on
    which other inputs are in the list. ``options`` go to the attack (``budget``, ...).
    """
    if method not in _ATTACKS:
        raise ValueError(f"method must be one of {', '.join(_ATTACKS)}, got {method!r}")
    attack = _ATTACKS[method]
    return [
        attack(code, language, query, seed=seed * 1_000_003 + i, **options)
        for i, (code, query) in enumerate(inputs)
    ]


def summarize_attacks(results: Sequence[AttackResult]) -> dict[str, float | int | None]:
    """Aggregate one model's attack results (JSON-ready: undefined values are None).

    - ``attack_success_rate``: successes / inputs the model got right (the attacked ones).
    - ``mean_queries``: over attacked inputs; ``mean_queries_success``: over successes.
    - ``mean_identifier_change_rate``, ``mean_token_change_rate``: over successes (how much a
      successful adversarial example changes), as ALERT reports them.
    - ``accuracy_before`` = right on the original / inputs; ``accuracy_after`` = still right
      after the attack / inputs; ``drop = accuracy_before - accuracy_after`` (in accuracy
      points; :func:`relative_drop` compares two models' drops).
    """
    n = len(results)
    attacked = [r for r in results if r.original_correct]
    won = [r for r in attacked if r.success]

    def mean(values: list[float]) -> float | None:
        return sum(values) / len(values) if values else None

    before = len(attacked) / n if n else None
    after = (len(attacked) - len(won)) / n if n else None
    return {
        "n_inputs": n,
        "n_attacked": len(attacked),
        "n_success": len(won),
        "attack_success_rate": len(won) / len(attacked) if attacked else None,
        "mean_queries": mean([r.queries for r in attacked]),
        "mean_queries_success": mean([r.queries for r in won]),
        "mean_identifier_change_rate": mean([r.identifier_change_rate for r in won]),
        "mean_token_change_rate": mean([r.token_change_rate for r in won]),
        "accuracy_before": before,
        "accuracy_after": after,
        "drop": before - after if before is not None and after is not None else None,
    }


def relative_drop(student_drop: float, teacher_drop: float) -> float:
    """How much larger the student's performance drop is than the teacher's:
    ``student_drop / teacher_drop - 1`` (MetaCompress's "up to 285% greater drop" is 2.85).

    When the teacher does not drop (``teacher_drop == 0``) the ratio is undefined: the result is
    0.0 if the student does not drop either, else ``inf`` with the sign of ``student_drop``
    (write it as None, or as "teacher did not drop", in JSON).
    """
    if teacher_drop == 0:
        return 0.0 if student_drop == 0 else math.copysign(math.inf, student_drop)
    return student_drop / teacher_drop - 1.0
