"""The sandbox's host-worker protocol: frames of a 4-byte big-endian length, then UTF-8 JSON.

Stdlib only: both sides use it, :mod:`codistill.evaluation.sandbox_process` on the host and the
worker script (:mod:`codistill.evaluation.sandbox_worker`).
"""

from __future__ import annotations

import json
import os
import struct


def read_frame(fd: int) -> dict | None:
    """The next frame on ``fd``, or None at end of file (the other side is gone)."""
    head = _read_exact(fd, 4)
    if head is None:
        return None
    body = _read_exact(fd, struct.unpack(">I", head)[0])
    if body is None:
        return None
    return json.loads(body.decode("utf-8"))


def write_frame(fd: int, obj: dict) -> None:
    """Write ``obj`` as one frame, all of it."""
    body = json.dumps(obj).encode("utf-8")
    data = struct.pack(">I", len(body)) + body
    while data:
        data = data[os.write(fd, data) :]


def _read_exact(fd: int, n: int) -> bytes | None:
    chunks, got = [], 0
    while got < n:
        chunk = os.read(fd, min(n - got, 1 << 20))
        if not chunk:
            return None
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)
