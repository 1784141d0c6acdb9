import numpy as np
import pytest
import torch

from codistill.losses.divergences import cross_entropy
from codistill.losses.focal import focal_loss

BATCH, SEQ, VOCAB = 2, 6, 9


def _inputs(seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    logits = torch.randn(BATCH, SEQ, VOCAB, generator=gen) * 3
    labels = torch.randint(0, VOCAB, (BATCH, SEQ), generator=gen)
    mask = torch.tensor(
        [[True, True, True, True, False, False], [False, True, True, True, True, True]]
    )
    labels[~mask] = -100
    return logits, labels, mask


def _np_focal(logits: np.ndarray, labels: np.ndarray, alpha: float, gamma: float) -> np.ndarray:
    x = logits.astype(np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    log_p = x - np.log(np.exp(x).sum(axis=-1, keepdims=True))
    safe = np.where(labels < 0, 0, labels)
    log_pt = np.take_along_axis(log_p, safe[..., None], axis=-1)[..., 0]
    return -alpha * (1 - np.exp(log_pt)) ** gamma * log_pt


def test_focal_loss_matches_numpy_with_padding():
    logits, labels, mask = _inputs()
    expected = np.where(mask.numpy(), _np_focal(logits.numpy(), labels.numpy(), 0.25, 2.0), 0.0)
    got = focal_loss(logits, labels, mask, alpha=0.25, gamma=2.0, reduction="none")
    np.testing.assert_allclose(got.numpy(), expected, rtol=1e-5, atol=1e-7)


def test_focal_with_gamma_zero_is_alpha_times_cross_entropy():
    logits, labels, mask = _inputs(seed=1)
    got = focal_loss(logits, labels, mask, alpha=0.4, gamma=0.0)
    assert got.item() == pytest.approx(0.4 * cross_entropy(logits, labels, mask).item(), rel=1e-6)


def test_focal_downweights_confident_tokens_relative_to_cross_entropy():
    logits, labels, mask = _inputs(seed=2)
    focal = focal_loss(logits, labels, mask, alpha=1.0, gamma=2.0, reduction="none")
    ce = cross_entropy(logits, labels, mask, reduction="none")
    p_t = torch.exp(-ce)
    torch.testing.assert_close(focal[mask], ((1 - p_t) ** 2 * ce)[mask])
    assert (focal[mask] < ce[mask]).all()


def test_token_weight_doubles_that_tokens_contribution():
    logits, labels, mask = _inputs(seed=3)
    weights = torch.ones(BATCH, SEQ)
    weights[1, 2] = 2.0
    plain = focal_loss(logits, labels, mask, reduction="none")
    weighted = focal_loss(logits, labels, mask, token_weights=weights, reduction="none")
    assert weighted[1, 2].item() == pytest.approx(2 * plain[1, 2].item(), rel=1e-6)
    others = torch.ones_like(mask)
    others[1, 2] = False
    torch.testing.assert_close(weighted[others], plain[others])
    total = focal_loss(logits, labels, mask, token_weights=weights, reduction="sum")
    assert total.item() == pytest.approx(plain.sum().item() + plain[1, 2].item(), rel=1e-6)


def test_weighted_mean_divides_by_token_count_not_weight_sum():
    logits, labels, mask = _inputs(seed=4)
    weights = torch.full((BATCH, SEQ), 3.0)
    plain = focal_loss(logits, labels, mask)
    weighted = focal_loss(logits, labels, mask, token_weights=weights)
    assert weighted.item() == pytest.approx(3 * plain.item(), rel=1e-6)


def test_focal_reductions_are_consistent():
    logits, labels, mask = _inputs(seed=5)
    none = focal_loss(logits, labels, mask, reduction="none")
    total = focal_loss(logits, labels, mask, reduction="sum")
    mean = focal_loss(logits, labels, mask, reduction="mean")
    assert (none[~mask] == 0).all()
    assert total.item() == pytest.approx(none.sum().item(), rel=1e-6)
    assert mean.item() == pytest.approx(total.item() / mask.sum().item(), rel=1e-6)


def test_focal_mean_over_no_target_tokens_is_zero():
    logits, labels, _ = _inputs(seed=6)
    empty = torch.zeros(BATCH, SEQ, dtype=torch.bool)
    assert focal_loss(logits, labels, empty).item() == 0.0


def test_focal_is_finite_for_a_certain_prediction():
    logits = torch.zeros(1, 1, 4)
    logits[0, 0, 2] = 200.0
    labels = torch.tensor([[2]])
    mask = torch.ones(1, 1, dtype=torch.bool)
    logits.requires_grad_(True)
    loss = focal_loss(logits, labels, mask, gamma=0.5)
    loss.backward()
    assert loss.item() == 0.0
    assert torch.isfinite(logits.grad).all()


def test_focal_on_bf16_logits_is_computed_in_float32():
    logits, labels, mask = _inputs(seed=7)
    bf16 = logits.bfloat16()
    got = focal_loss(bf16, labels, mask, reduction="none")
    assert got.dtype == torch.float32
    torch.testing.assert_close(got, focal_loss(bf16.float(), labels, mask, reduction="none"))


def test_token_weights_of_wrong_shape_are_rejected():
    logits, labels, mask = _inputs()
    with pytest.raises(ValueError, match="token_weights must have shape"):
        focal_loss(logits, labels, mask, token_weights=torch.ones(BATCH, SEQ + 1))


@pytest.mark.parametrize(
    ("field", "kwargs"), [("alpha", {"alpha": -0.1}), ("gamma", {"gamma": -1})]
)
def test_negative_focal_parameters_are_rejected(field, kwargs):
    logits, labels, mask = _inputs()
    with pytest.raises(ValueError, match=f"{field} must be a finite number >= 0"):
        focal_loss(logits, labels, mask, **kwargs)
