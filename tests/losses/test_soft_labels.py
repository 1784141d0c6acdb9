"""`codistill.losses.soft_labels`: class weights and the soft-label KD loss, against numpy."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from codistill.losses.soft_labels import class_weights, mean_kl, soft_label_loss

STUDENT = torch.tensor([[0.3, -1.0], [2.0, 0.5]])
TEACHER = torch.tensor([[1.0, 0.0], [-0.5, 0.5]])


def _kl(teacher: np.ndarray, student: np.ndarray, t: float) -> float:
    """Mean KL(softmax(teacher / t) ‖ softmax(student / t)) over rows, in numpy."""
    p = np.exp(teacher / t) / np.exp(teacher / t).sum(-1, keepdims=True)
    q = np.exp(student / t) / np.exp(student / t).sum(-1, keepdims=True)
    return float((p * (np.log(p) - np.log(q))).sum(-1).mean())


def test_class_weights_balance_the_classes():
    weights = class_weights(torch.tensor([0, 0, 0, 1]))
    torch.testing.assert_close(weights, torch.tensor([4 / 6, 2.0]))
    torch.testing.assert_close(class_weights(torch.tensor([1, 1])), torch.tensor([0.0, 0.5]))


def test_soft_label_loss_is_t_squared_kl_and_ignores_labels_at_alpha_zero():
    t = 2.0
    expected = t**2 * _kl(TEACHER.numpy(), STUDENT.numpy(), t)
    got = soft_label_loss(STUDENT, TEACHER, t, labels=torch.tensor([0, 1]))
    assert float(got) == pytest.approx(expected, rel=1e-5)
    assert float(soft_label_loss(TEACHER, TEACHER, t)) == pytest.approx(0.0, abs=1e-7)


def test_soft_label_loss_mixes_in_cross_entropy_by_alpha():
    t, labels = 2.0, torch.tensor([0, 1])
    expected = t**2 * _kl(TEACHER.numpy(), STUDENT.numpy(), t)
    mixed = soft_label_loss(STUDENT, TEACHER, t, labels, alpha=0.5)
    ce = F.cross_entropy(STUDENT, labels)
    assert float(mixed) == pytest.approx(0.5 * expected + 0.5 * float(ce), rel=1e-5)
    with pytest.raises(ValueError, match="alpha > 0 needs labels"):
        soft_label_loss(STUDENT, TEACHER, t, alpha=0.5)


def test_mean_kl_is_the_untempered_kl_in_nats():
    assert mean_kl(STUDENT, TEACHER) == pytest.approx(_kl(TEACHER.numpy(), STUDENT.numpy(), 1.0))
    assert mean_kl(TEACHER, TEACHER) == pytest.approx(0.0, abs=1e-7)
