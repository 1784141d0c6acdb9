"""KL, reverse KL and JSD against a cached top-k teacher plus one tail bucket.

The teacher cache keeps, per target position, the teacher's ``k`` most likely ids
(``topk_ids [n, k]``, teacher vocabulary) and their log-probabilities at T = 1
(``topk_logprobs [n, k]``, natural log, descending). Everything else is the *tail*, of mass
``r = 1 − Σ exp(topk_logprobs)``. The losses here compare teacher and student on the coarsened
outcome space ``support ∪ {tail}``: the student's tail probability is the exact mass of all its
tokens outside the (mapped) support, computed in log space. The functions follow
``divergences.py``: float32 maths on the masked tokens only, ``reduction`` none/sum/mean, and the
T² factor (Hinton et al. 2015).

Student vocabulary. ``teacher_to_student`` is a ``[V_teacher]`` int64 tensor, entry ``i`` the
student id of teacher id ``i`` or ``-1`` when the student lacks it (build it from
``TokenMap.student_to_teacher``; do not map missing ids to the student's unk, which would hand the
teacher's mass on them to one real student token). Support entries whose id maps to ``-1`` are
moved into the tail bucket.

Temperature, exactly what is computed. Tempering is ``p_T(v) ∝ p(v)^(1/T)``. On the support the
relative values are exact (``logp / T``). The tail's tempered weight ``Σ_{v∈tail} p(v)^(1/T)``
needs the unknown tail distribution; it is approximated by tempering the tail as *one outcome*
of mass ``r``: weight ``r^(1/T)``. Support ids the student lacks are known individually, so they
are tempered individually and then added to the tail. Then all weights are renormalised. This is
exact at T = 1 and when the tail is empty. Since ``x ↦ x^(1/T)`` is concave for T > 1 (convex for
T < 1) and 0 at 0, ``r^(1/T) ≤ Σ p(v)^(1/T) ≤ m^(1−1/T)·r^(1/T)`` for T ≥ 1, with ``m`` the number
of tail tokens (both inequalities reversed for T < 1); so for T ≥ 1 the computed tempered tail
probability is a lower bound on the true one (an upper bound for T < 1), tested. Pass
``teacher_vocab_size`` (or a map, whose length is it) so that ``k = V`` gives an empty tail
exactly: otherwise the rounding residue of ``1 − Σ p`` (~1e-7 in float32, far more for float16
caches) is tempered to ``residue^(1/T)``, which is not small for T ≫ 1.

Error bound for k < V at T = 1 (the coarsened teacher is then the exact merge of the dense one).
Merging outcomes into one bucket is a Markov kernel applied to both distributions, so by the
data-processing inequality every f-divergence can only decrease: ``sparse ≤ dense`` for
forward KL, reverse KL and every β-JSD (tested). The chain rule gives the gap exactly: with
``r_t``, ``r_s`` the tail masses of teacher and student and ``t|``, ``s|`` the distributions inside
the tail,

* forward KL: ``dense − sparse = r_t·KL(t|‖s|) ≤ r_t·(log r_s − min_{v∈tail} log s(v))``;
* reverse KL: ``dense − sparse = r_s·KL(s|‖t|) ≤ r_s·(log r_t − min_{v∈tail} log t(v))``;
* β-JSD: ``dense − sparse ≤ (β·r_t + (1−β)·r_s)·ln 2`` (each KL to the tail-conditional mixture
  is at most −log of that side's share of the bucket; the weighted sum is a binary entropy).

The KL bounds depend on the smallest tail probability and are not uniform; the JSD bound is
(tested). Measured error, documented bound: V = 1000, 64 positions, T = 1, max over positions
of ``dense − sparse`` (``tests/losses/test_sparse.py::test_measured_gap_table`` recomputes it).
"random": teacher and student logits iid N(0, 1); "peaked": teacher logits N(0, 3) with 3
entries raised by 12, student = 0.7·teacher + N(0, 1). Seed 0:

==========  =====  ==========  ==========  ==========
dist        k      forward KL  reverse KL  JSD
==========  =====  ==========  ==========  ==========
random      8      0.947       1.16        0.200
random      32     0.751       1.09        0.173
random      64     0.613       1.02        0.152
peaked      8      0.306       0.487       0.0762
peaked      32     0.0680      0.264       0.0244
peaked      64     0.0396      0.185       0.0149
==========  =====  ==========  ==========  ==========

With flat (random) teachers the top-k misses almost all of the mass and the sparse loss sees
little of it; with peaked teachers, the realistic case for a code LM, the gap falls fast with k.
For T ≠ 1 the teacher side also carries the tail-tempering approximation above, and the
inequality ``sparse ≤ dense`` is not guaranteed.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import Tensor

from codistill.losses.divergences import (
    check_beta,
    check_mask,
    check_reduction,
    check_temperature,
    generalized_jsd_rows,
    kl_rows,
    masked_rows,
    reduce_token_losses,
)


class SparseTargets(NamedTuple):
    """Tempered teacher targets on ``support ∪ {tail}`` for ``n`` target positions.

    Attributes:
        student_ids: ``[n, k]`` int64 student ids of the support, ``-1`` where the student lacks
            the teacher id (that entry's mass is in the tail).
        teacher_logp: ``[n, k]`` float32 tempered teacher log-probabilities, ``-inf`` where
            ``student_ids`` is ``-1``.
        tail_logp: ``[n]`` float32 tempered teacher log-probability of the tail bucket.
    """

    student_ids: Tensor
    teacher_logp: Tensor
    tail_logp: Tensor


def _log1mexp(x: Tensor) -> Tensor:
    """log(1 − exp(x)) for float64 x, accurate on both sides of −ln 2 (Mächler 2012); −inf
    for x ≥ 0 (a support whose rounded mass reaches 1 leaves no tail)."""
    x = x.clamp(max=0)
    # Both branches are evaluated; clamp their inputs so the unused one never makes NaN/inf.
    near = torch.log(-torch.expm1(x.clamp(max=-1e-300)))
    far = torch.log1p(-torch.exp(x.clamp(max=-math.log(2))))
    out = torch.where(x > -math.log(2), near, far)
    return torch.where(x == 0, torch.full_like(x, float("-inf")), out)


def sparse_teacher_targets(
    topk_ids: Tensor,
    topk_logprobs: Tensor,
    teacher_to_student: Tensor | None = None,
    temperature: float = 1.0,
    *,
    teacher_vocab_size: int | None = None,
    complete: bool = False,
) -> SparseTargets:
    """Tempers cached top-k teacher log-probabilities and maps them to the student vocabulary.

    See the module docstring for what is exact and how the tail is tempered.

    Args:
        topk_ids: ``[n, k]`` integer teacher ids, distinct within a row; ``-1`` marks padding
            (a teacher cache row that kept fewer than ``k`` entries), whose log-prob must be
            ``-inf``: padding is no outcome, its mass is already in the tail.
        topk_logprobs: ``[n, k]`` teacher log-probabilities at T = 1 (any float dtype).
        teacher_to_student: ``[V_teacher]`` int64 student id per teacher id, ``-1`` where the
            student lacks it; None when both models share one vocabulary.
        temperature: softening temperature T > 0.
        teacher_vocab_size: teacher vocabulary size; defaults to ``len(teacher_to_student)``.
            When ``k`` equals it the tail is empty by definition, not by rounding.
        complete: the rows already are the whole distribution the student is matched to (a
            dense cache restricted to the student's vocabulary and renormalised over it): the
            tail is empty by definition, whatever rounding leaves of ``1 − Σp``.

    Returns:
        ``SparseTargets(student_ids, teacher_logp, tail_logp)``, a tuple of
        ``[n, k]``, ``[n, k]``, ``[n]``.
    """
    check_temperature(temperature)
    if topk_ids.dim() != 2 or topk_ids.shape != topk_logprobs.shape:
        raise ValueError(
            "topk_ids and topk_logprobs must both be [n, k], got "
            f"{tuple(topk_ids.shape)} and {tuple(topk_logprobs.shape)}"
        )
    if topk_ids.is_floating_point() or topk_ids.dtype == torch.bool:
        raise ValueError(f"topk_ids must be an integer tensor, got dtype {topk_ids.dtype}")
    if not topk_logprobs.is_floating_point():
        raise ValueError(f"topk_logprobs must be a float tensor, got dtype {topk_logprobs.dtype}")
    ids = topk_ids.long()
    if teacher_vocab_size is None and teacher_to_student is not None:
        teacher_vocab_size = teacher_to_student.shape[0]
    if ids.numel() and ids.min() < -1:
        raise ValueError(f"topk_ids must be >= 0 (or -1 for padding), got min {int(ids.min())}")
    padding = ids < 0
    if (padding & (topk_logprobs > float("-inf"))).any():
        raise ValueError("padding entries (topk_ids -1) must have log-prob -inf")
    if teacher_vocab_size is not None and ids.numel() and ids.max() >= teacher_vocab_size:
        raise ValueError(
            f"topk_ids must be < teacher_vocab_size={teacher_vocab_size}, got max {int(ids.max())}"
        )
    if teacher_to_student is None:
        student_ids = ids
    else:
        # Padding maps to -1 like an id the student lacks: no support entry, mass -inf.
        mapped = teacher_to_student.to(ids.device).long()[ids.clamp(min=0)]
        student_ids = mapped.masked_fill(padding, -1)

    # float64 for the tail: 1 − Σp cancels badly when the support holds nearly all the mass.
    logp = topk_logprobs.detach().double()
    k = logp.shape[-1]
    log_r = _log1mexp(torch.logsumexp(logp, dim=-1))
    if complete:
        log_r = torch.full_like(log_r, float("-inf"))
    elif teacher_vocab_size is not None and k >= teacher_vocab_size:
        # A row holding the whole vocabulary has no tail; a padded row does not hold it.
        log_r = log_r.masked_fill(~padding.any(dim=-1), float("-inf"))
    weights = torch.cat([logp, log_r[:, None]], dim=-1) / temperature
    log_all = weights - torch.logsumexp(weights, dim=-1, keepdim=True)
    missing = student_ids < 0
    kept = log_all[:, :k].masked_fill(missing, float("-inf"))
    moved = torch.cat([log_all[:, :k].masked_fill(~missing, float("-inf")), log_all[:, k:]], -1)
    tail = torch.logsumexp(moved, dim=-1)
    return SparseTargets(student_ids, kept.float(), tail.float())


def _rows(student_logits: Tensor, mask: Tensor | None) -> tuple[Tensor, Tensor]:
    """The masked student rows ``[n, V_s]`` as float32, and the mask (all True if None)."""
    if student_logits.dim() not in (2, 3):
        raise ValueError(
            "student_logits must be [n, vocab] or [batch, seq, vocab], "
            f"got shape {tuple(student_logits.shape)}"
        )
    if not student_logits.is_floating_point():
        raise ValueError(f"student_logits must be a float tensor, got dtype {student_logits.dtype}")
    if mask is None:
        if student_logits.dim() == 3:
            raise ValueError("mask is required when student_logits is [batch, seq, vocab]")
        mask = torch.ones(student_logits.shape[0], dtype=torch.bool, device=student_logits.device)
    check_mask(mask, student_logits.shape[:-1])
    return masked_rows(student_logits, mask), mask


class _SupportAndTail(torch.autograd.Function):
    """The student's log-probabilities on ``support ∪ {tail}``, ``[n, k + 1]``, from its logits.

    Written by hand rather than as ``log_softmax`` + a masked ``logsumexp`` because over a 152k
    vocabulary this loss's cost is its passes over the ``[n, V]`` rows, and autograd's version of
    that makes about fifteen of them (each op and each op's backward one or two); this makes a
    softmax and a masked sum forward and one product backward. The values are the same:

    * support: ``z_s − logsumexp(z)`` (from the logits, so a probability that underflows in
      float32 still has its exact log), ``-inf`` where the id is ``-1``;
    * tail: ``log Σ_{v∉S} p_v``, a direct sum over the complement, never ``log(1 − Σ_S p)``,
      which cancels when the support holds nearly all the mass. Where the sum underflows (every
      complement probability below float32's range) the row falls back to an exact masked
      ``logsumexp``. A row whose support is the whole vocabulary has tail ``-inf``.

    Gradient: with ``p = softmax(z)``, upstream ``g_s`` (support) and ``g_t`` (tail),
    ``P_t = Σ_{v∉S} p_v`` and ``G = Σ g_s + g_t``:
    ``∂/∂z_v = p_v·(g_t/P_t·[v∉S] − G) + Σ_j g_{s,j}·[v = s_j]``.
    """

    @staticmethod
    def forward(ctx, z: Tensor, ids: Tensor) -> Tensor:
        n, vocab = z.shape
        present = ids >= 0
        safe_ids = ids.clamp(min=0)
        # Ids the student lacks scatter into a spare column, so they cannot clear a real id's flag.
        spare_ids = torch.where(present, ids, vocab)
        in_support = torch.zeros(n, vocab + 1, dtype=torch.bool, device=z.device)
        in_support = in_support.scatter_(1, spare_ids, True)[:, :vocab]
        p = torch.softmax(z, dim=1)
        top = z.argmax(dim=1, keepdim=True)
        # The normaliser from the largest entry's probability (at least 1/V, so its log is exact).
        log_z = z.gather(1, top) - p.gather(1, top).log()
        support = torch.where(present, z.gather(1, safe_ids) - log_z, -torch.inf)
        tail = p.masked_fill(in_support, 0).sum(dim=1, keepdim=True).log()
        empty = present.sum(dim=1, keepdim=True) == vocab  # ids are distinct in a row
        # Complement probabilities below ``tiny`` are lost or denormal, an absolute error of at
        # most V·tiny in the sum; below 2^20 times that its relative error could pass 1e-6, and
        # such rows are recomputed exactly.
        floor = math.log(torch.finfo(z.dtype).tiny * vocab * 2**20)
        exact_rows = ((tail < floor) & ~empty).squeeze(1).nonzero().squeeze(1)
        z_exact = z[exact_rows]
        if exact_rows.numel():
            rest = z_exact.masked_fill(in_support[exact_rows], -torch.inf)
            tail[exact_rows] = torch.logsumexp(rest, dim=1, keepdim=True) - log_z[exact_rows]
        tail = tail.masked_fill(empty, -torch.inf)
        ctx.save_for_backward(p, safe_ids, present, in_support, tail, exact_rows, z_exact)
        return torch.cat([support, tail], dim=1)

    @staticmethod
    def backward(ctx, grad: Tensor):
        p, safe_ids, present, in_support, tail, exact_rows, z_exact = ctx.saved_tensors
        g_s = grad[:, :-1].masked_fill(~present, 0)
        g_t = grad[:, -1:].masked_fill(torch.isinf(tail), 0)
        total = g_s.sum(dim=1, keepdim=True) + g_t
        # 1/P_t as exp(-tail); the clamp only guards rows that are empty (g_t = 0) or exact.
        scale = g_t * torch.exp(-tail.clamp(min=-80.0))
        # Every entry as if in the complement, then the support's k entries put right.
        dz = p * (scale - total)
        p_s = p.gather(1, safe_ids)
        dz.scatter_add_(1, safe_ids, (g_s - p_s * scale).masked_fill(~present, 0))
        if exact_rows.numel():
            # The complement's own softmax, from the logits (p underflowed there); a row whose
            # logits outside the support are all -inf gives NaN, and has no gradient to pass.
            q = torch.softmax(z_exact.masked_fill(in_support[exact_rows], -torch.inf), dim=1)
            q = q.masked_fill(torch.isinf(tail[exact_rows]), 0)
            rows = g_t[exact_rows] * q - total[exact_rows] * p[exact_rows]
            dz[exact_rows] = rows.scatter_add(1, safe_ids[exact_rows], g_s[exact_rows])
        return dz, None


def _coarsened(
    student_logits: Tensor, targets: SparseTargets, mask: Tensor | None, temperature: float
) -> tuple[Tensor, Tensor, Tensor]:
    """Teacher and student log-probabilities on ``support ∪ {tail}``, ``[n, k + 1]`` each."""
    check_temperature(temperature)
    student_ids, teacher_logp, tail_logp = targets
    logits, mask = _rows(student_logits, mask)
    n, vocab = logits.shape
    if student_ids.shape != teacher_logp.shape or student_ids.shape[:1] != (n,):
        raise ValueError(
            f"targets must be [n={n}, k] (one row per masked position), got student_ids "
            f"{tuple(student_ids.shape)} and teacher_logp {tuple(teacher_logp.shape)}"
        )
    if tuple(tail_logp.shape) != (n,):
        raise ValueError(f"tail_logp must have shape ({n},), got {tuple(tail_logp.shape)}")
    ids = student_ids.long()
    if ids.numel() and ids.max() >= vocab:
        raise ValueError(f"student_ids must be < student vocab {vocab}, got max {int(ids.max())}")
    ordered = ids.sort(dim=1).values
    if ((ordered[:, 1:] == ordered[:, :-1]) & (ordered[:, 1:] >= 0)).any():
        raise ValueError("student_ids must be distinct within a row (apart from -1)")
    z = logits / temperature if temperature != 1 else logits
    student = _SupportAndTail.apply(z, ids)
    teacher = torch.cat([teacher_logp.float(), tail_logp.float()[:, None]], dim=1).detach()
    return teacher.to(student.device), student, mask


def sparse_forward_kl(
    student_logits: Tensor,
    targets: SparseTargets,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """T²·KL(P_t‖P_s) on ``support ∪ {tail}``; equals ``divergences.forward_kl`` when k = V.

    ``+inf`` on a position whose teacher tail is > 0 while the student has no token outside the
    support: true when the teacher has mass on ids the student lacks, a rounding artefact when
    k = V and the targets were made without ``teacher_vocab_size``.

    Args:
        student_logits: ``[n, V_s]``, or ``[batch, seq, V_s]`` with ``mask``.
        targets: ``sparse_teacher_targets(...)`` for the masked positions in row-major order,
            made with the same ``temperature``.
        mask: ``[batch, seq]`` (or ``[n]``) bool, True for positions that count; None = all rows
            of a 2-D input.
        temperature: softening temperature T > 0.
        reduction: ``"none"`` → mask-shaped per-token losses, ``"sum"`` or ``"mean"`` → scalar.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    teacher, student, mask = _coarsened(student_logits, targets, mask, temperature)
    # T² keeps soft-loss gradients on the scale of the hard loss (Hinton et al. 2015).
    return reduce_token_losses(temperature**2 * kl_rows(teacher, student), mask, reduction)


def sparse_reverse_kl(
    student_logits: Tensor,
    targets: SparseTargets,
    mask: Tensor | None = None,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """T²·KL(P_s‖P_t) on ``support ∪ {tail}``; equals ``divergences.reverse_kl`` when k = V.

    ``+inf`` on a position whose teacher tail is exactly 0 while the student's is not (k = V
    with a student vocabulary larger than the mapped support), as the dense value is.

    Args:
        student_logits: ``[n, V_s]``, or ``[batch, seq, V_s]`` with ``mask``.
        targets: ``sparse_teacher_targets(...)`` made with the same ``temperature``.
        mask: ``[batch, seq]`` (or ``[n]``) bool; None = all rows of a 2-D input.
        temperature: softening temperature T > 0.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    teacher, student, mask = _coarsened(student_logits, targets, mask, temperature)
    return reduce_token_losses(temperature**2 * kl_rows(student, teacher), mask, reduction)


def sparse_jsd(
    student_logits: Tensor,
    targets: SparseTargets,
    mask: Tensor | None = None,
    beta: float = 0.5,
    temperature: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """β-generalised JSD on ``support ∪ {tail}``, as ``divergences.generalized_jsd``.

    ``M = β·P_t + (1−β)·P_s``, loss ``T²·[β·KL(P_t‖M) + (1−β)·KL(P_s‖M)]``; β weights the
    teacher, β = 0.5 is the symmetric JSD, and the endpoints β ∈ {0, 1} give 0 as in the dense
    version.

    Args:
        student_logits: ``[n, V_s]``, or ``[batch, seq, V_s]`` with ``mask``.
        targets: ``sparse_teacher_targets(...)`` made with the same ``temperature``.
        mask: ``[batch, seq]`` (or ``[n]``) bool; None = all rows of a 2-D input.
        beta: teacher weight in the mixture, in [0, 1].
        temperature: softening temperature T > 0.
        reduction: ``"none"``, ``"sum"`` or ``"mean"``.

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    check_beta(beta)
    beta = float(beta)
    teacher, student, mask = _coarsened(student_logits, targets, mask, temperature)
    per_token = generalized_jsd_rows(teacher, student, beta)
    return reduce_token_losses(temperature**2 * per_token, mask, reduction)
