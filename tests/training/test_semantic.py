"""The semantic (minimum-risk) term's candidate set."""

from __future__ import annotations

import torch

from codistill.losses.semantic import semantic_risk_loss
from codistill.training.semantic import distinct_candidates


def test_a_candidate_sampled_twice_counts_once():
    texts = ["a", "b", "a", "c", "c", "c"]
    keep = distinct_candidates(texts, n_examples=2, k=3)
    assert keep.tolist() == [[True, True, False], [True, False, False]]


def test_duplicates_do_not_change_the_renormalised_risk():
    logp = torch.tensor([[-1.0, -2.0, -1.0]])
    sims = torch.tensor([[0.9, 0.1, 0.9]])
    keep = distinct_candidates(["good", "bad", "good"], 1, 3)
    with_dupe_masked = semantic_risk_loss(logp, sims, keep, reduction="sum")
    unique_only = semantic_risk_loss(logp[:, :2], sims[:, :2], torch.ones(1, 2, dtype=torch.bool))
    torch.testing.assert_close(with_dupe_masked, unique_only)
    counted_twice = semantic_risk_loss(logp, sims, torch.ones(1, 3, dtype=torch.bool))
    assert not torch.allclose(counted_twice, unique_only)
