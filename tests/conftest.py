"""Shared fixtures: a tiny teacher, a student derived from it, assertion records, configs."""

from __future__ import annotations

from pathlib import Path

import pytest

from codistill.data.jsonl import write_records
from codistill.data.prompts import assertion_prompt
from codistill.models.student import derive_student
from codistill.models.tiny import make_tiny_causal_lm
from tests.helpers import make_records


@pytest.fixture(scope="session")
def tiny_setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny")
    train, valid = make_records(24, "train"), make_records(6, "valid")
    write_records(root / "train.jsonl", train)
    write_records(root / "valid.jsonl", valid)
    texts = [t for r in train + valid for t in (assertion_prompt(r), r.target)]
    teacher = make_tiny_causal_lm(root / "teacher", vocab_texts=None, num_layers=4, seed=1)
    derive_student(teacher, root / "student", 2, vocab_texts=texts)
    return {
        "root": root,
        "teacher": teacher,
        "student": root / "student",
        "train": root / "train.jsonl",
        "valid": root / "valid.jsonl",
    }
