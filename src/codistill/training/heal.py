"""Healing a depth-pruned student at its cuts, from its teacher's residual stream.

A student derived by dropping teacher layers (:func:`codistill.models.student.derive_student`,
which calls :func:`heal_cuts` before saving when ``codistill student derive --heal-on`` asks)
keeps the teacher's weights, but the first layer kept after a dropped block now reads the stream
from below the block, which it was never trained on, and every layer above inherits the error.
LLM-Streamline (Chen et al., 2024) replaces a pruned block with one small layer trained to map
the stream entering the block to the stream leaving it. Here the replacement is the kept layer
itself: the student layer after each cut is trained, alone, to map the teacher's stream entering
the removed block to the teacher's stream leaving the layer it was copied from (a cut at the top
of the stack is absorbed by the last kept layer, mapping onto the teacher's last stream). Every
other weight stays the teacher's, so nothing else can be forgotten.

It is distillation of a local kind: each training token gives a target of the model's width at
each cut instead of one next-token label, and a step runs one decoder layer per cut (forward and
backward) on teacher states recorded once, where training the student end to end runs all of
it. The inputs are the teacher's (teacher forcing): a layer above an earlier cut sees, in the
student, a stream that cut has already disturbed.

No library does this for an arbitrary Hugging Face decoder (pruning tool-kits bring their own
model classes). The teacher's layers are called by the teacher's own forward; hooks record each
layer's input, output and keyword arguments (rotary embeddings, the attention mask of its kind:
Gemma 3 alternates sliding and full attention), and the student's copy of that layer is later
called with the same keyword arguments.
"""

from __future__ import annotations

import random
import time
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
from torch import nn

from codistill.config.heal import HealSettings
from codistill.losses.hidden import relative_state_error
from codistill.models.forward import last_logit_index
from codistill.models.layer_choice import decoder_layers


@dataclass(frozen=True)
class Cut:
    """One student layer that absorbs removed teacher layers.

    The student's layer ``student_layer`` (a copy of teacher layer ``copied_from``) is trained
    to map the teacher's stream entering teacher layer ``reads`` to the teacher's stream leaving
    teacher layer ``writes``.
    """

    student_layer: int
    copied_from: int
    reads: int
    writes: int


def find_cuts(layers: Sequence[int], teacher_layers: int) -> list[Cut]:
    """The student layers that stand next to removed teacher layers.

    ``layers``: the teacher layer each student layer was copied from (sorted, distinct).
    A block removed before a kept layer (at the bottom or between two kept layers) is absorbed
    by that kept layer; a block removed above the last kept layer, by the last kept layer.

    Raises:
        ValueError: ``layers`` empty, unsorted, repeated or out of ``[0, teacher_layers)``.
    """
    if not layers:
        raise ValueError("a student needs at least one layer")
    if list(layers) != sorted(set(layers)) or layers[0] < 0 or layers[-1] >= teacher_layers:
        raise ValueError(
            f"layers must be distinct, sorted teacher layer indices in [0, {teacher_layers}), "
            f"got {list(layers)}"
        )
    cuts = []
    for i, kept in enumerate(layers):
        reads = layers[i - 1] + 1 if i > 0 else 0
        writes = teacher_layers - 1 if i == len(layers) - 1 else kept
        if (reads, writes) != (kept, kept):
            cuts.append(Cut(i, kept, reads, writes))
    return cuts


def token_windows(
    texts: Iterable[str], tokenizer, length: int, max_tokens: int, seed: int = 0
) -> torch.Tensor:
    """``[n, length]`` token ids: the texts tokenized and joined (each followed by the EOS
    token when the tokenizer has one), cut into whole windows, at most ``max_tokens`` in all,
    shuffled by ``seed``. No padding, so every window is a plain causal sequence."""
    if length < 2 or max_tokens < length:
        raise ValueError(f"need 2 <= length <= max_tokens, got length {length}, {max_tokens}")
    stream: list[int] = []
    eos = [tokenizer.eos_token_id] if tokenizer.eos_token_id is not None else []
    for text in texts:
        stream.extend(tokenizer(text, add_special_tokens=False)["input_ids"] + eos)
        if len(stream) >= max_tokens:
            break
    count = min(len(stream), max_tokens) // length
    if count == 0:
        raise ValueError(f"the healing texts hold {len(stream)} tokens, fewer than one window")
    windows = [stream[i * length : (i + 1) * length] for i in range(count)]
    random.Random(seed).shuffle(windows)
    return torch.tensor(windows, dtype=torch.long)


def _decoder_layers(model) -> nn.ModuleList:
    return decoder_layers(model, "healing")


@dataclass
class _Example:
    inputs: list[torch.Tensor]  # per cut: the teacher's stream entering ``reads``
    targets: list[torch.Tensor]  # per cut: the teacher's stream leaving ``writes``
    kwargs: list[dict]  # per cut: what the teacher passed to ``copied_from``


@torch.no_grad()
def _record(teacher, windows: torch.Tensor, cuts: list[Cut], batch_size: int) -> list[_Example]:
    """Runs the teacher over ``windows`` once, keeping what each cut trains on (states in
    bfloat16: a rounding error of about 0.2% per element, far below what the cuts start from)."""
    layers = _decoder_layers(teacher)
    seen: dict[tuple[str, int], object] = {}

    def hook(index: int):
        def record(_module, args, kwargs, output) -> None:
            seen["in", index] = args[0] if args else kwargs["hidden_states"]
            seen["out", index] = output[0] if isinstance(output, tuple) else output
            seen["kw", index] = {k: v for k, v in kwargs.items() if k != "hidden_states"}

        return record

    wanted = {c.reads for c in cuts} | {c.writes for c in cuts} | {c.copied_from for c in cuts}
    handles = [layers[i].register_forward_hook(hook(i), with_kwargs=True) for i in sorted(wanted)]
    deepest = max(c.writes for c in cuts)
    examples = []
    try:
        for batch in windows.split(batch_size):
            seen.clear()
            _forward_through(teacher, batch, deepest)
            examples.append(
                _Example(
                    [seen["in", c.reads].to(torch.bfloat16) for c in cuts],
                    [seen["out", c.writes].to(torch.bfloat16) for c in cuts],
                    [_detached(seen["kw", c.copied_from]) for c in cuts],
                )
            )
    finally:
        for handle in handles:
            handle.remove()
    return examples


class _Stop(Exception):
    """Raised by a hook to end the teacher's forward once the deepest needed layer has run."""


def _forward_through(model, batch: torch.Tensor, last: int) -> None:
    """The model's forward on ``batch``, stopped after layer ``last`` (the layers above it and
    the vocabulary head cost time and give nothing)."""

    def stop(*_args) -> None:
        raise _Stop

    handle = _decoder_layers(model)[last].register_forward_hook(stop)
    try:
        model(
            input_ids=batch,
            attention_mask=torch.ones_like(batch),
            use_cache=False,
            logits_to_keep=last_logit_index(batch.shape[1]),
        )
    except _Stop:
        pass
    finally:
        handle.remove()


def _detached(kwargs: dict) -> dict:
    """The keyword arguments a teacher layer received, detached, floating tensors in float32
    (the student layer trains in float32 whatever the teacher ran in)."""

    def detach(value):
        if isinstance(value, torch.Tensor):
            return value.detach().float() if value.is_floating_point() else value.detach()
        if isinstance(value, tuple):
            return tuple(detach(v) for v in value)
        return value

    return {k: detach(v) for k, v in kwargs.items()}


def _cut_losses(student, example: _Example, cuts: list[Cut]) -> list[torch.Tensor]:
    """Per cut: the mean relative error of the student layer's output, position 0 left out (the
    attention sink, whose stream is orders of magnitude louder and the same in every window)."""
    layers = _decoder_layers(student)
    losses = []
    for cut, x, target, kwargs in zip(
        cuts, example.inputs, example.targets, example.kwargs, strict=True
    ):
        out = layers[cut.student_layer](x.float(), **kwargs)
        out = out[0] if isinstance(out, tuple) else out
        width = out.shape[-1]
        err = relative_state_error(out[:, 1:].reshape(-1, width), target[:, 1:].reshape(-1, width))
        losses.append(err.mean())
    return losses


def heal_cuts(
    teacher, student, layers: Sequence[int], windows: torch.Tensor, settings: HealSettings
) -> dict:
    """Trains the student layers at the cuts (in place) on the teacher's streams.

    Args:
        teacher: the model the student was derived from (not modified).
        student: the derived decoder; ``layers[i]`` is the teacher layer its layer ``i`` copies.
        layers: as above.
        windows: ``[n, length]`` teacher token ids (:func:`token_windows`).
        settings: steps, rate and the held-out share.

    Returns:
        A summary: the cuts, the held-out relative error per cut before and after, the windows
        and tokens trained on, steps and seconds.
    """
    start = time.perf_counter()
    cuts = find_cuts(layers, len(_decoder_layers(teacher)))
    if len(_decoder_layers(student)) != len(layers):
        raise ValueError(
            f"the student has {len(_decoder_layers(student))} layers, layers names {len(layers)}"
        )
    summary: dict = {"cuts": [asdict(c) for c in cuts], "settings": asdict(settings)}
    if not cuts:
        summary["note"] = "no removed layers: nothing to heal"
        return summary
    if len(windows) < 2:
        raise ValueError(
            f"healing needs at least two windows (one is held out), got {len(windows)}"
        )
    n_held = min(len(windows) - 1, max(1, round(len(windows) * settings.held_out)))
    held, train = windows[:n_held], windows[n_held:]
    teacher.eval()
    held_examples = _record(teacher, held, cuts, settings.batch_size)
    train_examples = _record(teacher, train, cuts, settings.batch_size)
    recorded = time.perf_counter()

    def held_error() -> list[float]:
        with torch.no_grad():
            per = [_cut_losses(student, e, cuts) for e in held_examples]
        return [round(sum(float(p[i]) for p in per) / len(per), 5) for i in range(len(cuts))]

    was_training = student.training
    student.eval()  # no dropout: the error is that of the student as it will run
    before = held_error()
    params = [p for c in cuts for p in _decoder_layers(student)[c.student_layer].parameters()]
    trained = {id(p) for p in params}
    requires = {p: p.requires_grad for p in student.parameters()}
    for p in student.parameters():
        p.requires_grad_(id(p) in trained)
    steps = settings.epochs * len(train_examples)
    warmup = max(1, steps // 20)
    optimizer = torch.optim.AdamW(params, lr=settings.lr, weight_decay=0.0)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / warmup, max(0.0, (steps - s) / max(1, steps - warmup)))
    )
    order = random.Random(settings.seed)
    try:
        for _ in range(settings.epochs):
            for example in order.sample(train_examples, len(train_examples)):
                loss = torch.stack(_cut_losses(student, example, cuts)).sum()
                loss.backward()
                torch.nn.utils.clip_grad_norm_(params, 1.0)
                optimizer.step()
                schedule.step()
                optimizer.zero_grad(set_to_none=True)
        after = held_error()
    finally:
        for p, flag in requires.items():
            p.requires_grad_(flag)
        student.train(was_training)
    summary.update(
        {
            "held_out_error_before": before,
            "held_out_error_after": after,
            "windows": {"train": len(train), "held_out": n_held, "length": windows.shape[1]},
            "tokens": int(train.numel()) * settings.epochs,
            "steps": steps,
            "record_seconds": round(recorded - start, 1),
            "seconds": round(time.perf_counter() - start, 1),
        }
    )
    return summary
