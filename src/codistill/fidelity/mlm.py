"""ALERT's substitute names from a masked language model (e.g. CodeBERT), for :func:`alert_attack`.

ALERT (Yang et al., ICSE 2022) draws *natural* substitutes for an identifier from a pre-trained
masked LM: it masks the identifier's occurrences, reads the model's fills at those positions and
keeps the fills whose contextual embedding is close to the original's. This module does a
simplified version of that, documented so a reader knows what the attack's candidates are:

1. Every occurrence of the local ``name`` in ``code`` is found with the scope-aware renamer of
   :mod:`codistill.fidelity.relations.rename` (the local is renamed to a fresh sentinel, so a
   field, attribute or string with the same text is left alone) and replaced by the tokenizer's
   mask token.
2. The masked code is tokenized; when it is longer than the model's maximum length it is cut
   into windows around the masks (:func:`mask_windows`), and all windows go through the model
   in batches.
3. The log-probabilities at every mask position are averaged: one score per vocabulary token.
4. The top-``k`` tokens that, with their subword markers (``Ġ``, ``▁``, ``##``) stripped, are a
   usable identifier of the language (valid, no keyword, builtin or standard name: the rule of
   :func:`~codistill.fidelity.relations.rename.is_usable_name`), differ from ``name`` and occur
   nowhere in the code as an identifier are the candidates, best first.

Simplifications against ALERT:

- *One subword per candidate.* Each occurrence is a single mask, so a candidate is one vocabulary
  token; ALERT masks as many subwords as the original name has and combines multi-subword fills.
  Names a tokenizer splits into several subwords (``maxValue`` -> ``max``, ``Value``) are
  therefore never proposed whole.
- *No embedding-similarity filter.* ALERT also ranks fills by the cosine similarity of their
  contextual embedding to the original identifier's; here the averaged log-probability alone
  ranks them.

Results are cached per ``(code, language, name)``: an attack asks for the same identifier of the
same input for the teacher and for the student.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from codistill.fidelity.relations.rename import (
    RenameError,
    identifier_tokens,
    is_usable_name,
    local_identifiers,
    rename_identifiers,
)

__all__ = ["MaskedLmCandidates", "mask_windows", "strip_subword_marker"]

_MARKERS = ("##", "Ġ", "▁")  # WordPiece continuation, byte-level BPE space, SentencePiece space
_SENTINEL = "codistillmlmslot"


def strip_subword_marker(token: str) -> str:
    """``token`` without the tokenizer's word-start or continuation marker (``Ġtotal`` ->
    ``total``, ``##s`` -> ``s``, ``▁count`` -> ``count``)."""
    for marker in _MARKERS:
        if token.startswith(marker):
            return token[len(marker) :]
    return token


def mask_windows(length: int, masks: Sequence[int], size: int) -> list[tuple[int, int, list[int]]]:
    """Cut a token sequence of ``length`` into windows of at most ``size`` tokens around masks.

    Returns ``(start, end, scored)`` per window: the slice ``[start, end)`` and the mask positions
    it scores. Every mask is scored exactly once (each window is centred on the first mask no
    earlier window covers, and scores every mask it contains that is not scored yet), so a short
    sequence is one window and a long one costs one window per cluster of masks.
    """
    if size < 1:
        raise ValueError(f"window size must be >= 1, got {size}")
    if length <= size:
        return [(0, length, list(masks))] if masks else []
    windows = []
    todo = sorted(masks)
    while todo:
        start = min(max(todo[0] - size // 2, 0), length - size)
        end = start + size
        scored = [m for m in todo if m < end]
        todo = todo[len(scored) :]
        windows.append((start, end, scored))
    return windows


class MaskedLmCandidates:
    """An :data:`~codistill.fidelity.attacks.MlmCandidates` source backed by a masked LM.

    Call it as ``source(code, language, name, k)``; see the module docs for what it returns.
    Build it with :meth:`load` from a local Hugging Face directory, or pass a model and tokenizer
    (anything ``AutoModelForMaskedLM`` / ``AutoTokenizer`` return).

    Args:
        model: a masked LM whose call returns ``.logits`` of shape (batch, length, vocab).
        tokenizer: its tokenizer; it needs a mask token.
        name: how reports name the source (``mlm:<name>``).
        batch_size: windows per forward pass.
        cache_size: ``(code, language, name)`` entries kept.
    """

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        *,
        name: str = "mlm",
        batch_size: int = 16,
        cache_size: int = 1024,
    ) -> None:
        if tokenizer.mask_token is None or tokenizer.mask_token_id is None:
            raise ValueError(f"the tokenizer of {name!r} has no mask token: not a masked LM")
        self.model, self.tokenizer, self.name = model.eval(), tokenizer, name
        self.batch_size, self.cache_size = batch_size, cache_size
        self._cache: OrderedDict[tuple[str, str, str], tuple[int, list[str]]] = OrderedDict()
        config = getattr(model, "config", None)
        positions = getattr(config, "max_position_embeddings", None)
        if positions and "roberta" in str(getattr(config, "model_type", "")):
            positions -= 2  # RoBERTa (CodeBERT, GraphCodeBERT) numbers positions from pad + 1
        limits = [getattr(tokenizer, "model_max_length", None), positions]
        # Tokenizers without a configured limit report a huge sentinel (int(1e30)).
        usable = [n for n in limits if isinstance(n, int) and 0 < n < 100_000]
        self.max_length = min(usable) if usable else 512
        # The special tokens the tokenizer wraps a sequence in ([CLS] ... [SEP], <s> ... </s>),
        # read off the encoding of a lone mask: each window gets them too.
        probe = tokenizer(tokenizer.mask_token)["input_ids"]
        lead = probe.index(tokenizer.mask_token_id)
        self._prefix, self._suffix = probe[:lead], probe[lead + 1 :]
        self._window = self.max_length - len(self._prefix) - len(self._suffix)
        if self._window < 1:
            raise ValueError(f"{name!r}: maximum length {self.max_length} leaves no room")
        special = set(tokenizer.all_special_ids)
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        # Per vocabulary id, the name it would give (None: special token or none at all).
        self._names: list[str | None] = [
            None if i in special or tok is None else strip_subword_marker(tok)
            for i, tok in enumerate(vocab)
        ]

    @classmethod
    def load(cls, path: str | Path, *, device: str = "cpu", **options: Any) -> MaskedLmCandidates:
        """A source from a local masked LM directory (never downloads anything).

        Raises:
            FileNotFoundError: ``path`` is not a directory.
            OSError, ValueError: the directory holds no loadable masked LM and tokenizer.
        """
        from transformers import AutoModelForMaskedLM, AutoTokenizer  # lazy: transformers

        directory = Path(path)
        if not directory.is_dir():
            raise FileNotFoundError(f"no masked LM directory at {str(path)!r}")
        tokenizer = AutoTokenizer.from_pretrained(directory, local_files_only=True)
        model = AutoModelForMaskedLM.from_pretrained(directory, local_files_only=True)
        options.setdefault("name", directory.resolve().name)
        return cls(model.to(device), tokenizer, **options)

    def __call__(self, code: str, language: str, name: str, k: int) -> list[str]:
        key = (code, language, name)
        cached = self._cache.get(key)
        if cached is not None and cached[0] >= k:
            self._cache.move_to_end(key)
            return cached[1][:k]
        found = self._candidates(code, language, name, k)
        self._cache[key] = (k, found)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)
        return found

    # -- the steps of the module docs -----------------------------------------------------------
    def _masked(self, code: str, language: str, name: str) -> str | None:
        """``code`` with every occurrence of the local ``name`` replaced by the mask token."""
        mask = self.tokenizer.mask_token
        if mask in code or name not in local_identifiers(code, language):
            return None  # a literal mask token would be scored as an occurrence
        sentinel, i = _SENTINEL, 0
        while sentinel in code:  # a substring test: the sentinel then marks only the renames
            i += 1
            sentinel = f"{_SENTINEL}{i}"
        try:
            renamed = rename_identifiers(code, language, {name: sentinel})
        except RenameError:
            return None
        return renamed.replace(sentinel, mask)

    @torch.no_grad()
    def _scores(self, masked: str) -> torch.Tensor | None:
        """Mean log-probability per vocabulary id over the mask positions of ``masked``."""
        tok = self.tokenizer
        ids = tok(masked, add_special_tokens=False, verbose=False)["input_ids"]
        masks = [p for p, t in enumerate(ids) if t == tok.mask_token_id]
        windows = mask_windows(len(ids), masks, self._window)
        if not windows:
            return None
        pad = tok.pad_token_id if tok.pad_token_id is not None else 0
        device = next(self.model.parameters()).device
        total, count = None, 0
        for b in range(0, len(windows), self.batch_size):
            batch = windows[b : b + self.batch_size]
            rows = [self._prefix + ids[s:e] + self._suffix for s, e, _ in batch]
            width = max(len(r) for r in rows)
            input_ids = torch.full((len(rows), width), pad, dtype=torch.long)
            attention = torch.zeros((len(rows), width), dtype=torch.long)
            for r, row in enumerate(rows):
                input_ids[r, : len(row)] = torch.tensor(row)
                attention[r, : len(row)] = 1
            logits = self.model(
                input_ids=input_ids.to(device), attention_mask=attention.to(device)
            ).logits
            rows_at = [r for r, (_, _, scored) in enumerate(batch) for _ in scored]
            cols_at = [len(self._prefix) + m - s for s, _, scored in batch for m in scored]
            logp = torch.log_softmax(logits[rows_at, cols_at].float(), dim=-1).sum(0)
            total = logp if total is None else total + logp
            count += len(rows_at)
        return total / count

    def _candidates(self, code: str, language: str, name: str, k: int) -> list[str]:
        if k < 1:
            return []
        masked = self._masked(code, language, name)
        scores = None if masked is None else self._scores(masked)
        if scores is None:
            return []
        taken = identifier_tokens(code, language)
        found: dict[str, None] = {}
        usable: dict[str, bool] = {}
        for i in torch.argsort(scores, descending=True, stable=True).tolist():
            word = self._names[i] if i < len(self._names) else None
            if word is None or word == name or word in taken or word in found:
                continue
            if word not in usable:
                usable[word] = is_usable_name(word, language)
            if usable[word]:
                found[word] = None
                if len(found) == k:
                    break
        return list(found)
