import pytest

from codistill.soda.judge import (
    RETRY_NOTE,
    agreement,
    judge_key,
    judge_solutions,
    parse_score,
)
from codistill.soda.prompts import load_template

ANALYSIS = "Code Analysis: the loop covers every element; empty input is not handled.\n"


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Score: 4", 4),
        ("**Score:** 4/6", 4),
        ("Final score = 4 out of 6", 4),
        (ANALYSIS + "1. Basic functionality: 2\n2. Boundary checks: 0\n\nScore: 3\n", 3),
        ("## Score: 6", 6),
        ("score - 0", 0),
        ("Score: **5** points", 5),
        ("The total score is 2.", 2),
        ("Overall score: 5/6\nScore: 5", 5),
        ("Score: 2 + 1 + 1 + 0 + 1 = 5", 5),
        ("- Score: 2/2\n- Score: 1/1\n- Score: 0/1\nTotal: 3", 3),
        ("Basic functionality score: 2\nBoundary score: 1\nFinal score: 4", 4),
    ],
)
def test_parse_score_reads_the_forms_judges_write(text, expected):
    assert parse_score(text) == expected


@pytest.mark.parametrize(
    "text",
    [
        "",
        ANALYSIS + "The code is quite good overall.",
        "Score: 7",
        "Score: -1",
        "Score: 4.5",
        "Score: 4/5",
        "Final score: 8 out of 10",
        "Score: 2 + 1 = 5",
        "Score: 3\n" + ANALYSIS + "Score: 5",
        "Final score: 3\nTotal score: 4",
        "- Score: 1\n- Score: 2",  # per-rule scores, no total
        "Score:\n1. Basic functionality: 2",
        "Score: <total>",
    ],
)
def test_parse_score_returns_none_rather_than_guessing(text):
    assert parse_score(text) is None


class FakeJudge:
    """Answers from a script per (solution, retry?) and records every prompt asked."""

    def __init__(self, script):
        self.script = script
        self.asked = []

    def __call__(self, prompts):
        self.asked.append(prompts)
        out = []
        for prompt in prompts:
            retry = prompt.user.endswith(RETRY_NOTE)
            solution = next(s for s in self.script if f"\n{s}\n" in prompt.user)
            out.append(self.script[solution][int(retry)])
        return out


SCRIPT = {
    "return 1": ("Score: 5", "unused"),
    "return 2": ("The code is fine.", "Score: 3"),  # malformed, then fixed by the retry
    "return 3": ("Score: 9", "I cannot score this."),  # malformed twice: unscored
}
ITEMS = [("q1", "return 1"), ("q2", "return 2"), ("q3", "return 3")]


def test_judge_solutions_retries_once_then_counts_unscored():
    template, judge, cache = load_template("judge"), FakeJudge(SCRIPT), {}
    result = judge_solutions(ITEMS, judge, cache, template, judge="fake")
    assert result.scores == [5, 3, None]
    assert result.answers == ["Score: 5", "Score: 3", "I cannot score this."]
    assert result.counts() == {
        "scored": 2,
        "retried": 2,
        "unscored": 1,
        "calls": 5,
        "cache_hits": 0,
    }
    first, retries = judge.asked
    assert len(first) == 3 and len(retries) == 2
    assert all(p.user.endswith(RETRY_NOTE) for p in retries)
    assert not any(p.user.endswith(RETRY_NOTE) for p in first)
    assert len(cache) == 5


def test_judge_solutions_rerun_is_served_from_the_cache():
    template, cache = load_template("judge"), {}
    judge_solutions(ITEMS, FakeJudge(SCRIPT), cache, template, judge="fake")
    again = FakeJudge(SCRIPT)
    result = judge_solutions(ITEMS, again, cache, template, judge="fake")
    assert again.asked == []
    assert result.scores == [5, 3, None]
    assert result.calls == 0 and result.cache_hits == 5 and result.retried == 2


def test_judge_cache_never_serves_another_judge_template_or_solution(tmp_path):
    template = load_template("judge")
    base = judge_key("fake", template.sha256, "q", "s", 0)
    assert base == judge_key("fake", template.sha256, "q", "s", 0)
    variants = [
        judge_key("other", template.sha256, "q", "s", 0),
        judge_key("fake", "0" * 64, "q", "s", 0),
        judge_key("fake", template.sha256, "q2", "s", 0),
        judge_key("fake", template.sha256, "q", "s2", 0),
        judge_key("fake", template.sha256, "q", "s", 1),
    ]
    assert len({base, *variants}) == 6
    cache = {}
    judge_solutions(ITEMS[:1], FakeJudge(SCRIPT), cache, template, judge="fake")
    other = FakeJudge(SCRIPT)
    judge_solutions(ITEMS[:1], other, cache, template, judge="another")
    assert len(other.asked) == 1


def test_a_duplicated_pair_is_asked_once():
    judge = FakeJudge(SCRIPT)
    result = judge_solutions(ITEMS[:1] * 3, judge, {}, load_template("judge"), judge="fake")
    assert result.scores == [5, 5, 5]
    assert [len(batch) for batch in judge.asked] == [1]
    assert result.calls == 1 and result.cache_hits == 2


def test_a_judge_returning_the_wrong_number_of_answers_is_an_error():
    with pytest.raises(ValueError, match="1 answers for 3 prompts"):
        judge_solutions(ITEMS, lambda ps: ["Score: 1"], {}, load_template("judge"), judge="x")


def test_agreement_counts_each_cell_and_sets_unscored_apart():
    scores = [6, 4, 3, 0, 5, 1, None, None]
    passed = [True, True, True, False, False, False, True, False]
    result = agreement(scores, passed)
    assert (result.both_pass, result.execution_only, result.both_fail) == (2, 1, 2)
    assert (result.judge_only, result.unscored, result.compared) == (1, 2, 6)
    assert result.rate == pytest.approx(4 / 6)
    assert result.as_dict()["rate"] == pytest.approx(4 / 6)
    assert agreement(scores, passed, threshold=3).rate == pytest.approx(5 / 6)


def test_agreement_with_nothing_compared_has_no_rate_and_lengths_must_match():
    assert agreement([None], [True]).rate is None
    with pytest.raises(ValueError, match="2 scores but 1 execution results"):
        agreement([1, 2], [True])
