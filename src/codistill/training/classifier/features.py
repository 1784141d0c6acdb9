"""Pooled backbone features of encoded inputs, optionally cached on disk between runs.

A frozen-backbone teacher needs one forward pass over its data; refitting the head with other
settings should not pay it again. Entries are keyed by content, the backbone's weights and the
exact token ids, never by position, so a changed input length or tokenizer misses the cache.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import torch
from tqdm.auto import tqdm

from codistill.files import sha256_file
from codistill.models.classifier import ClassifierModel, pooled_hidden


def ids_sha256(ids: list[list[int]]) -> str:
    """sha256 of a list of token-id sequences: what features and logits of them depend on."""
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def backbone_fingerprint(path: str | Path) -> str:
    """sha256 of a model directory's config and weight files (what its features depend on)."""
    digest = hashlib.sha256()
    files = sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin"))
    for file in [Path(path) / "config.json", *files]:
        digest.update(file.name.encode() + b"\0" + sha256_file(file).encode())
    return digest.hexdigest()


def _features(
    classifier: ClassifierModel, ids: list[list[int]], progress: bool, what: str
) -> torch.Tensor:
    """Pooled hidden states ``[n, hidden]`` of encoded inputs (batched by length, in order)."""
    model = classifier.model
    out = torch.empty((len(ids), model.config.hidden_size))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    bar = tqdm(total=len(ids), desc=f"features {what}", disable=not progress, unit="input")
    with torch.inference_mode():
        for start in range(0, len(order), classifier.batch_size):
            chunk = order[start : start + classifier.batch_size]
            input_ids, mask = classifier.collate([ids[i] for i in chunk])
            out[chunk] = pooled_hidden(model, input_ids, mask).float().cpu()
            bar.update(len(chunk))
    bar.close()
    return out


def _cache_file(cache: Path, fingerprint: str, ids: list[list[int]]) -> Path:
    key = hashlib.sha256(f"{fingerprint}\0pooled-last-token\0{ids_sha256(ids)}".encode())
    return cache / f"{key.hexdigest()}.pt"


def cache_has(cache: Path | None, fingerprint: str, ids: list[list[int]]) -> bool:
    """Whether `cached_features` would read these features from ``cache``."""
    return cache is not None and _cache_file(cache, fingerprint, ids).is_file()


def cached_features(
    classifier: ClassifierModel,
    ids: list[list[int]],
    cache: Path | None,
    fingerprint: str,
    progress: bool,
    what: str,
) -> torch.Tensor:
    """Pooled hidden states ``[n, hidden]`` of encoded inputs, read from / written to ``cache``
    under a key of the backbone fingerprint and the exact token ids, so a changed input length
    or tokenizer never reuses an entry; ``cache=None`` computes them."""
    if cache is None:
        return _features(classifier, ids, progress, what)
    file = _cache_file(cache, fingerprint, ids)
    if file.is_file():
        return torch.load(file)
    features = _features(classifier, ids, progress, what)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=cache)
    os.close(fd)
    torch.save(features, tmp)
    os.replace(tmp, file)
    return features
