import math

import numpy as np
import pytest
import torch

from codistill.losses.divergences import (
    cross_entropy,
    forward_kl,
    generalized_jsd,
    jsd,
    reverse_kl,
)

BATCH, SEQ, VOCAB = 3, 5, 11


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    finite_max = np.max(np.where(np.isfinite(x), x, -np.inf), axis=-1, keepdims=True)
    shifted = x - finite_max
    return shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))


def _np_kl(log_p: np.ndarray, log_q: np.ndarray) -> np.ndarray:
    p = np.exp(log_p)
    with np.errstate(invalid="ignore"):
        terms = np.where(p > 0, p * (log_p - log_q), 0.0)
    return terms.sum(axis=-1)


def _np_gjsd(s: np.ndarray, t: np.ndarray, beta: float, temp: float) -> np.ndarray:
    p_s = np.exp(_np_log_softmax(s / temp))
    p_t = np.exp(_np_log_softmax(t / temp))
    m = beta * p_t + (1 - beta) * p_s
    with np.errstate(divide="ignore"):
        log_m, log_s, log_t = np.log(m), np.log(p_s), np.log(p_t)
    return temp**2 * (beta * _np_kl(log_t, log_m) + (1 - beta) * _np_kl(log_s, log_m))


def _inputs(seed: int = 0, scale: float = 3.0):
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(BATCH, SEQ, VOCAB, generator=gen) * scale
    teacher = torch.randn(BATCH, SEQ, VOCAB, generator=gen) * scale
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    # Right padding of different lengths, plus one row with no target token at all.
    mask = torch.tensor(
        [
            [True, True, True, False, False],
            [False, True, True, True, True],
            [False, False, False, False, False],
        ]
    )
    labels[~mask] = -100
    return student, teacher, labels, mask


def _masked_mean(per_token: np.ndarray, mask: torch.Tensor) -> float:
    m = mask.numpy()
    return float(per_token[m].sum() / m.sum())


def test_cross_entropy_matches_numpy_on_masked_tokens():
    student, _, labels, mask = _inputs()
    log_p = _np_log_softmax(student.numpy())
    safe = np.where(mask.numpy(), labels.numpy(), 0)
    expected = -np.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    got = cross_entropy(student, labels, mask)
    assert got.item() == pytest.approx(_masked_mean(expected, mask), rel=1e-5)


def test_forward_kl_is_t_squared_times_kl_of_tempered_distributions():
    student, teacher, _, mask = _inputs()
    temp = 2.5
    kl = _np_kl(_np_log_softmax(teacher.numpy() / temp), _np_log_softmax(student.numpy() / temp))
    got = forward_kl(student, teacher, mask, temperature=temp, reduction="none")
    expected = np.where(mask.numpy(), temp**2 * kl, 0.0)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-6)


def test_forward_kl_gradient_is_t_times_probability_difference():
    # Hinton et al. 2015: d(T²·KL)/dz_s = T·(p_s − p_t), which is why T² is applied.
    student, teacher, _, mask = _inputs()
    temp = 3.0
    student.requires_grad_(True)
    forward_kl(student, teacher, mask, temperature=temp, reduction="sum").backward()
    p_s = np.exp(_np_log_softmax(student.detach().numpy() / temp))
    p_t = np.exp(_np_log_softmax(teacher.numpy() / temp))
    expected = np.where(mask.numpy()[..., None], temp * (p_s - p_t), 0.0)
    np.testing.assert_allclose(student.grad.numpy(), expected, rtol=1e-4, atol=1e-6)


def test_reverse_kl_matches_numpy_with_temperature():
    student, teacher, _, mask = _inputs(seed=1)
    temp = 0.7
    kl = _np_kl(_np_log_softmax(student.numpy() / temp), _np_log_softmax(teacher.numpy() / temp))
    got = reverse_kl(student, teacher, mask, temperature=temp, reduction="sum")
    assert got.item() == pytest.approx(float((temp**2 * kl)[mask.numpy()].sum()), rel=1e-5)


def test_jsd_matches_trident_formula_in_numpy():
    student, teacher, _, mask = _inputs(seed=2)
    temp = 4.0
    p_s = np.exp(_np_log_softmax(student.numpy() / temp))
    p_t = np.exp(_np_log_softmax(teacher.numpy() / temp))
    m = (p_s + p_t) / 2
    expected = 0.5 * (_np_kl(np.log(p_t), np.log(m)) + _np_kl(np.log(p_s), np.log(m))) * temp**2
    got = jsd(student, teacher, mask, temperature=temp, reduction="none")
    np.testing.assert_allclose(got.numpy(), np.where(mask.numpy(), expected, 0.0), rtol=1e-5)


@pytest.mark.parametrize("beta", [0.1, 0.3, 0.9])
def test_generalized_jsd_matches_numpy_for_beta(beta):
    student, teacher, _, mask = _inputs(seed=3)
    temp = 2.0
    expected = _np_gjsd(student.numpy(), teacher.numpy(), beta, temp)
    got = generalized_jsd(student, teacher, mask, beta=beta, temperature=temp, reduction="none")
    np.testing.assert_allclose(got.numpy(), np.where(mask.numpy(), expected, 0.0), rtol=1e-5)


@pytest.mark.parametrize("beta", [0.2, 0.5, 0.7])
def test_generalized_jsd_mirrors_when_student_and_teacher_swap(beta):
    # beta weights the teacher both in the mixture and in the outer sum, so swapping the two
    # models is the same as swapping beta for 1 - beta; a beta put on the wrong side of either
    # breaks this (and at beta = 0.5 makes the symmetric JSD asymmetric).
    student, teacher, _, mask = _inputs(seed=4)
    a = generalized_jsd(student, teacher, mask, beta=beta, temperature=1.5, reduction="none")
    b = generalized_jsd(teacher, student, mask, beta=1 - beta, temperature=1.5, reduction="none")
    torch.testing.assert_close(a, b)
    assert a[mask].min().item() > 0
    if beta == 0.5:
        swapped = jsd(teacher, student, mask, temperature=1.5, reduction="none")
        torch.testing.assert_close(
            jsd(student, teacher, mask, temperature=1.5, reduction="none"), swapped
        )


def test_generalized_jsd_is_not_symmetric_in_beta():
    student, teacher, _, mask = _inputs(seed=4)
    a = generalized_jsd(student, teacher, mask, beta=0.2)
    b = generalized_jsd(student, teacher, mask, beta=0.8)
    assert abs(a.item() - b.item()) > 1e-4


def test_generalized_jsd_endpoints_are_the_kl_limits_not_zero():
    # JSD_beta is 0 at both endpoints; TRL's convention (and ours) returns the limits of
    # JSD_beta / beta (forward KL) and JSD_beta / (1 - beta) (reverse KL) there instead.
    student, teacher, _, mask = _inputs(seed=5)
    at_0 = generalized_jsd(student, teacher, mask, beta=0.0, temperature=2.0)
    at_1 = generalized_jsd(student, teacher, mask, beta=1.0, temperature=2.0)
    assert at_0.item() > 0 and at_1.item() > 0
    torch.testing.assert_close(at_0, forward_kl(student, teacher, mask, temperature=2.0))
    torch.testing.assert_close(at_1, reverse_kl(student, teacher, mask, temperature=2.0))
    near_0 = generalized_jsd(student, teacher, mask, beta=1e-4, temperature=2.0) / 1e-4
    near_1 = generalized_jsd(student, teacher, mask, beta=1 - 1e-4, temperature=2.0) / 1e-4
    assert near_0.item() == pytest.approx(at_0.item(), rel=1e-2)
    assert near_1.item() == pytest.approx(at_1.item(), rel=1e-2)


def test_jsd_of_identical_distributions_is_zero():
    student, _, _, mask = _inputs(seed=6)
    got = jsd(student, student.clone(), mask, temperature=2.0, reduction="none")
    np.testing.assert_allclose(got.numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize("temp", [1.0, 4.0])
def test_jsd_is_bounded_by_ln2_times_t_squared(temp):
    gen = torch.Generator().manual_seed(7)
    student = torch.randn(4, 16, 50, generator=gen) * 200
    teacher = torch.randn(4, 16, 50, generator=gen) * 200
    mask = torch.ones(4, 16, dtype=torch.bool)
    got = jsd(student, teacher, mask, temperature=temp, reduction="none")
    assert torch.isfinite(got).all()
    assert got.max().item() <= math.log(2) * temp**2 * (1 + 1e-5)


def test_jsd_of_disjoint_supports_reaches_ln2():
    student = torch.tensor([[[0.0, float("-inf")]]])
    teacher = torch.tensor([[[float("-inf"), 0.0]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert jsd(student, teacher, mask).item() == pytest.approx(math.log(2), rel=1e-6)


LOSSES = {
    "cross_entropy": lambda s, t, y, m, r: cross_entropy(s, y, m, reduction=r),
    "forward_kl": lambda s, t, y, m, r: forward_kl(s, t, m, temperature=2.0, reduction=r),
    "reverse_kl": lambda s, t, y, m, r: reverse_kl(s, t, m, temperature=2.0, reduction=r),
    "jsd": lambda s, t, y, m, r: jsd(s, t, m, temperature=2.0, reduction=r),
    "generalized_jsd": lambda s, t, y, m, r: generalized_jsd(s, t, m, 0.3, 2.0, reduction=r),
}


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_reductions_are_consistent(name):
    student, teacher, labels, mask = _inputs(seed=8)
    loss = LOSSES[name]
    none = loss(student, teacher, labels, mask, "none")
    total = loss(student, teacher, labels, mask, "sum")
    mean = loss(student, teacher, labels, mask, "mean")
    assert none.shape == (BATCH, SEQ)
    assert (none[~mask] == 0).all()
    assert (none[mask] > 0).all()
    assert total.item() == pytest.approx(none.sum().item(), rel=1e-6)
    assert mean.item() == pytest.approx(total.item() / mask.sum().item(), rel=1e-6)


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_mean_over_no_target_tokens_is_zero_not_nan(name):
    student, teacher, labels, _ = _inputs(seed=9)
    empty = torch.zeros(BATCH, SEQ, dtype=torch.bool)
    student.requires_grad_(True)
    got = LOSSES[name](student, teacher, labels, empty, "mean")
    got.backward()
    assert got.item() == 0.0
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name", ["forward_kl", "jsd", "generalized_jsd"])
def test_teacher_neg_inf_logits_give_finite_value_and_gradient(name):
    student, teacher, labels, mask = _inputs(seed=10)
    teacher[..., :4] = float("-inf")  # e.g. a top-k-truncated or vocabulary-masked teacher
    student.requires_grad_(True)
    got = LOSSES[name](student, teacher, labels, mask, "sum")
    got.backward()
    assert torch.isfinite(got)
    assert torch.isfinite(student.grad).all()
    expected = {
        "forward_kl": lambda s, t: 4.0 * _np_kl(_np_log_softmax(t / 2.0), _np_log_softmax(s / 2.0)),
        "jsd": lambda s, t: _np_gjsd(s, t, 0.5, 2.0),
        "generalized_jsd": lambda s, t: _np_gjsd(s, t, 0.3, 2.0),
    }[name](student.detach().numpy(), teacher.numpy())
    assert got.item() == pytest.approx(float(expected[mask.numpy()].sum()), rel=1e-5)


@pytest.mark.parametrize("name", ["forward_kl", "jsd"])
def test_neg_inf_in_both_models_on_same_entries_is_finite(name):
    student, teacher, labels, mask = _inputs(seed=11)
    student[..., -2:] = float("-inf")  # padded vocabulary entries masked out in both models
    teacher[..., -2:] = float("-inf")
    student.requires_grad_(True)
    got = LOSSES[name](student, teacher, labels, mask, "sum")
    got.backward()
    assert torch.isfinite(got)
    assert torch.isfinite(student.grad).all()


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_nonfinite_logits_on_padding_do_not_leak(name):
    student, teacher, labels, mask = _inputs(seed=12)
    reference = LOSSES[name](student, teacher, labels, mask, "sum")
    teacher[~mask] = float("-inf")  # all -inf rows: softmax would be NaN there
    student[~mask] = float("nan")
    student.requires_grad_(True)
    got = LOSSES[name](student, teacher, labels, mask, "sum")
    got.backward()
    assert got.item() == pytest.approx(reference.item(), rel=1e-6)
    assert (student.grad[~mask] == 0).all()
    assert torch.isfinite(student.grad).all()


def test_reverse_kl_is_inf_where_teacher_has_no_mass():
    student = torch.zeros(1, 1, 3)
    teacher = torch.tensor([[[0.0, 0.0, float("-inf")]]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    assert reverse_kl(student, teacher, mask).item() == float("inf")


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_bf16_inputs_are_computed_in_float32(name):
    student, teacher, labels, mask = _inputs(seed=13)
    student_bf16, teacher_bf16 = student.bfloat16(), teacher.bfloat16()
    got = LOSSES[name](student_bf16, teacher_bf16, labels, mask, "none")
    expected = LOSSES[name](student_bf16.float(), teacher_bf16.float(), labels, mask, "none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, expected)


def test_bf16_student_receives_bf16_gradient():
    student, teacher, _, mask = _inputs(seed=14)
    student = student.bfloat16().requires_grad_(True)
    jsd(student, teacher.bfloat16(), mask, temperature=2.0).backward()
    assert student.grad.dtype == torch.bfloat16
    assert torch.isfinite(student.grad.float()).all()


@pytest.mark.parametrize("name", ["forward_kl", "reverse_kl", "jsd"])
def test_teacher_logits_receive_no_gradient(name):
    student, teacher, labels, mask = _inputs(seed=15)
    student.requires_grad_(True)
    teacher.requires_grad_(True)
    LOSSES[name](student, teacher, labels, mask, "sum").backward()
    assert teacher.grad is None
    assert student.grad.abs().sum() > 0


def test_beta_outside_unit_interval_is_rejected():
    student, teacher, _, mask = _inputs()
    with pytest.raises(ValueError, match=r"beta must be in \[0, 1\], got 1.5"):
        generalized_jsd(student, teacher, mask, beta=1.5)


@pytest.mark.parametrize("temp", [0.0, -1.0, float("nan")])
def test_non_positive_temperature_is_rejected(temp):
    student, teacher, _, mask = _inputs()
    with pytest.raises(ValueError, match="temperature must be > 0, got"):
        forward_kl(student, teacher, mask, temperature=temp)


def test_unknown_reduction_is_rejected():
    student, teacher, _, mask = _inputs()
    with pytest.raises(ValueError, match="reduction must be one of .* got 'avg'"):
        jsd(student, teacher, mask, reduction="avg")


def test_mismatched_vocabularies_are_rejected():
    student, teacher, _, mask = _inputs()
    with pytest.raises(ValueError, match="student_logits and teacher_logits"):
        forward_kl(student, teacher[..., :-1], mask)


def test_non_bool_mask_is_rejected():
    student, _, labels, mask = _inputs()
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        cross_entropy(student, labels, mask.long())


def test_out_of_range_label_at_masked_position_is_rejected():
    student, _, labels, mask = _inputs()
    labels[0, 0] = VOCAB
    with pytest.raises(ValueError, match=r"labels at masked positions must be ids in \[0, 11\)"):
        cross_entropy(student, labels, mask)
