"""Small file helpers every layer uses, beneath them all (imports nothing of codistill)."""

from __future__ import annotations

import hashlib
import os


def sha256_file(path: str | os.PathLike[str], chunk: int = 1 << 22) -> str:
    """sha256 hex digest of a file's bytes, read in chunks (GGUF files are gigabytes)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
