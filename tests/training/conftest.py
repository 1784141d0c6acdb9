"""Fixtures shared by the training tests."""

from __future__ import annotations

import pytest

from codistill.data.batches import collate_causal, tokenize_records
from codistill.models.loading import load_tokenizer
from codistill.models.vocab import TokenMap
from tests.helpers import make_records


@pytest.fixture(scope="module")
def kd_batch(tiny_setup):
    """Three records tokenized as a KD run does (teacher tokenizer, mapped to the student)."""
    teacher_tok = load_tokenizer(tiny_setup["teacher"])
    student_tok = load_tokenizer(tiny_setup["student"])
    token_map = TokenMap.load_optional(tiny_setup["student"])
    assert token_map is not None and not token_map.is_identity
    examples, _ = tokenize_records(
        make_records(3, "valid"),
        teacher_tok,
        max_source_tokens=64,
        max_target_tokens=16,
        token_map=token_map,
    )
    batch = collate_causal(examples, student_tok.pad_token_id, teacher_tok.pad_token_id)
    return batch, token_map
