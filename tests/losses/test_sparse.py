import math

import pytest
import torch

from codistill.losses import divergences
from codistill.losses.sparse import (
    SparseTargets,
    sparse_forward_kl,
    sparse_jsd,
    sparse_reverse_kl,
    sparse_teacher_targets,
)

BATCH, SEQ, VOCAB = 3, 5, 13

# The documented table in sparse.py: (dist, k) -> (forward KL, reverse KL, JSD) max gap.
DOCUMENTED_GAPS = {
    ("random", 8): (0.947, 1.16, 0.200),
    ("random", 32): (0.751, 1.09, 0.173),
    ("random", 64): (0.613, 1.02, 0.152),
    ("peaked", 8): (0.306, 0.487, 0.0762),
    ("peaked", 32): (0.0680, 0.264, 0.0244),
    ("peaked", 64): (0.0396, 0.185, 0.0149),
}


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    student = 2 * torch.randn(BATCH, SEQ, VOCAB, generator=g)
    teacher = 2 * torch.randn(BATCH, SEQ, VOCAB, generator=g)
    mask = torch.rand(BATCH, SEQ, generator=g) > 0.3
    mask[0, 0] = True
    return student, teacher, mask


def _cached(
    teacher_rows: torch.Tensor, k: int, dtype: torch.dtype = torch.float32
) -> tuple[torch.Tensor, torch.Tensor]:
    """What the cache stores: top-k ids and T=1 log-probs, descending."""
    values, ids = torch.log_softmax(teacher_rows.to(dtype), dim=-1).topk(k, dim=-1)
    return ids, values


def _logits(kind: str, n: int = 64, vocab: int = 1000, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    if kind == "random":
        return torch.randn(n, vocab, generator=g), torch.randn(n, vocab, generator=g)
    teacher = 3 * torch.randn(n, vocab, generator=g)
    spikes = torch.randint(0, vocab, (n, 3), generator=g)
    teacher.scatter_add_(1, spikes, torch.full((n, 3), 12.0))
    return 0.7 * teacher + torch.randn(n, vocab, generator=g), teacher


PAIRS = [
    (sparse_forward_kl, divergences.forward_kl),
    (sparse_reverse_kl, divergences.reverse_kl),
    (sparse_jsd, divergences.jsd),
]


def _gap(kind: str, k: int) -> list[torch.Tensor]:
    """Per-position dense − sparse at T=1 for forward KL, reverse KL and JSD."""
    student, teacher = _logits(kind)
    # The teacher's top-k log-probs in float64: the tail is 1 - sum(top-k), and at k = 256 of a
    # peaked teacher it is so small that float32 log-probs cannot pin it (their rounding, which
    # differs between CPUs' vectorised exp, moved the reverse KL by 1e-4, beyond the gap itself).
    targets = sparse_teacher_targets(*_cached(teacher.double(), k, torch.float64))
    mask = torch.ones(1, student.shape[0], dtype=torch.bool)
    return [
        dense(student[None], teacher[None], mask, reduction="none")[0]
        - sparse(student, targets, reduction="none")
        for sparse, dense in PAIRS
    ]


@pytest.mark.parametrize("temperature", [0.5, 1.0, 2.0, 4.0])
@pytest.mark.parametrize("reduction", ["none", "sum", "mean"])
def test_full_support_equals_dense(temperature, reduction):
    student, teacher, mask = _batch()
    targets = sparse_teacher_targets(
        *_cached(teacher[mask], VOCAB), temperature=temperature, teacher_vocab_size=VOCAB
    )
    for sparse, dense in PAIRS:
        got = sparse(student, targets, mask, temperature=temperature, reduction=reduction)
        want = dense(student, teacher, mask, temperature=temperature, reduction=reduction)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("beta", [0.0, 0.1, 0.9, 1.0])
def test_full_support_generalized_jsd_equals_dense(beta):
    student, teacher, mask = _batch(1)
    targets = sparse_teacher_targets(
        *_cached(teacher[mask], VOCAB), temperature=2.0, teacher_vocab_size=VOCAB
    )
    got = sparse_jsd(student, targets, mask, beta=beta, temperature=2.0, reduction="none")
    want = divergences.generalized_jsd(student, teacher, mask, beta, 2.0, reduction="none")
    torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_full_support_at_t1_without_vocab_size_reverse_kl_and_jsd_match():
    # Without teacher_vocab_size the rounding residue of 1 − Σp is a tiny tail; forward KL is
    # then +inf against a student with no token outside the support (documented), the others
    # are unaffected.
    student, teacher, mask = _batch(2)
    targets = sparse_teacher_targets(*_cached(teacher[mask], VOCAB))
    for sparse, dense in PAIRS[1:]:
        got = sparse(student, targets, mask, reduction="none")
        want = dense(student, teacher, mask, reduction="none")
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)


def test_targets_are_normalised_with_tail():
    _, teacher, mask = _batch(3)
    ids, logp = _cached(teacher[mask], 4)
    targets = sparse_teacher_targets(ids, logp, temperature=3.0)
    total = targets.teacher_logp.exp().sum(-1) + targets.tail_logp.exp()
    torch.testing.assert_close(total, torch.ones_like(total))
    # On the support the tempered values keep the exact relative odds p^(1/T).
    torch.testing.assert_close(
        targets.teacher_logp - targets.teacher_logp[:, :1], (logp - logp[:, :1]) / 3.0
    )


@pytest.mark.parametrize("temperature", [0.5, 2.0, 4.0])
def test_tempered_tail_is_a_one_sided_bound(temperature):
    # Documented: for T >= 1 the computed tail probability is <= the true tempered tail.
    _, teacher = _logits("peaked", n=32, vocab=200)
    targets = sparse_teacher_targets(*_cached(teacher, 16), temperature=temperature)
    true_logp = torch.log_softmax(teacher / temperature, dim=-1)
    top = true_logp.topk(16, dim=-1).values
    true_tail = (1 - top.exp().sum(-1)).clamp(min=0)
    got = targets.tail_logp.exp()
    if temperature >= 1:
        assert (got <= true_tail + 1e-6).all()
    else:
        assert (got >= true_tail - 1e-6).all()


@pytest.mark.parametrize("kind", ["random", "peaked"])
def test_sparse_never_exceeds_dense_at_t1_and_gap_shrinks_with_k(kind):
    # Data-processing inequality: merging outcomes into one bucket is a Markov kernel applied to
    # both distributions, so no f-divergence (KL either way, any JSD) can grow.
    previous = None
    for k in (8, 32, 64, 256):
        gaps = _gap(kind, k)
        for gap in gaps:
            assert (gap >= -1e-5).all()
        worst = torch.stack([g.max() for g in gaps])
        if previous is not None:
            assert (worst <= previous + 1e-6).all()
        previous = worst


@pytest.mark.parametrize(("kind", "k"), sorted(DOCUMENTED_GAPS))
def test_measured_gap_table(kind, k):
    measured = [g.max().item() for g in _gap(kind, k)]
    for value, documented in zip(measured, DOCUMENTED_GAPS[(kind, k)], strict=True):
        assert value == pytest.approx(documented, rel=0.01, abs=1e-4)


@pytest.mark.parametrize("beta", [0.1, 0.5, 0.9])
def test_jsd_gap_within_analytical_bound(beta):
    student, teacher = _logits("peaked", n=32, vocab=300)
    for k in (4, 16, 64):
        ids, logp = _cached(teacher, k)
        targets = sparse_teacher_targets(ids, logp)
        mask = torch.ones(1, 32, dtype=torch.bool)
        dense = divergences.generalized_jsd(
            student[None], teacher[None], mask, beta, reduction="none"
        )[0]
        sparse = sparse_jsd(student, targets, beta=beta, reduction="none")
        r_t = targets.tail_logp.exp()
        r_s = 1 - torch.softmax(student, -1).gather(1, ids).sum(-1)
        bound = (beta * r_t + (1 - beta) * r_s) * math.log(2)
        assert (dense - sparse <= bound + 1e-6).all()


def test_forward_kl_gap_within_analytical_bound():
    student, teacher = _logits("peaked", n=32, vocab=300)
    ids, logp = _cached(teacher, 16)
    targets = sparse_teacher_targets(ids, logp)
    mask = torch.ones(1, 32, dtype=torch.bool)
    dense = divergences.forward_kl(student[None], teacher[None], mask, reduction="none")[0]
    sparse = sparse_forward_kl(student, targets, reduction="none")
    log_s = torch.log_softmax(student, -1)
    tail_log_s = log_s.scatter(1, ids, float("inf"))
    log_r_s = log_s.scatter(1, ids, float("-inf")).logsumexp(-1)
    bound = targets.tail_logp.exp() * (log_r_s - tail_log_s.min(-1).values)
    assert (dense - sparse <= bound + 1e-5).all()


def test_ids_outside_student_vocab_go_to_tail():
    torch.manual_seed(0)
    teacher_vocab, kept = 10, torch.tensor([0, 2, 3, 5, 7, 9])
    teacher_to_student = torch.full((teacher_vocab,), -1, dtype=torch.long)
    teacher_to_student[kept] = torch.arange(len(kept))
    teacher = torch.randn(4, teacher_vocab)
    ids, logp = _cached(teacher, teacher_vocab)
    targets = sparse_teacher_targets(ids, logp, teacher_to_student)
    assert ((targets.student_ids == -1) == ~torch.isin(ids, kept)).all()
    assert torch.isneginf(targets.teacher_logp[targets.student_ids == -1]).all()
    p = torch.softmax(teacher, -1)
    dropped = torch.ones(teacher_vocab, dtype=torch.bool)
    dropped[kept] = False
    torch.testing.assert_close(targets.tail_logp.exp(), p[:, dropped].sum(-1))
    # Reference: the teacher on the student's vocabulary plus one bucket for the rest,
    # against a student whose extra bucket is empty.
    student = torch.randn(4, len(kept), requires_grad=True)
    t_ref = torch.cat([p[:, kept], p[:, dropped].sum(-1, keepdim=True)], -1)
    s_ref = torch.cat([torch.softmax(student, -1), torch.zeros(4, 1)], -1)
    want = (t_ref * (t_ref.log() - s_ref.log())).sum(-1)  # inf: student tail is empty
    got = sparse_forward_kl(student, targets, reduction="none")
    assert torch.isinf(want).all() and torch.isinf(got).all()
    jsd_want = 0.5 * sum(
        (x * (x.log() - (0.5 * (t_ref + s_ref)).log())).nan_to_num(0.0).sum(-1)
        for x in (t_ref, s_ref)
    )
    torch.testing.assert_close(sparse_jsd(student, targets, reduction="none"), jsd_want)
    sparse_jsd(student, targets).backward()
    assert torch.isfinite(student.grad).all()


def test_bf16_input_gives_finite_gradients_on_masked_student_logits():
    student, teacher, mask = _batch(4)
    ids, logp = _cached(teacher[mask], 6)
    targets = sparse_teacher_targets(ids.int(), logp.bfloat16(), temperature=2.0)
    for loss_fn in (sparse_forward_kl, sparse_reverse_kl, sparse_jsd):
        leaf = student.bfloat16().requires_grad_()
        loss = loss_fn(leaf, targets, mask, temperature=2.0)
        assert loss.dtype == torch.float32 and torch.isfinite(loss)
        loss.backward()
        assert leaf.grad is not None and torch.isfinite(leaf.grad.float()).all()
        assert leaf.grad[mask].abs().sum() > 0
        assert (leaf.grad[~mask] == 0).all()


def test_full_support_gradients_are_finite():
    student, teacher, mask = _batch(5)
    targets = sparse_teacher_targets(*_cached(teacher[mask], VOCAB), teacher_vocab_size=VOCAB)
    student.requires_grad_()
    sparse_forward_kl(student, targets, mask).backward()
    assert torch.isfinite(student.grad).all()


def test_mean_of_no_tokens_is_zero():
    student = torch.randn(2, 3, VOCAB)
    mask = torch.zeros(2, 3, dtype=torch.bool)
    empty = SparseTargets(torch.zeros(0, 4, dtype=torch.long), torch.zeros(0, 4), torch.zeros(0))
    assert sparse_jsd(student, empty, mask).item() == 0.0


def test_rejects_bad_inputs():
    student, teacher, mask = _batch()
    ids, logp = _cached(teacher[mask], 4)
    with pytest.raises(ValueError, match="temperature"):
        sparse_teacher_targets(ids, logp, temperature=0)
    with pytest.raises(ValueError, match="topk_ids"):
        sparse_teacher_targets(ids[:, :2], logp)
    targets = sparse_teacher_targets(ids, logp)
    with pytest.raises(ValueError, match="mask is required"):
        sparse_forward_kl(student, targets)
    with pytest.raises(ValueError, match="targets must be"):
        sparse_forward_kl(student, sparse_teacher_targets(ids[:1], logp[:1]), mask)
    with pytest.raises(ValueError, match="reduction"):
        sparse_reverse_kl(student, targets, mask, reduction="avg")
    with pytest.raises(ValueError, match="beta"):
        sparse_jsd(student, targets, mask, beta=1.5)


def test_complete_rows_leave_no_tail_whatever_rounding_leaves():
    # Rows renormalised in float32 sum to 1 only up to rounding; "complete" says they are the
    # whole distribution, so the tail is empty rather than a sliver the student cannot match.
    logp = torch.log_softmax(torch.randn(3, 5), dim=-1) - 1e-6
    ids = torch.arange(5).expand(3, -1)
    assert torch.isfinite(sparse_teacher_targets(ids, logp, teacher_vocab_size=9).tail_logp).all()
    done = sparse_teacher_targets(ids, logp, teacher_vocab_size=9, complete=True)
    assert torch.isneginf(done.tail_logp).all()


def _reference_support_and_tail(z: torch.Tensor, ids: torch.Tensor) -> torch.Tensor:
    """What ``_SupportAndTail`` computes, written with autograd's ops (as ``_coarsened`` did
    before it)."""
    log_p = torch.log_softmax(z, dim=1)
    present = ids >= 0
    support = torch.where(present, log_p.gather(1, ids.clamp(min=0)), -torch.inf)
    in_support = torch.zeros(z.shape[0], z.shape[1] + 1, dtype=torch.bool)
    in_support = in_support.scatter_(1, torch.where(present, ids, z.shape[1]), True)[:, :-1]
    empty = in_support.all(dim=1, keepdim=True)
    rest = log_p.masked_fill(in_support & ~empty, -torch.inf)
    tail = torch.where(empty, -torch.inf, torch.logsumexp(rest, dim=1, keepdim=True))
    return torch.cat([support, tail], dim=1)


def _support_and_tail_against_reference(z: torch.Tensor, ids: torch.Tensor, seed: int):
    """``_SupportAndTail`` on (z, ids) vs the autograd reference in float64 (float32 autograd
    rounds more than the hand-written gradient): values, and the gradients of a random
    weighting of the finite outputs. Returns the outputs."""
    from codistill.losses.sparse import _SupportAndTail

    mine = z.detach().clone().requires_grad_(True)
    ref = z.detach().double().clone().requires_grad_(True)
    out = _SupportAndTail.apply(mine, ids)
    expected = _reference_support_and_tail(ref, ids)
    torch.testing.assert_close(out, expected.to(z.dtype))
    finite = torch.isfinite(expected)
    upstream = torch.randn(out.shape, generator=torch.Generator().manual_seed(seed)) * finite
    (out.masked_fill(~finite, 0) * upstream.to(z.dtype)).sum().backward()
    (expected.masked_fill(~finite, 0) * upstream.double()).sum().backward()
    assert torch.isfinite(mine.grad).all()
    torch.testing.assert_close(mine.grad, ref.grad.to(z.dtype))
    return out.detach()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_support_and_tail_matches_autograd_values_and_gradients(dtype):
    """The hand-written backward agrees with autograd on every kind of row: plain, ids the
    student lacks, none of the support in the student's vocabulary, a tail below the dtype's
    range (the exact fallback), and a support that is the whole vocabulary."""
    g = torch.Generator().manual_seed(0)
    vocab, k = 11, 4
    z = (2 * torch.randn(5, vocab, generator=g)).to(dtype)
    ids = torch.stack([torch.randperm(vocab, generator=g)[:k] for _ in range(5)])
    ids[1, 2] = -1  # a teacher id the student lacks
    ids[2, :] = -1  # nothing of the support in the student's vocabulary
    # Row 3: the support holds all but ~exp(-2000) of the mass, beyond float64's range.
    z[3] = -2000.0
    z[3, ids[3]] = torch.tensor([0.0, -1.0, -2.0, -3.0], dtype=dtype)
    out = _support_and_tail_against_reference(z, ids, seed=1)
    assert -2001 < float(out[3, -1]) < -1990  # -inf without the exact fallback
    whole = _support_and_tail_against_reference(z[:2], torch.arange(vocab).repeat(2, 1), seed=2)
    assert torch.isinf(whole[:, -1]).all()  # no tail


def test_support_and_tail_gradcheck():
    from codistill.losses.sparse import _SupportAndTail

    g = torch.Generator().manual_seed(1)
    z = torch.randn(3, 7, generator=g, dtype=torch.float64, requires_grad=True)
    ids = torch.tensor([[0, 3, -1], [6, 1, 2], [5, -1, -1]])
    # Only the finite outputs: gradcheck's finite differences cannot handle -inf entries.
    finite = ids >= 0

    def fn(x):
        out = _SupportAndTail.apply(x, ids)
        return out[:, :-1][finite], out[:, -1]

    assert torch.autograd.gradcheck(fn, (z,))


def test_duplicate_support_ids_are_refused():
    student = torch.randn(2, 9)
    targets = SparseTargets(
        torch.tensor([[1, 1, 2], [0, -1, -1]]),
        torch.log(torch.tensor([[0.3, 0.3, 0.2], [0.5, 0.0, 0.0]])),
        torch.log(torch.tensor([0.2, 0.5])),
    )
    with pytest.raises(ValueError, match="distinct"):
        sparse_forward_kl(student, targets)
