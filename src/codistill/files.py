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


def gguf_problem(path: str | os.PathLike[str]) -> str | None:
    """What keeps ``path`` from being a GGUF file ("no such GGUF file", "not a GGUF file ..."),
    or None when it exists and starts with the GGUF magic. Callers raise it in their own words
    and error type."""
    if not os.path.isfile(path):
        return "no such GGUF file"
    with open(path, "rb") as fh:
        if fh.read(4) != b"GGUF":
            return "not a GGUF file (expected the magic bytes 'GGUF')"
    return None
