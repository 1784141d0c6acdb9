import math

import numpy as np
import pytest
import torch

from codistill.losses.contrastive import fault_contrastive_loss, sequence_logprobs

BATCH, SEQ, VOCAB = 3, 6, 9


def _aligned(seed: int = 0):
    """Logits with labels and mask already aligned (codistill.data.batches' convention)."""
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(BATCH, SEQ, VOCAB, generator=gen) * 3
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    # Prompt then solution then right padding; the last row has no solution token.
    mask = torch.tensor(
        [
            [False, False, True, True, True, False],
            [False, True, True, True, True, True],
            [False, False, False, False, False, False],
        ]
    )
    labels[~mask] = -100
    return logits, labels, mask


def _np_sequence_logprobs(logits, labels, mask) -> np.ndarray:
    """Brute force in float64: one log-softmax per masked position, summed per row."""
    x = logits.double().numpy()
    out = np.zeros(x.shape[0])
    for b in range(x.shape[0]):
        for t in range(x.shape[1]):
            if mask[b, t]:
                row = x[b, t]
                log_z = row.max() + math.log(np.exp(row - row.max()).sum())
                out[b] += row[int(labels[b, t])] - log_z
    return out


def _np_loss(pc, pf, rc, rf, beta) -> float:
    pc, pf, rc, rf = (np.asarray(x, dtype=np.float64) for x in (pc, pf, rc, rf))
    margins = beta * ((pc - rc) - (pf - rf))
    return float(np.mean([math.log1p(math.exp(-m)) for m in margins]))


def test_sequence_logprobs_matches_brute_force_float64():
    logits, labels, mask = _aligned()
    got = sequence_logprobs(logits, labels, mask, shift=False)
    assert got.dtype == torch.float32 and got.shape == (BATCH,)
    np.testing.assert_allclose(got.numpy(), _np_sequence_logprobs(logits, labels, mask), rtol=1e-5)
    assert got[2].item() == 0.0


def test_shift_true_on_input_ids_equals_pre_shifted_labels():
    gen = torch.Generator().manual_seed(1)
    logits = torch.randn(BATCH, SEQ, VOCAB, generator=gen)
    input_ids = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    solution = torch.zeros(BATCH, SEQ, dtype=torch.bool)
    solution[0, 3:] = True
    solution[1, 1:4] = True
    unshifted = sequence_logprobs(logits, input_ids, solution, shift=True)
    # The same thing by hand: logits at t predict the input token at t + 1.
    labels = torch.cat([input_ids[:, 1:], torch.zeros(BATCH, 1, dtype=torch.long)], dim=1)
    mask = torch.cat([solution[:, 1:], torch.zeros(BATCH, 1, dtype=torch.bool)], dim=1)
    torch.testing.assert_close(unshifted, sequence_logprobs(logits, labels, mask, shift=False))
    expected = _np_sequence_logprobs(logits, labels, mask)
    np.testing.assert_allclose(unshifted.numpy(), expected, rtol=1e-5)
    # Forgetting the shift gives another number: the convention matters.
    unaligned = sequence_logprobs(logits, input_ids, solution, shift=False)
    assert not torch.allclose(unshifted, unaligned)


def test_shift_true_refuses_a_solution_token_at_position_zero():
    logits, labels, mask = _aligned()
    mask = mask.clone()
    mask[0, 0] = True
    labels[0, 0] = 1
    with pytest.raises(ValueError, match=r"mask\[:, 0\] must be False"):
        sequence_logprobs(logits, labels, mask, shift=True)


def test_masked_positions_change_neither_value_nor_gradient():
    logits, labels, mask = _aligned()
    noisy = logits.clone()
    noisy[~mask] = float("nan")
    noisy[0, 0, 0] = float("inf")
    labels_noisy = labels.clone()
    labels_noisy[~mask] = 12345  # out of the vocabulary, but never read
    clean_in = logits.clone().requires_grad_(True)
    noisy_in = noisy.clone().requires_grad_(True)
    clean = sequence_logprobs(clean_in, labels, mask, shift=False)
    got = sequence_logprobs(noisy_in, labels_noisy, mask, shift=False)
    torch.testing.assert_close(got, clean)
    got.sum().backward()
    clean.sum().backward()
    assert torch.isfinite(noisy_in.grad).all()
    torch.testing.assert_close(noisy_in.grad, clean_in.grad)
    assert (noisy_in.grad[~mask] == 0).all()


def test_sequence_logprobs_refuses_bad_inputs():
    logits, labels, mask = _aligned()
    with pytest.raises(ValueError, match="mask must be a bool tensor"):
        sequence_logprobs(logits, labels, mask.long(), shift=False)
    with pytest.raises(ValueError, match="labels must have shape"):
        sequence_logprobs(logits, labels[:, 1:], mask, shift=False)
    bad = labels.clone()
    bad[0, 2] = VOCAB
    with pytest.raises(ValueError, match=r"ids in \[0, 9\)"):
        sequence_logprobs(logits, bad, mask, shift=False)


def _logps(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    return [torch.randn(5, generator=gen, dtype=torch.float64).float() * 10 - 40 for _ in range(4)]


def test_loss_matches_brute_force_float64():
    pc, pf, rc, rf = _logps()
    for beta in (0.1, 1.0, 2.5):
        got = fault_contrastive_loss(pc, pf, rc, rf, beta)
        expected = _np_loss(pc.double(), pf.double(), rc.double(), rf.double(), beta)
        assert got.item() == pytest.approx(expected, rel=1e-5)


def test_loss_is_log_2_when_policy_equals_reference():
    pc, pf, _, _ = _logps()
    for beta in (0.01, 0.1, 10.0):
        loss = fault_contrastive_loss(pc, pf, pc.clone(), pf.clone(), beta)
        assert loss.item() == pytest.approx(math.log(2), rel=1e-6)


def test_no_gradient_reaches_the_reference():
    pc, pf, rc, rf = (t.clone().requires_grad_(True) for t in _logps())
    fault_contrastive_loss(pc, pf, rc, rf, 0.1).backward()
    assert rc.grad is None and rf.grad is None
    assert (pc.grad < 0).all() and (pf.grad > 0).all()  # raise y_c, lower y_f


def test_loss_decreases_as_the_policy_margin_grows():
    pc, pf, rc, rf = _logps()
    losses = [fault_contrastive_loss(pc + d, pf - d, rc, rf, 0.5).item() for d in range(-4, 5)]
    assert all(a > b for a, b in zip(losses, losses[1:], strict=False))


def test_beta_scales_the_margin():
    pc, pf, rc, rf = _logps()
    scaled = fault_contrastive_loss(pc, pf, rc, rf, 3.0)
    # beta * margin with beta = 3 equals beta = 1 on a margin three times as large.
    same = fault_contrastive_loss(rc + 3 * (pc - rc), rf + 3 * (pf - rf), rc, rf, 1.0)
    assert scaled.item() == pytest.approx(same.item(), rel=1e-5)
    positive = (pc + 1, pf - 1, pc, pf)  # margin +2 on every pair
    assert fault_contrastive_loss(*positive, 2.0) < fault_contrastive_loss(*positive, 0.5)


def test_loss_is_finite_for_huge_margins():
    zero = torch.zeros(2)
    worst = fault_contrastive_loss(torch.tensor([-1e4, 0.0]), zero, zero, zero, 1.0)
    assert math.isfinite(worst.item())
    assert worst.item() == pytest.approx((1e4 + math.log(2)) / 2, rel=1e-6)
    best = fault_contrastive_loss(torch.tensor([1e4, 1e4]), zero, zero, zero, 1.0)
    assert best.item() == pytest.approx(0.0, abs=1e-6)


def test_a_few_steps_on_the_loss_raise_the_correct_solution_over_the_faulty_one():
    logits, labels, mask = _aligned()
    faulty_labels = (labels + 1).where(mask, labels) % VOCAB
    faulty_labels[~mask] = -100
    policy = logits.clone().requires_grad_(True)
    with torch.no_grad():
        ref_c = sequence_logprobs(logits, labels, mask, shift=False)
        ref_f = sequence_logprobs(logits, faulty_labels, mask, shift=False)
    opt = torch.optim.SGD([policy], lr=1.0)
    losses = []
    for _ in range(5):
        pc = sequence_logprobs(policy, labels, mask, shift=False)
        pf = sequence_logprobs(policy, faulty_labels, mask, shift=False)
        loss = fault_contrastive_loss(pc[:2], pf[:2], ref_c[:2], ref_f[:2], 0.5)
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert losses[0] == pytest.approx(math.log(2), rel=1e-5)
    assert losses[-1] < losses[0]


@pytest.mark.parametrize("beta", [0, -1.0, float("inf"), float("nan"), True])
def test_loss_refuses_a_bad_beta(beta):
    pc, pf, rc, rf = _logps()
    with pytest.raises(ValueError, match="beta must be a finite number > 0"):
        fault_contrastive_loss(pc, pf, rc, rf, beta)


def test_loss_refuses_mismatched_or_empty_batches():
    pc, pf, rc, rf = _logps()
    with pytest.raises(ValueError, match="ref_faulty has shape"):
        fault_contrastive_loss(pc, pf, rc, rf[:3], 0.1)
    with pytest.raises(ValueError, match="must be a float"):
        fault_contrastive_loss(pc[None], pf, rc, rf, 0.1)
    empty = torch.zeros(0)
    with pytest.raises(ValueError, match="at least one"):
        fault_contrastive_loss(empty, empty, empty, empty, 0.1)
