"""ALERT and MHM against tiny fixture "models" whose weak spot is known in advance."""

from __future__ import annotations

import keyword
import math
import random
import re
from collections.abc import Mapping

import pytest

from codistill.fidelity.attacks import (
    AttackResult,
    Outcome,
    Renamer,
    alert_attack,
    attack_inputs,
    mhm_attack,
    relative_drop,
    summarize_attacks,
    token_changes,
)

CODE = """def total(items):
    count = 0
    for item in items:
        count += item
    return count
"""
LOCALS = ("items", "count", "item")  # in source order
SYNONYMS = {
    "items": ["values", "elements", "entries", "things"],
    "count": ["total_sum", "acc", "tally", "running"],
    "item": ["value", "element", "entry", "thing"],
}


class FakeRenameError(ValueError):
    pass


def fake_identifiers(code: str, language: str) -> list[str]:
    return [n for n in LOCALS if re.search(rf"\b{n}\b", code)]


def fake_rename(code: str, language: str, mapping: Mapping[str, str]) -> str:
    """Whole-word renaming that, like the real one, refuses invalid or colliding names."""
    words = set(re.findall(r"\w+", code))
    targets = list(mapping.values())
    for new in targets:
        if not new.isidentifier() or keyword.iskeyword(new):
            raise FakeRenameError(f"invalid name {new!r}")
        if new in words and new not in mapping:
            raise FakeRenameError(f"{new!r} collides")
    if len(set(targets)) != len(targets):
        raise FakeRenameError("two names renamed to one")
    if not mapping:
        return code
    pattern = re.compile(r"\b(" + "|".join(map(re.escape, mapping)) + r")\b")
    return pattern.sub(lambda m: mapping[m.group(1)], code)


def fake_candidates(name: str, k: int, rng: random.Random) -> list[str]:
    names = list(SYNONYMS.get(name, []))
    rng.shuffle(names)
    return names[:k]


FAKE = Renamer(fake_identifiers, fake_rename, fake_candidates, (FakeRenameError,))


class Model:
    """A query function that counts every code it is asked about."""

    def __init__(self, judge):
        self.judge, self.calls = judge, 0

    def __call__(self, codes: list[str]) -> list[Outcome]:
        self.calls += len(codes)
        return [self.judge(c) for c in codes]


def count_sensitive(code: str) -> Outcome:
    """Right (p = 0.9) while a local named ``count`` exists; renaming it breaks the model."""
    return Outcome(0.9, True) if re.search(r"\bcount\b", code) else Outcome(0.2, False)


def pair_sensitive(code: str) -> Outcome:
    """Wrong only when *both* ``items`` and ``item`` are renamed: no single rename moves it."""
    both_gone = not re.search(r"\bitems\b", code) and not re.search(r"\bitem\b", code)
    return Outcome(0.1, False) if both_gone else Outcome(0.9, True)


def robust(code: str) -> Outcome:
    return Outcome(0.9, True)


def test_alert_greedy_finds_the_flip():
    model = Model(count_sensitive)
    result = alert_attack(CODE, "python", model, renamer=FAKE, budget=100, batch_size=1)
    assert result.success and result.stage == "greedy"
    assert list(result.renames) == ["count"]
    assert result.renames["count"] in SYNONYMS["count"]
    assert not re.search(r"\bcount\b", result.adversarial_code)
    # 1 original + 3 importance probes + the first candidate for "count" (ranked first).
    assert result.queries == model.calls == 5
    assert result.identifier_change_rate == pytest.approx(1 / 3)
    # "count" is 3 of the 14 whitespace tokens.
    assert result.token_change_rate == pytest.approx(3 / 14)


def test_alert_uses_the_genetic_algorithm_when_greedy_fails():
    model = Model(pair_sensitive)
    result = alert_attack(CODE, "python", model, renamer=FAKE, budget=500, seed=1)
    assert result.success and result.stage == "genetic"
    assert {"items", "item"} <= set(result.renames)
    assert result.queries == model.calls <= 500


def test_alert_takes_candidates_from_a_masked_lm_when_configured():
    def mlm(code: str, language: str, name: str, k: int) -> list[str]:
        return [f"{name}_mlm"]

    result = alert_attack(
        CODE, "python", Model(count_sensitive), renamer=FAKE, mlm_candidates=mlm, budget=50
    )
    assert result.success and result.renames == {"count": "count_mlm"}


def test_mhm_finds_the_flip():
    model = Model(count_sensitive)
    result = mhm_attack(CODE, "python", model, renamer=FAKE, budget=100, seed=0)
    assert result.success and result.stage == "mhm"
    assert "count" in result.renames
    assert not re.search(r"\bcount\b", result.adversarial_code)
    assert result.queries == model.calls <= 100


@pytest.mark.parametrize("attack", [alert_attack, mhm_attack])
@pytest.mark.parametrize("budget", [1, 3, 17, 60])
def test_the_query_budget_is_never_exceeded(attack, budget):
    model = Model(robust)
    result = attack(CODE, "python", model, renamer=FAKE, budget=budget, batch_size=8)
    assert model.calls <= budget
    assert result.queries == model.calls


def test_a_robust_model_is_not_fooled():
    for attack in (alert_attack, mhm_attack):
        result = attack(CODE, "python", Model(robust), renamer=FAKE, budget=200)
        assert not result.success and result.stage == ""
        assert result.original_correct
        assert result.queries <= 200


def test_a_budget_too_small_stops_the_attack():
    # Original + 2 of the 3 importance probes: no budget left to try a candidate.
    result = alert_attack(CODE, "python", Model(count_sensitive), renamer=FAKE, budget=3)
    assert not result.success and result.queries == 3


def test_an_input_the_model_gets_wrong_is_not_attacked():
    model = Model(lambda code: Outcome(0.3, False))
    result = alert_attack(CODE, "python", model, renamer=FAKE, budget=100)
    assert not result.original_correct and not result.success
    assert result.queries == model.calls == 1
    assert result.adversarial_code == CODE and result.renames == {}


def test_attacks_are_deterministic_given_a_seed():
    for attack in (alert_attack, mhm_attack):
        runs = [
            attack(CODE, "python", Model(pair_sensitive), renamer=FAKE, budget=300, seed=7)
            for _ in range(2)
        ]
        assert runs[0].as_dict() == runs[1].as_dict()


def test_repeated_codes_cost_no_extra_queries():
    # MHM revisits renamings; the cache answers them, so the model sees each code at most once.
    seen: list[str] = []

    def query(codes: list[str]) -> list[Outcome]:
        seen.extend(codes)
        return [robust(c) for c in codes]

    mhm_attack(CODE, "python", query, renamer=FAKE, budget=1000, max_iterations=200)
    assert len(seen) == len(set(seen))


def test_attack_inputs_and_summary():
    inputs = [
        (CODE, Model(count_sensitive)),
        (CODE, Model(robust)),
        (CODE, Model(lambda code: Outcome(0.1, False))),
        (CODE, Model(count_sensitive)),
    ]
    results = attack_inputs(inputs, "python", "alert", renamer=FAKE, budget=100)
    summary = summarize_attacks(results)
    assert summary["n_attacked"] == 3 and summary["n_success"] == 2
    assert summary["attack_success_rate"] == pytest.approx(2 / 3)
    assert summary["accuracy_before"] == pytest.approx(0.75)
    assert summary["accuracy_after"] == pytest.approx(0.25)
    assert summary["drop"] == pytest.approx(0.5)
    assert summary["mean_identifier_change_rate"] == pytest.approx(1 / 3)


def test_summary_of_nothing_is_undefined():
    summary = summarize_attacks([])
    assert summary["attack_success_rate"] is None and summary["drop"] is None


def test_relative_drop():
    assert relative_drop(0.3, 0.1) == pytest.approx(2.0)  # a 200% greater drop
    assert relative_drop(0.385, 0.1) == pytest.approx(2.85)
    assert relative_drop(0.1, 0.1) == pytest.approx(0.0)
    assert relative_drop(0.05, 0.1) == pytest.approx(-0.5)
    assert relative_drop(0.0, 0.0) == 0.0
    assert relative_drop(0.2, 0.0) == math.inf


def test_token_changes():
    assert token_changes("a = b + c", "x = b + c") == (1, 5)
    assert token_changes("", "") == (0, 0)


def test_result_rates_without_identifiers():
    result = AttackResult("mhm", False, True, 1, 0.9, 0.9, "x")
    assert result.identifier_change_rate == 0.0 and result.token_change_rate == 0.0


# No skip: the default renamer runs on tree-sitter, a core dependency, so a broken renamer must
# fail here rather than disappear from the run.
@pytest.mark.parametrize("attack", [alert_attack, mhm_attack])
def test_default_renamer_attack_on_python(attack):
    from codistill.fidelity.code import parses

    model = Model(count_sensitive)
    result = attack(CODE, "python", model, budget=300)
    assert result.success
    assert "count" in result.renames
    assert parses(result.adversarial_code, "python")
    assert model.calls <= 300
