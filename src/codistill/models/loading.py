"""Loading models and tokenizers from local directories, and measuring them.

This module is the one place the project turns a checkpoint directory into a model: it picks the
seq2seq or causal auto class from the config, so callers never branch on the architecture.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn
from transformers import (
    AutoConfig,
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    PreTrainedConfig,
    PreTrainedModel,
    PreTrainedTokenizerBase,
)


def _require_model_dir(path: str | Path) -> Path:
    path = Path(path)
    if not (path / "config.json").is_file():
        raise FileNotFoundError(
            f"{path} is not a model directory: expected a config.json in it "
            f"(the directory {'exists' if path.is_dir() else 'does not exist'})"
        )
    return path


def is_encoder_decoder(model_or_config: PreTrainedModel | PreTrainedConfig) -> bool:
    """Whether a model (or its config) is an encoder-decoder such as T5.

    Args:
        model_or_config: A model or a config.

    Returns:
        ``config.is_encoder_decoder``, False when the config does not set it.
    """
    config = getattr(model_or_config, "config", model_or_config)
    return bool(getattr(config, "is_encoder_decoder", False))


DTYPES = ("float32", "bfloat16", "auto")


def bf16_is_fast() -> bool:
    """Whether this CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX): there a bfloat16
    forward of Gemma 3 270M ran 1.7x faster than float32; without, bfloat16 is emulated and
    slower."""
    checks = ("_is_avx512_bf16_supported", "_is_amx_tile_supported")  # private, but stable
    return any(getattr(torch.cpu, name, lambda: False)() for name in checks)


def resolve_dtype(name: str) -> torch.dtype:
    """``"float32"``, ``"bfloat16"``, or ``"auto"`` (bfloat16 where :func:`bf16_is_fast`, else
    float32) as a torch dtype, for models that only run forward (a teacher, an evaluation).

    Raises:
        ValueError: any other name.
    """
    if name not in DTYPES:
        raise ValueError(f"dtype must be one of {', '.join(DTYPES)}, got {name!r}")
    if name == "auto":
        name = "bfloat16" if bf16_is_fast() else "float32"
    return torch.bfloat16 if name == "bfloat16" else torch.float32


def load_model(path: str | Path, dtype: torch.dtype | None = None) -> PreTrainedModel:
    """Loads a causal or seq2seq LM from a local directory, in eval mode.

    Args:
        path: Directory holding ``config.json`` and the weights.
        dtype: Dtype to load the weights in; None keeps the dtype the checkpoint was saved in.

    Returns:
        An ``AutoModelForSeq2SeqLM`` model when the config is encoder-decoder, else an
        ``AutoModelForCausalLM`` one.

    Raises:
        FileNotFoundError: ``path`` has no ``config.json``.
    """
    path = _require_model_dir(path)
    config = AutoConfig.from_pretrained(path)
    auto_class = AutoModelForSeq2SeqLM if is_encoder_decoder(config) else AutoModelForCausalLM
    # "auto" reads the dtype stored in config.json instead of upcasting everything to float32.
    model = auto_class.from_pretrained(path, config=config, dtype=dtype or "auto")
    return model.eval()


def load_tokenizer(path: str | Path) -> PreTrainedTokenizerBase:
    """Loads the tokenizer saved in a local directory.

    Args:
        path: Directory holding the tokenizer files (``tokenizer.json`` etc.).

    Returns:
        The tokenizer, with ``pad_token`` set to ``eos_token`` when it had none.

    Raises:
        FileNotFoundError: ``path`` is not a directory.
    """
    path = Path(path)
    if not path.is_dir():
        raise FileNotFoundError(f"tokenizer directory {path} does not exist")
    tokenizer = AutoTokenizer.from_pretrained(path)
    if tokenizer.pad_token is None and tokenizer.eos_token is not None:
        # Batching needs a pad id; padded positions are masked out of attention and loss, so
        # reusing eos (the usual choice for decoder-only LMs) changes no result.
        tokenizer.pad_token = tokenizer.eos_token
    return tokenizer


def count_parameters(model: nn.Module) -> dict[str, int]:
    """Counts parameters, separating the vocabulary-sized matrices from the rest.

    Shared (tied) tensors are counted once, so a tied output head adds nothing to ``embedding``.

    Args:
        model: A model with ``get_input_embeddings`` (and optionally ``get_output_embeddings``).

    Returns:
        ``{"total": ..., "embedding": ..., "non_embedding": ...}`` where ``embedding`` covers the
        input embeddings plus an untied output head.
    """
    unique = {id(p): p for p in model.parameters()}
    total = sum(p.numel() for p in unique.values())
    embedding_params: dict[int, nn.Parameter] = {}
    getters = ("get_input_embeddings", "get_output_embeddings")
    for getter in getters:
        module = getattr(model, getter, lambda: None)()
        if module is not None:
            for p in module.parameters():
                embedding_params[id(p)] = p
    embedding = sum(p.numel() for p in embedding_params.values())
    return {"total": total, "embedding": embedding, "non_embedding": total - embedding}


def dir_size_bytes(path: str | Path) -> int:
    """Total size of the files under a directory (weights, config and tokenizer alike).

    Args:
        path: A directory, or a single file.

    Returns:
        The summed size in bytes.

    Raises:
        FileNotFoundError: ``path`` does not exist.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path} does not exist")
    if path.is_file():
        return path.stat().st_size
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
