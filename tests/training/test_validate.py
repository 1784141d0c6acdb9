"""``training.validate``: the validation CE against one computed by hand from the model's logits,
and the decoded exact match on the first ``valid_generate`` examples."""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from codistill.data.batches import collate_causal, tokenize_records
from codistill.evaluation.generate import Generation, generate
from codistill.models.loading import load_model, load_tokenizer
from codistill.training import validate as validate_module
from codistill.training.validate import validate
from tests.helpers import distill_config, make_records


@pytest.fixture(scope="module")
def student(tiny_setup):
    model = load_model(tiny_setup["student"])
    tokenizer = load_tokenizer(tiny_setup["student"])
    examples, _ = tokenize_records(
        make_records(5, "valid"), tokenizer, max_source_tokens=64, max_target_tokens=16
    )
    return model, tokenizer, examples


def _collate(tokenizer):
    return lambda exs: collate_causal(exs, tokenizer.pad_token_id)


def _cfg(tiny_setup, tmp_path, **over):
    return distill_config(tiny_setup, tmp_path / "run", loss="ce", batch_size=1, **over)


def _hand_ce(model, examples) -> tuple[float, int]:
    """Mean -log p(target token | everything before it), one unpadded example at a time."""
    total, count = 0.0, 0
    with torch.no_grad():
        for ex in examples:
            ids = torch.tensor([ex.prompt_ids + ex.target_ids])
            log_probs = torch.log_softmax(model(input_ids=ids).logits[0].double(), dim=-1)
            start = len(ex.prompt_ids) - 1  # the logits at t predict token t + 1
            for j, token in enumerate(ex.target_ids):
                total -= log_probs[start + j, token].item()
                count += 1
    return total / count, count


def test_valid_loss_is_the_mean_target_token_ce_of_the_models_logits(tiny_setup, tmp_path, student):
    model, tokenizer, examples = student
    cfg = _cfg(tiny_setup, tmp_path, valid_generate=0)
    model.train()
    # batch_size 1 validates two examples at a time: 5 examples make batches of 2, 2 and 1,
    # with right padding inside each.
    got = validate(model, tokenizer, examples, _collate(tokenizer), cfg, False, "cpu")
    want, tokens = _hand_ce(model, examples)
    assert got["valid_tokens"] == tokens == sum(len(e.target_ids) for e in examples)
    assert got["valid_loss"] == pytest.approx(want, rel=1e-5)
    # A random model over a few hundred tokens is near the uniform loss, not at zero.
    assert 0.5 * math.log(model.config.vocab_size) < got["valid_loss"]
    assert "valid_exact_match" not in got
    assert model.training  # the caller's mode is given back
    model.eval()


def test_valid_exact_match_scores_the_first_examples_case_folded(
    tiny_setup, tmp_path, student, monkeypatch
):
    model, tokenizer, examples = student
    examples = [
        dataclasses.replace(e, reference=ref) for e, ref in zip(examples, REFERENCES, strict=True)
    ]
    seen = {}

    def fake_generate(model, tokenizer, prompts, **kwargs):
        seen["prompts"], seen["kwargs"] = prompts, kwargs
        return Generation(texts=OUTPUTS[: len(prompts)], seconds=0.0, new_tokens=0)

    monkeypatch.setattr(validate_module, "generate", fake_generate)
    cfg = _cfg(tiny_setup, tmp_path, valid_generate=4, max_new_tokens=20)
    got = validate(model, tokenizer, examples, _collate(tokenizer), cfg, False, "cpu")
    # Only the first 4 examples are decoded, one line each, up to max_new_tokens.
    assert seen["prompts"] == [e.prompt_ids for e in examples[:4]]
    assert seen["kwargs"]["one_line"] and seen["kwargs"]["max_new_tokens"] == 20
    # Example 0 matches exactly, 1 once case is folded, 2 once token spacing is ignored, 3 not.
    assert got["valid_exact_match"] == pytest.approx(2 / 4)
    assert got["valid_format_insensitive_match"] == pytest.approx(3 / 4)
    assert 0 < got["valid_similarity"] < 1


REFERENCES = [
    "self.assertEqual(total, 0)",
    "self.assertTrue(items > 1)",
    "self.assertIn(2, value)",
    "self.assertIsNone(result)",
    "self.assertFalse(count)",
]
OUTPUTS = [
    "self.assertEqual(total, 0)",
    "SELF.ASSERTTRUE(ITEMS > 1)",
    "self.assertIn( 2 , value )",
    "self.assertIsNotNone(result)",
]


def test_valid_exact_match_of_the_models_own_greedy_lines_is_one(tiny_setup, tmp_path, student):
    model, tokenizer, examples = student
    cfg = _cfg(tiny_setup, tmp_path, valid_generate=3, max_new_tokens=6)
    # Batched as validate batches (batch_size 1 -> 2 rows), so left padding is the same too.
    prompts = [e.prompt_ids for e in examples[:3]]
    own = generate(model, tokenizer, prompts, max_new_tokens=6, batch_size=2)
    assert all(t.strip() for t in own.texts), own.texts  # a match of nothing would not count
    # References that are the model's own greedy outputs, upper-cased (the match folds case),
    # then one that is not.
    refs = [t.upper() for t in own.texts[:2]] + ["self.assertTrue(never_generated)"]
    checked = [dataclasses.replace(e, reference=r) for e, r in zip(examples[:3], refs, strict=True)]
    got = validate(model, tokenizer, checked, _collate(tokenizer), cfg, False, "cpu")
    assert got["valid_exact_match"] == pytest.approx(2 / 3)
