"""From task records to token ids, and from token ids to padded batches.

Records are assertions (focal method and test prefix -> the masked assertion) or code-generation
problems (prompt -> solution, see :func:`codegen_texts`); either way an example is a prompt and a
target, and every loss is computed on the target tokens only.

Token alignment between teacher and student is the whole game of logit distillation: the
student's position t must see the same text as the teacher's position t. When the student has a
trimmed vocabulary, we tokenize once with the *teacher's* tokenizer and map the ids into the
student's vocabulary (unseen ids become the student's fallback id and are counted), so both sides
have the same positions by construction. Runs without a teacher tokenize with the student's own
tokenizer, which segments every word of its vocabulary corpus exactly like the teacher's.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from codistill.data.prompts import (  # noqa: F401  (prompt builders re-exported from data/)
    CODEGEN_INSTRUCTION,
    assertion_prompt,
    chat_template_adds_bos,
    codegen_program,
    codegen_texts,
    cut_prompt,
    encode_prompts,
    record_texts,
    render_prompt,
)
from codistill.data.schema import AssertionRecord, CodegenRecord

_IDENTIFIER_CHAR = r"[A-Za-z0-9_$]"


def critical_token_weights(
    text: str,
    offsets: Sequence[tuple[int, int]] | Tensor,
    words: Sequence[str],
    weight: float,
) -> list[float]:
    """Weight per token: ``weight`` where the token touches a critical word, else 1.0.

    A critical word matches only as a whole identifier: ``assertEquals`` matches in
    ``assertEquals(a, b)`` and ``Assert.assertEquals`` but not inside ``myassertEqualsX``.
    A token is critical when its character span overlaps a match, so a word split into several
    sub-word tokens weights all of them, and a token that spans ``(assertEquals`` counts too.

    Args:
        text: the decoded target text the offsets refer to.
        offsets: ``[seq, 2]`` character spans ``(start, end)`` of the target tokens, as from a
            fast tokenizer's ``return_offsets_mapping``; empty spans (special tokens, often
            ``(0, 0)``) are never critical.
        words: the critical identifiers, e.g. ``["assertEquals", "assertTrue"]``.
        weight: the weight of critical tokens, a finite number >= 0.

    Returns:
        One float per entry of ``offsets``.
    """
    if not (math.isfinite(weight) and weight >= 0):
        raise ValueError(f"weight must be a finite number >= 0, got {weight!r}")
    if isinstance(words, str):
        raise ValueError(f"words must be a sequence of strings, got the string {words!r}")
    if any(not isinstance(w, str) or not w for w in words):
        raise ValueError(f"words must be non-empty strings, got {list(words)!r}")
    spans = offsets.tolist() if isinstance(offsets, Tensor) else list(offsets)
    for span in spans:
        if len(span) != 2 or not 0 <= span[0] <= span[1] <= len(text):
            raise ValueError(
                f"offsets must be (start, end) pairs with 0 <= start <= end <= len(text) = "
                f"{len(text)}, got {tuple(span)!r}"
            )
    if not words:
        return [1.0] * len(spans)
    # Longest first so that a word that prefixes another (assert / assertEquals) never shadows it.
    alternatives = "|".join(re.escape(w) for w in sorted(set(words), key=len, reverse=True))
    pattern = re.compile(f"(?<!{_IDENTIFIER_CHAR})(?:{alternatives})(?!{_IDENTIFIER_CHAR})")
    matches = [m.span() for m in pattern.finditer(text)]
    weights = []
    for start, end in spans:
        hit = start < end and any(start < m_end and m_start < end for m_start, m_end in matches)
        weights.append(float(weight) if hit else 1.0)
    return weights


@dataclass
class Example:
    """One tokenized record: ``*_ids`` in the student's vocabulary, ``teacher_*`` the teacher's."""

    prompt_ids: list[int]
    target_ids: list[int]
    reference: str
    teacher_prompt_ids: list[int] | None = None
    teacher_target_ids: list[int] | None = None
    token_weights: list[float] | None = None
    cache_ids: Any = None  # [n_target, k] teacher top-k ids from a teacher cache
    cache_logprobs: Any = None  # [n_target, k] their log-probabilities
    # Instead of the two above, for caches too large to hold decoded (the dense baseline): a
    # callable giving (ids, logprobs) when the example is batched.
    cache_rows: Any = None
    language: str = "python"  # a code problem's language (where a raw completion stops)


@dataclass
class TokenizeStats:
    examples: int = 0
    unmapped_tokens: int = 0
    examples_with_unmapped: int = 0
    truncated_prompts: int = 0
    truncated_targets: int = 0
    skipped_without_solution: int = 0  # code problems with no solution to train on
    extra: dict = field(default_factory=dict)


def _encode(tokenizer, text: str, special: bool) -> tuple[list[int], list[tuple[int, int]]]:
    enc = tokenizer(text, add_special_tokens=special, return_offsets_mapping=not special)
    return list(enc["input_ids"]), [tuple(o) for o in enc.get("offset_mapping", [])]


def tokenize_records(
    records: list[AssertionRecord | CodegenRecord],
    tokenizer,
    *,
    max_source_tokens: int,
    max_target_tokens: int,
    token_map=None,
    critical_words=None,
    critical_weight: float = 1.0,
    prompt_style: str = "prefix",
    prompt_mode: str = "raw",
    truncation: str = "left",
) -> tuple[list[Example], TokenizeStats]:
    """Tokenize records into :class:`Example` objects.

    Args:
        records: assertion or code-generation records (see :func:`record_texts`); code problems
            without a solution are skipped and counted (``skipped_without_solution``).
        tokenizer: the teacher's tokenizer when ``token_map`` is given, else the student's.
        max_source_tokens: prompts longer than this are cut (a leading BOS kept), by
            ``truncation``: ``left`` (the assertion's nearest context stays) or ``middle`` (the
            head stays too; see :func:`cut_prompt`).
        max_target_tokens: targets are cut from the right; EOS is appended after the cut.
        token_map: maps teacher ids to student ids (trimmed-vocabulary students).
        critical_words: identifiers whose target tokens get ``critical_weight``.
        prompt_style: ``prefix`` or ``placeholder`` (see :func:`assertion_prompt`).
        prompt_mode: code generation: ``raw`` or ``chat`` (see :func:`codegen_texts`).
    """
    stats = TokenizeStats()
    eos = tokenizer.eos_token_id
    bos = tokenizer.bos_token_id
    # A chat template that writes BOS itself (Gemma's) must not get a second one.
    prompt_specials = prompt_mode == "raw" or not chat_template_adds_bos(tokenizer)
    out = []
    for record in records:
        texts = record_texts(record, tokenizer, prompt_style, prompt_mode)
        if texts is None:
            stats.skipped_without_solution += 1
            continue
        prompt_text, target_text = texts
        prompt, _ = _encode(tokenizer, prompt_text, special=prompt_specials)
        if not prompt:
            # A decoder-only model predicts token t from the tokens before it: with nothing
            # before the target its first token would have no position (and no cache row) to
            # be learnt at. Start from BOS (or EOS, which Qwen-style tokenizers use as such).
            start = bos if bos is not None else tokenizer.eos_token_id
            prompt = [start] if start is not None else prompt
            stats.extra["empty_prompts"] = stats.extra.get("empty_prompts", 0) + 1
        if len(prompt) > max_source_tokens:
            stats.truncated_prompts += 1
            prompt = cut_prompt(prompt, max_source_tokens, truncation, bos)
        target, offsets = _encode(tokenizer, target_text, special=False)
        if len(target) >= max_target_tokens:
            stats.truncated_targets += 1
            target, offsets = target[: max_target_tokens - 1], offsets[: max_target_tokens - 1]
        weights = None
        if critical_words and critical_weight != 1.0:
            weights = critical_token_weights(
                target_text, offsets, critical_words, critical_weight
            ) + [1.0]
        target = target + [eos]
        ex = Example(
            prompt_ids=prompt,
            target_ids=target,
            reference=target_text,
            token_weights=weights,
            language=record.language,
        )
        if token_map is not None:
            ex.teacher_prompt_ids, ex.teacher_target_ids = prompt, target
            unmapped = token_map.count_unmapped(prompt) + token_map.count_unmapped(target)
            stats.unmapped_tokens += unmapped
            stats.examples_with_unmapped += int(unmapped > 0)
            ex.prompt_ids = list(token_map.teacher_to_student(prompt))
            ex.target_ids = list(token_map.teacher_to_student(target))
        out.append(ex)
        stats.examples += 1
    return out, stats


def _pad(rows: list[list], value) -> torch.Tensor:
    width = max(len(r) for r in rows)
    return torch.tensor([r + [value] * (width - len(r)) for r in rows])


def collate_causal(
    examples: list[Example], pad_id: int, teacher_pad_id: int | None = None
) -> dict[str, torch.Tensor]:
    """Right-padded prompt+target batch for a decoder-only model.

    ``labels[b, t]`` is the token at ``t + 1`` and ``target_mask[b, t]`` says whether that token
    belongs to the target, so logits at position t line up with ``labels`` and ``target_mask``.
    """
    empty = [i for i, e in enumerate(examples) if not e.prompt_ids]
    if empty:
        raise ValueError(
            f"example {empty[0]} has an empty prompt: a decoder-only model cannot predict the "
            "first target token, so it would be neither learnt nor counted consistently"
        )
    seqs = [e.prompt_ids + e.target_ids for e in examples]
    is_target = [[False] * len(e.prompt_ids) + [True] * len(e.target_ids) for e in examples]
    batch = {
        "input_ids": _pad(seqs, pad_id),
        "attention_mask": _pad([[1] * len(s) for s in seqs], 0),
        "labels": _pad([s[1:] + [pad_id] for s in seqs], pad_id),
        "target_mask": _pad([m[1:] + [False] for m in is_target], False),
    }
    if examples[0].token_weights is not None:
        batch["token_weights"] = _pad(
            [[1.0] * len(e.prompt_ids) + e.token_weights for e in examples], 1.0
        )[:, 1:]
        batch["token_weights"] = torch.cat(
            [batch["token_weights"], torch.ones(len(examples), 1)], dim=1
        )
    if examples[0].cache_rows is not None:
        rows = [e.cache_rows() for e in examples]
        # Dense rows are the teacher renormalised over the student's vocabulary: no tail.
        batch["cache_complete"] = torch.tensor(True)
        batch["cache_ids"] = torch.cat([torch.as_tensor(r[0]) for r in rows])
        batch["cache_logprobs"] = torch.cat([torch.as_tensor(r[1]) for r in rows])
    elif examples[0].cache_ids is not None:  # rows in target-mask order: example by example
        batch["cache_ids"] = torch.cat([torch.as_tensor(e.cache_ids) for e in examples])
        batch["cache_logprobs"] = torch.cat([torch.as_tensor(e.cache_logprobs) for e in examples])
    if examples[0].teacher_prompt_ids is not None:
        tseqs = [e.teacher_prompt_ids + e.teacher_target_ids for e in examples]
        batch["teacher_input_ids"] = _pad(
            tseqs, teacher_pad_id if teacher_pad_id is not None else pad_id
        )
    return batch


def collate_seq2seq(
    examples: list[Example],
    pad_id: int,
    decoder_start_id: int,
    teacher_pad_id: int | None = None,
    teacher_decoder_start_id: int | None = None,
) -> dict[str, torch.Tensor]:
    """Encoder prompt and decoder target batch for an encoder-decoder model (T5 family)."""
    batch = {
        "input_ids": _pad([e.prompt_ids for e in examples], pad_id),
        "attention_mask": _pad([[1] * len(e.prompt_ids) for e in examples], 0),
        "decoder_input_ids": _pad(
            [[decoder_start_id] + e.target_ids[:-1] for e in examples], pad_id
        ),
        "labels": _pad([e.target_ids for e in examples], pad_id),
        "target_mask": _pad([[True] * len(e.target_ids) for e in examples], False),
    }
    if examples[0].token_weights is not None:
        batch["token_weights"] = _pad([e.token_weights for e in examples], 1.0)
    if examples[0].teacher_prompt_ids is not None:
        tpad = teacher_pad_id if teacher_pad_id is not None else pad_id
        batch["teacher_input_ids"] = _pad([e.teacher_prompt_ids for e in examples], tpad)
        batch["teacher_decoder_input_ids"] = _pad(
            [
                [teacher_decoder_start_id if teacher_decoder_start_id is not None else tpad]
                + e.teacher_target_ids[:-1]
                for e in examples
            ],
            tpad,
        )
    return batch
