"""Exporting a student as a GGUF file, the format llama.cpp (and Ollama, LM Studio...) runs.

Supported families: Gemma 3 text models (``gemma3_text``, written as llama.cpp's ``gemma3``) and
Qwen2/Qwen2.5 (``qwen2``), including students from ``codistill student derive`` with fewer
layers and trimmed vocabularies: the file carries the student's own tokenizer (see
:mod:`codistill.models.gguf_vocab`), so llama.cpp needs no token map.

What has to change on the way, as llama.cpp's own ``convert_hf_to_gguf.py`` does it:

* Tensor names follow gguf-py's per-architecture table (``model.layers.3.mlp.up_proj.weight``
  -> ``blk.3.ffn_up.weight``); a tensor the table does not know is an error, never dropped.
* Gemma's RMSNorm multiplies by ``1 + w``; llama.cpp multiplies by ``w``, so every Gemma norm
  weight is written as ``1 + w``.
* Gemma 3 alternates sliding-window and full attention. llama.cpp assumes the 5:1 pattern of the
  released models unless told otherwise, and a derived student keeps its teacher layers' types
  (e.g. sliding, sliding, full, full), so the per-layer pattern is always written.
* A tied output head is not written; llama.cpp reuses the token embedding.

Weights: 1-D tensors (norms, biases) stay float32; matrices are float16 (``f16``), bfloat16
(``bf16``: float32's range, and the fastest format for prompt processing on CPUs with AVX512-BF16,
about 2x torch float32 when scoring a teacher cache there), or Q8_0
(``q8_0``, quantised here with gguf-py; a matrix whose rows are not a multiple of 32 stays
float16), or float32 (``f32``: twice the size of ``f16``, for checking an export against the
Hugging Face model without rounding in the way). ``q4_k_m`` writes float16 first and runs
llama.cpp's own quantizer on it, so it needs llama-cpp-python. The file is written under a
temporary name beside the target and renamed into place, so it appears complete or not at all.
"""

from __future__ import annotations

import ctypes
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors import safe_open

from codistill.files import sha256_file
from codistill.models.export_quants import QUANTS
from codistill.models.gguf_vocab import read_vocab

_FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "bf16": gguf.LlamaFileType.MOSTLY_BF16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_k_m": gguf.LlamaFileType.MOSTLY_Q4_K_M,
}
# Quantised by llama.cpp from a float16 file rather than here.
_LLAMA_CPP_QUANTS = ("q4_k_m",)


class ExportError(ValueError):
    """The model cannot be exported as asked (the message names the field or file and why)."""


@dataclass(frozen=True)
class _Family:
    """How one Hugging Face ``model_type`` becomes a llama.cpp architecture."""

    arch: gguf.MODEL_ARCH
    write_hparams: Callable[[gguf.GGUFWriter, Any], None]
    norm_shift: float  # added to every ``*norm.weight`` (Gemma's RMSNorm scales by 1 + w)


def _rope(params: dict[str, Any] | None, what: str) -> tuple[float, str, float | None]:
    """(theta, type, factor) of one RoPE parameter set; refuses types llama.cpp can't express."""
    params = params or {}
    kind = params.get("rope_type") or params.get("type") or "default"
    if kind not in ("default", "linear"):
        raise ExportError(
            f"config.json: {what} rope_type {kind!r} is not supported by the export "
            "(supported: default, linear)"
        )
    theta = params.get("rope_theta")
    if theta is None:
        raise ExportError(f"config.json: {what} has no rope_theta")
    return float(theta), kind, params.get("factor")


def _write_rope_scaling(writer: gguf.GGUFWriter, kind: str, factor: float | None) -> None:
    if kind == "linear" and factor is not None:
        writer.add_rope_scaling_type(gguf.RopeScalingType.LINEAR)
        writer.add_rope_scaling_factor(float(factor))


def _write_common(writer: gguf.GGUFWriter, config: Any) -> None:
    writer.add_context_length(config.max_position_embeddings)
    writer.add_embedding_length(config.hidden_size)
    writer.add_block_count(config.num_hidden_layers)
    writer.add_feed_forward_length(config.intermediate_size)
    writer.add_head_count(config.num_attention_heads)
    writer.add_head_count_kv(config.num_key_value_heads)
    writer.add_layer_norm_rms_eps(config.rms_norm_eps)


def _write_gemma3(writer: gguf.GGUFWriter, config: Any) -> None:
    """Gemma 3 hyperparameters, after checking llama.cpp computes what transformers does."""
    head_dim = config.head_dim
    if getattr(config, "attn_logit_softcapping", None) is not None:
        raise ExportError("config.json: attn_logit_softcapping must be null for Gemma 3")
    if getattr(config, "use_bidirectional_attention", False):
        raise ExportError("config.json: use_bidirectional_attention models are not causal LMs")
    if config.hidden_activation != "gelu_pytorch_tanh":
        raise ExportError(
            f"config.json: hidden_activation {config.hidden_activation!r}; llama.cpp's Gemma 3 "
            "uses gelu_pytorch_tanh"
        )
    # llama.cpp scales attention by 1/sqrt(head_dim) except for 62-layer (27B) models, where it
    # uses 1/sqrt(hidden/heads); transformers uses query_pre_attn_scalar**-0.5.
    expected = (
        config.hidden_size / config.num_attention_heads
        if config.num_hidden_layers == 62
        else head_dim
    )
    if config.query_pre_attn_scalar != expected:
        raise ExportError(
            f"config.json: query_pre_attn_scalar={config.query_pre_attn_scalar}, but llama.cpp "
            f"scales attention as if it were {expected:g} for a {config.num_hidden_layers}-layer "
            "Gemma 3"
        )
    layer_types = getattr(config, "layer_types", None)
    if not layer_types or len(layer_types) != config.num_hidden_layers:
        raise ExportError("config.json: layer_types must name one attention type per layer")
    rope = getattr(config, "rope_parameters", None) or {}
    theta, kind, factor = _rope(rope.get("full_attention", rope), "full_attention")
    _write_common(writer, config)
    writer.add_key_length(head_dim)
    writer.add_value_length(head_dim)
    writer.add_rope_freq_base(theta)
    _write_rope_scaling(writer, kind, factor)
    if "sliding_attention" in rope:
        local_theta, local_kind, _ = _rope(rope["sliding_attention"], "sliding_attention")
        if local_kind != "default":
            raise ExportError("config.json: sliding_attention rope_type must be default")
        writer.add_rope_freq_base_swa(local_theta)
    writer.add_sliding_window(config.sliding_window)
    writer.add_sliding_window_pattern([t == "sliding_attention" for t in layer_types])
    if getattr(config, "final_logit_softcapping", None) is not None:
        writer.add_final_logit_softcapping(config.final_logit_softcapping)


def _write_qwen2(writer: gguf.GGUFWriter, config: Any) -> None:
    """Qwen2 hyperparameters, after checking llama.cpp computes what transformers does."""
    if getattr(config, "use_sliding_window", False):
        raise ExportError(
            "config.json: use_sliding_window=true; llama.cpp's qwen2 has no sliding window"
        )
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // config.num_attention_heads
    theta, kind, factor = _rope(getattr(config, "rope_parameters", None), "rope_parameters")
    _write_common(writer, config)
    if head_dim * config.num_attention_heads != config.hidden_size:
        writer.add_key_length(head_dim)
        writer.add_value_length(head_dim)
    writer.add_rope_freq_base(theta)
    _write_rope_scaling(writer, kind, factor)


FAMILIES: dict[str, _Family] = {
    "gemma3_text": _Family(gguf.MODEL_ARCH.GEMMA3, _write_gemma3, 1.0),
    "qwen2": _Family(gguf.MODEL_ARCH.QWEN2, _write_qwen2, 0.0),
}


def _load_config(model_dir: Path) -> Any:
    from transformers import AutoConfig  # lazy: transformers (`codistill --help` imports us)

    if not (model_dir / "config.json").is_file():
        raise FileNotFoundError(f"{model_dir}: no config.json (expected a model directory)")
    config = AutoConfig.from_pretrained(model_dir)
    if config.model_type not in FAMILIES:
        raise ExportError(
            f"{model_dir / 'config.json'}: model_type {config.model_type!r} cannot be exported; "
            f"supported: {', '.join(FAMILIES)} (Gemma 3 text, Qwen2/Qwen2.5)"
        )
    return config


def _weight_files(model_dir: Path) -> list[Path]:
    index = model_dir / "model.safetensors.index.json"
    if index.is_file():
        shards = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        return [model_dir / name for name in shards]
    single = model_dir / "model.safetensors"
    if single.is_file():
        return [single]
    raise FileNotFoundError(f"{model_dir}: no model.safetensors (or sharded index) to export")


def _tensors(model_dir: Path, family: _Family, config: Any) -> Iterator[tuple[str, np.ndarray]]:
    """(GGUF name, float32 array) for every tensor llama.cpp needs."""
    import torch  # lazy: torch (`codistill --help` imports us)

    names = gguf.get_tensor_name_map(family.arch, config.num_hidden_layers)
    tied = bool(getattr(config, "tie_word_embeddings", False))
    for path in _weight_files(model_dir):
        with safe_open(path, framework="pt") as handle:
            for key in handle.keys():  # noqa: SIM118 - safe_open is not a mapping
                if tied and key == "lm_head.weight":
                    continue
                name = names.get_name(key, try_suffixes=(".weight", ".bias"))
                if name is None:
                    raise ExportError(
                        f"{path}: tensor {key!r} has no {family.arch.name.lower()} GGUF name; "
                        "the export would drop it"
                    )
                tensor = handle.get_tensor(key).to(torch.float32)
                if family.norm_shift and key.endswith("norm.weight"):
                    tensor = tensor + family.norm_shift
                yield name, tensor.numpy()


def _ggml_type(array: np.ndarray, quant: str) -> gguf.GGMLQuantizationType:
    if array.ndim <= 1 or quant == "f32":
        return gguf.GGMLQuantizationType.F32
    if quant == "bf16":
        return gguf.GGMLQuantizationType.BF16
    block = gguf.GGML_QUANT_SIZES[gguf.GGMLQuantizationType.Q8_0][0]
    if quant == "q8_0" and array.shape[-1] % block == 0:
        return gguf.GGMLQuantizationType.Q8_0
    return gguf.GGMLQuantizationType.F16


def _write_file(path: Path, model_dir: Path, config: Any, quant: str) -> dict[str, Any]:
    """Writes the GGUF (``f16`` or ``q8_0`` tensors) to ``path``; returns counts for the summary."""
    family = FAMILIES[config.model_type]
    writer = gguf.GGUFWriter(path, gguf.MODEL_ARCH_NAMES[family.arch])
    writer.add_type(gguf.GGUFType.MODEL)
    writer.add_name(model_dir.name)
    writer.add_description(f"exported by codistill from {model_dir.name}")
    writer.add_file_type(_FILE_TYPES[quant])
    if quant not in ("f16", "bf16", "f32"):
        writer.add_quantization_version(gguf.GGML_QUANT_VERSION)
    family.write_hparams(writer, config)
    vocab = read_vocab(model_dir, config.vocab_size)
    vocab.write(writer)
    expected = set(gguf.MODEL_TENSORS[family.arch])
    count = 0
    for name, array in _tensors(model_dir, family, config):
        qtype = _ggml_type(array, quant)
        data = gguf.quants.quantize(array, qtype)
        shape = array.shape if data.dtype != np.uint8 else None
        writer.add_tensor(name, data, raw_shape=shape, raw_dtype=qtype)
        count += 1
    missing = _missing_tensors(writer, family, config, expected)
    if missing:
        raise ExportError(f"{model_dir}: tensors llama.cpp needs are missing: {missing[:5]}")
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"tensors": count, "vocab_size": len(vocab.tokens), "tokenizer": vocab.model}


def _missing_tensors(
    writer: gguf.GGUFWriter, family: _Family, config: Any, expected: set[gguf.MODEL_TENSOR]
) -> list[str]:
    """Names of the always-required weights (embedding, norms, attention, MLP) not written."""
    written = {name for tensors in writer.tensors for name in tensors}
    required = [gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_EMBD] + ".weight"]
    if not getattr(config, "tie_word_embeddings", False):
        required.append(gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.OUTPUT] + ".weight")
    per_layer = [
        gguf.MODEL_TENSOR.ATTN_NORM,
        gguf.MODEL_TENSOR.ATTN_Q,
        gguf.MODEL_TENSOR.ATTN_K,
        gguf.MODEL_TENSOR.ATTN_V,
        gguf.MODEL_TENSOR.ATTN_OUT,
        gguf.MODEL_TENSOR.FFN_GATE,
        gguf.MODEL_TENSOR.FFN_UP,
        gguf.MODEL_TENSOR.FFN_DOWN,
    ]
    for block in range(config.num_hidden_layers):
        for kind in per_layer:
            if kind in expected:
                required.append(gguf.TENSOR_NAMES[kind].format(bid=block) + ".weight")
    return [name for name in required if name not in written]


def llama_cpp_module(purpose: str = "--quant q4_k_m (llama.cpp's quantizer)"):
    """The ``llama_cpp`` module, or an :class:`ExportError` saying what needs it and how to
    install it."""
    try:
        import llama_cpp  # lazy: the optional [server] extra
    except (ImportError, OSError) as err:  # OSError: the shared library failed to load
        raise ExportError(
            f"{purpose} needs llama-cpp-python, which is not usable here ({err}); install it "
            "with pip install -e '.[server]' (--quant f16 and q8_0 need only gguf)"
        ) from err
    return llama_cpp


def _quantize(src: Path, dst: Path, quant: str, threads: int) -> None:
    llama_cpp = llama_cpp_module()
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = int(_FILE_TYPES[quant])
    params.nthread = threads
    status = llama_cpp.llama_model_quantize(
        str(src).encode(), str(dst).encode(), ctypes.byref(params)
    )
    if status != 0:
        raise ExportError(f"llama.cpp's quantizer failed ({status}) turning {src} into {quant}")


def _temp_beside(out: Path, tag: str) -> Path:
    fd, name = tempfile.mkstemp(prefix=f".{out.name}.", suffix=f".{tag}.tmp", dir=out.parent)
    os.close(fd)
    return Path(name)


def export_gguf(
    model_dir: str | Path,
    out: str | Path,
    quant: str = "f16",
    *,
    overwrite: bool = False,
    threads: int | None = None,
) -> dict[str, Any]:
    """Writes a Hugging Face Gemma 3 or Qwen2 checkpoint (e.g. a derived student) as GGUF.

    Args:
        model_dir: Model directory (``config.json``, safetensors weights, ``tokenizer.json``).
        out: The ``.gguf`` file to write.
        quant: ``f16``, ``q8_0``, ``q4_k_m`` (needs llama-cpp-python) or ``f32``.
        overwrite: Replace an existing ``out`` instead of refusing.
        threads: Threads for llama.cpp's quantizer (``q4_k_m``); all cores when None.

    Returns:
        A summary: source, file, architecture, quantisation, tensor count, vocabulary size and
        tokenizer kind, bytes, sha256 and seconds taken.

    Raises:
        ExportError: Unsupported model type, configuration, tokenizer or quantisation, or
            llama-cpp-python missing for ``q4_k_m`` (checked before any work).
        FileNotFoundError: ``model_dir`` is not a model directory.
        FileExistsError: ``out`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    model_dir, out = Path(model_dir), Path(out)
    if quant not in QUANTS:
        raise ExportError(f"quant must be one of {', '.join(QUANTS)}, got {quant!r}")
    if out.exists() and not overwrite:
        raise FileExistsError(f"{out} already exists; pass overwrite to replace it")
    config = _load_config(model_dir)
    if quant in _LLAMA_CPP_QUANTS:
        llama_cpp_module()
    out.parent.mkdir(parents=True, exist_ok=True)
    written = _temp_beside(out, "f16" if quant in _LLAMA_CPP_QUANTS else quant)
    final = _temp_beside(out, quant) if quant in _LLAMA_CPP_QUANTS else written
    try:
        counts = _write_file(written, model_dir, config, "f16" if written != final else quant)
        if written != final:
            _quantize(written, final, quant, threads or os.cpu_count() or 1)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(final, 0o666 & ~umask)  # mkstemp makes it private; a model file is shared
        os.replace(final, out)
    finally:
        for path in {written, final}:
            path.unlink(missing_ok=True)
    return {
        "model_dir": str(model_dir),
        "gguf": str(out),
        "architecture": gguf.MODEL_ARCH_NAMES[FAMILIES[config.model_type].arch],
        "quant": quant,
        **counts,
        "bytes": out.stat().st_size,
        "sha256": sha256_file(out),
        "seconds": round(time.perf_counter() - start, 3),
    }
