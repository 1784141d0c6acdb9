"""SODA's fault-aware contrastive loss (the DPO form) and the sequence log-probs it needs.

The paper's Eq. 2 (SODA, Sec. 3.2.2) pushes the student towards the teacher's correct solution
``y_c`` and away from its faulty one ``y_f`` for the same question, measured against a frozen
reference (the student after supervised learning, ``S_cls``)::

    L = -mean log σ(β·[(log S(y_c) − log S_ref(y_c)) − (log S(y_f) − log S_ref(y_f))])

where ``log S(y)`` is the sum of the token log-probabilities of the solution given the question
(:func:`sequence_logprobs`). This is DPO's objective (Rafailov et al. 2023) with the correct
solution as the preferred one.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from codistill.losses.divergences import check_mask


def sequence_logprobs(logits: Tensor, labels: Tensor, mask: Tensor, *, shift: bool) -> Tensor:
    """Sum of the log-probabilities of the solution tokens, per sequence.

    The causal shift is explicit, because the two usual conventions differ by one position:

    * ``shift=False``: ``labels[b, t]`` is the token that ``logits[b, t]`` predicts, i.e. the
      input token at ``t + 1``, and ``mask[b, t]`` says whether it is a solution token. This is
      what ``codistill.data.batches`` builds (``labels``, ``target_mask``).
    * ``shift=True``: ``labels`` are the input ids themselves (Hugging Face's convention) and
      ``mask[b, t]`` marks solution tokens among them; ``logits[b, t]`` predicts
      ``labels[b, t + 1]``, so the last logit and the first label are dropped here. A mask on
      position 0 has no prediction and is refused.

    Masked-out positions (prompt, padding) never enter the maths: their labels may be ``-100``
    or a pad id and their logits anything, ``inf`` and NaN included.

    Args:
        logits: ``[batch, seq, vocab]`` float tensor.
        labels: ``[batch, seq]`` integer tensor.
        mask: ``[batch, seq]`` bool tensor, True on the solution tokens.
        shift: which of the two conventions above ``labels`` and ``mask`` follow.

    Returns:
        ``[batch]`` float32 tensor, 0 for a row with no solution token.
    """
    if logits.dim() != 3 or not logits.is_floating_point():
        raise ValueError(
            f"logits must be a float [batch, seq, vocab] tensor, got {tuple(logits.shape)} "
            f"of dtype {logits.dtype}"
        )
    check_mask(mask, logits.shape[:2])
    if tuple(labels.shape) != tuple(mask.shape):
        raise ValueError(f"labels must have shape {tuple(mask.shape)}, got {tuple(labels.shape)}")
    if labels.is_floating_point() or labels.is_complex() or labels.dtype == torch.bool:
        raise ValueError(f"labels must be an integer tensor, got dtype {labels.dtype}")
    if shift:
        if mask[:, 0].any():
            raise ValueError(
                "with shift=True, mask[:, 0] must be False: the first token has no logit"
            )
        logits, labels, mask = logits[:, :-1], labels[:, 1:], mask[:, 1:]
    batch, _, vocab = logits.shape
    rows = torch.arange(batch, device=logits.device)[:, None].expand_as(mask)[mask]
    targets = labels[mask].long()
    if targets.numel() and (targets.min() < 0 or targets.max() >= vocab):
        raise ValueError(
            f"labels at masked positions must be ids in [0, {vocab}), "
            f"got min {int(targets.min())} and max {int(targets.max())}"
        )
    # Only the selected rows reach log_softmax: garbage logits elsewhere cannot leak NaN.
    token_logps = F.log_softmax(logits[mask].float(), dim=-1).gather(-1, targets[:, None])[:, 0]
    out = torch.zeros(batch, dtype=torch.float32, device=logits.device)
    return out.index_add(0, rows, token_logps)


def fault_contrastive_loss(
    policy_correct: Tensor,
    policy_faulty: Tensor,
    ref_correct: Tensor,
    ref_faulty: Tensor,
    beta: float,
) -> Tensor:
    """SODA's Eq. 2: −mean log σ(β·[(π_c − ref_c) − (π_f − ref_f)]) over the batch.

    Args:
        policy_correct: ``[batch]`` sequence log-probs of the correct solutions under the
            student being trained (:func:`sequence_logprobs`).
        policy_faulty: ``[batch]`` the same for the faulty solutions.
        ref_correct: ``[batch]`` the correct solutions under the frozen reference (the
            supervised student); treated as constants (detached), so no gradient reaches it.
        ref_faulty: ``[batch]`` the same for the faulty solutions.
        beta: > 0, how sharply the margin is scored (DPO's β; larger β, steeper sigmoid).

    Returns:
        Scalar float32 tensor. At the start of training (policy = reference) it is log 2.
    """
    tensors = {
        "policy_correct": policy_correct,
        "policy_faulty": policy_faulty,
        "ref_correct": ref_correct,
        "ref_faulty": ref_faulty,
    }
    for name, value in tensors.items():
        if value.dim() != 1 or not value.is_floating_point():
            raise ValueError(f"{name} must be a float [batch] tensor, got {tuple(value.shape)}")
        if value.shape != policy_correct.shape:
            raise ValueError(
                f"{name} has shape {tuple(value.shape)}, "
                f"policy_correct has {tuple(policy_correct.shape)}"
            )
    if policy_correct.numel() == 0:
        raise ValueError("fault_contrastive_loss needs at least one (correct, faulty) pair")
    if isinstance(beta, bool) or not isinstance(beta, int | float) or not 0 < beta < float("inf"):
        raise ValueError(f"beta must be a finite number > 0, got {beta!r}")
    margin = (policy_correct.float() - ref_correct.detach().float()) - (
        policy_faulty.float() - ref_faulty.detach().float()
    )
    # logsigmoid rather than log(sigmoid(.)): exact for large negative margins, where
    # sigmoid underflows to 0 and its log to -inf.
    return -F.logsigmoid(beta * margin).mean()
