"""SODA's fault-aware contrastive stage on a tiny random Qwen2 student (byte-level BPE, ChatML).

What is checked: the pairs reader and its one-line errors; the loss of a step against the pure
loss on brute-force (unbatched, unpadded) log-probs; the prompt and padding kept out of the
log-probs; the reference scored once, kept and never changed; training raising the margin and
the accuracy; a halted run resumed ending with the weights of an uninterrupted one.
"""

from __future__ import annotations

import gc
import json
import math
import weakref
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from codistill.config.preference import load_preference_config
from codistill.data.prompts import codegen_texts
from codistill.data.schema import CodegenRecord, RecordError
from codistill.losses.contrastive import fault_contrastive_loss
from codistill.models.loading import load_model, load_tokenizer
from codistill.training import preference
from codistill.training.loop import build_optimizer, linear_schedule
from codistill.training.preference import (
    REFERENCE_FILE,
    batch_logprobs,
    collate_pairs,
    contrastive_step,
    pair_stats,
    pair_steps,
    read_pairs,
    reference_logprobs,
    tokenize_pairs,
    train_preference,
)
from tests.qwen_fixtures import make_tiny_qwen2

HUMANEVAL = CodegenRecord(
    id="HumanEval/0",
    source="humaneval",
    prompt='def add(a, b):\n    """Return a plus b."""\n',
    entry_point="add",
    tests="assert add(1, 2) == 3\n",
)


def pair_lines() -> list[dict]:
    """Text prompts (MBPP-style, whole programs) and one HumanEval-style record prompt."""
    lines = [
        {
            "question_id": "q/0",
            "prompt": HUMANEVAL.to_dict(),
            "correct": "    return a + b\n",
            "faulty": "    return a - b\n",
            "fault_type": "logic",
        }
    ]
    faults = [
        ("def rev(text):\n    return text[::-1]\n", "def rev(text):\n    return text[1:]\n"),
        ("def total(xs):\n    return sum(xs)\n", "def total(xs):\n    return sum(x)\n"),
        ("def first(xs):\n    return xs[0]\n", "def first(xs):\n    return xs[0\n"),
        ("def size(xs):\n    return len(xs)\n", "def size(xs):\n    return len(xs) + '1'\n"),
    ]
    for i, (correct, faulty) in enumerate(faults, start=1):
        lines.append(
            {
                "question_id": f"q/{i}",
                "prompt": f'"""\nWrite the function of task {i}.\n"""\n',
                "correct": correct,
                "faulty": faulty,
                "fault_type": ["logic", "name", "syntax", "type"][i - 1],
                "meta": {"source": "injected"},
            }
        )
    return lines


def write_lines(path: Path, lines: list) -> Path:
    path.write_text("".join((x if isinstance(x, str) else json.dumps(x)) + "\n" for x in lines))
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("preference")
    return {
        "student": make_tiny_qwen2(root / "student", num_layers=2, seed=3),
        "pairs": write_lines(root / "pairs.jsonl", pair_lines()),
    }


def config(setup, out: Path, **over):
    base = {
        "student": str(setup["student"]),
        "pairs": str(setup["pairs"]),
        "output_dir": str(out),
        "lr": 1e-3,
        "beta": 0.5,
        "warmup_ratio": 0.0,
        "max_source_tokens": 64,
        "max_target_tokens": 32,
        "device": "cpu",
    }
    return load_preference_config(None, {**base, **over})


def brute_logprob(model, example) -> torch.Tensor:
    """Sum of log p(solution token | everything before it), one unpadded sequence at a time."""
    ids = torch.tensor([example.prompt_ids + example.target_ids])
    logp = model(input_ids=ids).logits[0].float().log_softmax(-1)
    start = len(example.prompt_ids)
    return sum(logp[start - 1 + j, tok] for j, tok in enumerate(example.target_ids))


# --- the pairs file -----------------------------------------------------------------------


def test_pairs_take_text_and_record_prompts_rendered_as_supervised_training_renders_them(setup):
    pairs = read_pairs(setup["pairs"])
    assert [p.question_id for p in pairs] == [f"q/{i}" for i in range(5)]
    assert pairs[0].record == HUMANEVAL
    tok = load_tokenizer(setup["student"])
    for mode in ("raw", "chat"):
        cfg = config(
            setup, Path("x"), prompt_mode=mode, max_source_tokens=256, max_target_tokens=96
        )
        examples, counts = tokenize_pairs(pairs, tok, cfg)
        assert len(examples) == 5 and counts["identical_after_truncation"] == 0
        for ex in examples:
            prompt, target = codegen_texts(ex.pair.record, tok, mode, ex.pair.correct)
            assert tok.decode(ex.correct.prompt_ids) == prompt
            assert ex.correct.prompt_ids == ex.faulty.prompt_ids
            assert tok.decode(ex.correct.target_ids[:-1]) == target
            assert ex.correct.target_ids[-1] == tok.eos_token_id
    # A text prompt is a description: in chat mode the target is the fenced program alone.
    assert tok.decode(examples[1].correct.target_ids[:-1]) == (
        "```python\ndef rev(text):\n    return text[::-1]\n```"
    )
    # In chat mode a HumanEval-style target is the whole fenced program, prompt included: cut
    # to 32 tokens, its two sides are the same text and the pair is dropped, and counted.
    cfg = config(setup, Path("x"), prompt_mode="chat", max_source_tokens=256)
    examples, counts = tokenize_pairs(pairs, tok, cfg)
    assert counts["identical_after_truncation"] == 1 and examples[0].pair.question_id == "q/1"


def test_pairs_prompts_are_cut_as_the_config_says(setup):
    from codistill.data.prompts import cut_prompt

    pairs = read_pairs(setup["pairs"])
    tok = load_tokenizer(setup["student"])
    for truncation in ("left", "middle"):
        cfg = config(setup, Path("x"), max_source_tokens=8, truncation=truncation)
        examples, _ = tokenize_pairs(pairs, tok, cfg)
        for ex in examples:
            full = tok(codegen_texts(ex.pair.record, tok, "raw", ex.pair.correct)[0])["input_ids"]
            assert len(full) > 8
            assert ex.correct.prompt_ids == cut_prompt(full, 8, truncation, tok.bos_token_id)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("{not json", "invalid JSON: Expecting property name enclosed in double quotes"),
        ("[1, 2]", "expected a JSON object, got list"),
        ({"question_id": "a", "prompt": "p", "correct": "x", "faulty": "y"}, "'fault_type' miss"),
        ({**pair_lines()[1], "faulty_type": "x"}, "unexpected field 'faulty_type'"),
        ({**pair_lines()[1], "faulty": pair_lines()[1]["correct"]}, "are identical"),
        ({**pair_lines()[1], "correct": "   "}, "field 'correct' must be a non-empty string"),
        ({**pair_lines()[1], "prompt": 3}, "field 'prompt' must be a non-empty string or a"),
        ({**pair_lines()[1], "meta": "teacher"}, "field 'meta' must be an object"),
        ({**pair_lines()[0], "prompt": {"id": "x"}}, "field 'prompt': field 'source' missing"),
    ],
)
def test_a_bad_pairs_line_is_one_line_error_naming_file_and_line(tmp_path, line, message):
    path = write_lines(tmp_path / "bad.jsonl", [pair_lines()[1], "", line])
    with pytest.raises(RecordError) as err:
        read_pairs(path)
    text = str(err.value)
    assert text.startswith(f"{path}:3: ") and message in text and "\n" not in text


def test_an_empty_or_missing_pairs_file_is_refused(tmp_path):
    with pytest.raises(RecordError, match="no pairs in the file"):
        read_pairs(write_lines(tmp_path / "empty.jsonl", [""]))
    with pytest.raises(FileNotFoundError, match="nope.jsonl does not exist"):
        read_pairs(tmp_path / "nope.jsonl")


# --- log-probs and the loss -----------------------------------------------------------------


def test_solution_logprobs_leave_out_prompt_and_padding(setup):
    tok = load_tokenizer(setup["student"])
    model = load_model(setup["student"])
    examples, _ = tokenize_pairs(read_pairs(setup["pairs"]), tok, config(setup, Path("x")))
    batch = collate_pairs(examples, tok.pad_token_id)
    with torch.no_grad():
        values = batch_logprobs(model, batch)
        expected = [brute_logprob(model, e.correct) for e in examples]
        expected += [brute_logprob(model, e.faulty) for e in examples]
        assert torch.allclose(values, torch.stack(expected), atol=1e-4)
        # Garbage labels at prompt and padding positions change nothing: the mask keeps them out.
        batch["labels"][~batch["target_mask"]] = 10**6
        assert torch.allclose(batch_logprobs(model, batch), values, atol=1e-6)
        # One solution on both sides, batched beside longer rows (so padded differently on the
        # two sides): zero margin, whatever the policy.
        same = preference.PairExample(examples[0].pair, examples[0].correct, examples[0].correct)
        lone = batch_logprobs(model, collate_pairs([same], tok.pad_token_id))
        padded = batch_logprobs(model, collate_pairs([same, *examples[1:]], tok.pad_token_id))
    assert lone[0] - lone[1] == 0
    assert abs(float(padded[0] - padded[len(examples)])) < 1e-4


def test_a_step_loss_is_the_pure_loss_on_brute_force_logprobs(setup, tmp_path):
    """Two micro-batches of one pair each: the step's loss is the mean over its pairs."""
    cfg = config(setup, tmp_path / "run", batch_size=1, grad_accum=2)
    tok = load_tokenizer(setup["student"])
    examples, _ = tokenize_pairs(read_pairs(setup["pairs"]), tok, cfg)
    reference = load_model(setup["student"])
    policy = load_model(setup["student"])
    torch.manual_seed(0)
    with torch.no_grad():  # a policy away from the reference, as after some training
        for p in policy.parameters():
            p.add_(0.05 * torch.randn_like(p))
        ref_c = torch.stack([brute_logprob(reference, e.correct) for e in examples])
        ref_f = torch.stack([brute_logprob(reference, e.faulty) for e in examples])
        group = pair_steps(len(examples), cfg, 0)[0]
        idx = [i for micro in group for i in micro]
        pol_c = torch.stack([brute_logprob(policy, examples[i].correct) for i in idx])
        pol_f = torch.stack([brute_logprob(policy, examples[i].faulty) for i in idx])
        expected = fault_contrastive_loss(pol_c, pol_f, ref_c[idx], ref_f[idx], cfg.beta)
    assert len(group) == 2 and abs(float(expected) - math.log(2)) > 0.01
    optimizer = build_optimizer(policy, cfg)
    scheduler = linear_schedule(optimizer, 4, 0.0)
    stats = contrastive_step(
        cfg, policy, optimizer, scheduler, group, examples, ref_c, ref_f, tok.pad_token_id
    )
    assert stats["loss"] == pytest.approx(float(expected), rel=1e-5)
    want = pair_stats(pol_c, pol_f, ref_c[idx], ref_f[idx])
    assert stats["margin"] == pytest.approx(want["margin"], rel=1e-4)
    assert stats["accuracy"] == want["accuracy"]


# --- whole runs -----------------------------------------------------------------------------


def test_training_raises_margin_and_accuracy_against_a_reference_scored_once(
    setup, tmp_path, monkeypatch
):
    weights = setup["student"] / "model.safetensors"
    before = load_file(weights)
    calls, alive = [], []
    real_reference, real_load = preference.reference_logprobs, preference.load_model

    def counting_reference(*args, **kwargs):
        out = real_reference(*args, **kwargs)
        calls.append(out)
        return out

    def one_model_at_a_time(path):
        gc.collect()
        assert all(ref() is None for ref in alive), "a second model while one is alive"
        model = real_load(path)
        alive.append(weakref.ref(model))
        return model

    monkeypatch.setattr(preference, "reference_logprobs", counting_reference)
    monkeypatch.setattr(preference, "load_model", one_model_at_a_time)
    cfg = config(setup, tmp_path / "run", epochs=4, batch_size=2)
    result = train_preference(cfg)

    assert result.status == "finished" and result.global_step == 12  # 5 pairs: 3 steps/epoch
    assert len(calls) == 1 and calls[0][2] == 10  # every sequence scored once, before training
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["reference"]["sequences_scored"] == 10 and info["data"]["pairs_used"] == 5
    assert info["data"]["fault_types"] == {"logic": 2, "name": 1, "syntax": 1, "type": 1}
    logs = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    assert [x["step"] for x in logs] == list(range(1, 13))
    assert logs[0]["loss"] == pytest.approx(math.log(2), abs=1e-4)  # policy = reference
    assert abs(logs[0]["margin"]) < 1e-4
    assert logs[-1]["margin"] > logs[0]["margin"] + 1 and logs[-1]["accuracy"] == 1.0
    assert result.final["margin"] > 1 and result.final["accuracy"] == 1.0
    start = info["reference"]["before_training"]["policy_prefers_correct"]
    assert result.final["policy_prefers_correct"] >= start

    # The stored reference is the untouched student's (recomputed from scratch: equal), and
    # the student directory itself was not changed by training.
    assert all(torch.equal(before[k], v) for k, v in load_file(weights).items())
    tok = load_tokenizer(setup["student"])
    examples, _ = tokenize_pairs(read_pairs(setup["pairs"]), tok, cfg)
    stored = json.loads((result.run_dir / REFERENCE_FILE).read_text())["entries"]
    fresh_c, fresh_f, scored = reference_logprobs(
        real_load(setup["student"]), examples, info["reference"]["fingerprint"],
        tmp_path / "fresh.json", 3, tok.pad_token_id,
    )  # fmt: skip
    assert scored == 10 and len(stored) == 10
    assert torch.allclose(torch.cat([fresh_c, fresh_f]), torch.cat(calls[0][:2]), atol=1e-5)
    assert (result.run_dir / "final" / "model.safetensors").is_file()
    assert not list(result.run_dir.glob(".final*"))  # no temp dir left behind


def test_a_halted_run_resumes_to_the_uninterrupted_weights_without_rescoring(setup, tmp_path):
    over = {"epochs": 2, "batch_size": 2, "grad_accum": 1, "lr": 1e-3, "warmup_ratio": 0.2}
    whole = train_preference(config(setup, tmp_path / "whole", **over))
    halted = train_preference(config(setup, tmp_path / "part", halt_after_steps=4, **over))
    assert (halted.status, halted.global_step, halted.final) == ("halted", 4, None)
    cache = (tmp_path / "part" / REFERENCE_FILE).read_bytes()
    resumed = train_preference(config(setup, tmp_path / "part", **over), resume=True)
    assert (resumed.status, resumed.global_step) == ("finished", whole.global_step)
    info = json.loads((tmp_path / "part" / "run.json").read_text())
    assert info["reference"]["sequences_scored"] == 0
    assert info["reference"]["sequences_reused"] == 10
    assert (tmp_path / "part" / REFERENCE_FILE).read_bytes() == cache
    a = load_file(tmp_path / "whole" / "final" / "model.safetensors")
    b = load_file(tmp_path / "part" / "final" / "model.safetensors")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)
    steps = [json.loads(x)["step"] for x in (tmp_path / "part" / "metrics.jsonl").open()]
    assert steps == list(range(1, whole.global_step + 1))
