"""Trident's Code Quality Score (section 4.3), with every component reported.

    CQS = 0.30·semantic_similarity + 0.30·codebleu + 0.20·ast_validity + 0.20·token_accuracy

Components, per example (prediction against its reference):

- ``semantic_similarity``: cosine of the sentence embeddings of prediction and reference
  (whitespace-normalised)
  (offline all-MiniLM-L6-v2 by default; Trident used st-codesearch-distilroberta-base, any
  sentence-transformers directory can be passed through ``SentenceEmbedder(model_path=...)``).
  Negative cosines count as 0 so that every component lies in [0, 1]; an empty prediction scores
  0 without being embedded.
- ``codebleu``: :func:`codistill.evaluation.codebleu.codebleu` (codebleu 0.7.0's numbers). Its
  data-flow quarter counts as a perfect match when the reference has no data flow, which is the
  case for most one-line assertions; ``codebleu_components.pairs_without_dataflow`` says how
  often. With the package's whitespace tokens BLEU-4 needs 4 tokens to reach 1, so an identical
  but short assertion (``assertNull(x);`` is one token) stays below 1; passing
  ``codebleu_options={"tokenizer": code_tokens}`` scores code tokens instead (no longer the
  package's numbers).
- ``ast_validity``: 1 if the prediction parses (:func:`codistill.evaluation.ast_validity.is_valid`),
  else 0. It does not look at the reference.
- ``token_accuracy``: the proportion of exactly matched tokens, position by position:
  ``#{i : pred[i] == ref[i]} / max(len(pred), len(ref))`` over :func:`code_tokens` (identifiers,
  numbers, string literals, operators; whitespace and layout ignored). Both empty: 1. A token
  inserted or dropped early shifts every later position, which is the strictness "exactly
  matched tokens" asks for; the extra length of the longer side counts as mismatches.

With several references per example, semantic similarity and token accuracy take the best
reference and CodeBLEU uses them all, as it does natively.

Aggregation: the corpus ``cqs`` combines the *means* over examples of semantic similarity, AST
validity and token accuracy with the *corpus-level* CodeBLEU (micro-averaged n-gram, subtree and
data-flow counts, the way the package and published CodeBLEU numbers aggregate). Each entry of
``per_example`` has its own ``cqs`` from the example's sentence-level CodeBLEU, so the mean of
the per-example scores is close to, but not equal to, the corpus ``cqs``.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

from codistill.evaluation.assertion_metrics import normalize
from codistill.evaluation.ast_validity import is_valid
from codistill.evaluation.codebleu import check_pairs, codebleu

CQS_WEIGHTS: dict[str, float] = {
    "semantic_similarity": 0.30,
    "codebleu": 0.30,
    "ast_validity": 0.20,
    "token_accuracy": 0.20,
}

_TOKEN = re.compile(
    r"""
      "(?:\\.|[^"\\\n])*"?                      # string literal (may be cut off at line end)
    | '(?:\\.|[^'\\\n])*'?                      # char / single-quoted string
    | \d(?:[eE][+-]\d|[\w.])*                   # number, incl. 1e-9, 0x1F, 2.5f, 10L
    | [^\W\d]\w*                                # identifier or keyword
    | >>>=|<<=|>>=|>>>|\*\*=|//=|\.\.\.         # multi-character operators, longest first
    | ->|::|\+\+|--|&&|\|\||==|!=|<=|>=|\+=|-=|\*=|/=|%=|&=|\|=|\^=|<<|>>|\*\*|//|:=
    | \S                                        # any other single character
    """,
    re.VERBOSE,
)


class Embedder(Protocol):
    """Scores predictions against references (e.g. ``models.embedder.SentenceEmbedder``)."""

    def similarity(self, preds: Sequence[str], refs: Sequence[str]) -> Any:
        """Cosine similarity per pair: an ``[n]`` tensor or a sequence of n floats."""
        ...


def code_tokens(code: str) -> list[str]:
    """Lexical code tokens, language-agnostic (Java and Python), whitespace dropped.

    >>> code_tokens('assertEquals("a b", list.size());')
    ['assertEquals', '(', '"a b"', ',', 'list', '.', 'size', '(', ')', ')', ';']
    """
    return _TOKEN.findall(code)


def token_accuracy(prediction: str, reference: str) -> float:
    """Position-wise exact token matches over ``max(len(pred), len(ref))`` (see module docs)."""
    pred, ref = code_tokens(prediction), code_tokens(reference)
    length = max(len(pred), len(ref))
    if length == 0:
        return 1.0
    return sum(p == r for p, r in zip(pred, ref, strict=False)) / length


def check_weights(weights: Mapping[str, float]) -> dict[str, float]:
    """Validate CQS weights: exactly the four components, non-negative, summing to 1."""
    if set(weights) != set(CQS_WEIGHTS):
        raise ValueError(f"weights must have the keys {sorted(CQS_WEIGHTS)}, got {sorted(weights)}")
    for name, value in weights.items():
        if not (isinstance(value, int | float) and value >= 0):
            raise ValueError(f"weights[{name!r}] must be >= 0, got {value!r}")
    total = sum(weights.values())
    if not math.isclose(total, 1.0, abs_tol=1e-9):
        raise ValueError(f"weights must sum to 1 (CQS is a weighted average), got {total!r}")
    return dict(weights)


def code_quality_score(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    language: str,
    embedder: Embedder | None = None,
    weights: Mapping[str, float] = CQS_WEIGHTS,
    *,
    javac: bool = False,
    codebleu_options: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Code Quality Score of predictions against references, with its components.

    Args:
        predictions: n generated snippets (e.g. assertions).
        references: n references, each a string or a list of alternatives.
        language: ``"java"`` or ``"python"``.
        embedder: anything with ``similarity(preds, refs)``; default a
            ``SentenceEmbedder()`` (offline MiniLM), loaded only if some prediction is non-empty.
        weights: CQS weights per component (keys of ``CQS_WEIGHTS``), summing to 1.
        javac: also require javac to accept Java predictions (see ``ast_validity``).
        codebleu_options: keyword arguments for ``codebleu`` (``weights``, ``tokenizer``,
            ``strict_dataflow``, ``hash_order``).

    Returns:
        ``cqs``; the four components (``semantic_similarity``, ``ast_validity``,
        ``token_accuracy``: means over examples; ``codebleu``: corpus level);
        ``codebleu_components`` (the CodeBLEU breakdown and its data-flow coverage);
        ``exact_match`` (whitespace-normalised, for reference; not part of CQS); ``weights``;
        ``n``; ``per_example``: one dict per example with the four components, its own ``cqs``
        and ``exact_match``.
    """
    weights = check_weights(weights)
    refs = _check_examples(predictions, references, language)
    bleu = codebleu(predictions, refs, language, per_sample=True, **(codebleu_options or {}))
    semantic = semantic_similarity(predictions, refs, embedder)
    valid = [is_valid(pred, language, javac=javac) for pred in predictions]
    tokens = [
        max(token_accuracy(p, r) for r in rs) for p, rs in zip(predictions, refs, strict=True)
    ]
    exact = [
        any(normalize(p) == normalize(r) for r in rs)
        for p, rs in zip(predictions, refs, strict=True)
    ]

    per_example = []
    for i in range(len(predictions)):
        parts = {
            "semantic_similarity": semantic[i],
            "codebleu": bleu["per_sample"][i]["codebleu"],
            "ast_validity": float(valid[i]),
            "token_accuracy": tokens[i],
        }
        per_example.append({**parts, "cqs": _weighted(parts, weights), "exact_match": exact[i]})

    n = len(predictions)
    components = {
        "semantic_similarity": sum(semantic) / n,
        "codebleu": bleu["codebleu"],
        "ast_validity": sum(valid) / n,
        "token_accuracy": sum(tokens) / n,
    }
    breakdown = {k: v for k, v in bleu.items() if k not in ("per_sample", "codebleu", "n")}
    return {
        "cqs": _weighted(components, weights),
        **components,
        "codebleu_components": breakdown,
        "exact_match": sum(exact) / n,
        "weights": weights,
        "n": n,
        "per_example": per_example,
    }


def _check_examples(
    predictions: Sequence[str],
    references: Sequence[str] | Sequence[Sequence[str]],
    language: str,
) -> list[list[str]]:
    """Refuse inputs CQS cannot score; return each example's references as a list."""
    refs = check_pairs(predictions, references, language)
    if not predictions:
        raise ValueError("code_quality_score needs at least one example")
    return refs


def semantic_similarity(
    predictions: Sequence[str], references: Sequence[Sequence[str]], embedder: Embedder | None
) -> list[float]:
    """Best cosine over each example's references, clipped to [0, 1]; 0 for empty predictions."""
    pairs = [
        (i, normalize(pred), normalize(ref))
        for i, (pred, refs) in enumerate(zip(predictions, references, strict=True))
        if pred.strip()
        for ref in refs
    ]
    best = [0.0] * len(predictions)
    if not pairs:
        return best
    if embedder is None:
        from codistill.models.embedder import SentenceEmbedder  # lazy: torch

        embedder = SentenceEmbedder()
    sims = embedder.similarity([p for _, p, _ in pairs], [r for _, _, r in pairs])
    sims = sims.tolist() if hasattr(sims, "tolist") else list(sims)
    if len(sims) != len(pairs):
        raise ValueError(f"embedder returned {len(sims)} similarities for {len(pairs)} pairs")
    for (i, _, _), sim in zip(pairs, sims, strict=True):
        best[i] = max(best[i], min(max(float(sim), 0.0), 1.0))
    return best


def _weighted(parts: Mapping[str, float], weights: Mapping[str, float]) -> float:
    return sum(weights[name] * parts[name] for name in CQS_WEIGHTS)
