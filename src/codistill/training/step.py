"""Forward passes and the per-micro-batch loss of one distillation step.

Memory: a decoder-only model's logits are only needed at target positions (the masked
assertion, a few dozen tokens of a few hundred). We run the transformer body once, pick the
hidden states of the target positions, and apply the output head in chunks of
``loss_chunk_tokens`` positions under activation checkpointing, so at most one chunk of student
and teacher logits is alive at a time, in the forward and in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from codistill.losses import divergences
from codistill.losses.hidden import hidden_state_loss
from codistill.losses.objective import TERMS, Objective, TokenLossInputs
from codistill.losses.sparse import SparseTargets, sparse_teacher_targets
from codistill.models.forward import head_fn, target_states


def token_term_sums(
    objective: Objective,
    student_states: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor | None,
    student_head: Callable | None,
    teacher_states: torch.Tensor | None,
    teacher_head: Callable | None,
    chunk: int,
    sparse: SparseTargets | None = None,
    names: list[str] | None = None,
    stop: torch.Tensor | None = None,
    stop_ce: bool = True,
) -> dict[str, torch.Tensor]:
    """Sum of each token-level term over ``n`` target positions, computed chunk by chunk.

    Args:
        student_states: ``[n, d]`` hidden states (with ``student_head``) or logits (head None).
        labels: ``[n]`` target ids.
        token_weights: ``[n]`` critical-token weights, or None.
        teacher_states: ``[n, d]`` teacher hidden states or logits (no grad), or None.
        sparse: a teacher cache's top-k targets for the ``n`` positions (instead of a teacher).
        names: the terms to compute; all of the objective's token-level terms when None.
        stop: ``[n]`` True at the positions whose teacher terms are the label's cross-entropy
            instead (``stop_target: label``, see :func:`micro_batch_terms`), or None.
        stop_ce: False: the teacher terms skip the ``stop`` positions and take nothing there.
    """
    names = objective.token_terms if names is None else names
    if not names:  # an objective of terms the trainer computes (hidden) has no chunk terms
        return {}
    total = torch.zeros(len(names), device=student_states.device)
    n = student_states.shape[0]
    for start in range(0, n, chunk):
        sl = slice(start, start + chunk)

        def chunk_losses(states: torch.Tensor, sl: slice = sl) -> torch.Tensor:
            s_logits = student_head(states) if student_head is not None else states
            t_logits = None
            if teacher_states is not None:
                with torch.no_grad():
                    t = teacher_states[sl]
                    t_logits = (teacher_head(t) if teacher_head is not None else t).float()
            x = TokenLossInputs(
                student_logits=s_logits[None].float(),
                teacher_logits=None if t_logits is None else t_logits[None],
                labels=labels[sl][None],
                mask=torch.ones_like(labels[sl], dtype=torch.bool)[None],
                token_weights=None if token_weights is None else token_weights[sl][None],
                sparse=None if sparse is None else SparseTargets(*(t[sl] for t in sparse)),
            )
            if stop is None or not stop[sl].any():
                return torch.stack([objective.token_fns[name](x) for name in names])
            here = stop[sl][None]
            # The teacher terms skip these positions and take the label's cross-entropy
            # (T = 1) there instead: for the KL that is its value against a point mass on the
            # label, and it is finite for every term (a reverse KL against a point mass is not).
            away = replace(x, mask=~here)
            if x.sparse is not None:  # its rows are the masked positions'
                away = replace(away, sparse=SparseTargets(*(t[~here[0]] for t in x.sparse)))
            label_ce = (
                divergences.cross_entropy(x.student_logits, x.labels, here, reduction="sum")
                if stop_ce
                else 0.0
            )
            return torch.stack(
                [
                    objective.token_fns[name](away) + label_ce
                    if TERMS[name].needs_teacher
                    else objective.token_fns[name](x)
                    for name in names
                ]
            )

        piece = student_states[sl]
        if piece.requires_grad:
            total = total + checkpoint(chunk_losses, piece, use_reentrant=False)
        else:
            total = total + chunk_losses(piece)
    return dict(zip(names, total, strict=True))


def micro_batch_terms(
    student,
    teacher,
    batch: dict[str, torch.Tensor],
    objective: Objective,
    cfg: Any,
    encoder_decoder: bool,
    teacher_to_student: torch.Tensor | None = None,
    names: list[str] | None = None,
    hidden_pairs: list[tuple[int, int]] | None = None,
    stop_id: int | None = None,
    stop_ce: bool = True,
) -> dict[str, torch.Tensor]:
    """Token-level term sums of one micro-batch: teacher forward under no-grad, or the cached
    teacher's top-k (``batch["cache_ids"]``/``["cache_logprobs"]``, mapped to the student's
    vocabulary through ``teacher_to_student``, -1 for ids it lacks). ``names`` restricts the
    terms (on-policy micro-batches compute the teacher terms only, ``hidden`` included). With
    the ``hidden`` term, ``hidden_pairs`` are the (student, teacher) ``hidden_states`` entries
    it matches (see :func:`codistill.losses.hidden.matched_layers`). With ``stop_id`` (the
    student's EOS, under ``stop_target: label``) the teacher terms at positions labelled with it
    are that label's cross-entropy: where the data ends a target, not where a teacher given a
    raw prompt would stop. ``stop_ce=False`` (a continuation the student sampled, whose EOS is
    its own choice, not the data's) leaves those positions without teacher terms instead: the
    label's CE there would reinforce whatever the student sampled."""
    mask = batch["target_mask"].bool()
    hidden = objective.has_hidden and (names is None or "hidden" in names)
    if hidden and (teacher is None or hidden_pairs is None or encoder_decoder):
        raise ValueError("the hidden term needs a decoder-only online teacher and hidden_pairs")
    s_states = target_states(
        student,
        batch["input_ids"],
        batch["attention_mask"],
        mask,
        batch.get("decoder_input_ids"),
        encoder_decoder,
        all_layers=hidden,
    )
    t_states = None
    if teacher is not None and objective.needs_teacher:
        with torch.no_grad():
            t_states = target_states(
                teacher,
                batch.get("teacher_input_ids", batch["input_ids"]),
                batch["attention_mask"],
                mask,
                batch.get("teacher_decoder_input_ids", batch.get("decoder_input_ids")),
                encoder_decoder,
                all_layers=hidden,
            )
    hidden_sum = None
    if hidden:
        hidden_sum = hidden_state_loss(
            [s_states[i] for i, _ in hidden_pairs], [t_states[j] for _, j in hidden_pairs]
        )
        s_states, t_states = s_states[-1], t_states[-1]
    sparse = None
    if "cache_ids" in batch and objective.needs_teacher:
        vocab = None if teacher_to_student is None else teacher_to_student.shape[0]
        sparse = sparse_teacher_targets(
            batch["cache_ids"],
            batch["cache_logprobs"],
            teacher_to_student,
            objective.temperature,  # the temperature the sparse terms are bound to
            teacher_vocab_size=vocab,
            complete="cache_complete" in batch,
        )
    weights = batch.get("token_weights")
    labels = batch["labels"][mask]
    sums = token_term_sums(
        objective,
        s_states,
        labels,
        None if weights is None else weights[mask],
        None if encoder_decoder else head_fn(student),
        t_states,
        None if (encoder_decoder or teacher is None) else head_fn(teacher),
        cfg.loss_chunk_tokens,
        sparse,
        None if names is None else [n for n in names if n in objective.token_fns],
        None if stop_id is None else labels == stop_id,
        stop_ce,
    )
    if hidden_sum is not None:
        sums["hidden"] = hidden_sum
    return sums
