import numpy as np
import pytest
import torch

from codistill.losses.semantic import semantic_risk_loss, sequence_logprobs

K, SEQ, VOCAB = 4, 5, 7


def _np_log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64) - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _np_softmax(x: np.ndarray) -> np.ndarray:
    return np.exp(_np_log_softmax(x))


def _candidates(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(K, SEQ, VOCAB, generator=gen)
    targets = torch.randint(0, VOCAB, (K, SEQ), generator=gen)
    lengths = torch.tensor([5, 3, 4, 2])
    mask = torch.arange(SEQ)[None, :] < lengths[:, None]
    targets[~mask] = -100
    return logits, targets, mask


def _np_sequence_logprobs(logits, targets, mask, normalize):
    log_p = _np_log_softmax(logits.numpy())
    safe = np.where(mask.numpy(), targets.numpy(), 0)
    token = np.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    sums = np.where(mask.numpy(), token, 0.0).sum(axis=-1)
    return sums / mask.numpy().sum(axis=-1) if normalize else sums


@pytest.mark.parametrize("normalize", [True, False])
def test_sequence_logprobs_match_numpy(normalize):
    logits, targets, mask = _candidates()
    got = sequence_logprobs(logits, targets, mask, length_normalize=normalize)
    expected = _np_sequence_logprobs(logits, targets, mask, normalize)
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_sequence_logprobs_of_an_empty_row_is_zero():
    logits, targets, mask = _candidates()
    mask[2] = False
    got = sequence_logprobs(logits, targets, mask)
    assert got[2].item() == 0.0
    assert torch.isfinite(got).all()


def test_semantic_risk_matches_numpy_expected_risk():
    gen = torch.Generator().manual_seed(1)
    logp = torch.randn(3, K, generator=gen) * 2
    sim = torch.rand(3, K, generator=gen) * 2 - 1
    cand_mask = torch.tensor(
        [[True, True, True, True], [True, False, True, False], [False, False, False, True]]
    )
    sharpness = 1.7
    got = semantic_risk_loss(logp, sim, cand_mask, sharpness=sharpness, reduction="none")
    expected = []
    for row in range(3):
        valid = cand_mask[row].numpy()
        q = _np_softmax(sharpness * logp[row].numpy()[valid])
        expected.append(float((q * (1 - sim[row].numpy()[valid])).sum()))
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5)


def test_semantic_risk_mean_skips_examples_without_candidates():
    logp = torch.tensor([[-1.0, -2.0], [-0.5, -0.7]])
    sim = torch.tensor([[0.2, 0.9], [0.4, 0.1]])
    cand_mask = torch.tensor([[True, True], [False, False]])
    none = semantic_risk_loss(logp, sim, cand_mask, reduction="none")
    assert none[1].item() == 0.0
    assert semantic_risk_loss(logp, sim, cand_mask, reduction="sum").item() == pytest.approx(
        none[0].item()
    )
    assert semantic_risk_loss(logp, sim, cand_mask, reduction="mean").item() == pytest.approx(
        none[0].item()
    )


def test_semantic_risk_without_any_candidate_is_zero_with_finite_gradient():
    logp = torch.zeros(2, 3, requires_grad=True)
    loss = semantic_risk_loss(logp, torch.ones(2, 3), torch.zeros(2, 3, dtype=torch.bool))
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logp.grad).all()


def test_semantic_loss_sends_gradient_to_student_logits_and_descent_favours_similar_candidate():
    logits, targets, mask = _candidates(seed=2)
    logits.requires_grad_(True)
    similarity = torch.tensor([[0.2, 0.95, 0.1, 0.4]])  # candidate 1 is closest to the reference
    cand_mask = torch.ones(1, K, dtype=torch.bool)

    def loss_and_logp(x):
        logp = sequence_logprobs(x, targets, mask)
        return semantic_risk_loss(logp[None, :], similarity, cand_mask), logp

    loss, logp_before = loss_and_logp(logits)
    loss.backward()
    assert logits.grad.norm().item() > 0
    with torch.no_grad():
        stepped = logits - 1.0 * logits.grad
        loss_after, logp_after = loss_and_logp(stepped)
    assert logp_after[1] > logp_before[1]
    assert loss_after < loss


def test_semantic_loss_gradient_vanishes_when_all_candidates_are_equally_similar():
    logits, targets, mask = _candidates(seed=3)
    logits.requires_grad_(True)
    logp = sequence_logprobs(logits, targets, mask)
    loss = semantic_risk_loss(logp[None, :], torch.full((1, K), 0.6), torch.ones(1, K).bool())
    loss.backward()
    assert loss.item() == pytest.approx(0.4)
    assert logits.grad.abs().max().item() < 1e-6


def test_similarity_receives_no_gradient():
    logp = torch.randn(2, 3, requires_grad=True)
    sim = torch.rand(2, 3, requires_grad=True)
    semantic_risk_loss(logp, sim, torch.ones(2, 3, dtype=torch.bool)).backward()
    assert sim.grad is None


def test_semantic_risk_rejects_mismatched_similarity_shape():
    with pytest.raises(ValueError, match="similarity must have shape"):
        semantic_risk_loss(torch.zeros(2, 3), torch.zeros(2, 4), torch.ones(2, 3).bool())


def test_semantic_risk_rejects_non_positive_sharpness():
    with pytest.raises(ValueError, match="sharpness must be > 0, got 0"):
        semantic_risk_loss(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2).bool(), 0)
