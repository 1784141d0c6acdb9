"""Layer-wise hidden-state distillation for a student derived from its teacher's layers.

A student made by dropping layers of its teacher (``codistill student derive``) has, for each
of its layers, the teacher layer it was copied from. Its residual stream after that layer should
match the teacher's after the same layer; dropping a block breaks this from the cut onwards,
and every layer above it receives a stream it was not trained on. Matching the streams layer by
layer (TinyBERT's intermediate loss, Jiao et al. 2020; the depth-pruned Minitron students,
Muralidharan et al. 2024) gives each training token a target of the model's width at every
layer, where the logit terms give one distribution at the top.

The distance is scale-free: a residual stream's norm grows by orders of magnitude from the
first layer to the last (and differs between tokens), so a plain squared error would be decided
by the deepest layers and the loudest tokens. Each layer's error is measured relative to the
teacher's state at that token.
"""

from __future__ import annotations

import torch
from torch import Tensor

from codistill.losses.divergences import check_reduction

EPS = 1e-6


def relative_state_error(student: Tensor, teacher: Tensor) -> Tensor:
    """``||s - t||² / ||t||²`` per row of ``[n, d]`` states, in float32: ``[n]``."""
    if student.shape != teacher.shape:
        raise ValueError(
            f"student states {tuple(student.shape)} and teacher states "
            f"{tuple(teacher.shape)} differ in shape"
        )
    s, t = student.float(), teacher.detach().float()
    return (s - t).pow(2).sum(-1) / t.pow(2).sum(-1).clamp(min=EPS)


def hidden_state_loss(
    student: list[Tensor], teacher: list[Tensor], reduction: str = "sum"
) -> Tensor:
    """Mean over layer pairs of the relative squared error between the student's and the
    teacher's states at each position.

    Args:
        student: one ``[n, d]`` tensor per matched layer (the same ``n`` positions in each).
        teacher: the teacher's states of the same layers and positions (no gradient flows).
        reduction: ``"none"`` (``[n]``), ``"sum"`` or ``"mean"`` over the positions.

    Raises:
        ValueError: no layer pairs, a different number of student and teacher layers, or two
            states of different shapes.
    """
    check_reduction(reduction)
    if not student or len(student) != len(teacher):
        raise ValueError(
            f"need matched layers: {len(student)} student and {len(teacher)} teacher states"
        )
    per_pos = torch.stack(
        [relative_state_error(s, t) for s, t in zip(student, teacher, strict=True)]
    ).mean(0)
    if reduction == "none":
        return per_pos
    if reduction == "sum":
        return per_pos.sum()
    return per_pos.mean() if per_pos.numel() else per_pos.sum()


def matched_layers(teacher_layers: list[int], n_teacher: int) -> list[tuple[int, int]]:
    """``(student index, teacher index)`` into ``hidden_states`` tuples for a student whose
    layer ``i`` is the teacher's layer ``teacher_layers[i]``.

    Hugging Face decoders return the input of each layer, then the final-normed output of the
    last: entry ``i + 1`` is the output of layer ``i`` for every layer but the last, whose
    entry is normed. The last student layer is matched only when it is the teacher's last
    (both entries normed); the embeddings (entry 0), which the student shares, are not.

    Raises:
        ValueError: a layer out of the teacher's range, or no layer left to match.
    """
    bad = [x for x in teacher_layers if not 0 <= x < n_teacher]
    if bad:
        raise ValueError(f"teacher layers {bad} out of range for a {n_teacher}-layer teacher")
    last = len(teacher_layers) - 1
    pairs = [(i + 1, t + 1) for i, t in enumerate(teacher_layers) if i < last or t == n_teacher - 1]
    if not pairs:
        raise ValueError("no student layer can be matched with a teacher layer")
    return pairs


def layer_map_problem(
    layers: object,
    student_shape: tuple[int, int],
    teacher_shape: tuple[int, int],
    derived_from_layers: int | None = None,
) -> str | None:
    """Why a student cannot be matched layer by layer with a teacher through ``layers`` (the
    teacher layer behind each student layer), or None when it can. Shapes are ``(layers,
    width)``; ``derived_from_layers``, where the map comes from ``codistill student derive``,
    is the layer count of the teacher it was derived from, which must be this teacher's.
    The one rule behind the ``hidden`` term's check at load and the studies' check before any
    training."""
    (n_student, s_width), (n_teacher, t_width) = student_shape, teacher_shape
    if derived_from_layers is not None and derived_from_layers != n_teacher:
        return (
            f"derived from a {derived_from_layers}-layer teacher, and this teacher has "
            f"{n_teacher} layers"
        )
    if not isinstance(layers, list) or len(layers) != n_student:
        return f"expected {n_student} teacher layers (one per student layer), got {layers!r}"
    if s_width != t_width:
        return (
            f"the student's states have {s_width} dimensions and the teacher's {t_width}: they "
            "are compared as they are, so they must have the same width"
        )
    try:
        matched_layers(layers, n_teacher)
    except ValueError as exc:
        return str(exc)
    return None
