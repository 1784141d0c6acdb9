"""SODA Stage III, feedback-based knowledge update: new questions per difficulty level.

From Stage II's feedback rows (``level`` per question):

1. **allocation**: :func:`codistill.soda.difficulty.allocate` splits ``n_new`` across the levels
   by ``ratio`` (easy:medium:hard, the paper's 1:1:2 by default) and draws the seed question of
   each new one. Ablation "w/o classification" (``use_difficulty=False``): seeds drawn uniformly
   from all questions, levels ignored; these slots are reported under ``random`` and asked with
   the ``medium`` instruction (same domain, similar difficulty: the paper's in-breadth prompt
   without a level). That instruction is our choice; the paper does not give one.
2. **new question**: the teacher answers ``new_questions.txt`` for the seed (its tests as the
   example form; stage ``stage3.new_question``). A seed drawn a second time within a level gets
   the same prompt plus :data:`REPEAT_NOTE`, so a cached or greedy teacher does not just repeat
   its first answer.
3. **record**: :func:`codistill.soda.prompts.parse_new_question` reads the instruction and the
   assert tests; the entry point is the one function the tests call that is not a builtin or
   imported. The record is MBPP-style, as ``codistill data import mbpp`` builds them: prompt
   :func:`codistill.data.benchmarks.mbpp_prompt` (instruction and first assert), tests the
   imports and asserts one per line, ``extra`` with ``test_imports``, ``test_list`` and
   ``soda`` (level, seed id), ``source="mbpp-soda"`` (a source starting ``mbpp`` is scored as a
   whole program), id ``{id_prefix}/{sha256(instruction, tests)[:12]}``.
4. **teacher's solution**: the teacher answers P_c for the new question (stage
   ``stage3.solution``); the question is kept only if that solution passes the new tests in the
   sandbox (it becomes the record's ``canonical_solution``).

A candidate is rejected for the first of these reasons that applies, checked in this order
(the cheap checks against existing items first, so no solution is asked for a question that
is already lost):

* ``unparsable``: no ``#Created Instruction#`` / ``#Tests#`` answer, tests that are not assert
  statements, or no single function called by the tests;
* ``exact_duplicate``: its prompt's code tokens equal those of an existing question;
* ``near_duplicate``: 5-gram Jaccard >= ``near_duplicate_jaccard`` with an existing question's
  prompt (:class:`codistill.data.decontam.SimilarityIndex`, exact search);
* ``contaminated``: 5-gram Jaccard >= 0.7 between its prompt and a benchmark item's prompt or
  solution (:func:`codistill.data.decontam.decontaminate`, SODA's rule);
* ``solution_failed``: the teacher's own solution fails the new tests, or has no code (the
  observed outcome is kept with the rejection);
* ``contaminated`` again, now on the verified solution program;
* ``exact_duplicate`` / ``near_duplicate`` of a new question kept before it (in slot order):
  new-vs-new duplicates are removed only among verified questions, so a question that fails
  its tests never pushes out a good one.

New questions are Python: seeds in another language (Stage II runs them in their own) are not
drawn, and are counted in the report (``seeds_other_language``).

"Existing" is the cycle's ``questions`` plus ``existing`` (e.g. earlier cycles' questions).
Files, each written atomically: ``questions.jsonl`` (the kept records) and ``report.json``
(last; the sha256 of the inputs), with ``verify_cache.jsonl`` for the sandbox. A rerun with
the same inputs returns the finished report; an interrupted one resumes from the caches.
"""

from __future__ import annotations

import ast
import builtins
import json
import os
import random
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from codistill.data.benchmarks import mbpp_prompt
from codistill.data.decontam import (
    DEFAULT_N,
    DEFAULT_THRESHOLD,
    SimilarityIndex,
    codegen_benchmark_texts,
    decontaminate,
    shingles,
)
from codistill.data.dedup import normalise
from codistill.data.jsonl import read_records, write_text_atomic
from codistill.data.schema import CodegenRecord
from codistill.soda.difficulty import LEVELS, allocate
from codistill.soda.prompts import (
    Prompt,
    PromptTemplate,
    load_template,
    parse_new_question,
    render_correct,
    render_new_question,
    templates_sha256,
)
from codistill.soda.stage1 import Verifier, solution_from_answer
from codistill.soda.stagefiles import finished_report, stage_counts, write_jsonl
from codistill.soda.teacher import TeacherCalls, content_key

STAGE_VERSION = 1  # bump when what this module computes changes, so old reports are not reused
RANDOM = "random"  # the group of the "w/o classification" ablation's slots
SOURCE = "mbpp-soda"
REASONS = (
    "unparsable",
    "exact_duplicate",
    "near_duplicate",
    "contaminated",
    "solution_failed",
)
REPEAT_NOTE = (
    "\n\nThis is request {n} for this #Given Instruction#: the created instruction must differ "
    "from those written for the earlier requests."
)
_BUILTINS = frozenset(dir(builtins))


class Stage3Error(ValueError):
    """Feedback, questions or settings Stage III cannot use; one-line message."""


@dataclass(frozen=True)
class Stage3Config:
    """Stage III settings.

    Attributes:
        n_new: new questions to ask for (before rejections).
        ratio: easy:medium:hard weights of the budget (the paper: 1:1:2).
        use_difficulty: False is the ablation "w/o classification": seeds drawn uniformly.
        seed: the seed draw.
        near_duplicate_jaccard: 5-gram Jaccard from which a new question is a near duplicate.
        decontaminate: drop new questions too close to a benchmark item (5-gram Jaccard >= 0.7).
        timeout_s: the sandbox's wall-clock limit per program.
        workers: sandbox programs run at once.
    """

    n_new: int = 20
    ratio: tuple[int, int, int] = (1, 1, 2)
    use_difficulty: bool = True
    seed: int = 0
    near_duplicate_jaccard: float = 0.7
    decontaminate: bool = True
    timeout_s: float = 5.0
    workers: int = 2

    def check(self) -> Stage3Config:
        """Returns self; raises :class:`Stage3Error` naming the first bad field."""
        if isinstance(self.n_new, bool) or not isinstance(self.n_new, int) or self.n_new < 0:
            raise Stage3Error(f"n_new must be an integer >= 0, got {self.n_new!r}")
        try:
            allocate({}, 0, self.ratio)
        except ValueError as exc:
            raise Stage3Error(str(exc)) from None
        if not 0 < self.near_duplicate_jaccard <= 1:
            raise Stage3Error(
                f"near_duplicate_jaccard must be in (0, 1], got {self.near_duplicate_jaccard}"
            )
        if self.timeout_s <= 0:
            raise Stage3Error(f"timeout_s must be > 0, got {self.timeout_s}")
        if self.workers < 1:
            raise Stage3Error(f"workers must be >= 1, got {self.workers}")
        return self


@dataclass
class _Candidate:
    """One slot: a seed, the teacher's answer, and what became of it."""

    slot: int
    group: str  # a level, or RANDOM
    seed_id: str
    prompt: Prompt
    record: CodegenRecord | None = None
    reason: str | None = None
    detail: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def entry_point_of(tests: str) -> str | None:
    """The function the tests call: the one name called in them that is neither a builtin nor
    imported by them; None when there is not exactly one."""
    tree = ast.parse(tests)
    imported = {
        (alias.asname or alias.name).split(".")[0]
        for node in ast.walk(tree)
        if isinstance(node, ast.Import | ast.ImportFrom)
        for alias in node.names
    }
    called = {
        node.func.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name)
    }
    names = sorted(called - _BUILTINS - imported)
    return names[0] if len(names) == 1 else None


def new_record(
    instruction: str,
    tests: str,
    *,
    id_prefix: str,
    level: str,
    seed_id: str,
) -> CodegenRecord | None:
    """The MBPP-style record of a parsed new question, or None when no entry point is found.

    Args:
        instruction: the created instruction.
        tests: its tests, imports and assert statements only (as ``parse_new_question`` checks).
        id_prefix: the id's prefix (e.g. ``soda/c1``).
        level: the level (or ``random``) of the slot it was asked for.
        seed_id: the seed question's id.
    """
    entry = entry_point_of(tests)
    if entry is None:
        return None
    tree = ast.parse(tests)
    statements = [ast.get_source_segment(tests, node) or ast.unparse(node) for node in tree.body]
    imports = [
        s for s, n in zip(statements, tree.body, strict=True) if not isinstance(n, ast.Assert)
    ]
    asserts = [s for s, n in zip(statements, tree.body, strict=True) if isinstance(n, ast.Assert)]
    digest = content_key(instruction, tests)[:12]
    return CodegenRecord(
        id=f"{id_prefix}/{digest}",
        source=SOURCE,
        prompt=mbpp_prompt(instruction, asserts[0]),
        entry_point=entry,
        tests="\n".join([*imports, *asserts]) + "\n",
        extra={
            "test_imports": imports,
            "test_list": asserts,
            "soda": {"level": level, "seed": seed_id},
        },
    )


def stage3_inputs_sha256(
    feedback: Sequence[dict[str, Any]],
    questions: Sequence[CodegenRecord],
    existing: Sequence[CodegenRecord],
    benchmarks: Sequence[CodegenRecord],
    teacher: TeacherCalls,
    config: Stage3Config,
    templates: dict[str, PromptTemplate],
    id_prefix: str,
) -> str:
    """sha256 over everything Stage III's output depends on."""
    return content_key(
        STAGE_VERSION,
        [{k: row.get(k) for k in ("question_id", "level")} for row in feedback],
        [r.to_dict() for r in questions],
        [r.to_dict() for r in existing],
        # Only what decontamination compares, and only when it does.
        content_key(codegen_benchmark_texts(benchmarks)) if config.decontaminate else None,
        teacher.teacher_key,
        asdict(config),
        templates_sha256(templates),
        id_prefix,
    )


def run_stage3(
    feedback: Sequence[dict[str, Any]],
    questions: Sequence[CodegenRecord],
    teacher: TeacherCalls,
    out_dir: str | os.PathLike[str],
    config: Stage3Config | None = None,
    benchmarks: Sequence[CodegenRecord] = (),
    template_dir: str | os.PathLike[str] | None = None,
    log: Callable[[str], None] = print,
    *,
    id_prefix: str = "soda",
    existing: Sequence[CodegenRecord] = (),
) -> dict[str, Any]:
    """Builds (or finds) Stage III's new questions in ``out_dir``; returns its report.

    Args:
        feedback: Stage II's rows (``question_id`` and ``level`` are read), one per question.
        questions: the questions the feedback is about (the seeds of the new ones).
        teacher: the teacher's calls.
        out_dir: the stage directory.
        config: settings (default :class:`Stage3Config`).
        benchmarks: benchmark items to decontaminate against (HumanEval, HumanEval+, MBPP test);
            grouped by their ``source`` in the report.
        template_dir: a folder of user templates overriding ``new_questions.txt`` /
            ``correct.txt``.
        log: progress lines.
        id_prefix: the new records' id prefix (e.g. ``soda/c2`` for cycle 2).
        existing: further questions the new ones must not duplicate (earlier cycles').

    Returns:
        The ``report.json`` dict.

    Raises:
        Stage3Error: a feedback row about an unknown question or with an unknown level, or a
            bad setting.
    """
    config = (config or Stage3Config()).check()
    by_id = _check_inputs(feedback, questions)
    out = Path(out_dir)
    templates = {n: load_template(n, template_dir) for n in ("new_questions", "correct")}
    inputs = stage3_inputs_sha256(
        feedback, questions, existing, benchmarks, teacher, config, templates, id_prefix
    )
    done = finished_report(out, inputs, ("questions.jsonl",))
    if done is not None:
        log(f"stage 3: up to date in {out} ({done['kept']} new questions)")
        return done
    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    # New questions are MBPP-style Python (assert tests, the entry point found in them): a seed
    # in another language is not drawn, and is counted.
    seeds = [row for row in feedback if by_id[row["question_id"]].language == "python"]
    allocation, candidates = _slots(seeds, by_id, config, templates["new_questions"])
    answers = teacher.ask([c.prompt for c in candidates], stage="stage3.new_question")
    for c, answer in zip(candidates, answers, strict=True):
        parsed = parse_new_question(answer)
        record = None
        if parsed is not None:
            record = new_record(*parsed, id_prefix=id_prefix, level=c.group, seed_id=c.seed_id)
        if record is None:
            why = "no single function called by the tests" if parsed else "answer format"
            _reject(c, "unparsable", why)
        c.record = record
    known = [*questions, *existing]
    _against_existing(candidates, known, config)
    bench_texts = _benchmark_texts(benchmarks) if config.decontaminate else {}
    _decontaminate(candidates, bench_texts, lambda r: r.prompt)
    verifier = Verifier(out / "verify_cache.jsonl", config)
    try:
        _verify(candidates, teacher, templates["correct"], verifier)
    finally:
        verifier.close()
    _decontaminate(candidates, bench_texts, None)  # now on the verified solution program
    _among_new(candidates, config)
    kept = [c.record for c in candidates if c.reason is None and c.record is not None]
    write_jsonl(out / "questions.jsonl", [r.to_dict() for r in kept])
    groups = [RANDOM] if not config.use_difficulty else list(LEVELS)
    report = {
        "stage": 3,
        "version": STAGE_VERSION,
        "inputs_sha256": inputs,
        "config": asdict(config),
        "id_prefix": id_prefix,
        "seed_questions": len(questions),
        "seeds_other_language": len(feedback) - len(seeds),
        "existing_questions": len(known),
        "allocation": allocation,
        "asked": len(candidates),
        "kept": len(kept),
        "rejected": _by_reason(candidates),
        "by_level": {g: _group_report([c for c in candidates if c.group == g]) for g in groups},
        "rejections": [
            {
                "slot": c.slot,
                "level": c.group,
                "seed": c.seed_id,
                "id": c.record.id if c.record is not None else None,
                "reason": c.reason,
                "detail": c.detail,
                **c.extra,
            }
            for c in candidates
            if c.reason is not None
        ],
        "decontamination": {
            "enabled": config.decontaminate,
            "n": DEFAULT_N,
            "threshold": DEFAULT_THRESHOLD,
            "benchmark_items": {name: len(texts) for name, texts in bench_texts.items()},
        },
        "teacher": stage_counts(teacher.counts(), "stage3."),
        "sandbox": {"runs": verifier.runs, "cached": verifier.cached},
        "wall_s": round(time.perf_counter() - start, 3),
    }
    text = json.dumps(report, indent=2) + "\n"
    write_text_atomic(out / "report.json", text)
    log(f"stage 3: kept {len(kept)} of {len(candidates)} new questions -> {out}")
    return json.loads(text)  # as a rerun reads it back


def read_questions(path: str | os.PathLike[str]) -> list[CodegenRecord]:
    """The records of a ``questions.jsonl`` written by :func:`run_stage3`."""
    return read_records(path, task="codegen")


def _check_inputs(
    feedback: Sequence[dict[str, Any]], questions: Sequence[CodegenRecord]
) -> dict[str, CodegenRecord]:
    by_id: dict[str, CodegenRecord] = {}
    for record in questions:
        if not isinstance(record, CodegenRecord):
            raise Stage3Error(f"question {record!r}: not a codegen record")
        if record.id in by_id:
            raise Stage3Error(f"question id {record.id!r} appears twice")
        by_id[record.id] = record
    for n, row in enumerate(feedback, 1):
        qid = row.get("question_id") if isinstance(row, dict) else None
        if qid not in by_id:
            raise Stage3Error(f"feedback row {n}: question_id {qid!r} is not one of the questions")
        if row.get("level") not in (*LEVELS, "unclassified"):
            raise Stage3Error(
                f"feedback row {n}: level must be one of {', '.join(LEVELS)}, unclassified; "
                f"got {row.get('level')!r}"
            )
    return by_id


def _slots(
    feedback: Sequence[dict[str, Any]],
    by_id: dict[str, CodegenRecord],
    config: Stage3Config,
    template: PromptTemplate,
) -> tuple[dict[str, Any], list[_Candidate]]:
    """The allocation's report and one candidate (with its prompt) per slot."""
    rng = random.Random(config.seed)
    if config.use_difficulty:
        pools = {lv: [r["question_id"] for r in feedback if r["level"] == lv] for lv in LEVELS}
        found = allocate(pools, config.n_new, config.ratio, rng)
        plan = [(lv, lv, seed) for lv in LEVELS for seed in found.seeds[lv]]
        quotas: dict[str, int] = found.quotas
    else:
        # Every question of the cycle, whatever its level (or none): uniform, no levels.
        pool = list(by_id)
        found = allocate({"medium": pool}, config.n_new, (0, 1, 0), rng)
        plan = [(RANDOM, "medium", seed) for seed in found.seeds["medium"]]
        quotas = {RANDOM: found.quotas["medium"]}
    candidates = []
    drawn: Counter[tuple[str, str]] = Counter()
    for slot, (group, level, seed_id) in enumerate(plan):
        seed = by_id[seed_id]
        prompt = render_new_question(template, seed.prompt, level, examples=seed.tests)
        drawn[(group, seed_id)] += 1
        if drawn[(group, seed_id)] > 1:
            note = REPEAT_NOTE.format(n=drawn[(group, seed_id)])
            prompt = Prompt(prompt.system, prompt.user + note)
        candidates.append(_Candidate(slot, group, seed_id, prompt))
    allocation = {
        "quotas": quotas,
        "shortfall": found.shortfall,
        "notes": found.notes,
        "pools": (
            {lv: sum(r["level"] == lv for r in feedback) for lv in LEVELS}
            if config.use_difficulty
            else {RANDOM: len(by_id)}
        ),
    }
    return allocation, candidates


def _reject(candidate: _Candidate, reason: str, detail: str | None = None, **extra: Any) -> None:
    candidate.reason, candidate.detail = reason, detail
    candidate.extra.update(extra)


def _live(candidates: Sequence[_Candidate]) -> list[_Candidate]:
    return [c for c in candidates if c.reason is None and c.record is not None]


def _against_existing(
    candidates: Sequence[_Candidate], known: Sequence[CodegenRecord], config: Stage3Config
) -> None:
    """Rejects candidates whose prompt duplicates (exactly or nearly) an existing question's."""
    exact = {normalise(r.prompt): r.id for r in known}
    live = []
    for c in _live(candidates):
        match = exact.get(normalise(c.record.prompt))
        if match is not None:
            _reject(c, "exact_duplicate", f"of {match}")
        else:
            live.append(c)
    if not live or not known:
        return
    known_sets = [shingles(r.prompt) for r in known]
    new_sets = [shingles(c.record.prompt) for c in live]
    index = SimilarityIndex([*known_sets, *new_sets], config.near_duplicate_jaccard)
    for r, hashes in zip(known, known_sets, strict=True):
        index.add(r.id, index.encode(hashes))
    for c, hashes in zip(live, new_sets, strict=True):
        matches = index.query(index.encode(hashes))
        if matches:
            other, similarity = matches[0]
            _reject(c, "near_duplicate", f"of {other}", similarity=round(similarity, 4))


def _benchmark_texts(benchmarks: Sequence[CodegenRecord]) -> dict[str, dict[str, str]]:
    """Benchmark prompts and solutions per source (``humaneval``, ``humaneval+``, ``mbpp``)."""
    grouped: dict[str, list[CodegenRecord]] = {}
    for record in benchmarks:
        grouped.setdefault(record.source, []).append(record)
    return {name: codegen_benchmark_texts(records) for name, records in grouped.items()}


def _decontaminate(
    candidates: Sequence[_Candidate],
    bench_texts: dict[str, dict[str, str]],
    text_fn: Callable[[CodegenRecord], str] | None,
) -> None:
    """Rejects live candidates whose text (``text_fn``; None: the solution program) is within
    SODA's 5-gram Jaccard of a benchmark item."""
    live = _live(candidates)
    if not live or not bench_texts:
        return
    _, report = decontaminate([c.record for c in live], text_fn, bench_texts)
    hits = {removal.id: removal for removal in report.removals}
    what = "prompt" if text_fn is not None else "solution"
    for c in live:
        hit = hits.get(c.record.id)
        if hit is not None:
            _reject(
                c,
                "contaminated",
                f"{what} close to {hit.benchmark} {hit.item}",
                similarity=hit.similarity,
            )


def _verify(
    candidates: Sequence[_Candidate],
    teacher: TeacherCalls,
    template: PromptTemplate,
    verifier: Verifier,
) -> None:
    """Asks the teacher's solution to each live candidate and keeps those that pass."""
    live = _live(candidates)
    if not live:
        return
    answers = teacher.ask(
        [render_correct(template, c.record.prompt) for c in live], stage="stage3.solution"
    )
    solutions = [solution_from_answer(a, c.record) for a, c in zip(answers, live, strict=True)]
    outcomes = verifier.outcomes([(c.record, s) for c, s in zip(live, solutions, strict=True)])
    for c, solution, outcome in zip(live, solutions, outcomes, strict=True):
        if outcome == "passed":
            c.record = _with_solution(c.record, solution)
        else:
            _reject(c, "solution_failed", f"the teacher's solution: {outcome}", outcome=outcome)


def _with_solution(record: CodegenRecord, solution: str) -> CodegenRecord:
    fields = record.to_dict()
    fields["canonical_solution"] = solution
    return CodegenRecord(**fields)


def _among_new(candidates: Sequence[_Candidate], config: Stage3Config) -> None:
    """Greedy, in slot order: a verified question duplicating one kept before it is removed."""
    live = _live(candidates)
    if not live:
        return
    sets = [shingles(c.record.prompt) for c in live]
    index = SimilarityIndex(sets, config.near_duplicate_jaccard)
    exact: dict[str, str] = {}
    for c, hashes in zip(live, sets, strict=True):
        key = normalise(c.record.prompt)
        if key in exact:
            _reject(c, "exact_duplicate", f"of new question {exact[key]}")
            continue
        encoded = index.encode(hashes)
        matches = index.query(encoded)
        if matches:
            other, similarity = matches[0]
            _reject(
                c, "near_duplicate", f"of new question {other}", similarity=round(similarity, 4)
            )
            continue
        exact[key] = c.record.id
        index.add(c.record.id, encoded)


def _by_reason(candidates: Sequence[_Candidate]) -> dict[str, int]:
    found = Counter(c.reason for c in candidates if c.reason is not None)
    return {reason: found[reason] for reason in REASONS}


def _group_report(candidates: Sequence[_Candidate]) -> dict[str, Any]:
    return {
        "asked": len(candidates),
        "kept": sum(c.reason is None for c in candidates),
        "rejected": _by_reason(candidates),
    }
