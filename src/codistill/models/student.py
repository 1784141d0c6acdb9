"""Deriving a student from the teacher: fewer layers, optionally a trimmed vocabulary.

The student is initialised from the teacher rather than at random: it copies a subset of the
teacher's layers plus everything outside the layer stack (embeddings, final norm, output head).
DistilBERT initialises its student from every other teacher layer; Minitron's depth pruning keeps
the first and last layers, which matter most. :func:`select_layers` spaces the kept layers evenly
with both ends included.

With ``vocab_texts`` the vocabulary is trimmed to the tokens the corpus uses (see
:mod:`codistill.models.vocab`), which on Gemma 3 270M removes most of the parameters and is what
makes distillation on a CPU practical.
"""

from __future__ import annotations

import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from transformers import AutoTokenizer, PreTrainedModel, PreTrainedTokenizerBase

from codistill.models.loading import count_parameters, is_encoder_decoder, load_model
from codistill.models.vocab import TokenMap, collect_token_ids, trim_tokenizer

logger = logging.getLogger(__name__)

DERIVATION_FILE = "derivation.json"
_SPECIAL_ID_FIELDS = (
    "bos_token_id",
    "eos_token_id",
    "pad_token_id",
    "unk_token_id",
    "decoder_start_token_id",
)


@dataclass(frozen=True)
class _LayerStack:
    """A stack of repeated layers: where its weights live and which config field counts them."""

    prefix: str
    config_field: str
    num_layers: int


def select_layers(num_teacher_layers: int, num_student_layers: int) -> list[int]:
    """Evenly spaced teacher layer indices, always including the first and the last layer.

    Args:
        num_teacher_layers: Layers in the teacher stack.
        num_student_layers: Layers to keep, in ``[1, num_teacher_layers]``. A single layer is the
            first one: it is the only layer whose input (the embeddings) is unchanged.

    Returns:
        Sorted, distinct indices, e.g. ``select_layers(18, 4) == [0, 6, 11, 17]``.

    Raises:
        ValueError: ``num_student_layers`` is out of range.
    """
    if num_teacher_layers < 1:
        raise ValueError(f"num_teacher_layers must be >= 1, got {num_teacher_layers}")
    if not 1 <= num_student_layers <= num_teacher_layers:
        raise ValueError(
            f"num_student_layers must be in [1, {num_teacher_layers}], got {num_student_layers}"
        )
    if num_student_layers == 1:
        return [0]
    span, gaps = num_teacher_layers - 1, num_student_layers - 1
    # Integer round-half-up of i * span / gaps; gaps <= span keeps the indices distinct.
    return [(2 * i * span + gaps) // (2 * gaps) for i in range(num_student_layers)]


def _layer_stacks(model: PreTrainedModel) -> list[_LayerStack]:
    """Finds the layer stacks of a supported architecture."""
    config = model.config
    names = {id(module): name for name, module in model.named_modules()}
    if config.model_type in ("t5", "mt5") and hasattr(model, "encoder"):
        return [
            _LayerStack(names[id(model.encoder.block)], "num_layers", config.num_layers),
            _LayerStack(
                names[id(model.decoder.block)], "num_decoder_layers", config.num_decoder_layers
            ),
        ]
    layers = getattr(getattr(model, "model", None), "layers", None)
    if not is_encoder_decoder(config) and isinstance(layers, nn.ModuleList):
        return [_LayerStack(names[id(layers)], "num_hidden_layers", config.num_hidden_layers)]
    raise ValueError(
        f"cannot derive a student from {type(model).__name__}: supported are decoder-only models "
        "with their layers at model.model.layers (Gemma 3, Llama, Qwen2, Mistral) and T5"
    )


def _resolve_layers(layers: int | Sequence[int], stack: _LayerStack) -> list[int]:
    """Turns a layer count or an explicit index list into validated indices for one stack."""
    if isinstance(layers, int):
        return select_layers(stack.num_layers, layers)
    chosen = list(layers)
    if not chosen:
        raise ValueError("layers must name at least one layer, got an empty list")
    for position, index in enumerate(chosen):
        if not isinstance(index, int) or not 0 <= index < stack.num_layers:
            raise ValueError(
                f"layers[{position}]={index!r} is out of range: the teacher's {stack.prefix} has "
                f"{stack.num_layers} layers, valid indices are 0..{stack.num_layers - 1}"
            )
    if chosen != sorted(set(chosen)):
        raise ValueError(f"layers must be strictly increasing (sorted, no repeats), got {chosen}")
    return chosen


def _map_special_ids(holder: Any, token_map: TokenMap, what: str) -> None:
    """Rewrites teacher special-token ids on a config, generation config or config dict (in
    place) to student ids."""
    is_dict = isinstance(holder, dict)
    for field in _SPECIAL_ID_FIELDS:
        value = holder.get(field) if is_dict else getattr(holder, field, None)
        if value is None:
            continue
        ids = value if isinstance(value, list) else [value]
        kept = [i for i in ids if token_map.count_unmapped([i]) == 0]
        if len(kept) < len(ids):
            logger.warning("%s.%s: teacher ids %s have no student token", what, field, ids)
        mapped = token_map.teacher_to_student(kept)
        new = mapped if isinstance(value, list) else (mapped or [None])[0]
        if is_dict:
            holder[field] = new
        else:
            setattr(holder, field, new)


def _student_config(
    teacher: PreTrainedModel,
    stacks: list[_LayerStack],
    chosen: list[list[int]],
    token_map: TokenMap,
) -> Any:
    """The teacher's config with fewer layers, the per-layer fields subset, and the new vocab."""
    data = teacher.config.to_dict()
    for stack, layers in zip(stacks, chosen, strict=True):
        data[stack.config_field] = len(layers)
        # Gemma 3 alternates sliding-window and full attention per layer; each copied layer
        # keeps the attention type its weights were trained with.
        layer_types = data.get("layer_types")
        if isinstance(layer_types, list) and len(layer_types) == stack.num_layers:
            data["layer_types"] = [layer_types[i] for i in layers]
    data["vocab_size"] = token_map.student_vocab_size
    # Mapped before the config is built: a teacher id past the student's vocabulary (Qwen's
    # <|endoftext|> is 151643) would otherwise trip the config's own range check.
    _map_special_ids(data, token_map, "config")
    return type(teacher.config).from_dict(data)


def _vocab_parameter_keys(model: PreTrainedModel) -> set[str]:
    """State-dict keys of the vocabulary-indexed tensors (input embeddings, output head)."""
    vocab_params = set()
    for getter in ("get_input_embeddings", "get_output_embeddings"):
        module = getattr(model, getter)()
        if module is not None:
            vocab_params.update(id(p) for p in module.parameters())
    return {k for k, v in model.state_dict(keep_vars=True).items() if id(v) in vocab_params}


def _teacher_key(key: str, stacks: list[_LayerStack], chosen: list[list[int]]) -> str:
    """The teacher state-dict key a student key copies from (layer indices renumbered)."""
    for stack, layers in zip(stacks, chosen, strict=True):
        head = f"{stack.prefix}."
        if key.startswith(head):
            index, rest = key[len(head) :].split(".", 1)
            return f"{head}{layers[int(index)]}.{rest}"
    return key


def _copy_weights(
    teacher: PreTrainedModel,
    student: PreTrainedModel,
    stacks: list[_LayerStack],
    chosen: list[list[int]],
    token_map: TokenMap,
) -> None:
    """Loads the student with the teacher's selected layers and gathered vocabulary rows."""
    teacher_state = teacher.state_dict()
    vocab_keys = _vocab_parameter_keys(student)
    rows = token_map.student_to_teacher_tensor
    state = {}
    for key in student.state_dict():
        source = _teacher_key(key, stacks, chosen)
        if source not in teacher_state and "relative_attention_bias" in key:
            # T5 computes the relative position bias only in block 0 and shares it with the
            # rest, so the student's block 0 takes it from the teacher's block 0 whichever
            # layer it copies otherwise.
            source = key
        tensor = teacher_state[source]
        if key in vocab_keys and not token_map.is_identity:
            tensor = tensor.index_select(0, rows)
        state[key] = tensor
    student.load_state_dict(state, strict=True)


def _fallback_id(tokenizer: PreTrainedTokenizerBase) -> int:
    """The id unmapped teacher tokens become: unk, else pad (byte-level BPEs have no unk)."""
    for candidate in (tokenizer.unk_token_id, tokenizer.pad_token_id, tokenizer.eos_token_id):
        if candidate is not None:
            return candidate
    return 0


def _build_tokenizer(
    teacher_dir: Path,
    teacher: PreTrainedModel,
    vocab_texts: Iterable[str] | None,
    extra_keep_ids: Iterable[int],
) -> tuple[PreTrainedTokenizerBase | None, TokenMap, int | None]:
    """Returns the student tokenizer, the token map and the number of distinct ids seen."""
    teacher_vocab = teacher.get_input_embeddings().weight.shape[0]
    try:
        tokenizer = AutoTokenizer.from_pretrained(teacher_dir)
    except (OSError, ValueError) as err:
        if vocab_texts is not None:
            raise ValueError(f"cannot trim the vocabulary: no tokenizer in {teacher_dir}") from err
        logger.warning("no tokenizer in %s; the student is saved without one", teacher_dir)
        return None, TokenMap.identity(teacher_vocab), None
    if vocab_texts is None:
        return tokenizer, TokenMap.identity(teacher_vocab, _fallback_id(tokenizer)), None
    seen = collect_token_ids(tokenizer, vocab_texts)
    trimmed, student_to_teacher = trim_tokenizer(
        tokenizer, seen | set(extra_keep_ids), max_id=teacher_vocab
    )
    token_map = TokenMap(student_to_teacher, teacher_vocab, _fallback_id(trimmed))
    return trimmed, token_map, len(seen)


def derive_student(
    teacher_dir: str | Path,
    out_dir: str | Path,
    layers: int | Sequence[int],
    vocab_texts: Iterable[str] | None = None,
    extra_keep_ids: Iterable[int] = (),
    dtype: torch.dtype = torch.float32,
    *,
    overwrite: bool = False,
    notes: dict[str, Any] | None = None,
    heal: Callable[[PreTrainedModel, PreTrainedModel, list[int]], dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """Derives a student from a teacher checkpoint and saves it.

    The output directory holds the model (safetensors), its tokenizer, ``token_map.json`` (an
    identity map when the vocabulary is not trimmed) and ``derivation.json`` (the returned
    summary). It is written into a temporary directory beside ``out_dir`` and renamed into place.

    Args:
        teacher_dir: Teacher checkpoint directory (model and tokenizer).
        out_dir: Where to save the student.
        layers: Number of layers to keep (spaced by :func:`select_layers`) or explicit sorted
            teacher layer indices. For T5 the same choice applies to encoder and decoder.
        vocab_texts: Corpus whose tokens the student vocabulary keeps; None keeps the full
            vocabulary.
        extra_keep_ids: Teacher ids to keep besides those of the corpus.
        dtype: Dtype of the saved student weights.
        overwrite: Replace an existing ``out_dir`` instead of refusing.
        notes: Extra entries for the summary, e.g. how the layers were chosen
            (:func:`codistill.models.layer_choice.greedy_layer_choice`).
        heal: Called as ``heal(teacher, student, layers)`` before the student is saved, to
            train it in place (:func:`codistill.training.heal.heal_cuts`: the student layer
            after each removed block learns to stand for the block); what it returns is saved
            in the summary as ``healing``. None keeps the teacher's weights as copied.

    Returns:
        A summary: architecture, layer counts and chosen layers, vocabulary sizes, parameter
        counts of teacher and student, distinct corpus tokens seen, and seconds taken.

    Raises:
        ValueError: Bad layer choice (the message names the index and valid range), or an
            unsupported architecture.
        FileExistsError: ``out_dir`` exists and ``overwrite`` is False.
    """
    start = time.perf_counter()
    teacher_dir, out_dir = Path(teacher_dir), Path(out_dir)
    if out_dir.exists() and not overwrite:
        raise FileExistsError(f"{out_dir} already exists; pass overwrite=True to replace it")
    teacher = load_model(teacher_dir)
    stacks = _layer_stacks(teacher)
    chosen = [_resolve_layers(layers, stack) for stack in stacks]
    tokenizer, token_map, tokens_seen = _build_tokenizer(
        teacher_dir, teacher, vocab_texts, extra_keep_ids
    )

    config = _student_config(teacher, stacks, chosen, token_map)
    student = type(teacher)(config)
    _copy_weights(teacher, student, stacks, chosen, token_map)
    student.generation_config = teacher.generation_config.__class__.from_dict(
        teacher.generation_config.to_dict()
    )
    _map_special_ids(student.generation_config, token_map, "generation_config")
    healing = None if heal is None else heal(teacher, student, chosen[-1])
    student = student.to(dtype).eval()

    summary = {
        "teacher_dir": str(teacher_dir),
        "architecture": type(teacher).__name__,
        "teacher_layers": stacks[-1].num_layers,
        "student_layers": len(chosen[-1]),
        "layers": chosen[-1],
        "layers_per_stack": {s.prefix: c for s, c in zip(stacks, chosen, strict=True)},
        "teacher_vocab_size": token_map.teacher_vocab_size,
        "student_vocab_size": token_map.student_vocab_size,
        "vocab_trimmed": vocab_texts is not None,
        "tokens_seen": tokens_seen,
        "teacher_parameters": count_parameters(teacher),
        "student_parameters": count_parameters(student),
        "dtype": str(dtype).removeprefix("torch."),
    }
    if healing is not None:
        summary["healing"] = healing
    summary.update(notes or {})
    summary["seconds"] = round(time.perf_counter() - start, 3)
    _save_atomically(student, tokenizer, token_map, summary, out_dir)
    return summary


def _save_atomically(
    student: PreTrainedModel,
    tokenizer: PreTrainedTokenizerBase | None,
    token_map: TokenMap,
    summary: dict[str, Any],
    out_dir: Path,
) -> None:
    """Writes everything into a temp dir beside ``out_dir``, then swaps it into place."""
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.tmp-", dir=out_dir.parent))
    try:
        student.save_pretrained(tmp)
        if tokenizer is not None:
            tokenizer.save_pretrained(tmp)
        token_map.save(tmp)
        (tmp / DERIVATION_FILE).write_text(json.dumps(summary, indent=2) + "\n")
        if out_dir.exists():
            old = out_dir.with_name(f".{out_dir.name}.old-{time.time_ns()}")
            out_dir.rename(old)
            tmp.rename(out_dir)
            shutil.rmtree(old, ignore_errors=True)
        else:
            tmp.rename(out_dir)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
