"""Greedy one-line decoding that drops finished rows gives what ``model.generate`` gives."""

from __future__ import annotations

import pytest
import torch
from transformers import StoppingCriteriaList

from codistill.evaluation.generate import _StopAfterLine, generate, greedy_lines, stop_token_ids
from codistill.models.loading import load_model, load_tokenizer
from codistill.models.tiny import make_tiny_causal_lm
from tests.qwen_fixtures import make_tiny_qwen2

PROMPTS = [
    "def add(a, b):\n    return",
    "import os\n\n\ndef read_file(path):\n    with open(path) as handle:\n        return",
    "class Stack:\n    def push(self, item):",
    "x",
    "def is_even(number):\n    return number % 2 == 0\n\n\ndef fibonacci(n):\n    if n < 2:",
]


@pytest.fixture(scope="module", params=["gemma3", "llama", "qwen2"])
def tiny(request, tmp_path_factory):
    out = tmp_path_factory.mktemp(request.param)
    if request.param == "qwen2":
        path = make_tiny_qwen2(out / "m", seed=3)
    else:  # gemma3: sliding window 8, shorter than most prompts
        path = make_tiny_causal_lm(out / "m", model_type=request.param, seed=3)
    return load_model(path).eval(), load_tokenizer(path)


def _left_pad(tokenizer, prompts):
    rows = [tokenizer(p)["input_ids"] for p in prompts]
    width, pad = max(map(len, rows)), tokenizer.pad_token_id
    ids = torch.tensor([[pad] * (width - len(r)) + r for r in rows])
    mask = torch.tensor([[0] * (width - len(r)) + [1] * len(r) for r in rows])
    return ids, mask


def _reference(model, ids, mask, criteria, eos, max_new, pad):
    out = model.generate(
        input_ids=ids,
        attention_mask=mask,
        max_new_tokens=max_new,
        do_sample=False,
        top_k=None,
        pad_token_id=pad,
        eos_token_id=sorted(eos),
        stopping_criteria=StoppingCriteriaList([criteria]),
    )[:, ids.shape[1] :]
    rows = []
    for row in out.tolist():
        # generate pads a row after its stop token; cut there (the stop token is kept)
        rows.append(row[: next((i for i, t in enumerate(row) if t == pad), len(row))])
    return rows


def test_rows_stop_at_different_steps_and_match_generate(tiny):
    model, tok = tiny
    ids, mask = _left_pad(tok, PROMPTS)
    with torch.no_grad():
        free = model.generate(
            input_ids=ids,
            attention_mask=mask,
            max_new_tokens=12,
            do_sample=False,
            top_k=None,
            pad_token_id=tok.pad_token_id,
            eos_token_id=[-1],
        )[:, ids.shape[1] :].tolist()
    # "newlines": a token each row writes at a different step, so rows leave the batch unevenly
    newline = torch.tensor(sorted({free[0][2], free[1][6], free[2][4]} - {tok.pad_token_id}))
    blank = torch.tensor([free[3][0]])
    eos = {free[4][8]} - {tok.pad_token_id}
    width = ids.shape[1]
    criteria = _StopAfterLine(newline, blank, None, width)
    want = _reference(model, ids, mask, criteria, eos, 12, tok.pad_token_id)
    got = greedy_lines(
        model, ids, mask, max_new_tokens=12, newline_ids=newline, blank_ids=blank, eos_ids=eos
    )
    assert got == want
    lengths = {len(r) for r in got}
    assert len(lengths) > 1 and min(lengths) < 12  # some rows really left early


def test_generate_text_matches_model_generate(tiny):
    model, tok = tiny
    prompts = [tok(p)["input_ids"] for p in PROMPTS]
    ours = generate(model, tok, prompts, max_new_tokens=10, batch_size=3)
    assert len(ours.texts) == len(PROMPTS)
    from codistill.evaluation.generate import first_line, newline_token_ids

    newline, blank = newline_token_ids(tok)
    eos = stop_token_ids(model, tok)
    for i in range(0, len(prompts), 3):
        ids, mask = _left_pad(tok, PROMPTS[i : i + 3])
        criteria = _StopAfterLine(newline, blank, None, ids.shape[1])
        ref = _reference(model, ids, mask, criteria, eos, 10, tok.pad_token_id)
        texts = [first_line(tok.decode(r, skip_special_tokens=True)) for r in ref]
        assert ours.texts[i : i + 3] == texts


def test_stop_ids_include_the_generation_configs(tiny):
    model, tok = tiny
    ids = stop_token_ids(model, tok)
    assert tok.eos_token_id in ids
    config_eos = model.generation_config.eos_token_id
    assert set(config_eos if isinstance(config_eos, list) else [config_eos]) <= ids
