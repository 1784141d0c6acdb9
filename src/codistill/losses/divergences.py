"""Token-level hard and soft distillation losses as pure functions of tensors.

Every function here takes logits shaped ``[batch, seq, vocab]`` (student and teacher over the
same vocabulary), a ``mask`` shaped ``[batch, seq]`` (``True`` = a target token that counts) and
a ``reduction``:

* ``"none"``: ``[batch, seq]`` per-token losses, 0 where ``mask`` is False;
* ``"sum"``: the scalar sum over masked tokens (the training loop divides by the token count of
  the whole optimizer step, so this is exact, not a mean times a count);
* ``"mean"``: the sum divided by the number of masked tokens, 0 when there are none.

Only the masked tokens are computed on, in float32 whatever the input dtype, so padding rows
(whose teacher logits may be all ``-inf`` or garbage) never reach the maths and cannot leak
NaN into the value or the gradient.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

REDUCTIONS = ("none", "sum", "mean")


def check_reduction(reduction: str) -> None:
    """Raises ValueError unless ``reduction`` is one of ``"none"``, ``"sum"``, ``"mean"``."""
    if reduction not in REDUCTIONS:
        raise ValueError(f"reduction must be one of {REDUCTIONS}, got {reduction!r}")


def check_temperature(temperature: float) -> None:
    """Raises ValueError unless ``temperature`` is a finite number > 0."""
    value = _as_float(temperature)
    if value is None or math.isnan(value) or value <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature!r}")
    if math.isinf(value):
        raise ValueError(f"temperature must be > 0 and finite, got {temperature!r}")


def check_beta(beta: float) -> None:
    """Raises ValueError unless ``beta`` is a number in [0, 1]."""
    value = _as_float(beta)
    if value is None or not 0 <= value <= 1:
        raise ValueError(f"beta must be in [0, 1], got {beta!r}")


def _as_float(value: object) -> float | None:
    """``float(value)`` for real numbers (numpy and 0-d tensors included), else None."""
    if isinstance(value, bool | str | bytes):
        return None
    try:
        return float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError, RuntimeError):
        return None


def check_mask(mask: Tensor, shape: torch.Size, name: str = "mask") -> None:
    """Raises ValueError unless ``mask`` is a bool tensor of the given ``[batch, seq]`` shape."""
    if mask.dtype != torch.bool:
        raise ValueError(f"{name} must be a bool tensor, got dtype {mask.dtype}")
    if tuple(mask.shape) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {tuple(mask.shape)}")


def select_token_logits(logits: Tensor, mask: Tensor, name: str) -> Tensor:
    """Gathers the logits of the masked tokens, as float32.

    Args:
        logits: ``[batch, seq, vocab]`` float tensor.
        mask: ``[batch, seq]`` bool tensor.
        name: the argument's name, used in error messages.

    Returns:
        ``[n, vocab]`` float32 tensor, ``n = mask.sum()``, in row-major order of ``mask``.
    """
    if logits.dim() != 3:
        raise ValueError(f"{name} must be [batch, seq, vocab], got shape {tuple(logits.shape)}")
    if not logits.is_floating_point():
        raise ValueError(f"{name} must be a float tensor, got dtype {logits.dtype}")
    check_mask(mask, logits.shape[:2])
    return masked_rows(logits, mask)


def masked_rows(logits: Tensor, mask: Tensor) -> Tensor:
    """``logits[mask]`` as float32 ``[n, vocab]``, row-major; a view rather than a copy when
    every position counts (the objective's chunks of target positions), which spares a pass
    over the rows and its backward."""
    rows = logits.reshape(-1, logits.shape[-1]) if bool(mask.all()) else logits[mask]
    return rows.float()


def select_token_labels(labels: Tensor, mask: Tensor, vocab_size: int, name: str) -> Tensor:
    """Gathers the target ids of the masked tokens and checks they are valid ids.

    Args:
        labels: ``[batch, seq]`` integer tensor; entries where ``mask`` is False are ignored
            (they may be ``-100`` or a pad id).
        mask: ``[batch, seq]`` bool tensor.
        vocab_size: size of the vocabulary the ids index.
        name: the argument's name, used in error messages.

    Returns:
        ``[n]`` int64 tensor.
    """
    if labels.dtype in (torch.bool,) or labels.is_floating_point() or labels.is_complex():
        raise ValueError(f"{name} must be an integer tensor, got dtype {labels.dtype}")
    if tuple(labels.shape) != tuple(mask.shape):
        raise ValueError(f"{name} must have shape {tuple(mask.shape)}, got {tuple(labels.shape)}")
    selected = labels[mask].long()
    # Checked here because an out-of-range gather is a device-side assert on GPU.
    if selected.numel() and (selected.min() < 0 or selected.max() >= vocab_size):
        raise ValueError(
            f"{name} at masked positions must be ids in [0, {vocab_size}), "
            f"got min {int(selected.min())} and max {int(selected.max())}"
        )
    return selected


def reduce_token_losses(per_token: Tensor, mask: Tensor, reduction: str) -> Tensor:
    """Applies ``reduction`` to losses computed on the masked tokens only.

    Args:
        per_token: ``[n]`` losses of the tokens where ``mask`` is True, in row-major order.
        mask: ``[batch, seq]`` bool tensor with ``n`` True entries.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.

    Returns:
        ``[batch, seq]`` (0 where ``mask`` is False) for ``"none"``, else a scalar. ``"mean"``
        of zero tokens is 0, not NaN.
    """
    check_reduction(reduction)
    if reduction == "none":
        out = torch.zeros(mask.shape, dtype=per_token.dtype, device=per_token.device)
        return out.masked_scatter(mask, per_token)
    total = per_token.sum()
    if reduction == "sum":
        return total
    return total / max(per_token.numel(), 1)


def kl_rows(log_p: Tensor, log_q: Tensor) -> Tensor:
    """Row-wise KL(P‖Q) = Σ_v p·(log p − log q) with the convention 0·log(0/q) = 0.

    Args:
        log_p: ``[n, vocab]`` log-probabilities of P (may contain ``-inf``).
        log_q: ``[n, vocab]`` log-probabilities of Q (may contain ``-inf``).

    Returns:
        ``[n]`` float tensor; ``+inf`` where P has mass that Q lacks, which is the true value.
    """
    p = log_p.exp()
    # Where p == 0 the entry contributes nothing, whatever q is; replacing the difference
    # (which is NaN for -inf − -inf, or inf) keeps both the value and its gradient finite.
    diff = torch.where(p == 0, torch.zeros_like(log_p), log_p - log_q)
    return (p * diff).sum(dim=-1)


def cross_entropy(
    student_logits: Tensor, labels: Tensor, mask: Tensor, reduction: str = "mean"
) -> Tensor:
    """Hard-label loss −log P_s(y) per target token.

    Args:
        student_logits: ``[batch, seq, vocab]`` float tensor.
        labels: ``[batch, seq]`` int64 target ids (ignored where ``mask`` is False).
        mask: ``[batch, seq]`` bool, True for target tokens that count.
        reduction: ``"none"`` → ``[batch, seq]``, ``"sum"`` or ``"mean"`` → scalar.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    logits = select_token_logits(student_logits, mask, "student_logits")
    targets = select_token_labels(labels, mask, logits.shape[-1], "labels")
    per_token = F.cross_entropy(logits, targets, reduction="none")
    return reduce_token_losses(per_token, mask, reduction)


def _soft_log_probs(
    student_logits: Tensor, teacher_logits: Tensor, mask: Tensor, temperature: float
) -> tuple[Tensor, Tensor]:
    """Tempered log-softmax of the masked tokens of both models, ``[n, vocab]`` each."""
    check_temperature(temperature)
    if student_logits.shape != teacher_logits.shape:
        raise ValueError(
            "student_logits and teacher_logits must have the same [batch, seq, vocab] shape, "
            f"got {tuple(student_logits.shape)} and {tuple(teacher_logits.shape)}"
        )
    student = select_token_logits(student_logits, mask, "student_logits")
    teacher = select_token_logits(teacher_logits, mask, "teacher_logits").detach()
    log_ps = F.log_softmax(student / temperature, dim=-1)
    log_pt = F.log_softmax(teacher / temperature, dim=-1)
    return log_ps, log_pt


def forward_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Soft loss T²·KL(P_t‖P_s) with P = softmax(logits / T) (Hinton et al. 2015).

    Teacher entries with ``-inf`` logits (probability 0) are allowed and contribute 0.

    Args:
        student_logits: ``[batch, seq, vocab]`` float tensor.
        teacher_logits: ``[batch, seq, vocab]`` float tensor, treated as a constant.
        mask: ``[batch, seq]`` bool, True for target tokens that count.
        temperature: softening temperature T > 0.
        reduction: ``"none"`` → ``[batch, seq]``, ``"sum"`` or ``"mean"`` → scalar.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    log_ps, log_pt = _soft_log_probs(student_logits, teacher_logits, mask, temperature)
    # T² keeps soft-loss gradients on the scale of the hard loss: d/dz of the tempered KL
    # shrinks as 1/T² (Hinton et al. 2015, section 2).
    per_token = temperature**2 * kl_rows(log_pt, log_ps)
    return reduce_token_losses(per_token, mask, reduction)


def reverse_kl(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Mode-seeking soft loss T²·KL(P_s‖P_t) with P = softmax(logits / T).

    The value is ``+inf`` on any token where the teacher gives probability 0 (``-inf`` logit)
    to an entry the student does not, which a softmax student always does: use ``forward_kl``
    or ``jsd`` with teachers whose logits were truncated to a top-k.

    Args:
        student_logits: ``[batch, seq, vocab]`` float tensor.
        teacher_logits: ``[batch, seq, vocab]`` float tensor, treated as a constant.
        mask: ``[batch, seq]`` bool, True for target tokens that count.
        temperature: softening temperature T > 0.
        reduction: ``"none"`` → ``[batch, seq]``, ``"sum"`` or ``"mean"`` → scalar.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    log_ps, log_pt = _soft_log_probs(student_logits, teacher_logits, mask, temperature)
    per_token = temperature**2 * kl_rows(log_ps, log_pt)
    return reduce_token_losses(per_token, mask, reduction)


def _log_mixture(log_pt: Tensor, log_ps: Tensor, beta: float) -> Tensor:
    """log(β·p_t + (1−β)·p_s), ``[n, vocab]``, for 0 < β < 1."""
    # Log space, so that small probabilities don't underflow in the mixture.
    both_zero = torch.isneginf(log_pt) & torch.isneginf(log_ps)
    zero = torch.zeros_like(log_pt)
    # logaddexp(-inf, -inf) is right (-inf) but its gradient is NaN; feed it zeros there instead.
    log_m = torch.logaddexp(
        torch.where(both_zero, zero, log_pt + math.log(beta)),
        torch.where(both_zero, zero, log_ps + math.log1p(-beta)),
    )
    return torch.where(both_zero, torch.full_like(log_m, float("-inf")), log_m)


def generalized_jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Generalized Jensen-Shannon divergence of GKD (Agarwal et al. 2024), as in TRL.

    ``M = β·P_t + (1−β)·P_s`` and the loss is ``T²·[β·KL(P_t‖M) + (1−β)·KL(P_s‖M)]``, with
    P = softmax(logits / T); β weights the teacher. β = 0.5 is the symmetric JSD (``jsd``),
    bounded by T²·ln 2 per token.

    At β = 0 (M = P_s) and β = 1 (M = P_t) the formula is identically 0 and would train
    nothing, so, as TRL does, the endpoints are the limits the family tends to once rescaled:
    β = 0 gives the forward KL(P_t‖P_s) and β = 1 the reverse KL(P_s‖P_t) (times T²).

    Args:
        student_logits: ``[batch, seq, vocab]`` float tensor.
        teacher_logits: ``[batch, seq, vocab]`` float tensor, treated as a constant; ``-inf``
            entries (probability 0) are allowed.
        mask: ``[batch, seq]`` bool, True for target tokens that count.
        beta: teacher weight in the mixture, in [0, 1].
        temperature: softening temperature T > 0.
        reduction: ``"none"`` → ``[batch, seq]``, ``"sum"`` or ``"mean"`` → scalar.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    check_beta(beta)
    beta = float(beta)
    log_ps, log_pt = _soft_log_probs(student_logits, teacher_logits, mask, temperature)
    per_token = generalized_jsd_rows(log_pt, log_ps, beta)
    return reduce_token_losses(temperature**2 * per_token, mask, reduction)


def generalized_jsd_rows(log_pt: Tensor, log_ps: Tensor, beta: float) -> Tensor:
    """β·KL(P_t‖M) + (1−β)·KL(P_s‖M), M = β·P_t + (1−β)·P_s, per row of ``[n, V]`` log-probs;
    at the endpoints, where that is 0, forward KL(P_t‖P_s) (β = 0) and reverse KL(P_s‖P_t)
    (β = 1), as TRL's ``generalized_jsd_loss`` does.

    Shared by the dense and the sparse (top-k + tail) losses.
    """
    if beta == 0:
        return kl_rows(log_pt, log_ps)
    if beta == 1:
        return kl_rows(log_ps, log_pt)
    log_m = _log_mixture(log_pt, log_ps, beta)
    return beta * kl_rows(log_pt, log_m) + (1 - beta) * kl_rows(log_ps, log_m)


def jsd(
    student_logits: Tensor,
    teacher_logits: Tensor,
    mask: Tensor,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Trident's JSD term: 0.5·[KL(P_t‖M) + KL(P_s‖M)]·T² with M = (P_t + P_s)/2.

    Symmetric and bounded by T²·ln 2 per token, so a confidently wrong student cannot blow the
    loss up as it can with KL (Trident loss, section 3.1).

    Args:
        student_logits: ``[batch, seq, vocab]`` float tensor.
        teacher_logits: ``[batch, seq, vocab]`` float tensor, treated as a constant.
        mask: ``[batch, seq]`` bool, True for target tokens that count.
        temperature: softening temperature T > 0.
        reduction: ``"none"`` → ``[batch, seq]``, ``"sum"`` or ``"mean"`` → scalar.

    Returns:
        The reduced loss, float32.
    """
    return generalized_jsd(
        student_logits,
        teacher_logits,
        mask,
        beta=0.5,
        temperature=temperature,
        reduction=reduction,
    )
