from __future__ import annotations

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers, trainers

from codistill.data.batches import Example, collate_causal, critical_token_weights
from codistill.data.prompts import assertion_prompt
from codistill.data.schema import PLACEHOLDER
from tests.helpers import make_records

ASSERT_WORDS = ["assertEquals", "assertTrue", "assertNull"]


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
    from codistill.data.batches import tokenize_records

    examples, stats = tokenize_records(
        make_records(1, "train"), _NoPromptTokenizer(), max_source_tokens=8, max_target_tokens=8
    )
    assert examples[0].prompt_ids == [2] and examples[0].target_ids == [7, 8, 2]
    batch = collate_causal(examples, pad_id=0)
    assert int(batch["target_mask"].sum()) == len(examples[0].target_ids)
    assert stats.extra["empty_prompts"] == 1


def test_critical_weights_mark_tokens_of_assertion_calls():
    text = "assertEquals(a, b);"
    offsets = [(0, 6), (6, 12), (12, 13), (13, 14), (14, 15), (16, 17), (17, 19)]
    got = critical_token_weights(text, offsets, ASSERT_WORDS, weight=3.0)
    assert got == [3.0, 3.0, 1.0, 1.0, 1.0, 1.0, 1.0]


def test_critical_weights_match_whole_identifiers_only():
    text = "myassertEqualsX(a); assertEquals_2(b); x.assertTrue(c)"
    offsets = [(0, 15), (20, 34), (37, 38), (40, 52)]
    got = critical_token_weights(text, offsets, ASSERT_WORDS, weight=2.0)
    assert got == [1.0, 1.0, 1.0, 2.0]


def test_critical_weights_count_a_token_that_straddles_the_word():
    text = "x;assertNull(y)"
    offsets = [(0, 1), (1, 3), (3, 12), (12, 15)]
    got = critical_token_weights(text, offsets, ASSERT_WORDS, weight=2.0)
    assert got == [1.0, 2.0, 2.0, 1.0]


def test_critical_weights_ignore_empty_special_token_spans():
    text = "assertTrue(ok)"
    offsets = [(0, 0), (0, 10), (10, 14), (0, 0)]
    got = critical_token_weights(text, offsets, ASSERT_WORDS, weight=5.0)
    assert got == [1.0, 5.0, 1.0, 1.0]


def test_critical_weights_prefer_the_longest_overlapping_word():
    text = "assertEquals(x)"
    got = critical_token_weights(text, [(6, 12), (12, 15)], ["assert", "assertEquals"], 2.0)
    assert got == [2.0, 1.0]


def test_critical_weights_follow_a_trained_bpe_tokenizer():
    corpus = ["assertEquals(a, b);", "assertTrue(list.isEmpty());", "int total = a + b;"] * 20
    tokenizer = Tokenizer(models.BPE(unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.Whitespace()
    trainer = trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"], show_progress=False)
    tokenizer.train_from_iterator(corpus, trainer=trainer)
    text = "int x = 1; assertEquals(x, total);"
    encoding = tokenizer.encode(text)
    got = critical_token_weights(text, encoding.offsets, ASSERT_WORDS, weight=4.0)
    word_start = text.index("assertEquals")
    word_end = word_start + len("assertEquals")
    expected = [4.0 if s < word_end and e > word_start else 1.0 for s, e in encoding.offsets]
    assert got == expected
    assert "".join(t for t, w in zip(encoding.tokens, got, strict=True) if w == 4.0) == (
        "assertEquals"
    )


def test_critical_weights_accept_an_offsets_tensor():
    got = critical_token_weights(
        "assertTrue(x)", torch.tensor([[0, 10], [10, 13]]), ["assertTrue"], 2
    )
    assert got == [2.0, 1.0]


def test_critical_weights_reject_offsets_outside_the_text():
    with pytest.raises(ValueError, match="offsets must be .* got \\(3, 40\\)"):
        critical_token_weights("assertTrue(x)", [(0, 3), (3, 40)], ASSERT_WORDS, 2.0)


def test_critical_weights_reject_a_bare_string_of_words():
    with pytest.raises(ValueError, match="words must be a sequence of strings"):
        critical_token_weights("assertTrue(x)", [(0, 3)], "assertTrue", 2.0)


def test_a_code_problem_keeps_its_language_for_where_validation_cuts_completions():
    from codistill.data.batches import tokenize_records
    from codistill.data.schema import CodegenRecord

    js = CodegenRecord(
        id="js/0",
        source="multipl-e",
        prompt="function add(a, b) {\n",
        entry_point="add",
        tests="}\n",
        canonical_solution="  return a + b;\n",
        language="javascript",
    )
    examples, _ = tokenize_records(
        [js], _NoPromptTokenizer(), max_source_tokens=8, max_target_tokens=8
    )
    assert examples[0].language == "javascript"
