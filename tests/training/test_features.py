from __future__ import annotations

import json

import pytest
import torch
from safetensors.torch import load_file

from codistill.config.fields import ConfigError
from codistill.data.batches import tokenize_records
from codistill.data.jsonl import read_records
from codistill.data.prompts import assertion_prompt
from codistill.models.loading import load_model, load_tokenizer
from codistill.models.student import derive_student
from codistill.models.tiny import make_tiny_seq2seq_lm
from codistill.training.loop import distill
from codistill.training.semantic import SemanticTerm
from tests.helpers import distill_config


def _cfg(setup, tmp_path, name, **over):
    return distill_config(setup, tmp_path / name, **{"epochs": 1, "max_steps": 2, **over})


def _metrics(run_dir) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


def test_tensorboard_run_writes_train_and_valid_scalars(tiny_setup, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    result = distill(_cfg(tiny_setup, tmp_path, "tb", tensorboard=True, log_every=1))
    events = list(result.run_dir.rglob("events.out.tfevents.*"))
    assert len(events) == 1
    tags = EventAccumulator(str(events[0].parent)).Reload().Tags()["scalars"]
    assert {"train/loss", "train/kl", "valid/valid_loss"} <= set(tags)


def test_lora_ce_run_trains_only_adapters_and_saves_merged_weights(tiny_setup, tmp_path):
    start = load_file(tiny_setup["student"] / "model.safetensors")
    result = distill(_cfg(tiny_setup, tmp_path, "lora", teacher=None, loss="ce", lora=True))
    assert result.status == "finished"
    trained = load_file(result.run_dir / "checkpoint" / "model.safetensors")
    prefix = "base_model.model."
    base = {
        k.removeprefix(prefix).replace(".base_layer", ""): v
        for k, v in trained.items()
        if "lora_" not in k
    }
    assert base.keys() == start.keys()
    for k, v in base.items():
        torch.testing.assert_close(v, start[k], rtol=0, atol=0, msg=k)
    assert any(float(v.abs().sum()) > 0 for k, v in trained.items() if "lora_B" in k)
    final = load_file(result.run_dir / "final" / "model.safetensors")
    assert final.keys() == start.keys()  # merged: plain weights, no adapter keys
    changed = [k for k in start if not torch.equal(final[k], start[k])]
    assert changed and all("proj" in k for k in changed)


def test_t5_student_with_trimmed_vocabulary_distils_and_saves_a_loadable_model(
    tiny_setup, tmp_path
):
    records = read_records(tiny_setup["train"]) + read_records(tiny_setup["valid"])
    texts = [t for r in records for t in (assertion_prompt(r), r.target)]
    teacher = make_tiny_seq2seq_lm(tmp_path / "t5", num_layers=2, seed=3)
    summary = derive_student(teacher, tmp_path / "t5-student", 1, vocab_texts=texts)
    assert summary["student_vocab_size"] < summary["teacher_vocab_size"]
    cfg = _cfg(
        tiny_setup,
        tmp_path,
        "t5run",
        student=str(tmp_path / "t5-student"),
        teacher=str(teacher),
        loss="alpha_temperature",
        temperature=2.0,
    )
    result = distill(cfg)
    assert result.status == "finished"
    assert result.final_metrics["step"] == 2 and result.final_metrics["valid_loss"] > 0
    student = load_model(result.run_dir / "final")
    assert student.config.is_encoder_decoder and student.config.num_layers == 1
    assert student.config.vocab_size == summary["student_vocab_size"]


@pytest.fixture(scope="module")
def trident_over() -> dict:
    return {
        "loss": "trident",
        "semantic_samples": 2,
        "semantic_max_new_tokens": 8,
        "log_every": 1,
    }


def test_trident_run_logs_focal_jsd_and_semantic_terms(tiny_setup, tmp_path, trident_over):
    result = distill(_cfg(tiny_setup, tmp_path, "trident", **trident_over))
    assert result.status == "finished"
    train = [x for x in _metrics(result.run_dir) if x["kind"] == "train"]
    assert [x["step"] for x in train] == [1, 2]
    for line in train:
        assert {"focal", "jsd", "semantic"} <= set(line)
        assert 0 <= line["semantic"] <= 2  # 1 - cosine, averaged per sequence


def test_semantic_term_sends_a_gradient_to_the_student(tiny_setup, tmp_path, trident_over):
    cfg = _cfg(tiny_setup, tmp_path, "sem", **trident_over)
    student = load_model(tiny_setup["student"])
    tokenizer = load_tokenizer(tiny_setup["student"])
    examples, _ = tokenize_records(
        read_records(tiny_setup["train"])[:4],
        tokenizer,
        max_source_tokens=64,
        max_target_tokens=16,
    )
    torch.manual_seed(0)
    student.train()
    loss = SemanticTerm(cfg, tokenizer, False)(student, examples, "cpu")
    assert loss.requires_grad
    loss.backward()
    grads = [p.grad for p in student.parameters() if p.grad is not None]
    assert grads and any(float(g.abs().sum()) > 0 for g in grads)


def test_exact_match_as_best_metric_requires_generation(tiny_setup, tmp_path):
    with pytest.raises(ConfigError, match="valid_generate"):
        _cfg(tiny_setup, tmp_path, "em", best_metric="valid_exact_match")


def test_exact_match_as_best_metric_saves_a_best_student(tiny_setup, tmp_path):
    cfg = _cfg(tiny_setup, tmp_path, "em", best_metric="valid_exact_match", valid_generate=2)
    result = distill(cfg)
    assert (result.run_dir / "best" / "model.safetensors").is_file()
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["best"]["metric"] == "valid_exact_match"
    assert info["best"]["value"] == result.final_metrics["valid_exact_match"]
    final = result.final_metrics
    assert final["valid_exact_match"] <= final["valid_format_insensitive_match"] <= 1


def test_dynamic_jsd_weight_follows_its_linear_schedule_per_epoch(tiny_setup, tmp_path):
    # The weights are not logged; the logged loss is their weighted sum of the logged terms,
    # so each step's jsd weight is recovered as (loss - 0.4 * ce) / jsd.
    cfg = _cfg(
        tiny_setup,
        tmp_path,
        "dyn",
        loss={"jsd": [0.6, 0.3], "ce": 0.4},
        epochs=3,
        max_steps=None,
        max_train_examples=4,
        valid_data=None,
        log_every=1,
    )
    result = distill(cfg)
    train = [x for x in _metrics(result.run_dir) if x["kind"] == "train"]
    weights = {}
    for x in train:
        weights.setdefault(x["epoch"], set()).add(round((x["loss"] - 0.4 * x["ce"]) / x["jsd"], 4))
    assert weights == {0: {0.6}, 1: {0.45}, 2: {0.3}}  # the last epoch reaches the end value


def test_max_steps_stops_mid_epoch_and_still_validates(tiny_setup, tmp_path):
    result = distill(_cfg(tiny_setup, tmp_path, "budget", max_steps=2, epochs=2))
    valid = [x for x in _metrics(result.run_dir) if x["kind"] == "valid"]
    assert [(x["epoch"], x["step"]) for x in valid] == [(0, 2)]
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 2


def test_max_steps_checkpoint_keeps_the_position_inside_the_epoch(tiny_setup, tmp_path):
    result = distill(_cfg(tiny_setup, tmp_path, "budget", max_steps=2, epochs=2))
    state = json.loads((result.run_dir / "checkpoint" / "trainer_state.json").read_text())
    assert (state["epoch"], state["step_in_epoch"]) == (0, 2)
