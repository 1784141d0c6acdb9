"""What the student is trained to write: the references, or the teacher's own outputs.

``targets=teacher:G`` is sequence-level KD (Kim & Rush, 2016): the student is trained on the
teacher's outputs for the training prompts, read from a generations directory written by
``codistill teacher generate`` (format: :mod:`codistill.teacher.generations`), instead of on the
references. ``targets=teacher-verified:G`` keeps only outputs whose tests passed in the sandbox,
dropping (and counting) records with none.

Each distinct non-empty output of a record becomes one training example (a record with ``n``
sampled outputs gives up to ``n`` examples; greedy generation gives one), so sampled teachers
contribute their whole output distribution. The outputs replace the record's target field
(``target`` for assertions, ``canonical_solution`` for code problems), so everything downstream
(prompt rendering, tokenization, teacher terms along the teacher's sequence, the teacher cache's
content keys) treats them exactly like references. Validation always scores the references.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from codistill.config.distill import parse_targets
from codistill.config.fields import ConfigError
from codistill.data.schema import AssertionRecord, CodegenRecord


def header_mismatch(header: dict, task: str, prompt_mode: str, prompt_style: str) -> str | None:
    """The first header field of a generations file that differs from the run, as a sentence,
    or None when the outputs were made for prompts like the run's."""
    prompt = header.get("prompt") or {}
    wanted = [("task", header.get("task"), task), ("prompt.mode", prompt.get("mode"), prompt_mode)]
    if task == "assertion":
        wanted.append(("prompt.style", prompt.get("style"), prompt_style))
    for name, got, want in wanted:
        if got != want:
            return f"header field {name} is {got!r}, the run's is {want!r}"
    return None


def _generation_key(record: Any, prompt_style: str) -> str:
    # lazy: ~35 ms of backends and sandbox that `codistill --help` (cli/teacher.py) skips
    from codistill.teacher.generations import generation_key

    return generation_key(record, prompt_style)


def _with_target(record: AssertionRecord | CodegenRecord, output: str):
    if isinstance(record, CodegenRecord):
        return dataclasses.replace(record, canonical_solution=output)
    return dataclasses.replace(record, target=output.strip())


def _kept_outputs(entry: dict, verified: bool, counts: dict) -> list[str] | None:
    """The outputs of one record to train on, in order, without repeats or empty ones; None
    when ``verified`` and the record has no tests (nothing could be verified)."""
    outputs = [o for o in entry.get("outputs") or [] if isinstance(o, str)]
    if verified:
        verdicts = entry.get("verdicts")
        if verdicts is None:
            return None
        passed = [o for o, v in zip(outputs, verdicts, strict=False) if v == "passed"]
        counts["outputs_not_passed"] += len(outputs) - len(passed)
        outputs = passed
    kept: list[str] = []
    for output in outputs:
        if not output.strip():
            counts["empty_outputs"] += 1
        elif output in kept:
            counts["duplicate_outputs"] += 1
        else:
            kept.append(output)
    return kept


def teacher_target_records(
    records: list,
    generations_dir: str | Path,
    *,
    verified: bool,
    task: str,
    prompt_mode: str,
    prompt_style: str,
    data_name: str = "train_data",
) -> tuple[list, dict]:
    """Records whose targets are the teacher's outputs, and what happened to each record.

    Args:
        records: the training records (assertion or codegen).
        generations_dir: the directory ``codistill teacher generate`` wrote.
        verified: keep only outputs whose verdict is ``passed`` (records without tests and
            records without a passing output are dropped and counted).
        task, prompt_mode, prompt_style: the run's; the generations header must match them.
        data_name: how error messages name the records' file.

    Returns:
        The new records (one per kept output, in record order) and a summary for run.json.

    Raises:
        ConfigError: the header was made for another task or prompt, or a record has no
            entry in the generations file (it was generated from other data).
    """
    # lazy: ~35 ms of backends and sandbox that `codistill --help` (cli/teacher.py) skips
    from codistill.teacher.generations import GenerationsError, read_generations

    source = f"targets={'teacher-verified' if verified else 'teacher'}:{generations_dir}"
    try:
        header, entries = read_generations(generations_dir)
    except GenerationsError as exc:  # a torn or foreign file: one line, naming FILE:LINE
        raise ConfigError(f"{source}: {exc}") from None
    mismatch = header_mismatch(header, task, prompt_mode, prompt_style)
    if mismatch:
        raise ConfigError(f"{source}: the outputs were made for other prompts: {mismatch}")
    counts = dict.fromkeys(
        ("outputs_not_passed", "empty_outputs", "duplicate_outputs", "records_without_tests"), 0
    )
    out, dropped, missing = [], [], []
    for number, record in enumerate(records, start=1):
        entry = entries.get(_generation_key(record, prompt_style))
        if entry is None:
            missing.append((number, record.id))
            continue
        kept = _kept_outputs(entry, verified, counts)
        if kept is None:
            counts["records_without_tests"] += 1
            kept = []
        if not kept:
            dropped.append(record.id)
        out.extend(_with_target(record, output) for output in kept)
    if missing:
        number, rid = missing[0]
        raise ConfigError(
            f"{source}: no teacher outputs for {len(missing)} of {len(records)} records of "
            f"{data_name} (first: record {number}, id {rid!r}); generate them from the same "
            "data with `codistill teacher generate`"
        )
    summary = {
        "kind": "teacher-verified" if verified else "teacher",
        "generations": str(generations_dir),
        "teacher": header.get("teacher"),
        "backend": header.get("backend"),
        "decoding": header.get("decoding"),
        "records": len(records),
        "records_used": len(records) - len(dropped),
        "records_dropped": len(dropped),
        "dropped_ids": dropped[:50],
        "examples": len(out),
        **counts,
    }
    return out, summary


def records_for_targets(
    records: list,
    targets: str,
    *,
    task: str,
    prompt_mode: str,
    prompt_style: str,
    data_name: str,
) -> tuple[list, dict | None]:
    """The records to train (or cache) on under ``targets`` (``reference``, ``teacher:DIR``,
    ``teacher-verified:DIR``), and the summary of the teacher's outputs used (None for the
    references). One place for the trainer and ``teacher cache``, so both see the same
    examples."""
    kind, generations = parse_targets(targets)
    if kind == "reference":
        return records, None
    return teacher_target_records(
        records,
        generations,
        verified=kind == "teacher-verified",
        task=task,
        prompt_mode=prompt_mode,
        prompt_style=prompt_style,
        data_name=data_name,
    )
