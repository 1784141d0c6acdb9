"""Reading a clone/defect file and cutting it into the four parts of `SPLIT_NAMES`.

Clone pairs are split by their first function's id (``id1``), so the pairs of one function stay
in one part (a function can still appear as the *second* member of pairs in several parts);
defects by their id. Within a part records are ordered by a seeded hash of their id, so
``train_size=N`` keeps a sample that does not depend on the file's order, and a larger ``N``
keeps a superset.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path

from codistill.data.benchmarks import deterministic_split, load_bigclonebench, load_devign
from codistill.data.jsonl import read_records
from codistill.data.schema import CloneRecord, DefectRecord, RecordError
from codistill.models.classifier import check_task
from codistill.training.classifier.config import SPLIT_NAMES, check_fractions

TaskRecord = CloneRecord | DefectRecord
_EXPECTED_FIELDS = {
    "clone": "BigCloneBench lines with id1, id2, code1, code2, label",
    "defect": "Devign lines with idx, project, commit_id, func, target",
}


def load_task_records(task: str, path: str | Path) -> list[TaskRecord]:
    """Clone or defect records from CodeXGLUE JSONL or from codistill's own record JSONL.

    Raises:
        FileNotFoundError: The file is missing.
        RecordError: A line is malformed (e.g. a Devign file read as ``clone``).
    """
    check_task(task)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{task} data file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        own_format = {"id", "label", "language"} <= set(json.loads(first))
    except (json.JSONDecodeError, TypeError):
        own_format = False
    try:
        if own_format:
            return read_records(path, task=task)  # type: ignore[return-value]
        return load_bigclonebench(path) if task == "clone" else load_devign(path)
    except RecordError as err:
        if not err.cause.startswith("field"):
            raise
        raise RecordError(
            f"{err.reason} (is this a {task} file? expected {_EXPECTED_FIELDS[task]})",
            where=err.where,
            cause=err.cause,
        ) from None


def split_key(record: TaskRecord) -> str:
    """What decides a record's part: a clone pair's first function id, else the record id."""
    if isinstance(record, CloneRecord):
        return str(record.extra.get("id1", record.id))
    return record.id


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"order\0{seed}\0{record_id}".encode()).hexdigest()


def split_records(
    records: Sequence[TaskRecord], fractions: Sequence[float], seed: int
) -> dict[str, list[TaskRecord]]:
    """The four parts of `SPLIT_NAMES`, each ordered by a seeded hash of the record id.

    Raises:
        ConfigError: Bad ``fractions`` (see `check_fractions`).
    """
    check_fractions(fractions)
    parts = deterministic_split(
        records, key=split_key, fractions=fractions, seed=seed, names=SPLIT_NAMES
    )
    return {name: sorted(part, key=lambda r: _rank(seed, r.id)) for name, part in parts.items()}


def take(records: list[TaskRecord], n: int | None) -> list[TaskRecord]:
    """The first ``n`` records of a part (all of them for ``None``)."""
    return records if n is None else records[:n]


def label_counts(records: Sequence[TaskRecord]) -> dict[str, int]:
    """Records per binary label, keyed ``"0"`` and ``"1"``."""
    return {str(c): sum(r.label == c for r in records) for c in (0, 1)}
