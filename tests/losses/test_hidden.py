"""``losses.hidden``: the layer-wise state distance and which hidden-state entries it pairs."""

from __future__ import annotations

import pytest
import torch

from codistill.losses.hidden import (
    hidden_state_loss,
    layer_map_problem,
    matched_layers,
    relative_state_error,
)


def test_relative_error_is_the_squared_distance_over_the_teachers_squared_norm():
    teacher = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    student = torch.tensor([[3.0, 2.0], [0.0, 0.0]])
    # (0 + 4) / 25 and (1 + 0) / 1
    torch.testing.assert_close(relative_state_error(student, teacher), torch.tensor([0.16, 1.0]))


def test_it_does_not_depend_on_the_scale_of_the_stream():
    g = torch.Generator().manual_seed(0)
    s, t = torch.randn(5, 8, generator=g), torch.randn(5, 8, generator=g)
    torch.testing.assert_close(relative_state_error(100 * s, 100 * t), relative_state_error(s, t))


def test_the_loss_is_the_per_position_mean_over_layers_then_reduced():
    g = torch.Generator().manual_seed(1)
    student = [torch.randn(4, 6, generator=g) for _ in range(3)]
    teacher = [torch.randn(4, 6, generator=g) for _ in range(3)]
    per_layer = torch.stack(
        [relative_state_error(s, t) for s, t in zip(student, teacher, strict=True)]
    )
    want = per_layer.mean(0)
    torch.testing.assert_close(hidden_state_loss(student, teacher, "none"), want)
    torch.testing.assert_close(hidden_state_loss(student, teacher, "sum"), want.sum())
    torch.testing.assert_close(hidden_state_loss(student, teacher, "mean"), want.mean())


def test_equal_states_cost_nothing_and_only_the_student_gets_gradients():
    teacher = torch.randn(3, 4, requires_grad=True)
    student = teacher.detach().clone().requires_grad_(True)
    assert hidden_state_loss([student], [teacher]).item() == 0.0
    moved = (student + 1.0).detach().requires_grad_(True)
    hidden_state_loss([moved], [teacher]).backward()
    assert moved.grad is not None and moved.grad.abs().sum() > 0
    assert teacher.grad is None


@pytest.mark.parametrize(
    ("student", "teacher", "match"),
    [
        ([], [], "matched layers"),
        ([torch.zeros(2, 3)], [], "matched layers"),
        ([torch.zeros(2, 3)], [torch.zeros(2, 4)], "differ in shape"),
    ],
)
def test_bad_inputs_are_refused(student, teacher, match):
    with pytest.raises(ValueError, match=match):
        hidden_state_loss(student, teacher)


def test_each_student_layer_is_paired_with_the_teacher_layer_it_was_copied_from():
    # hidden_states entry i + 1 is layer i's output; the last entry of each is final-normed.
    assert matched_layers([0, 1, 2, 8, 9, 11], 12) == [
        (1, 1),
        (2, 2),
        (3, 3),
        (4, 9),
        (5, 10),
        (6, 12),
    ]


def test_the_last_student_layer_is_matched_only_with_the_teachers_normed_last():
    assert matched_layers([0, 2], 4) == [(1, 1)]  # student's normed output vs teacher's layer 2
    assert matched_layers([3], 4) == [(1, 4)]
    with pytest.raises(ValueError, match="no student layer"):
        matched_layers([2], 4)


def test_a_layer_outside_the_teacher_is_refused():
    with pytest.raises(ValueError, match=r"\[4\] out of range for a 4-layer teacher"):
        matched_layers([0, 4], 4)


@pytest.mark.parametrize(
    ("layers", "student", "teacher", "derived", "problem"),
    [
        ([0, 3], (2, 8), (4, 8), None, None),
        ([0, 3], (2, 8), (4, 8), 4, None),
        ([0, 3], (2, 8), (6, 8), 4, "derived from a 4-layer teacher, and this teacher has 6"),
        ([0, 1, 3], (2, 8), (4, 8), None, "expected 2 teacher layers"),
        ("0,3", (2, 8), (4, 8), None, "expected 2 teacher layers"),
        ([0, 3], (2, 8), (4, 16), None, "8 dimensions and the teacher's 16"),
        ([0, 7], (2, 8), (4, 8), None, r"teacher layers [7] out of range"),
    ],
)
def test_a_layer_map_fits_a_student_and_a_teacher_or_says_why_not(
    layers, student, teacher, derived, problem
):
    found = layer_map_problem(layers, student, teacher, derived)
    assert found is None if problem is None else problem in found
