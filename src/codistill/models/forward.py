"""Forward helpers shared by training, validation, the teacher cache and layer choice.

A decoder-only model's logits are only needed at target positions (the masked assertion, a few
dozen tokens of a few hundred): :func:`target_states` runs the transformer body and picks the
final hidden states there, and :func:`head_fn` applies the output head to just those.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

import torch


def cache_kwargs(model, cache) -> dict:
    """The keyword that hands ``cache`` (a KV cache) to ``model``'s forward.

    transformers renamed ``past_key_values`` to ``cache`` during 5.x (the old name is a
    deprecated alias until 5.40). An older forward takes an unknown ``cache=`` into its
    ``**kwargs`` and silently decodes without the cache, so the name is read off the forward.
    """
    # A PEFT wrapper's forward passes keywords through: its base model's forward decides.
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    params = inspect.signature(base.forward).parameters
    return {"cache": cache} if "cache" in params else {"past_key_values": cache}


def last_logit_index(seq_len: int) -> torch.Tensor:
    """``logits_to_keep`` for a forward that needs the last position's logits, or none.

    An index tensor rather than the int 1: Hugging Face models then gather the hidden states
    (a contiguous copy) instead of slicing them, and the output head never sees a strided input.
    Measured with torch 2.13 on CPU: a bfloat16 Linear on the ``[B, 1, d]`` slice of a
    ``[B, T, d]`` state, its weight not requiring grad, took 7 s for Gemma 3's 262,144-row head,
    against 43 ms on a contiguous copy (float32: 330 ms either way).
    """
    return torch.tensor([seq_len - 1])


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
    inputs_embeds=None,
    all_layers: bool = False,
) -> torch.Tensor | list[torch.Tensor]:
    """Hidden states (decoder-only) or logits (encoder-decoder) at target positions: ``[n, d]``.

    ``inputs_embeds`` (decoder-only): a residual stream the layers start from instead of the
    embeddings of ``input_ids`` (which is then ignored; the embedding's scaling is skipped too).
    ``all_layers`` (decoder-only): every entry of the model's ``hidden_states`` at the target
    positions (the embeddings, each layer's output, the last one final-normed), the last of
    which is what is returned otherwise.
    """
    if encoder_decoder:
        out = model(
            input_ids=input_ids,
            attention_mask=attention_mask,
            decoder_input_ids=decoder_input_ids,
            use_cache=False,
        )
        return out.logits[target_mask]
    # Through the model's own forward, so a DDP/FSDP wrapper sees the call; the last entry of
    # hidden_states is the final-normed state the output head reads, and keeping one position's
    # logits keeps the full-sequence head out of it (we apply the head to target positions only).
    start = {"input_ids": input_ids} if inputs_embeds is None else {"inputs_embeds": inputs_embeds}
    out = model(
        **start,
        attention_mask=attention_mask,
        use_cache=False,
        output_hidden_states=True,
        logits_to_keep=last_logit_index(target_mask.shape[1]),
    )
    if all_layers:
        return [h[target_mask] for h in out.hidden_states]
    return out.hidden_states[-1][target_mask]
