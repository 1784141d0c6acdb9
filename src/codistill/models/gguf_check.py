"""Does an exported GGUF behave like the Hugging Face model it came from?

:func:`greedy_agreement` runs both on the same prompts: it compares llama.cpp's tokenization of
each prompt with the Hugging Face tokenizer's, then decodes greedily in both from the *same*
prompt ids (so a tokenization difference is reported once, not folded into the generations),
each stopping at an end-of-sequence id. It reports whole-generation exact matches, the common
prefix as a share of the longer generation, and the largest logit difference at the first
generated position (the float16/quantisation error, before generations can diverge).

Needs llama-cpp-python (``pip install -e '.[server]'``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from transformers import AutoTokenizer, GenerationConfig

from codistill.models.loading import load_model


def _eos_ids(model: Any, tokenizer: Any) -> set[int]:
    ids: set[int] = set()
    for holder in (model.config, getattr(model, "generation_config", None), tokenizer):
        value = getattr(holder, "eos_token_id", None)
        ids.update(value if isinstance(value, list) else [] if value is None else [value])
    return {int(i) for i in ids}


@torch.no_grad()
def _hf_greedy(model: Any, ids: list[int], steps: int, eos: set[int]) -> tuple[list[int], Any]:
    """Greedy continuation (``generate``) and first-step logits of a Hugging Face causal LM."""
    config = GenerationConfig(
        do_sample=False,
        max_new_tokens=steps,
        eos_token_id=sorted(eos) or None,
        pad_token_id=min(eos) if eos else 0,
        output_logits=True,
        return_dict_in_generate=True,
    )
    inputs = torch.tensor([ids])
    out = model.generate(inputs, attention_mask=torch.ones_like(inputs), generation_config=config)
    return out.sequences[0, len(ids) :].tolist(), out.logits[0][0].float().numpy()


def _last_logits(llm: Any) -> np.ndarray:
    # Without logits_all, llama-cpp-python keeps no scores; read the context's last row.
    import llama_cpp  # lazy: the optional [server] extra

    row = llama_cpp.llama_get_logits_ith(llm.ctx, -1)
    return np.ctypeslib.as_array(row, shape=(llm.n_vocab(),)).astype(np.float32)


def _cpp_greedy(llm: Any, ids: list[int], steps: int, eos: set[int]) -> tuple[list[int], Any]:
    """Greedy continuation and first-step logits of a llama-cpp-python ``Llama``."""
    llm.reset()
    llm.eval(ids)
    first = _last_logits(llm)
    logits, new = first, []
    for _ in range(steps):
        token = int(np.argmax(logits))
        new.append(token)
        if token in eos:
            break
        llm.eval([token])
        logits = _last_logits(llm)
    return new, first


def common_prefix(a: Sequence[int], b: Sequence[int]) -> int:
    """How many leading tokens ``a`` and ``b`` share."""
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def greedy_agreement(
    model_dir: str | Path,
    gguf_path: str | Path,
    prompts: Sequence[str],
    max_new_tokens: int = 32,
    threads: int | None = None,
) -> dict[str, Any]:
    """Greedy decoding of a Hugging Face model and its GGUF export, side by side.

    Args:
        model_dir: The Hugging Face model directory the GGUF was exported from.
        gguf_path: The exported file.
        prompts: Prompt texts (their own tokenizer adds BOS where it does).
        max_new_tokens: Greedy steps per prompt (fewer when an end-of-sequence id comes first).
        threads: llama.cpp threads; its default when None.

    Returns:
        ``prompts``, ``max_new_tokens``, ``tokenization_match`` (prompts llama.cpp tokenizes
        exactly as the tokenizer does), ``exact_match`` (identical greedy generations),
        ``mean_prefix_agreement`` (common prefix / longer generation, averaged),
        ``max_first_logit_diff`` and ``mean_first_logit_diff`` (max |HF - llama.cpp| over the
        vocabulary at the first generated position), and ``per_prompt`` details.

    Raises:
        ImportError: llama-cpp-python is not installed.
        ValueError: ``prompts`` is empty.
    """
    from llama_cpp import Llama  # lazy: the optional [server] extra

    if not prompts:
        raise ValueError("prompts must not be empty")
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = load_model(model_dir, dtype=torch.float32)
    eos = _eos_ids(model, tokenizer)
    encoded = [tokenizer(p)["input_ids"] for p in prompts]
    n_ctx = max(len(ids) for ids in encoded) + max_new_tokens + 8
    kwargs = {"n_threads": threads} if threads else {}
    llm = Llama(
        model_path=str(gguf_path), n_ctx=n_ctx, n_batch=n_ctx, verbose=False, seed=0, **kwargs
    )
    rows = []
    try:
        for prompt, ids in zip(prompts, encoded, strict=True):
            cpp_ids = llm.tokenize(prompt.encode("utf-8"), add_bos=True, special=False)
            hf_new, hf_first = _hf_greedy(model, ids, max_new_tokens, eos)
            cpp_new, cpp_first = _cpp_greedy(llm, ids, max_new_tokens, eos)
            prefix = common_prefix(hf_new, cpp_new)
            rows.append(
                {
                    "prompt_tokens": len(ids),
                    "tokenization_match": list(cpp_ids) == list(ids),
                    "hf": hf_new,
                    "gguf": cpp_new,
                    "exact_match": hf_new == cpp_new,
                    "prefix_agreement": prefix / max(len(hf_new), len(cpp_new), 1),
                    "first_logit_diff": float(np.abs(hf_first - cpp_first[: len(hf_first)]).max()),
                }
            )
    finally:
        llm.close()
    diffs = [r["first_logit_diff"] for r in rows]
    return {
        "prompts": len(rows),
        "max_new_tokens": max_new_tokens,
        "tokenization_match": sum(r["tokenization_match"] for r in rows),
        "exact_match": sum(r["exact_match"] for r in rows),
        "mean_prefix_agreement": round(float(np.mean([r["prefix_agreement"] for r in rows])), 4),
        "max_first_logit_diff": round(max(diffs), 5),
        "mean_first_logit_diff": round(float(np.mean(diffs)), 5),
        "per_prompt": rows,
    }
