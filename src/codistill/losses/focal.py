"""Focal loss over target tokens.

The focal loss (Lin et al. 2017, eq. 5) is the Trident loss's hard-label term: it down-weights
tokens the student already predicts well so that training concentrates on the hard ones.
Its optional per-token weights come from :func:`codistill.data.batches.critical_token_weights`
(the tokens of assertion calls).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from codistill.losses.divergences import (
    check_reduction,
    reduce_token_losses,
    select_token_labels,
    select_token_logits,
)


def focal_loss(
    student_logits: Tensor,
    labels: Tensor,
    mask: Tensor,
    alpha: float = 0.25,
    gamma: float = 2.0,
    token_weights: Tensor | None = None,
    reduction: str = "mean",
) -> Tensor:
    """Focal loss −α·(1 − p_t)^γ·log p_t per target token (Lin et al. 2017, eq. 5).

    With ``gamma=0`` it is ``alpha`` times the cross-entropy. Trident uses α = 0.25, γ = 2.

    Args:
        student_logits: ``[batch, seq, vocab]`` float tensor.
        labels: ``[batch, seq]`` int64 target ids (ignored where ``mask`` is False).
        mask: ``[batch, seq]`` bool, True for target tokens that count.
        alpha: constant scale α ≥ 0.
        gamma: focusing exponent γ ≥ 0.
        token_weights: optional ``[batch, seq]`` float multiplier per token, e.g. from
            ``critical_token_weights`` (treated as a constant).
        reduction: ``"none"`` → ``[batch, seq]``, ``"sum"`` or ``"mean"`` → scalar. ``"mean"``
            divides by the number of masked tokens, not by the sum of the weights, so a weight
            of 2 doubles that token's share of the loss.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    if not (math.isfinite(alpha) and alpha >= 0):
        raise ValueError(f"alpha must be a finite number >= 0, got {alpha!r}")
    if not (math.isfinite(gamma) and gamma >= 0):
        raise ValueError(f"gamma must be a finite number >= 0, got {gamma!r}")
    logits = select_token_logits(student_logits, mask, "student_logits")
    targets = select_token_labels(labels, mask, logits.shape[-1], "labels")
    log_pt = torch.log_softmax(logits, dim=-1).gather(-1, targets[:, None]).squeeze(-1)
    # 1 − p_t as −expm1(log p_t) stays accurate when p_t is close to 1, where 1 − exp() cancels.
    # The floor keeps d(1 − p_t)^γ finite at p_t = 1 when γ < 1 (else inf·0 = NaN gradients).
    one_minus_pt = (-torch.expm1(log_pt)).clamp(min=torch.finfo(log_pt.dtype).tiny)
    per_token = -alpha * one_minus_pt.pow(gamma) * log_pt
    if token_weights is not None:
        if tuple(token_weights.shape) != tuple(mask.shape):
            raise ValueError(
                f"token_weights must have shape {tuple(mask.shape)}, "
                f"got {tuple(token_weights.shape)}"
            )
        per_token = per_token * token_weights[mask].detach().float()
    return reduce_token_losses(per_token, mask, reduction)
