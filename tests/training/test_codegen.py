"""Code-generation students: prompt -> solution records, raw and chat prompts, every loss term,
the teacher cache, sequence-level KD from teacher generations, and on-policy distillation.

The models are a tiny random Qwen2 teacher (byte-level BPE, ChatML template) and a student
derived from it with two layers and a trimmed vocabulary, as `codistill student derive` makes.
"""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import pytest
import torch

from codistill.config.fields import ConfigError
from codistill.data.batches import collate_causal, tokenize_records
from codistill.data.jsonl import read_records, write_records
from codistill.data.prompts import CODEGEN_INSTRUCTION, codegen_texts, render_prompt
from codistill.data.schema import CodegenRecord
from codistill.models.loading import load_model, load_tokenizer
from codistill.models.student import derive_student
from codistill.models.vocab import TokenMap
from codistill.teacher.generations import (
    GenerationsWriter,
    generation_key,
    make_entry,
    make_header,
)
from codistill.training import loop as loop_module
from codistill.training.loop import build_run, distill, optimizer_step
from codistill.training.onpolicy import OnPolicy
from codistill.training.targets import teacher_target_records
from tests.helpers import distill_config
from tests.qwen_fixtures import make_tiny_qwen2
from tests.training.recording import recording

LIMITS = {"max_source_tokens": 96, "max_target_tokens": 48}


def make_codegen_records(n: int, split: str) -> list[CodegenRecord]:
    """HumanEval-style (body continues the prompt) and MBPP-style (whole program) problems;
    the last record has no solution."""
    out = []
    for i in range(n):
        if i % 2 == 0:
            name = f"add_{i}"
            record = CodegenRecord(
                id=f"{split}/{i}",
                source="humaneval",
                prompt=f'def {name}(a, b):\n    """Return a plus b."""\n',
                entry_point=name,
                tests=f"assert {name}(1, 2) == 3\n",
                canonical_solution="    return a + b\n",
                split=split,
            )
        else:
            name = f"rev_{i}"
            record = CodegenRecord(
                id=f"{split}/{i}",
                source="mbpp",
                prompt=f'"""\nReverse a string.\nassert {name}("ab") == "ba"\n"""\n',
                entry_point=name,
                tests=f'assert {name}("ab") == "ba"\n',
                canonical_solution=f"def {name}(text):\n    return text[::-1]\n",
                split=split,
            )
        out.append(record)
    out[-1] = CodegenRecord(**{**out[-1].to_dict(), "canonical_solution": None})
    return out


@pytest.fixture(scope="module")
def qwen_setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("codegen")
    train, valid = make_codegen_records(9, "train"), make_codegen_records(4, "valid")
    write_records(root / "train.jsonl", train)
    write_records(root / "valid.jsonl", valid)
    teacher = make_tiny_qwen2(root / "teacher", num_layers=4, seed=1)
    tok = load_tokenizer(teacher)
    texts = []
    for r in train + valid:
        for mode in ("raw", "chat"):
            pair = codegen_texts(r, tok, mode)
            if pair:
                texts.extend(pair)
    derive_student(teacher, root / "student", 2, vocab_texts=texts)
    return {
        "root": root,
        "teacher": teacher,
        "student": root / "student",
        "train": root / "train.jsonl",
        "valid": root / "valid.jsonl",
    }


def _cfg(setup, tmp_path, name, **over):
    base = {"task": "codegen", "epochs": 1, "max_steps": 2, "log_every": 1, **LIMITS}
    return distill_config(setup, tmp_path / name, **{**base, **over})


def _metrics(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


# --- texts and tokenization --------------------------------------------------------------------


def test_raw_targets_continue_the_prompt_humaneval_body_and_mbpp_program(qwen_setup):
    tok = load_tokenizer(qwen_setup["teacher"])
    he, mbpp = make_codegen_records(2, "train")[0], make_codegen_records(3, "train")[1]
    assert codegen_texts(he, tok, "raw") == (he.prompt, "    return a + b\n")
    assert codegen_texts(mbpp, tok, "raw") == (mbpp.prompt, mbpp.canonical_solution)
    assert codegen_texts(make_codegen_records(1, "train")[0], tok, "raw") is None


def test_chat_target_is_the_fenced_whole_program(qwen_setup):
    tok = load_tokenizer(qwen_setup["teacher"])
    he, mbpp = make_codegen_records(2, "train")[0], make_codegen_records(3, "train")[1]
    prompt, target = codegen_texts(he, tok, "chat")
    assert prompt == render_prompt(tok, he.prompt, "chat", CODEGEN_INSTRUCTION)
    assert prompt.startswith("<|im_start|>user\n") and prompt.endswith("<|im_start|>assistant\n")
    assert target == f"```python\n{he.prompt}    return a + b\n```"
    assert codegen_texts(mbpp, tok, "chat")[1] == f"```python\n{mbpp.canonical_solution}```"
    # A chat-style teacher answer that defines the function is the program itself.
    answer = "\ndef add_0(a, b):\n    return b + a\n"
    assert codegen_texts(he, tok, "chat", answer)[1] == f"```python\n{answer.strip()}\n```"


def test_only_solution_tokens_are_targets_and_unsolved_records_are_counted(qwen_setup):
    tok = load_tokenizer(qwen_setup["teacher"])
    records = make_codegen_records(3, "train")
    examples, stats = tokenize_records(records, tok, **LIMITS)
    assert stats.examples == 2 and stats.skipped_without_solution == 1
    batch = collate_causal(examples, tok.pad_token_id)
    for row, e, r in zip(range(2), examples, records, strict=False):
        ids = batch["labels"][row][batch["target_mask"][row]].tolist()
        assert ids == e.target_ids and ids[-1] == tok.eos_token_id
        assert tok.decode(ids[:-1]) == codegen_texts(r, tok, "raw")[1]
        assert tok.decode(e.prompt_ids) == r.prompt


def test_chat_prompt_without_a_chat_template_is_refused_naming_the_fix(tiny_setup, tmp_path):
    write_records(tmp_path / "cg.jsonl", make_codegen_records(3, "train"))
    cfg = distill_config(
        tiny_setup,
        tmp_path / "run",
        task="codegen",
        prompt_mode="chat",
        train_data=str(tmp_path / "cg.jsonl"),
        valid_data=None,
        max_steps=1,
    )
    with pytest.raises(ConfigError, match="no chat template; use prompt_mode=raw"):
        distill(cfg)


# --- training ------------------------------------------------------------------------------


ALL_TERMS = {
    "ce": 0.2,
    "kl": 0.2,
    "reverse_kl": 0.1,
    "jsd": 0.1,
    "gjsd": 0.1,
    "focal": 0.2,
    "semantic": 0.1,
}


@pytest.mark.parametrize("mode", ["raw", "chat"])
def test_codegen_run_computes_every_loss_term(qwen_setup, tmp_path, mode):
    result = distill(
        _cfg(
            qwen_setup,
            tmp_path,
            mode,
            prompt_mode=mode,
            loss=ALL_TERMS,
            semantic_samples=2,
            semantic_max_new_tokens=6,
            valid_generate=2,
        )
    )
    assert result.status == "finished"
    lines = _metrics(result.run_dir)
    train = [x for x in lines if x["kind"] == "train"]
    assert len(train) == 2
    for line in train:
        assert set(ALL_TERMS) <= set(line)
        assert all(math.isfinite(line[t]) and line[t] > 0 for t in ALL_TERMS if t != "semantic")
    assert "valid_exact_match" in [x for x in lines if x["kind"] == "valid"][-1]
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["prompt"] == {"mode": mode, "style": None}
    assert info["config"]["max_target_tokens"] == LIMITS["max_target_tokens"]
    assert info["tokenization"]["skipped_without_solution"] == 1
    assert info["tokenization"]["examples"] == 8
    assert info["targets"] == {"kind": "reference"}


def test_codegen_loss_goes_down_on_a_repeated_batch(qwen_setup, tmp_path):
    over = {"loss": {"ce": 0.5, "kl": 0.5}, "lr": 1e-2, "max_steps": 12, "epochs": 12}
    result = distill(_cfg(qwen_setup, tmp_path, "down", max_train_examples=2, **over))
    losses = [x["loss"] for x in _metrics(result.run_dir) if x["kind"] == "train"]
    assert losses[-1] < 0.7 * losses[0]


def test_codegen_distils_from_a_teacher_cache_as_from_the_online_teacher(qwen_setup, tmp_path):
    from codistill.teacher.cache import build_cache

    full = tmp_path / "full_student"
    derive_student(qwen_setup["teacher"], full, 2)  # whole vocabulary: no tail bucket
    vocab = load_model(qwen_setup["teacher"]).config.vocab_size
    records = read_records(qwen_setup["train"], task="codegen")
    stats = build_cache(qwen_setup["teacher"], records, tmp_path / "cache", k=vocab, **LIMITS)
    assert stats.written == 8  # the unsolved record has nothing to cache
    over = {"student": str(full), "loss": {"kl": 0.5, "jsd": 0.5}, "max_steps": 1}
    online = distill(_cfg(qwen_setup, tmp_path, "online", **over))
    cached = distill(
        _cfg(
            qwen_setup,
            tmp_path,
            "cached",
            teacher=None,
            teacher_cache=str(tmp_path / "cache"),
            **over,
        )
    )
    a = [x for x in _metrics(online.run_dir) if x["kind"] == "train"][0]
    b = [x for x in _metrics(cached.run_dir) if x["kind"] == "train"][0]
    for term in ("kl", "jsd"):
        assert b[term] == pytest.approx(a[term], rel=2e-2), term


# --- sequence-level KD: the teacher's outputs as targets ------------------------------------


def write_generations(out: Path, records, outputs, verdicts, mode="raw", task="codegen") -> Path:
    """A generations directory in `codistill teacher generate`'s format."""
    header = make_header(
        task=task,
        teacher={"spec": "tiny", "name": "tiny-qwen"},
        backend="transformers",
        decoding={"n": 2, "temperature": 0.8, "top_p": 1.0, "max_new_tokens": 32, "seed": 0},
        prompt={"mode": mode, "style": None, "max_source_tokens": 96},
    )
    writer = GenerationsWriter(out, header)
    writer.append(
        [
            make_entry(generation_key(r), r.id, o, v)
            for r, o, v in zip(records, outputs, verdicts, strict=True)
        ]
    )
    return out


def _teacher_outputs(records):
    """Per record: a passing output, a failing one, and the passing one again; no verdicts for
    the second record (as for a record without tests)."""
    outputs = [
        [f"    return {i} + a\n", "    return a - b\n", f"    return {i} + a\n"]
        for i in range(len(records))
    ]
    verdicts = [["passed", "failed", "passed"] for _ in records]
    verdicts[1] = None
    verdicts[2] = ["failed", "failed", "failed"]
    return outputs, verdicts


def test_teacher_targets_replace_references_one_example_per_distinct_output(qwen_setup, tmp_path):
    records = read_records(qwen_setup["train"], task="codegen")
    outputs, verdicts = _teacher_outputs(records)
    gen = write_generations(tmp_path / "gen", records, outputs, verdicts)
    common = {"task": "codegen", "prompt_mode": "raw", "prompt_style": "prefix"}
    out, summary = teacher_target_records(records, gen, verified=False, **common)
    assert [r.canonical_solution for r in out[:2]] == ["    return 0 + a\n", "    return a - b\n"]
    assert len(out) == 2 * len(records)  # the unsolved record gets the teacher's solution too
    assert summary["duplicate_outputs"] == len(records) and summary["records_dropped"] == 0
    out, summary = teacher_target_records(records, gen, verified=True, **common)
    assert [r.id for r in out] == [r.id for i, r in enumerate(records) if i not in (1, 2)]
    assert all(r.canonical_solution.startswith("    return ") for r in out)
    assert summary["records_dropped"] == 2 and summary["records_without_tests"] == 1
    assert summary["outputs_not_passed"] == (len(records) - 2) * 1 + 3  # record 2: all 3


def test_teacher_verified_run_trains_on_passing_outputs_and_records_the_drop(qwen_setup, tmp_path):
    records = read_records(qwen_setup["train"], task="codegen")
    outputs, verdicts = _teacher_outputs(records)
    gen = write_generations(tmp_path / "gen", records, outputs, verdicts)
    result = distill(
        _cfg(
            qwen_setup,
            tmp_path,
            "seqkd",
            targets=f"teacher-verified:{gen}",
            loss={"ce": 0.5, "kl": 0.5},
        )
    )
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["targets"]["kind"] == "teacher-verified"
    assert info["targets"]["records_dropped"] == 2 and info["targets"]["examples"] == 7
    assert info["targets"]["teacher"]["name"] == "tiny-qwen"
    assert info["tokenization"]["examples"] == 7
    train = [x for x in _metrics(result.run_dir) if x["kind"] == "train"]
    assert all(x["kl"] > 0 and x["ce"] > 0 for x in train)


@pytest.mark.parametrize(
    ("mode", "task", "field"), [("chat", "codegen", "prompt.mode"), ("raw", "assertion", "task")]
)
def test_generations_made_for_other_prompts_are_refused_naming_the_field(
    qwen_setup, tmp_path, mode, task, field
):
    records = read_records(qwen_setup["train"], task="codegen")
    outputs, verdicts = _teacher_outputs(records)
    gen = write_generations(tmp_path / "gen", records, outputs, verdicts, mode=mode, task=task)
    cfg = _cfg(qwen_setup, tmp_path, "bad", targets=f"teacher:{gen}")
    with pytest.raises(ConfigError, match=f"header field {field} is"):
        distill(cfg)


def test_records_missing_from_the_generations_are_refused(qwen_setup, tmp_path):
    records = read_records(qwen_setup["train"], task="codegen")
    outputs, verdicts = _teacher_outputs(records)
    gen = write_generations(tmp_path / "gen", records[:-2], outputs[:-2], verdicts[:-2])
    with pytest.raises(ConfigError, match=r"no teacher outputs for 2 of 9 records .*record 8"):
        teacher_target_records(
            records, gen, verified=False, task="codegen", prompt_mode="raw", prompt_style="prefix"
        )


# --- on-policy distillation ----------------------------------------------------------------


def _on_policy(setup, rate=1.0):
    tok = load_tokenizer(setup["student"])
    tmap = TokenMap.load(setup["student"])
    return OnPolicy(
        rate, 1.0, 12, 7, tok.eos_token_id, tok.pad_token_id, tmap.student_to_teacher_tensor
    )


def test_on_policy_draw_is_seeded_per_step_and_micro_batch_at_the_given_rate(qwen_setup):
    policy = _on_policy(qwen_setup, rate=0.3)
    draws = [policy.chosen(step, micro) for step in range(400) for micro in range(2)]
    assert draws == [policy.chosen(step, micro) for step in range(400) for micro in range(2)]
    assert 0.25 < sum(draws) / len(draws) < 0.35
    assert not any(_on_policy(qwen_setup, rate=0.0).chosen(s, 0) for s in range(50))


def test_on_policy_examples_are_student_samples_mapped_for_the_teacher(qwen_setup):
    student = load_model(qwen_setup["student"])
    tok = load_tokenizer(qwen_setup["teacher"])
    tmap = TokenMap.load(qwen_setup["student"])
    examples, _ = tokenize_records(
        read_records(qwen_setup["train"], task="codegen")[:3], tok, token_map=tmap, **LIMITS
    )
    policy = _on_policy(qwen_setup)
    torch.manual_seed(0)
    before = torch.rand(3)
    torch.manual_seed(0)
    sampled = policy.examples(student, examples, step=5, micro=1)
    assert torch.equal(torch.rand(3), before)  # the training RNG stream is untouched
    again = policy.examples(student, examples, step=5, micro=1)
    other = policy.examples(student, examples, step=6, micro=1)
    assert [e.target_ids for e in sampled] == [e.target_ids for e in again]
    assert [e.target_ids for e in sampled] != [e.target_ids for e in other]
    for e, s in zip(examples, sampled, strict=True):
        assert s.prompt_ids == e.prompt_ids and s.teacher_prompt_ids == e.teacher_prompt_ids
        assert 1 <= len(s.target_ids) <= 12
        eos = [i for i, t in enumerate(s.target_ids) if t == policy.eos_id]
        assert eos in ([], [len(s.target_ids) - 1])  # cut right after the first EOS
        assert s.teacher_target_ids == tmap.student_to_teacher_tensor[s.target_ids].tolist()


def test_on_policy_step_computes_teacher_terms_on_the_samples_and_skips_ce(qwen_setup, tmp_path):
    over = {"loss": {"ce": 0.5, "kl": 0.5}, "on_policy": 1.0, "max_train_examples": 4}
    run, _ = build_run(_cfg(qwen_setup, tmp_path, "op", **over), resume=False)
    assert run.on_policy is not None
    # The recording optimizer leaves the student as it sampled, so the samples can be drawn
    # again below; a policy with shorter samples than the run's keeps the test fast.
    policy = _on_policy(qwen_setup)
    run = dataclasses.replace(recording(run), on_policy=policy)
    run.student.train()
    student, examples = run.student, run.train
    logged = optimizer_step(run, [[0, 1], [2, 3]], run.objective.weights(0, 1), step=3)
    assert logged["on_policy_batches"] == 2 and logged["ce"] == 0 and logged["kl"] > 0
    # The logged KL is the teacher's divergence along the sampled sequences.
    sampled = [
        policy.examples(student, [examples[i] for i in mb], 3, m)
        for m, mb in enumerate([[0, 1], [2, 3]])
    ]
    assert logged["target_tokens"] == sum(len(e.target_ids) for mb in sampled for e in mb)


def test_on_policy_micro_batches_take_no_label_ce_at_their_sampled_eos(
    qwen_setup, tmp_path, monkeypatch
):
    """Under ``stop_target: label`` the data's EOS gets the label's CE in the teacher terms;
    an EOS the student sampled is its own choice, so its micro-batches leave it out."""
    over = {
        "loss": {"ce": 0.5, "kl": 0.5},
        "on_policy": 0.5,
        "stop_target": "label",
        "max_train_examples": 4,
    }
    run, _ = build_run(_cfg(qwen_setup, tmp_path, "ops", **over), resume=False)
    assert run.stop_id == load_tokenizer(qwen_setup["student"]).eos_token_id
    policy = _on_policy(qwen_setup, rate=0.5)
    step = next(s for s in range(50) if policy.chosen(s, 0) != policy.chosen(s, 1))
    run = dataclasses.replace(recording(run), on_policy=policy)
    seen = []
    terms = loop_module.micro_batch_terms

    def spy(*args, **kwargs):
        seen.append((args[-1], kwargs["stop_ce"]))
        return terms(*args, **kwargs)

    monkeypatch.setattr(loop_module, "micro_batch_terms", spy)
    run.student.train()
    optimizer_step(run, [[0, 1], [2, 3]], run.objective.weights(0, 1), step=step)
    assert seen == [(run.stop_id, not policy.chosen(step, m)) for m in (0, 1)]


def test_on_policy_samples_carry_the_hidden_term_too(qwen_setup, tmp_path):
    """Layer-wise distillation needs only the online teacher, which scores the samples: it is
    computed on them like the other teacher terms, and normalised by the same tokens."""
    over = {"loss": {"ce": 0.5, "hidden": 1.0}, "on_policy": 1.0, "max_train_examples": 4}
    run, _ = build_run(_cfg(qwen_setup, tmp_path, "oph", **over), resume=False)
    run = dataclasses.replace(recording(run), on_policy=_on_policy(qwen_setup))
    run.student.train()
    logged = optimizer_step(run, [[0, 1], [2, 3]], run.objective.weights(0, 1), step=3)
    assert logged["on_policy_batches"] == 2 and logged["ce"] == 0 and logged["hidden"] > 0


def test_on_policy_run_logs_its_on_policy_micro_batches(qwen_setup, tmp_path):
    cfg = _cfg(
        qwen_setup,
        tmp_path,
        "opr",
        loss={"ce": 0.5, "jsd": 0.5},
        on_policy=0.5,
        grad_accum=2,
        batch_size=2,
    )
    result = distill(cfg)
    train = [x for x in _metrics(result.run_dir) if x["kind"] == "train"]
    assert all("on_policy_batches" in x for x in train) and result.status == "finished"
    policy = OnPolicy(0.5, 1.0, 48, cfg.seed, 0, 0)
    expected = [sum(policy.chosen(step, m) for m in range(2)) for step in range(2)]
    assert [x["on_policy_batches"] for x in train] == expected


def test_the_cache_command_caches_chat_codegen_with_the_tasks_lengths(qwen_setup, tmp_path):
    # `teacher cache --task codegen --prompt-mode chat` (lengths from the task's defaults) must
    # produce exactly the keys a chat-mode codegen distill run looks up.
    from codistill.cli.main import main

    cache = tmp_path / "cache"
    argv = ["teacher", "cache", "--teacher", str(qwen_setup["teacher"])]
    argv += ["--data", str(qwen_setup["train"]), "--out", str(cache), "--task", "codegen"]
    assert main([*argv, "--prompt-mode", "chat", "--top-k", "8"]) == 0
    over = {"teacher": None, "teacher_cache": str(cache), "prompt_mode": "chat", "max_steps": 1}
    cfg = distill_config(
        qwen_setup, tmp_path / "run", task="codegen", epochs=1, log_every=1, **over
    )
    assert (cfg.max_source_tokens, cfg.max_target_tokens) == (512, 384)
    assert distill(cfg).status == "finished"


def test_derive_takes_its_vocabulary_from_codegen_records_in_both_prompt_modes(
    qwen_setup, tmp_path
):
    from codistill.cli.main import main

    out = tmp_path / "student"
    argv = ["student", "derive", "--teacher", str(qwen_setup["teacher"]), "--layers", "2"]
    assert main([*argv, "--vocab-from", str(qwen_setup["train"]), "--out", str(out)]) == 0
    tmap, tok = TokenMap.load(out), load_tokenizer(qwen_setup["teacher"])
    assert tmap.student_vocab_size < load_model(qwen_setup["teacher"]).config.vocab_size
    for record in read_records(qwen_setup["train"], task="codegen"):
        for mode in ("raw", "chat"):
            for text in codegen_texts(record, tok, mode) or ():
                assert tmap.count_unmapped(tok(text)["input_ids"]) == 0, (record.id, mode)
