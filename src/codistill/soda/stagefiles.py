"""What the three SODA stages share about their directories: the input checks, the finished
report a rerun returns as is, the per-stage slice of a model's call counts, JSONL rows written
atomically."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from codistill.data.jsonl import atomic_text_writer
from codistill.data.schema import CodegenRecord


def check_questions(
    records: Sequence[Any], error: type[Exception], stage: str, what: str = "question"
) -> None:
    """Raises ``error`` (one line) unless ``records`` are codegen records with tests and
    distinct ids, at least one."""
    if not records:
        raise error(f"{stage} needs at least one {what}")
    seen: set[str] = set()
    for record in records:
        if not isinstance(record, CodegenRecord):
            raise error(f"{what} {record!r}: not a codegen record")
        if record.id in seen:
            raise error(f"{what} id {record.id!r} appears twice")
        if not record.tests.strip():
            raise error(f"{what} {record.id!r} has no tests")
        seen.add(record.id)


def finished_report(out: Path, inputs: str, outputs: Sequence[str]) -> dict[str, Any] | None:
    """The stage's ``report.json`` when it and every one of ``outputs`` exist and the report was
    made from the same inputs (``inputs_sha256``); else None."""
    path = out / "report.json"
    if not path.is_file() or not all((out / name).is_file() for name in outputs):
        return None
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None
    return report if report.get("inputs_sha256") == inputs else None


def stage_counts(counts: dict[str, Any], prefix: str) -> dict[str, Any]:
    """A model's call counts restricted to the stages named ``prefix...`` (one model may serve
    several stages)."""
    stages = {k: v for k, v in counts["stages"].items() if k.startswith(prefix)}
    return {**counts, "stages": stages}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """The rows :func:`write_jsonl` wrote (blank lines skipped)."""
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def write_jsonl(path: Path, rows: Sequence[dict[str, Any]]) -> None:
    """``rows`` as JSON lines, written to a temporary file and renamed into place."""
    with atomic_text_writer(path) as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
