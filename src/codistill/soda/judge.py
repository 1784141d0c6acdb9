"""SODA Stage II, model-based scoring: a judge scores solutions with the six-point rubric.

The judge (the teacher by default) answers ``judge.txt``'s prompt with an analysis and a total
on the rubric (functionality 2, boundary checks 1, requirements 1, readability 1, best practices
1; 0 to 6). :func:`parse_score` reads the total from the ways models write it and never guesses:
no total, a total outside 0..6, a non-integer, a scale other than 6 or two totals that disagree
give None. :func:`judge_solutions` asks the judge through a caller-supplied function (so any
generation backend plugs in), caches every raw answer by content, retries a malformed answer
once with a note asking for the format, and counts what stayed unscored.
:func:`agreement` measures how often the judge agrees with execution.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable, MutableMapping, Sequence
from dataclasses import dataclass

from codistill.soda.prompts import Prompt, PromptTemplate, render_judge

MAX_SCORE = 6
PASS_SCORE = 4  # the paper's "high quality" threshold; also the easy-level threshold
# Appended to the prompt of the one retry: a greedy judge would repeat its answer word for word.
RETRY_NOTE = (
    "\n\nYour answer must end with one line that holds only the total score, an integer from "
    "0 to 6, written exactly as:\nScore: <total>"
)

_NUMBER = r"(?P<num>-?\d+(?:[.,]\d+)?)"
# What may follow the number: a scale ("/6", "out of 6", "points"), or a sum "+ 1 + 1 = 5".
_TAIL = (
    r"(?P<sum>(?:[ \t]*\+[ \t]*\d+)+[ \t]*=[ \t]*(?P<total>\d+))?"
    r"(?:[ \t]*(?:/|out[ \t]+of)[ \t]*(?P<scale>\d+))?"
)
_SEP = r"[ \t]*(?:is|[:=\-–—])?[ \t]*"
# A total announced anywhere in a line: "Final score = 4 out of 6", "The total score is 5".
_QUALIFIED = re.compile(
    r"\b(?:final|total|overall)[ \t]+(?:score|points?|rating)" + _SEP + _NUMBER + _TAIL,
    re.IGNORECASE,
)
# A line that starts with the label: "Score: 4", "- Total: 5/6", "3. Score = 4".
_LEADING = re.compile(
    r"^[ \t]*(?:[-+>][ \t]*|\d+[.)][ \t]*)?(?P<label>score|total|rating)" + _SEP + _NUMBER + _TAIL,
    re.IGNORECASE,
)
_MARKUP = re.compile(r"[*`]|^[ \t]*#+[ \t]*", re.MULTILINE)


def parse_score(text: str) -> int | None:
    """The rubric total a judge's answer states, or None when it does not state one clearly.

    Accepted: ``Score: 4``, ``**Score:** 4/6``, ``Final score = 4 out of 6``, ``Total: 5``,
    ``Score: 2 + 1 + 1 + 0 + 1 = 5`` (the sum is checked), anywhere in the answer, usually a
    trailing line after the analysis. Totals marked as such (``Final/Total/Overall score``
    anywhere in a line, or a line starting ``Total``) take precedence over plain lines starting
    ``Score``, since judges often write per-rule scores as ``Score: 1`` under each rule. Every
    statement of the chosen kind must agree (a ``Score: 1`` per rule and no marked total is
    therefore None, not a guess).

    Returns:
        The score in 0..6, or None for no total, a fraction, a value outside 0..6, a scale other
        than 6 (``4/5``, ``8 out of 10``), a sum that does not add up, or totals that disagree.
    """
    lines = _MARKUP.sub("", text).splitlines()
    leading = [m for line in lines if (m := _LEADING.match(line))]
    qualified = [m for line in lines for m in _QUALIFIED.finditer(line)]
    qualified += [m for m in leading if m.group("label").lower() == "total"]
    chosen = qualified or [m for m in leading if m.group("label").lower() != "total"]
    values = {_value(m) for m in chosen}
    if len(values) != 1:
        return None
    return values.pop()


def _value(match: re.Match[str]) -> int | None:
    """The statement's integer score, or None when it is not a valid 0..6 total."""
    raw = match.group("num")
    if not re.fullmatch(r"-?\d+", raw):
        return None
    value = int(raw)
    if match.group("sum"):
        parts = [value, *(int(p) for p in re.findall(r"\+[ \t]*(\d+)", match.group("sum")))]
        if sum(parts) != int(match.group("total")):
            return None
        value = sum(parts)
    scale = match.group("scale")
    if scale is not None and int(scale) != MAX_SCORE:
        return None
    return value if 0 <= value <= MAX_SCORE else None


@dataclass
class JudgeResult:
    """Scores of one batch of solutions and what it took to get them.

    Attributes:
        scores: per item, the rubric total or None (unscored).
        answers: per item, the raw answer the score was read from (the retry's when retried).
        scored: items with a score.
        retried: items whose first answer was malformed and were asked again.
        unscored: items still without a score after the retry.
        calls: judge calls made now (cached answers excluded).
        cache_hits: answers not asked now: cached before, or a duplicate of an item asked now.
    """

    scores: list[int | None]
    answers: list[str]
    scored: int = 0
    retried: int = 0
    unscored: int = 0
    calls: int = 0
    cache_hits: int = 0

    def counts(self) -> dict[str, int]:
        """The counters, for a report."""
        keys = ("scored", "retried", "unscored", "calls", "cache_hits")
        return {k: getattr(self, k) for k in keys}


def judge_key(judge: str, template_sha256: str, question: str, solution: str, attempt: int) -> str:
    """The cache key of one judge answer: sha256 over everything that determines it.

    Args:
        judge: the judge's identity (backend spec and model hash or URL + model name, decoding
            settings), so that another judge's answers are never served.
        template_sha256: ``PromptTemplate.sha256`` of the judge template.
        question: the question text.
        solution: the solution text.
        attempt: 0 for the first answer, 1 for the retry (which adds ``RETRY_NOTE``).
    """
    note = RETRY_NOTE if attempt else ""
    payload = json.dumps([judge, template_sha256, question, solution, attempt, note])
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def judge_solutions(
    items: Sequence[tuple[str, str]],
    ask: Callable[[list[Prompt]], list[str]],
    cache: MutableMapping[str, str],
    template: PromptTemplate,
    judge: str,
) -> JudgeResult:
    """Scores (question, solution) pairs with the judge, through the cache.

    The first answers of all items are asked in one call to ``ask`` (a backend batches them),
    then the retries of the malformed ones in a second call. Raw answers are cached, not
    scores, so a better parser re-reads old answers without asking again; a cached malformed
    first answer sends the item straight to its retry slot, so a rerun asks nothing new.

    Args:
        items: ``(question, solution)`` pairs.
        ask: the judge: prompts in, one answer text per prompt out, in order (wrap a
            one-prompt function as ``lambda ps: [f(p) for p in ps]``). Its errors propagate:
            a failing backend is not a malformed judgement.
        cache: answer texts by :func:`judge_key` (a dict, or a persistent mapping); written to.
        template: the loaded ``judge`` template.
        judge: the judge's identity for the cache key (see :func:`judge_key`).

    Returns:
        A :class:`JudgeResult`, items in input order.
    """
    result = JudgeResult(scores=[None] * len(items), answers=[""] * len(items))
    pending = list(range(len(items)))
    for attempt in (0, 1):
        keys = {i: judge_key(judge, template.sha256, *items[i], attempt) for i in pending}
        # One call per distinct key: a duplicated (question, solution) pair is asked once.
        first = {keys[i]: i for i in reversed(pending)}
        missing = sorted(i for k, i in first.items() if k not in cache)
        result.cache_hits += len(pending) - len(missing)
        if missing:
            prompts = [_prompt(template, *items[i], attempt) for i in missing]
            answers = ask(prompts)
            if len(answers) != len(prompts):
                raise ValueError(
                    f"judge returned {len(answers)} answers for {len(prompts)} prompts"
                )
            result.calls += len(prompts)
            for i, answer in zip(missing, answers, strict=True):
                cache[keys[i]] = answer
        for i in pending:
            result.answers[i] = cache[keys[i]]
            result.scores[i] = parse_score(result.answers[i])
        pending = [i for i in pending if result.scores[i] is None]
        if attempt == 0:
            result.retried = len(pending)
    result.unscored = len(pending)
    result.scored = len(items) - result.unscored
    return result


def _prompt(template: PromptTemplate, question: str, solution: str, attempt: int) -> Prompt:
    prompt = render_judge(template, question, solution)
    return Prompt(prompt.system, prompt.user + RETRY_NOTE) if attempt else prompt


@dataclass
class Agreement:
    """How often the judge agrees with execution, on the items both scored.

    ``judge_pass`` means ``score >= threshold``. Unscored items are counted apart, not treated
    as a disagreement or an agreement.
    """

    threshold: int
    both_pass: int  # executed pass, judge pass
    both_fail: int
    judge_only: int  # judge pass, execution fail
    execution_only: int  # execution pass, judge fail
    unscored: int

    @property
    def compared(self) -> int:
        """Items with both a score and an execution result."""
        return self.both_pass + self.both_fail + self.judge_only + self.execution_only

    @property
    def rate(self) -> float | None:
        """Share of compared items where judge and execution agree; None when none compared."""
        return (self.both_pass + self.both_fail) / self.compared if self.compared else None

    def as_dict(self) -> dict[str, int | float | None]:
        """Every count and the rate, for a report."""
        keys = ("threshold", "both_pass", "both_fail", "judge_only", "execution_only", "unscored")
        return {**{k: getattr(self, k) for k in keys}, "compared": self.compared, "rate": self.rate}


def agreement(
    scores: Sequence[int | None], passed: Sequence[bool], threshold: int = PASS_SCORE
) -> Agreement:
    """Counts agreement between judge (``score >= threshold``) and execution (``passed``).

    Args:
        scores: per item, the judge's score or None.
        passed: per item, whether the solution passed its tests.
        threshold: the score from which the judge counts a solution as passing.

    Raises:
        ValueError: the two sequences differ in length.
    """
    if len(scores) != len(passed):
        raise ValueError(f"{len(scores)} scores but {len(passed)} execution results")
    cells = {"both_pass": 0, "both_fail": 0, "judge_only": 0, "execution_only": 0, "unscored": 0}
    for score, ok in zip(scores, passed, strict=True):
        if score is None:
            cells["unscored"] += 1
        elif score >= threshold:
            cells["both_pass" if ok else "judge_only"] += 1
        else:
            cells["execution_only" if ok else "both_fail"] += 1
    return Agreement(threshold=threshold, **cells)
