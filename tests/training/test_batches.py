from __future__ import annotations

import pytest

from codistill.data.schema import PLACEHOLDER
from codistill.training.batches import Example, assertion_prompt, collate_causal
from tests.helpers import make_records


def test_prefix_prompt_ends_where_the_assertion_starts():
    record = make_records(1, "train")[0]
    prompt = assertion_prompt(record, "prefix")
    assert prompt.endswith(record.prompt_prefix())
    assert PLACEHOLDER not in prompt


def test_placeholder_prompt_shows_the_whole_test_and_asks_for_the_marked_line():
    record = make_records(1, "train")[0]
    prompt = assertion_prompt(record, "placeholder")
    assert record.test_code.rstrip() in prompt
    assert prompt.rstrip().endswith(f"# {PLACEHOLDER}:")


def test_unknown_prompt_style_is_an_error():
    with pytest.raises(ValueError, match="prefix' or 'placeholder'"):
        assertion_prompt(make_records(1, "train")[0], "infill")


def test_causal_labels_are_the_next_token_and_only_targets_count():
    batch = collate_causal([Example([5, 6], [7, 8], "x"), Example([5], [9], "y")], pad_id=0)
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [5, 9, 0, 0]]
    assert batch["labels"].tolist() == [[6, 7, 8, 0], [9, 0, 0, 0]]
    assert batch["target_mask"].tolist() == [
        [False, True, True, False],
        [True, False, False, False],
    ]


def test_an_empty_prompt_is_refused_by_the_causal_collate():
    with pytest.raises(ValueError, match="example 1 has an empty prompt"):
        collate_causal(
            [Example([5], [6, 7], "x"), Example([], [6, 7], "x")],
            pad_id=0,
        )


class _NoPromptTokenizer:
    """Encodes every prompt to nothing and every target to two ids; no BOS, EOS 2."""

    bos_token_id = None
    eos_token_id = 2

    def __call__(self, text, add_special_tokens=True, return_offsets_mapping=False):
        if add_special_tokens:  # the prompt
            return {"input_ids": []}
        return {"input_ids": [7, 8], "offset_mapping": [(0, 1), (1, 2)]}


def test_an_empty_prompt_starts_from_eos_so_every_target_token_is_learnt():
    from codistill.training.batches import tokenize_records

    examples, stats = tokenize_records(
        make_records(1, "train"), _NoPromptTokenizer(), max_source_tokens=8, max_target_tokens=8
    )
    assert examples[0].prompt_ids == [2] and examples[0].target_ids == [7, 8, 2]
    batch = collate_causal(examples, pad_id=0)
    assert int(batch["target_mask"].sum()) == len(examples[0].target_ids)
    assert stats.extra["empty_prompts"] == 1
