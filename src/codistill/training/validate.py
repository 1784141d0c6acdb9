"""Per-epoch validation: token-level CE of the targets and, optionally, decoded exact match.

Code generation decodes whole solutions (up to ``max_target_tokens``, cut like evaluation cuts a
raw completion) and compares them with the reference text: exact match and character
similarity, a cheap training signal; pass@k in the sandbox is ``codistill eval``'s job.
"""

from __future__ import annotations

import torch

from codistill.evaluation.assertion_metrics import assertion_metrics
from codistill.evaluation.codegen import truncate_completion
from codistill.evaluation.generate import generate
from codistill.losses.divergences import cross_entropy
from codistill.models.forward import head_fn, target_states


@torch.no_grad()
def validate(model, tokenizer, examples, collate, cfg, encoder_decoder: bool, device) -> dict:
    """Mean CE per target token over ``examples``; exact match on the first ``valid_generate``.

    Returns:
        ``valid_loss`` and, when decoding, ``valid_exact_match`` and ``valid_similarity``.
    """
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    step = max(1, cfg.batch_size * 2)
    for i in range(0, len(examples), step):
        batch = {k: v.to(device) for k, v in collate(examples[i : i + step]).items()}
        mask = batch["target_mask"].bool()
        states = target_states(
            model,
            batch["input_ids"],
            batch["attention_mask"],
            mask,
            batch.get("decoder_input_ids"),
            encoder_decoder,
        )
        logits = states if encoder_decoder else head_fn(model)(states)
        labels = batch["labels"][mask]
        total += float(
            cross_entropy(
                logits[None].float(),
                labels[None],
                torch.ones_like(labels, dtype=torch.bool)[None],
                reduction="sum",
            )
        )
        count += int(mask.sum())
    result = {"valid_loss": total / max(count, 1), "valid_tokens": count}
    if cfg.valid_generate:
        subset = examples[: cfg.valid_generate]
        codegen = getattr(cfg, "task", "assertion") == "codegen"
        gen = generate(
            model,
            tokenizer,
            [e.prompt_ids for e in subset],
            max_new_tokens=cfg.max_target_tokens if codegen else cfg.max_new_tokens,
            batch_size=step,
            one_line=not codegen,
            encoder_decoder=encoder_decoder,
        )
        texts = gen.texts
        if codegen and cfg.prompt_mode == "raw":
            texts = [
                truncate_completion(t, language=e.language)
                for t, e in zip(texts, subset, strict=True)
            ]
        # Assertions are compared as the alpha-T paper does (case folded), and by code tokens
        # (the C-like lexer splits Python assertions the same way, comments aside).
        m = assertion_metrics(
            texts, [e.reference for e in subset], casefold=not codegen, language="java"
        )
        result["valid_exact_match"] = m["exact_matches"] / len(subset)
        result["valid_format_insensitive_match"] = m["format_insensitive_matches"] / len(subset)
        result["valid_similarity"] = m["similarity"]
    if was_training:
        model.train()
    return result
