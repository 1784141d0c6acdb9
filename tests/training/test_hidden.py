"""The ``hidden`` loss term in training: which layers it pairs, its value against the models'
own hidden states, and the configurations it refuses."""

from __future__ import annotations

import shutil

import pytest
import torch

from codistill import rundir
from codistill.config.fields import ConfigError
from codistill.losses.hidden import relative_state_error
from codistill.models.student import derive_student
from codistill.training.loop import build_run, optimizer_step
from codistill.training.step import micro_batch_terms
from tests.helpers import distill_config

LIMITS = {"max_source_tokens": 64, "max_target_tokens": 16, "max_train_examples": 8}


def _run(setup, out, **over):
    cfg = distill_config(setup, out, loss={"ce": 1.0, "hidden": 1.0}, **LIMITS, **over)
    return build_run(cfg, resume=False)[0]


def test_the_term_pairs_each_student_layer_with_its_source_and_matches_a_brute_force(
    tiny_setup, kd_batch, tmp_path
):
    layers = rundir.read_json(tiny_setup["student"] / "derivation.json")["layers"]
    assert layers == [0, 3]  # two of the four, ends kept
    run = _run(tiny_setup, tmp_path / "r")
    assert run.hidden_pairs == [(1, 1), (2, 4)]  # layer 0's output; the normed last ones
    batch, _ = kd_batch
    mask = batch["target_mask"].bool()
    student, teacher = run.accelerator.unwrap_model(run.student), run.teacher
    with torch.no_grad():
        got = micro_batch_terms(
            student, teacher, batch, run.objective, run.cfg, False, None, None, run.hidden_pairs
        )
        s = student(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        ).hidden_states
        t = teacher(
            input_ids=batch["teacher_input_ids"],
            attention_mask=batch["attention_mask"],
            output_hidden_states=True,
        ).hidden_states
    want = (
        relative_state_error(s[1][mask], t[1][mask]) + relative_state_error(s[2][mask], t[4][mask])
    ) / 2
    torch.testing.assert_close(got["hidden"], want.sum(), rtol=1e-4, atol=1e-5)
    assert got["hidden"].item() > 0 and "ce" in got


def test_a_student_with_every_teacher_layer_starts_at_zero_and_training_moves_it(
    tiny_setup, tmp_path
):
    student = tmp_path / "all-layers"
    derive_student(tiny_setup["teacher"], student, 4)
    setup = {**tiny_setup, "student": student}
    run = _run(setup, tmp_path / "r", lr=5e-2)
    assert run.hidden_pairs == [(1, 1), (2, 2), (3, 3), (4, 4)]
    run.student.train()
    weights = run.objective.weights(0, 1)
    first = optimizer_step(run, [list(range(4))], weights)
    second = optimizer_step(run, [list(range(4))], weights)
    assert first["hidden"] == pytest.approx(0.0, abs=1e-10)  # the teacher itself
    assert second["hidden"] > 1e-6  # CE moved the student away from the teacher's states


def test_hidden_layers_overrides_the_derivation_and_is_checked(tiny_setup, tmp_path):
    run = _run(tiny_setup, tmp_path / "r", hidden_layers=[1, 3])
    assert run.hidden_pairs == [(1, 2), (2, 4)]
    with pytest.raises(ConfigError, match=r"hidden_layers: expected 2 teacher layers"):
        _run(tiny_setup, tmp_path / "w", hidden_layers=[0, 1, 3])
    with pytest.raises(ConfigError, match=r"hidden_layers: teacher layers \[7\] out of range"):
        _run(tiny_setup, tmp_path / "x", hidden_layers=[0, 7])
    with pytest.raises(ConfigError, match="ints >= 0"):
        _run(tiny_setup, tmp_path / "y", hidden_layers=[0, -1])


def test_a_student_not_derived_from_the_teacher_needs_hidden_layers(tiny_setup, tmp_path):
    student = tmp_path / "copied"
    shutil.copytree(tiny_setup["student"], student)
    (student / "derivation.json").unlink()
    with pytest.raises(ConfigError, match=r"derivation.json not found.*set hidden_layers"):
        _run({**tiny_setup, "student": student}, tmp_path / "r")


def test_a_student_derived_from_another_teacher_is_refused(tiny_setup, tmp_path):
    from codistill.models.tiny import make_tiny_causal_lm

    deeper = make_tiny_causal_lm(tmp_path / "deeper", num_layers=6, seed=3)
    # Layers 0 and 3 of a 6-layer teacher: in range for the 4-layer one, yet not its layers.
    derive_student(deeper, tmp_path / "from-deeper", [0, 3])
    setup = {**tiny_setup, "student": tmp_path / "from-deeper"}
    with pytest.raises(ConfigError, match=r"derivation.json: derived from a 6-layer teacher"):
        _run(setup, tmp_path / "r")


def test_hidden_layers_without_the_term_are_refused(tiny_setup, tmp_path):
    with pytest.raises(ConfigError, match="hidden_layers is for the loss term 'hidden'"):
        distill_config(tiny_setup, tmp_path / "c", loss={"ce": 1.0}, hidden_layers=[0, 3])


def test_the_term_needs_the_online_teacher(tiny_setup, tmp_path):
    with pytest.raises(ConfigError, match="online teacher's hidden states"):
        distill_config(
            tiny_setup, tmp_path / "c", loss={"hidden": 1.0}, teacher_cache=str(tmp_path)
        )
    with pytest.raises(ConfigError, match="online teacher's hidden states"):
        distill_config(tiny_setup, tmp_path / "n", loss={"hidden": 1.0}, teacher=None)


def test_training_on_the_term_alone_brings_the_students_states_to_the_teachers(
    tiny_setup, tmp_path
):
    cfg = distill_config(
        tiny_setup, tmp_path / "r", loss={"hidden": 1.0}, lr=2e-3, epochs=10, **LIMITS
    )
    run = build_run(cfg, resume=False)[0]
    run.student.train()
    weights = run.objective.weights(0, 1)
    seen = [optimizer_step(run, [list(range(4))], weights)["hidden"] for _ in range(6)]
    assert seen[-1] < 0.8 * seen[0], seen
