"""Semantic-similarity loss 1 − cos(enc(pred), enc(ref)) as minimum-risk training.

Trident's semantic term (section 3.1) compares the sentence embedding of the student's decoded
prediction with that of the reference. Computed literally it trains nothing: the prediction is
an argmax-decoded string, and neither decoding nor the frozen embedding model passes a gradient
back to the student's logits.

We therefore use minimum-risk training (Shen et al. 2016, eq. 9-11). For each example the
trainer samples K candidate outputs from the student (no gradient), and the frozen embedding
model scores each against the reference (no gradient). The loss is the expected risk

    L = Σ_k q_k · (1 − sim_k),   q = softmax(sharpness · log P_s(y_k | x)) over the candidates,

where the decoded strings and their similarities are constants and the gradient flows only
through the candidates' log-likelihoods ``log P_s(y_k | x)``. Because q is renormalised over
the sample, ∂L/∂ log P_s(y_k) = sharpness · q_k · (risk_k − E_q[risk]): candidates better than
the sample's average become more likely and worse ones less, with the average acting as a
built-in baseline. Its value is still "1 − cosine", averaged under the student's own belief.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codistill.losses.divergences import (
    check_mask,
    check_reduction,
    select_token_labels,
    select_token_logits,
)


def sequence_logprobs(
    logits: Tensor, target_ids: Tensor, mask: Tensor, length_normalize: bool = True
) -> Tensor:
    """Log-likelihood of each target sequence under the logits that predict it.

    Args:
        logits: ``[n, seq, vocab]`` float tensor; position t predicts ``target_ids[:, t]``.
        target_ids: ``[n, seq]`` int64 token ids (ignored where ``mask`` is False).
        mask: ``[n, seq]`` bool, True for the tokens that belong to the sequence.
        length_normalize: divide each sum by its number of tokens, so that long candidates
            are not penalised for their length alone.

    Returns:
        ``[n]`` float32 tensor; 0 for rows without tokens.
    """
    selected = select_token_logits(logits, mask, "logits")
    targets = select_token_labels(target_ids, mask, selected.shape[-1], "target_ids")
    token_logp = selected.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(
        selected, dim=-1
    )
    per_position = torch.zeros(mask.shape, dtype=token_logp.dtype, device=token_logp.device)
    totals = per_position.masked_scatter(mask, token_logp).sum(dim=-1)
    if not length_normalize:
        return totals
    return totals / mask.sum(dim=-1).clamp(min=1).to(totals.dtype)


def semantic_risk_loss(
    candidate_logprobs: Tensor,
    similarity: Tensor,
    candidate_mask: Tensor,
    sharpness: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Expected semantic risk Σ_k q_k·(1 − sim_k) over sampled candidates (Shen et al. 2016).

    Args:
        candidate_logprobs: ``[batch, K]`` student log-likelihoods of the candidates (carry the
            gradient), e.g. from ``sequence_logprobs``.
        similarity: ``[batch, K]`` cosine similarity of each candidate to its reference,
            treated as a constant.
        candidate_mask: ``[batch, K]`` bool, True for candidates that exist.
        sharpness: α of Shen et al.; q = softmax(α·logp). Small values (≈5e-3) suit raw
            summed log-probs, ≈1 suits length-normalised ones.
        reduction: ``"none"`` → ``[batch]`` (0 for examples without valid candidates),
            ``"sum"`` → sum over examples with ≥1 valid candidate, ``"mean"`` → their mean
            (0 if there are none).

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    if not (isinstance(sharpness, int | float) and sharpness > 0):
        raise ValueError(f"sharpness must be > 0, got {sharpness!r}")
    if candidate_logprobs.dim() != 2:
        raise ValueError(
            f"candidate_logprobs must be [batch, K], got shape {tuple(candidate_logprobs.shape)}"
        )
    if tuple(similarity.shape) != tuple(candidate_logprobs.shape):
        raise ValueError(
            f"similarity must have shape {tuple(candidate_logprobs.shape)}, "
            f"got {tuple(similarity.shape)}"
        )
    check_mask(candidate_mask, candidate_logprobs.shape, "candidate_mask")
    has_candidate = candidate_mask.any(dim=-1)
    # Rows without candidates get uniform dummy scores so softmax has no all--inf row (NaN);
    # their loss is zeroed below.
    fill = torch.where(has_candidate[:, None], float("-inf"), 0.0)
    scores = torch.where(candidate_mask, sharpness * candidate_logprobs.float(), fill)
    q = torch.softmax(scores, dim=-1)
    risk = torch.where(candidate_mask, 1.0 - similarity.detach().float(), 0.0)
    per_example = torch.where(has_candidate, (q * risk).sum(dim=-1), 0.0)
    if reduction == "none":
        return per_example
    total = per_example.sum()
    if reduction == "sum":
        return total
    return total / has_candidate.sum().clamp(min=1)
