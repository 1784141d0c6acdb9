from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from safetensors.torch import load_file

from codistill.config.fields import ConfigError
from codistill.losses.objective import parse_objective
from codistill.models.loading import load_model
from codistill.training.loop import (
    _stop_id,
    build_run,
    distill,
    epoch_batches,
    optimizer_step,
)
from tests.helpers import distill_config
from tests.training.recording import recording


def _cfg(setup, tmp_path, name, **over):
    return distill_config(setup, tmp_path / name, **over)


def _step_grads(setup, tmp_path, batch_size, grad_accum, loss):
    cfg = _cfg(
        setup,
        tmp_path,
        f"g{batch_size}",
        batch_size=batch_size,
        grad_accum=grad_accum,
        loss=loss,
        temperature=2.0,
        dropout=0.0,  # dropout would make the two groupings differ
        max_train_examples=8,
        max_source_tokens=64,
        max_target_tokens=32,
        critical_weight=2.0,
    )
    run = recording(build_run(cfg, resume=False)[0])
    run.student.train()
    idx = list(range(8))
    group = [idx[i : i + batch_size] for i in range(0, 8, batch_size)]
    logged = optimizer_step(run, group, run.objective.weights(0, cfg.epochs))
    return run.optimizer.seen, logged


def test_accumulation_gives_same_loss_and_gradients_as_one_big_batch(tiny_setup, tmp_path):
    loss = {"ce": 0.3, "kl": 0.3, "jsd": 0.2, "focal": 0.2}
    big, big_log = _step_grads(tiny_setup, tmp_path, 8, 1, loss)
    small, small_log = _step_grads(tiny_setup, tmp_path, 2, 4, loss)
    assert abs(big_log["loss"] - small_log["loss"]) < 1e-5
    for a, b in zip(big, small, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
    assert any(float(g.abs().sum()) > 0 for g in big)


def test_epoch_order_depends_only_on_seed_and_epoch():
    assert epoch_batches(10, 3, 7, 1) == epoch_batches(10, 3, 7, 1)
    assert epoch_batches(10, 3, 7, 1) != epoch_batches(10, 3, 7, 2)
    assert sorted(i for b in epoch_batches(10, 3, 7, 0) for i in b) == list(range(10))


def test_resumed_run_ends_with_the_same_weights_as_an_uninterrupted_run(tiny_setup, tmp_path):
    over = {"loss": "alpha_temperature", "max_steps": 8, "epochs": 3, "dropout": 0.1}
    full = distill(_cfg(tiny_setup, tmp_path, "full", **over))
    assert full.status == "finished"
    cut = distill(_cfg(tiny_setup, tmp_path, "cut", halt_after_steps=5, **over))
    assert cut.status == "halted"
    assert not (cut.run_dir / "final").exists()
    state = json.loads((cut.run_dir / "checkpoint" / "trainer_state.json").read_text())
    assert state["global_step"] == 5
    resumed = distill(_cfg(tiny_setup, tmp_path, "cut", **over), resume=True)
    assert resumed.status == "finished"
    a = load_file(full.run_dir / "final" / "model.safetensors")
    b = load_file(resumed.run_dir / "final" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=k)


def test_run_dir_records_config_versions_and_metrics(tiny_setup, tmp_path):
    result = distill(_cfg(tiny_setup, tmp_path, "run", max_steps=3, log_every=1, valid_generate=3))
    info = json.loads((result.run_dir / "run.json").read_text())
    assert info["config"]["alpha"] == 0.5 and info["seed"] == 42
    assert info["versions"]["torch"].startswith("2.13.0")
    assert info["parameters"]["student"]["total"] < info["parameters"]["teacher"]["total"]
    assert info["wall_seconds"] > 0 and info["status"] == "finished"
    lines = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    train = [x for x in lines if x["kind"] == "train"]
    assert [x["step"] for x in train] == [1, 2, 3]
    assert {"kl", "ce", "loss", "lr", "tokens_per_s"} <= set(train[0])
    valid = [x for x in lines if x["kind"] == "valid"]
    assert valid and "valid_exact_match" in valid[-1]
    student = load_model(result.run_dir / "final")
    assert student.config.num_hidden_layers == 2
    assert (result.run_dir / "best" / "token_map.json").exists()


def test_a_bfloat16_teacher_trains_a_float32_student(tiny_setup, tmp_path):
    run, _ = build_run(_cfg(tiny_setup, tmp_path, "built", teacher_dtype="bfloat16"), False)
    assert next(run.teacher.parameters()).dtype == torch.bfloat16
    assert next(run.student.parameters()).dtype == torch.float32
    result = distill(_cfg(tiny_setup, tmp_path, "bf16", teacher_dtype="bfloat16", max_steps=2))
    logged = [json.loads(x) for x in (result.run_dir / "metrics.jsonl").read_text().splitlines()]
    kl = [m["kl"] for m in logged if m.get("kind") == "train"]
    assert kl and all(0 < v < float("inf") for v in kl)


def test_ce_only_run_needs_no_teacher(tiny_setup, tmp_path):
    result = distill(_cfg(tiny_setup, tmp_path, "ce", teacher=None, loss="ce", max_steps=2))
    info = json.loads((result.run_dir / "run.json").read_text())
    assert "teacher" not in info["parameters"]
    assert result.status == "finished"


def test_alpha_zero_and_one_train_without_evaluating_the_zero_weight_term(tiny_setup, tmp_path):
    # alpha=0 used to evaluate the weight-0 KL term with no teacher loaded (TypeError).
    for alpha, kept in ((0.0, {"ce"}), (1.0, {"kl"})):
        cfg = _cfg(tiny_setup, tmp_path, f"c{alpha}", alpha=alpha)
        assert set(parse_objective(cfg.loss, **cfg.loss_settings()).terms) == kept
        result = distill(
            _cfg(tiny_setup, tmp_path, f"a{alpha}", alpha=alpha, max_steps=2, log_every=1)
        )
        assert result.status == "finished"
        lines = (result.run_dir / "metrics.jsonl").read_text().splitlines()
        train = [json.loads(x) for x in lines if '"train"' in x]
        assert all(set(kept) <= set(x) and torch.isfinite(torch.tensor(x["loss"])) for x in train)


def test_a_loss_whose_every_weight_is_zero_is_refused(tiny_setup, tmp_path):
    import pytest

    from codistill.config.fields import ConfigError

    with pytest.raises(ConfigError, match="every term has weight 0"):
        _cfg(tiny_setup, tmp_path, "z", loss={"ce": 0, "kl": 0})


def test_a_run_may_choose_another_precision_than_an_earlier_run_in_the_process(
    tiny_setup, tmp_path
):
    """On a GPU the first run of a process picks bf16; a later ``mixed_precision=no`` run (a
    sweep, ``reproduce``, the tests) was refused by Accelerate's process-wide state."""
    from accelerate import Accelerator
    from accelerate.state import AcceleratorState

    AcceleratorState._reset_state(reset_partial_state=False)  # whatever earlier tests left
    Accelerator(cpu=True, mixed_precision="bf16")  # what an earlier run on a GPU leaves behind
    try:
        result = distill(_cfg(tiny_setup, tmp_path, "fp32", mixed_precision="no", max_steps=1))
        assert result.status == "finished"
        assert AcceleratorState._shared_state["_mixed_precision"] == "no"
    finally:
        AcceleratorState._reset_state(reset_partial_state=False)


def test_stop_target_label_needs_the_students_eos():
    cfg = SimpleNamespace(stop_target="label", student="runs/s")
    assert _stop_id(cfg, SimpleNamespace(eos_token_id=7)) == 7
    assert _stop_id(SimpleNamespace(stop_target="teacher"), SimpleNamespace(eos_token_id=7)) is None
    with pytest.raises(ConfigError, match="runs/s.*has none"):
        _stop_id(cfg, SimpleNamespace(eos_token_id=None))
