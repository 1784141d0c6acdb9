"""Sequence-level soft labels: the loss of a classifier student distilled from a teacher.

A classifier emits one distribution per input, not one per token, so the token-level
divergences of `codistill.losses.divergences` are applied to a sequence of length one. Used by
`codistill.training.classifier` (Hinton et al. 2015, the setup of Compressor / AVATAR / MORPH).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.losses.divergences import forward_kl


def class_weights(labels: Tensor, num_labels: int = 2) -> Tensor:
    """Inverse-frequency class weights for a class-balanced cross-entropy.

    Args:
        labels: ``[n]`` integer labels in ``[0, num_labels)``.
        num_labels: Number of classes.

    Returns:
        ``[num_labels]`` float weights ``n / (num_labels · count_c)`` (1 for every class if
        balanced); a class absent from ``labels`` gets weight 0.
    """
    counts = torch.bincount(labels, minlength=num_labels).float()
    weights = labels.numel() / (num_labels * counts.clamp_min(1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def soft_label_loss(
    student_logits: Tensor,
    teacher_logits: Tensor,
    temperature: float,
    labels: Tensor | None = None,
    alpha: float = 0.0,
) -> Tensor:
    """``(1 − α)·T²·KL(p_t^T ‖ p_s^T) + α·CE(p_s, y)``, averaged over the batch.

    Args:
        student_logits: ``[batch, num_labels]``.
        teacher_logits: ``[batch, num_labels]``, treated as a constant.
        temperature: T > 0.
        labels: ``[batch]`` true labels; needed only when ``alpha > 0``.
        alpha: Weight of the hard-label term, in [0, 1].

    Returns:
        A float32 scalar.

    Raises:
        ValueError: ``alpha > 0`` without ``labels``.
    """
    mask = torch.ones(student_logits.shape[0], 1, dtype=torch.bool, device=student_logits.device)
    soft = forward_kl(student_logits[:, None], teacher_logits[:, None], mask, temperature)
    if alpha == 0:
        return soft
    if labels is None:
        raise ValueError("alpha > 0 needs labels")
    return (1 - alpha) * soft + alpha * F.cross_entropy(student_logits.float(), labels)


def mean_kl(student_logits: Tensor, teacher_logits: Tensor) -> float:
    """Mean KL(p_teacher ‖ p_student) at temperature 1, in nats.

    Args:
        student_logits: ``[batch, num_labels]``.
        teacher_logits: ``[batch, num_labels]``.
    """
    return float(soft_label_loss(student_logits, teacher_logits, 1.0))
