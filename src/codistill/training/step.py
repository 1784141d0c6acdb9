"""Forward passes and the per-micro-batch loss of one distillation step.

Memory: a decoder-only model's logits are only needed at target positions (the masked
assertion, a few dozen tokens of a few hundred). We run the transformer body once, pick the
hidden states of the target positions, and apply the output head in chunks of
``loss_chunk_tokens`` positions under activation checkpointing, so at most one chunk of student
and teacher logits is alive at a time, in the forward and in the backward pass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch.utils.checkpoint import checkpoint

from codistill.losses.objective import TERMS, Objective, TokenLossInputs
from codistill.losses.sparse import SparseTargets, sparse_teacher_targets


def restrict_output_vocab(model, student_to_teacher: torch.Tensor) -> None:
    """Replace a teacher's output head by its rows for the student's vocabulary.

    The teacher's logits then come out directly on the student's (trimmed) vocabulary: the same
    numbers as gathering full-vocabulary logits at ``student_to_teacher``, without computing the
    other ~250k columns. Softmax over them is the teacher's distribution *conditioned on the
    student's vocabulary* (mass on tokens the student cannot emit is renormalised away).
    """
    head = model.get_output_embeddings()
    weight = head.weight.detach()[student_to_teacher].clone()
    new = torch.nn.Linear(
        weight.shape[1],
        weight.shape[0],
        bias=head.bias is not None,
        dtype=weight.dtype,
        device=weight.device,
    )
    new.weight.data.copy_(weight)
    if head.bias is not None:
        new.bias.data.copy_(head.bias.detach()[student_to_teacher])
    model.set_output_embeddings(new)
    model.config.tie_word_embeddings = False
    model.requires_grad_(False)


def head_fn(model) -> Callable[[torch.Tensor], torch.Tensor]:
    """hidden ``[n, hidden]`` -> logits ``[n, vocab]`` (decoder-only), soft-capping included."""
    if isinstance(model, torch.nn.parallel.DistributedDataParallel):
        model = model.module  # the head's weights are the wrapped model's own
    head = model.get_output_embeddings()
    cap = getattr(model.config, "final_logit_softcapping", None)

    def apply(hidden: torch.Tensor) -> torch.Tensor:
        logits = head(hidden)
        if cap:  # Gemma 2/3 soft-capping, applied by the model's own forward too
            logits = torch.tanh(logits / cap) * cap
        return logits

    return apply


def target_states(
    model,
    input_ids,
    attention_mask,
    target_mask,
    decoder_input_ids=None,
    encoder_decoder: bool = False,
) -> torch.Tensor:
    """Hidden states (decoder-only) or logits (encoder-decoder) at target positions: ``[n, d]``."""
    if encoder_decoder:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        )
        return out.logits[target_mask]
    # Through the model's own forward, so a DDP/FSDP wrapper sees the call; the last entry of
    # hidden_states is the final-normed state the output head reads, and logits_to_keep=1
    # keeps the full-sequence head out of it (we apply the head to target positions only).
    out = model(
        input_ids=input_ids,
        attention_mask=attention_mask,
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    return out.hidden_states[-1][target_mask]


def token_term_sums(
    objective: Objective,
    cfg: Any,
    student_states: torch.Tensor,
    labels: torch.Tensor,
    token_weights: torch.Tensor | None,
    student_head: Callable | None,
    teacher_states: torch.Tensor | None,
    teacher_head: Callable | None,
    chunk: int,
    sparse: SparseTargets | None = None,
    names: list[str] | None = None,
) -> dict[str, torch.Tensor]:
    """Sum of each token-level term over ``n`` target positions, computed chunk by chunk.

    Args:
        student_states: ``[n, d]`` hidden states (with ``student_head``) or logits (head None).
        labels: ``[n]`` target ids.
        token_weights: ``[n]`` critical-token weights, or None.
        teacher_states: ``[n, d]`` teacher hidden states or logits (no grad), or None.
        sparse: a teacher cache's top-k targets for the ``n`` positions (instead of a teacher).
        names: the terms to compute; all of the objective's token-level terms when None.
    """
    names = objective.token_terms if names is None else names
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
            return torch.stack([TERMS[name].fn(x, cfg) for name in names])

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
) -> dict[str, torch.Tensor]:
    """Token-level term sums of one micro-batch: teacher forward under no-grad, or the cached
    teacher's top-k (``batch["cache_ids"]``/``["cache_logprobs"]``, mapped to the student's
    vocabulary through ``teacher_to_student``, -1 for ids it lacks). ``names`` restricts the
    terms (on-policy micro-batches compute the teacher terms only)."""
    mask = batch["target_mask"].bool()
    s_states = target_states(
        student,
        batch["input_ids"],
        batch["attention_mask"],
        mask,
        batch.get("decoder_input_ids"),
        encoder_decoder,
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
            )
    sparse = None
    if "cache_ids" in batch and objective.needs_teacher:
        vocab = None if teacher_to_student is None else teacher_to_student.shape[0]
        sparse = sparse_teacher_targets(
            batch["cache_ids"],
            batch["cache_logprobs"],
            teacher_to_student,
            cfg.temperature,
            teacher_vocab_size=vocab,
            complete="cache_complete" in batch,
        )
    weights = batch.get("token_weights")
    return token_term_sums(
        objective,
        cfg,
        s_states,
        batch["labels"][mask],
        None if weights is None else weights[mask],
        None if encoder_decoder else head_fn(student),
        t_states,
        None if (encoder_decoder or teacher is None) else head_fn(teacher),
        cfg.loss_chunk_tokens,
        sparse,
        names,
    )
