"""On-disk format of the teacher cache: one self-describing, checksummed binary shard.

A shard holds, per example (keyed by a hash of its content, never by position) and per target
position, either the teacher's most likely token ids in rank order with their log-probabilities
and the log of the mass outside them (``quantization="topk-rank-u16"``, the default), or the
whole vocabulary's log-probs as 8-bit codes (``"dense-u8"``: the assertion papers' format, kept
as a baseline so sizes and student quality can be compared side by side).

How many tokens a position keeps: ``k`` of them, or with ``min_kept_mass`` (schema 3) as few as
hold that much probability, at most ``k`` (the entropy-adaptive cut: a near-certain code token
keeps one or two entries, an uncertain one up to ``k``). What a position does not keep is in its
tail, and the tail's log-mass is stored exactly (fp16), so the format is lossless up to the
stated bounds on the coarsened distribution ``kept ∪ {tail}`` that the sparse losses use.

Shard layout (all integers little-endian)::

    b"CDTCACHE"                      8-byte magic
    u32 header_len, u32 header_crc   crc32 of the header bytes
    header                           UTF-8 JSON of :class:`CacheHeader`
    u32 table_len, u32 table_crc     the shard's id table (top-k only; empty for dense)
    table                            compressed u8[B, m] byte planes of the m distinct teacher ids
                                     of the shard, most frequent first
    record*                          one per example:
        u32 payload_len, u32 crc32(key || payload), key (32 raw bytes of a sha256), payload
    index                            n_records x (32-byte key, u64 record_offset, u32 n_positions)
    u64 index_offset, u32 index_len, u32 index_crc
    b"CDTC_END"                      8-byte end marker; a shard without it is truncated

Top-k payload, schema 3 (compressed with ``header.compression``: raw LZMA2 preset 9 by default,
or zlib), ``m = sum(k_i)`` kept entries in row order::

    u32 n, u32 k
    u8[C, n]        k_i - 1, the kept count of each row, C byte planes (C = 1 for k <= 256)
    f16[n]          log tail mass of each row, log(1 - sum of its kept probs) (-inf: none)
    u8[2, m - n]    rank-to-rank code increments within each row, 2 byte planes, low byte first
    u8[B, m]        each id's rank in the shard's id table, B byte planes (B = 2 for < 65536
                    distinct ids), low byte first

Log-prob quantization, schema 3: ``code_j = round((logp_1 - logp_j) / step)`` relative to the
row's top-1 (uint16; 65535 means -inf), stored as increments along the rank (the top-1's code is
0 and not stored; codes are non-decreasing because the entries arrive sorted, so the increments
are mostly small and compress to ~3 bits). Decoding puts the codes back on the scale the stored
tail fixes: ``logp_j = -code_j * step + log(1 - tail) - logsumexp(-code * step)``, so the kept
entries and the tail sum to 1 (up to float rounding) and anything that derives the tail as
``1 - sum(exp(logp))`` (:func:`codistill.losses.sparse.sparse_teacher_targets` does) gets the
stored one. Errors: each relative value is off by at most ``step / 2``, the common shift is a
weighted mean of those errors, so every decoded log-prob is within ``step`` of the exact one and
the top-1 within ``step / 2``; the default step 1/64 nats bounds them by 0.0156 and 0.0078 (goal
0.02). The tail mass is stored in fp16 log space (relative error <= 2^-11 of its log), far more
exact than deriving it from quantized values, which lose a tail smaller than their own error.

Decoded rows are padded to ``k`` columns: a row that kept ``k_i < k`` entries has id ``-1`` and
log-prob ``-inf`` in its last ``k - k_i`` columns (no token: its mass is already in the tail).

Schema 2 (still read, no longer written): every row keeps ``k`` entries; its payload is
``u32 n, u32 k, f16[n] log tail, u8[2, n] absolute code of the top-1 log-prob
(round(-logp / step)), u8[2, n*(k-1)] increments, u8[B, n*k] id ranks``, and decoding returns
``-code * step`` as is (each value within ``step / 2``; the tail only in the third array).

Why the id table: ids are most of the bytes. Kept in rank order (so the values can be delta
coded) they are as wide as the vocabulary (18 bits for 262,144), and sorting them would cost a
permutation (log2(64!)/64 ~ 4.6 bits each) to get the order back. But a teacher's top-k over code
draws on few distinct tokens, with a Zipf-like frequency: on Gemma 3 270M over code, a shard's
ids re-numbered by frequency have ~10.4 bits of entropy instead of 18, and the remapped planes
compress to ~88 bytes/token at k=64 where the raw ids took ~131. The table costs ~2.5 bytes per
distinct id once per shard, so the writer buffers a shard in memory and encodes it on close
(shards are the unit of resume anyway). Why LZMA: stdlib, and ~9% smaller than zlib here.

Dense payload (``"dense-u8"``, compression ``"lz4"``, the papers' choice)::

    u32 n, u32 V
    f32[n] lo, f32[n] hi   min and max finite log-prob of each row
    u8[n, V]               round((logp - lo) / (hi - lo) * 255)

The log-probs are ``log_softmax(logits / temperature)`` at ``header.temperature``. Losses at
another temperature T can be computed only over the top-k renormalised (``logp * t0 / T``), since
the tail mass at T is not recoverable.
"""

from __future__ import annotations

import hashlib
import json
import lzma
import os
import struct
import zlib
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import lz4.frame
import numpy as np

SCHEMA_VERSION = 3
# Versions this module reads; only SCHEMA_VERSION is written.
READABLE_VERSIONS = (2, 3)
MAGIC = b"CDTCACHE"
END_MAGIC = b"CDTC_END"
_TRAILER = struct.Struct("<QII8s")
_RECORD = struct.Struct("<II")
_INDEX_ENTRY = struct.Struct("<32sQI")
QUANTIZATIONS = ("topk-rank-u16", "dense-u8")
COMPRESSIONS = ("lzma", "zlib", "lz4")
_NEG_INF_CODE = 65535
# Fields that define which teacher/tokenizer/setting produced the values; the rest
# (quantization, step, compression) only say how to decode and are read from the shard itself.
IDENTITY_FIELDS = (
    "teacher_path",
    "teacher_hash",
    "tokenizer_hash",
    "vocab_size",
    "k",
    "min_kept_mass",
    "temperature",
    "backend",
    "schema_version",
)
# What the teacher ran on: the model's own torch weights (float32 or int8-quantized Linear
# layers) or llama.cpp on a GGUF file. Each gives slightly different log-probs, so each is a
# different teacher to the cache.
BACKENDS = ("torch", "torch-bf16", "torch-int8", "llamacpp")


class CacheError(Exception):
    """Base class for cache format errors."""


class CacheMismatch(CacheError):
    """The cache was made with another teacher, tokenizer or setting; ``fields`` names them."""

    def __init__(self, differences: dict[str, tuple[object, object]]):
        self.fields = list(differences)
        detail = "; ".join(
            f"{f}: cache has {a!r}, expected {b!r}" for f, (a, b) in differences.items()
        )
        super().__init__(f"teacher cache does not match ({detail})")


class TruncatedShard(CacheError):
    """The shard has no end marker (an interrupted write) or is cut short."""


class CorruptShard(CacheError):
    """A checksum or structural check failed."""


@dataclass(frozen=True)
class CacheHeader:
    """Self-description stored at the start of every shard.

    Attributes:
        teacher_path: where the teacher was loaded from (path or hub id).
        teacher_hash: hash of the teacher's weights.
        tokenizer_hash: hash of the tokenizer files.
        vocab_size: teacher vocabulary size; every id is below it.
        k: number of top tokens stored per position (at most that many with ``min_kept_mass``).
        quantization: "topk-rank-u16" (top-k, the default) or "dense-u8" (whole vocabulary,
            the papers' baseline; ``k`` must then equal ``vocab_size``).
        temperature: the temperature the log-probs were computed at.
        schema_version: version of this file format.
        logprob_step: quantization step in nats (see the module doc for the error bounds).
        compression: "lzma", "zlib" or "lz4", applied to each record.
        min_kept_mass: None keeps ``k`` tokens per position; a probability p in (0, 1] keeps
            the fewest top tokens whose probabilities sum to at least p, at most ``k``
            (schema 3 and top-k only).
        backend: what computed the log-probs: "torch", "torch-bf16", "torch-int8" or
            "llamacpp" (then ``teacher_hash`` is the GGUF file's sha256).
    """

    teacher_path: str
    teacher_hash: str
    tokenizer_hash: str
    vocab_size: int
    k: int
    quantization: str = "topk-rank-u16"
    temperature: float = 1.0
    schema_version: int = SCHEMA_VERSION
    logprob_step: float = 1 / 64
    compression: str = "lzma"
    min_kept_mass: float | None = None
    backend: str = "torch"

    def __post_init__(self):
        if self.vocab_size < 1 or self.vocab_size > 2**32:
            raise ValueError(f"vocab_size must be in [1, 2**32], got {self.vocab_size}")
        if self.k < 1 or self.k > self.vocab_size:
            raise ValueError(f"k must be in [1, vocab_size={self.vocab_size}], got {self.k}")
        if self.quantization not in QUANTIZATIONS:
            raise ValueError(
                f"quantization must be one of {QUANTIZATIONS}, got {self.quantization!r}"
            )
        if self.dense and self.k != self.vocab_size:
            raise ValueError(f"a dense cache stores every token: k must be {self.vocab_size}")
        if not 0 < self.logprob_step <= 0.04:
            raise ValueError(f"logprob_step must be in (0, 0.04], got {self.logprob_step}")
        if self.compression not in COMPRESSIONS:
            raise ValueError(f"compression must be one of {COMPRESSIONS}, got {self.compression!r}")
        if self.temperature <= 0:
            raise ValueError(f"temperature must be > 0, got {self.temperature}")
        if self.schema_version not in READABLE_VERSIONS:
            raise ValueError(
                f"schema_version must be one of {READABLE_VERSIONS}, got {self.schema_version}"
            )
        if self.min_kept_mass is not None:
            if self.dense or self.schema_version < 3:
                raise ValueError("min_kept_mass needs a schema-3 top-k cache")
            if not 0 < self.min_kept_mass <= 1:
                raise ValueError(f"min_kept_mass must be in (0, 1], got {self.min_kept_mass}")
        if self.backend not in BACKENDS:
            raise ValueError(f"backend must be one of {BACKENDS}, got {self.backend!r}")

    @property
    def dense(self) -> bool:
        return self.quantization == "dense-u8"

    def to_json(self) -> str:
        data = asdict(self)
        if self.schema_version < 3:  # a schema-2 header has neither field
            del data["min_kept_mass"], data["backend"]
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CacheHeader:
        data = json.loads(text)
        version = data.get("schema_version")
        if version not in READABLE_VERSIONS:
            raise CacheMismatch({"schema_version": (version, SCHEMA_VERSION)})
        known = {f.name for f in fields(cls)}
        if version < 3:
            known -= {"min_kept_mass", "backend"}  # schema 2: fixed k, computed by torch
        unknown = set(data) - known
        if unknown:
            raise CorruptShard(f"unknown header fields {sorted(unknown)}")
        return cls(**data)


def check_compatible(header: CacheHeader, expected: CacheHeader) -> None:
    """Raise :class:`CacheMismatch` naming every identity field where ``header`` differs."""
    diffs = {
        f: (getattr(header, f), getattr(expected, f))
        for f in IDENTITY_FIELDS
        if getattr(header, f) != getattr(expected, f)
    }
    if diffs:
        raise CacheMismatch(diffs)


def content_key(*parts: str) -> str:
    """sha256 hex of the example's content (e.g. prompt text and target ids as a string).

    Each part is length-prefixed so ("ab", "c") and ("a", "bc") get different keys.
    """
    h = hashlib.sha256()
    for part in parts:
        data = part.encode("utf-8")
        h.update(len(data).to_bytes(8, "little"))
        h.update(data)
    return h.hexdigest()


def _id_bytes(vocab_size: int) -> int:
    return max(1, ((vocab_size - 1).bit_length() + 7) // 8)


# Raw LZMA2 (no .xz container): the container's ~60 bytes per record would cost ~1 byte/token.
_LZMA_FILTERS = [{"id": lzma.FILTER_LZMA2, "preset": 9}]


def _compress(data: bytes, method: str) -> bytes:
    if method == "zlib":
        return zlib.compress(data, 9)
    if method == "lz4":
        return lz4.frame.compress(data)
    return lzma.compress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def _decompress(data: bytes, method: str) -> bytes:
    if method == "zlib":
        return zlib.decompress(data)
    if method == "lz4":
        return lz4.frame.decompress(data)
    return lzma.decompress(data, format=lzma.FORMAT_RAW, filters=_LZMA_FILTERS)


def _log_tail_mass(topk_logprobs: np.ndarray) -> np.ndarray:
    lp = topk_logprobs.astype(np.float64)
    top = lp.max(axis=1, keepdims=True)
    lse = (top + np.log(np.exp(lp - top).sum(axis=1, keepdims=True)))[:, 0]
    with np.errstate(divide="ignore"):
        return np.where(lse < 0, np.log(-np.expm1(np.minimum(lse, 0))), -np.inf)


def _planes(values: np.ndarray, n_bytes: int) -> bytes:
    """Little-endian byte planes (all low bytes, then all next bytes...) of non-negative ints."""
    flat = np.ascontiguousarray(values, dtype="<u4").reshape(-1)
    return np.ascontiguousarray(flat.view(np.uint8).reshape(-1, 4).T[:n_bytes]).tobytes()


def _unplanes(raw: bytes, pos: int, count: int, n_bytes: int) -> np.ndarray:
    planes = np.frombuffer(raw, np.uint8, n_bytes * count, pos).reshape(n_bytes, count)
    out = np.zeros(count, np.int64)
    for b in range(n_bytes):
        out |= planes[b].astype(np.int64) << (8 * b)
    return out


def _check_topk(header: CacheHeader, ids: np.ndarray, lp: np.ndarray) -> None:
    if ids.ndim != 2 or ids.shape[1] != header.k or lp.shape != ids.shape:
        raise ValueError(
            f"topk_ids and topk_logprobs must both be [n, k={header.k}], "
            f"got {ids.shape} and {lp.shape}"
        )
    if ids.size and (ids.min() < 0 or ids.max() >= header.vocab_size):
        raise ValueError(f"topk_ids must be in [0, vocab_size={header.vocab_size})")
    if np.isnan(lp).any() or (lp[:, 0] > 1e-4).any() or not np.isfinite(lp[:, 0]).all():
        raise ValueError("topk_logprobs must be log-probabilities (<= 0, top-1 finite, no NaN)")
    with np.errstate(invalid="ignore"):
        if (np.diff(lp, axis=1) > 0).any():
            raise ValueError("topk_logprobs must be in rank order (non-increasing along k)")


def id_table(all_ids: list[np.ndarray]) -> np.ndarray:
    """The distinct ids of a shard, most frequent first (ties by id, so it is deterministic)."""
    if not all_ids:
        return np.zeros(0, np.int64)
    ids, counts = np.unique(np.concatenate([a.reshape(-1) for a in all_ids]), return_counts=True)
    return ids[np.lexsort((ids, -counts))]


def kept_counts(topk_logprobs: np.ndarray, min_kept_mass: float | None) -> np.ndarray:
    """How many entries each row keeps: all ``k``, or the fewest whose probabilities sum to at
    least ``min_kept_mass`` (at most ``k``; a row whose ``k`` entries hold less keeps all).

    Args:
        topk_logprobs: ``[n, k]`` log-probs in rank order.
        min_kept_mass: None for a fixed ``k``, else a probability in (0, 1].

    Returns:
        ``[n]`` int64 counts in ``[1, k]``.
    """
    lp = np.asarray(topk_logprobs, dtype=np.float64)
    n, k = lp.shape
    if min_kept_mass is None:
        return np.full(n, k, np.int64)
    below = np.cumsum(np.exp(lp), axis=1) < min_kept_mass
    return np.minimum(below.sum(axis=1) + 1, k).astype(np.int64)


@dataclass(frozen=True)
class _Cut:
    """One record's kept entries, rows concatenated (row i owns ``counts[i]`` of them)."""

    counts: np.ndarray  # [n] int64
    ids: np.ndarray  # [m] int64
    logprobs: np.ndarray  # [m] float64
    log_tail: np.ndarray  # [n] float64, exact log-mass of everything a row did not keep


def _cut(header: CacheHeader, ids: np.ndarray, lp: np.ndarray, log_tail: np.ndarray | None) -> _Cut:
    _check_topk(header, ids, lp)
    n, k = ids.shape
    tail = _log_tail_mass(lp) if log_tail is None else np.asarray(log_tail, dtype=np.float64)
    if tail.shape != (n,):
        raise ValueError(f"log_tail_mass must be [n={n}], got {tail.shape}")
    counts = kept_counts(lp, header.min_kept_mass)
    keep = np.arange(k)[None, :] < counts[:, None]
    lp64 = lp.astype(np.float64)
    # The dropped entries join the tail in linear space: float64 holds them exactly enough, and
    # the tail beyond k (the teacher's own logsumexp) is added, never re-derived from 1 - sum.
    dropped = np.where(keep, 0.0, np.exp(lp64)).sum(axis=1)
    with np.errstate(divide="ignore"):
        tail = np.logaddexp(tail, np.log(dropped))
    return _Cut(counts, ids[keep].astype(np.int64), lp64[keep], tail)


def _tail_code(log_tail: np.ndarray) -> np.ndarray:
    """One f16 per row holding the log of the smaller of the tail and the kept mass: ``v <= 0``
    is log(tail), ``v > 0`` is -log(kept mass). Either side then keeps fp16's relative precision
    where it matters (a tail of 1e-9, or a flat row that keeps 1e-4 of the mass)."""
    t = np.minimum(np.asarray(log_tail, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore"):
        kept = np.log(-np.expm1(t))  # log(1 - tail); -inf when the tail is everything
    v = np.where(t <= -np.log(2), t, -kept)
    return v.astype("<f2")


def _log_kept_and_tail(code: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Inverse of :func:`_tail_code`: ``(log kept mass, log tail)`` per row, float64."""
    v = code.astype(np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        tail_side = np.log(-np.expm1(np.minimum(v, -1e-300)))
        kept_side = np.log(-np.expm1(-np.maximum(v, 1e-300)))
    log_kept = np.where(v <= 0, np.where(np.isneginf(v), 0.0, tail_side), -v)
    log_tail = np.where(v <= 0, v, kept_side)
    return log_kept, log_tail


def _encode_cut(header: CacheHeader, cut: _Cut, table: np.ndarray) -> bytes:
    n, m = len(cut.counts), len(cut.ids)
    starts = np.concatenate([[0], np.cumsum(cut.counts)[:-1]]).astype(np.int64)
    rel = np.repeat(cut.logprobs[starts], cut.counts) - cut.logprobs
    with np.errstate(invalid="ignore"):
        scaled = np.round(rel / header.logprob_step)
    codes = np.where(np.isfinite(scaled), np.clip(scaled, 0, _NEG_INF_CODE - 1), _NEG_INF_CODE)
    codes = codes.astype(np.int64)
    inner = np.ones(m, bool)
    inner[starts] = False
    increments = (codes - np.concatenate([[0], codes[:-1]]))[inner]
    order = np.argsort(table, kind="stable")
    pos = np.searchsorted(table, cut.ids, sorter=order)
    ranks = order[np.minimum(pos, len(table) - 1)] if len(table) else pos
    if m and not np.array_equal(table[ranks], cut.ids):
        raise ValueError("the id table does not hold every id of this record")
    raw = b"".join(
        [
            struct.pack("<II", n, header.k),
            _planes(cut.counts - 1, _id_bytes(header.k)),
            _tail_code(cut.log_tail).tobytes(),
            _planes(increments, 2),
            _planes(ranks, _id_bytes(max(len(table), 1))),
        ]
    )
    return _compress(raw, header.compression)


def encode_record(
    header: CacheHeader,
    topk_ids: np.ndarray,
    topk_logprobs: np.ndarray,
    log_tail_mass: np.ndarray | None = None,
    table: np.ndarray | None = None,
) -> bytes:
    """Cut (``header.min_kept_mass``), quantize and compress one example's rows ``[n, k]``.

    Args:
        header: the shard header (k, cut, vocab size, step, compression); schema 3.
        topk_ids: ``[n, k]`` ints, in the teacher's rank order (descending probability).
        topk_logprobs: ``[n, k]`` float log-probs, non-increasing along each row.
        log_tail_mass: ``[n]`` log of the mass outside the ``k`` entries; derived from them
            when None (less exact than the teacher's own value when the tail is tiny).
        table: the shard's id table (:func:`id_table`) holding every kept id; None uses this
            record's own table (only for measuring one record on its own).

    Returns:
        The compressed payload.
    """
    if header.schema_version != SCHEMA_VERSION:
        raise ValueError(f"only schema {SCHEMA_VERSION} is written, got {header.schema_version}")
    ids, lp = np.asarray(topk_ids), np.asarray(topk_logprobs, dtype=np.float32)
    cut = _cut(header, ids, lp, log_tail_mass)
    return _encode_cut(header, cut, id_table([cut.ids]) if table is None else np.asarray(table))


def decode_record(
    header: CacheHeader, payload: bytes, table: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Inverse of :func:`encode_record` (and of :func:`encode_dense_record` for dense shards).

    Returns:
        ``(ids [n, k] int64, logprobs [n, k] float32, tail_mass [n] float32)``; a row that kept
        fewer than ``k`` entries is padded with id -1 and log-prob -inf. For a dense shard ids is
        a read-only broadcast of ``arange(vocab_size)`` and the tail is zero.
    """
    raw = _decompress(payload, header.compression)
    n, k = struct.unpack_from("<II", raw)
    if header.dense:
        if k != header.vocab_size or len(raw) != 8 + 8 * n + n * k:
            raise CorruptShard(f"dense record has n={n}, V={k}, {len(raw)} bytes")
        lo = np.frombuffer(raw, "<f4", n, 8)[:, None]
        hi = np.frombuffer(raw, "<f4", n, 8 + 4 * n)[:, None]
        codes = np.frombuffer(raw, np.uint8, n * k, 8 + 8 * n).reshape(n, k)
        lp = (lo + codes.astype(np.float32) * ((hi - lo) / 255)).astype(np.float32)
        return np.broadcast_to(np.arange(k), (n, k)), lp, np.zeros(n, np.float32)
    if table is None:
        raise CorruptShard("a top-k record needs its shard's id table")
    if k != header.k:
        raise CorruptShard(f"record has k={k}; expected k={header.k}")
    if header.schema_version < 3:
        return _decode_v2(header, raw, n, table)
    nb, cb = _id_bytes(max(len(table), 1)), _id_bytes(k)
    if len(raw) < 8 + (cb + 2) * n:
        raise CorruptShard(f"record has n={n} and only {len(raw)} bytes")
    counts = _unplanes(raw, 8, n, cb) + 1
    m = int(counts.sum())
    if counts.max(initial=1) > k or len(raw) != 8 + (cb + 2) * n + 2 * (m - n) + nb * m:
        raise CorruptShard(f"record has n={n}, {m} kept entries, {len(raw)} bytes")
    pos = 8 + cb * n
    log_kept, log_tail = _log_kept_and_tail(np.frombuffer(raw, "<f2", n, pos))
    pos += 2 * n
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]]).astype(np.int64)
    inner = np.ones(m, bool)
    inner[starts] = False
    steps = np.zeros(m, np.int64)
    steps[inner] = _unplanes(raw, pos, m - n, 2)
    pos += 2 * (m - n)
    ranks = _unplanes(raw, pos, m, nb)
    if ranks.size and ranks.max() >= len(table):
        raise CorruptShard("record refers past the end of its shard's id table")
    total = np.cumsum(steps)
    codes = total - np.repeat(total[starts], counts)
    with np.errstate(over="ignore"):
        rel = np.where(codes >= _NEG_INF_CODE, -np.inf, -codes * header.logprob_step)
    # Back on the scale the stored tail fixes: kept entries and tail sum to one.
    scale = log_kept - np.log(np.add.reduceat(np.exp(rel), starts))
    keep = np.arange(k)[None, :] < counts[:, None]
    ids = np.full((n, k), -1, np.int64)
    lp = np.full((n, k), -np.inf, np.float32)
    ids[keep] = table[ranks]
    lp[keep] = rel + np.repeat(scale, counts)
    return ids, lp, np.exp(log_tail).astype(np.float32)


def _decode_v2(
    header: CacheHeader, raw: bytes, n: int, table: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Schema-2 top-k payload: ``k`` entries per row, the top-1 as an absolute code."""
    k = header.k
    nb = _id_bytes(max(len(table), 1))
    expected = 8 + 2 * n + 2 * n + 2 * n * (k - 1) + nb * n * k
    if len(raw) != expected:
        raise CorruptShard(f"record has n={n}, k={k}, {len(raw)} bytes; expected {expected}")
    pos = 8
    tail = np.frombuffer(raw, "<f2", n, pos).astype(np.float32)
    pos += 2 * n
    top = _unplanes(raw, pos, n, 2)
    pos += 2 * n
    inc = _unplanes(raw, pos, n * (k - 1), 2).reshape(n, k - 1)
    pos += 2 * n * (k - 1)
    ranks = _unplanes(raw, pos, n * k, nb)
    if ranks.size and ranks.max() >= len(table):
        raise CorruptShard("record refers past the end of its shard's id table")
    ids = table[ranks].reshape(n, k)
    codes = np.concatenate([top[:, None], top[:, None] + np.cumsum(inc, axis=1)], axis=1)
    lp = np.where(codes >= _NEG_INF_CODE, -np.inf, -codes * header.logprob_step)
    return ids, lp.astype(np.float32), np.exp(tail)


def encode_dense_record(header: CacheHeader, logprobs: np.ndarray) -> bytes:
    """The papers' baseline: full-vocabulary log-prob rows ``[n, V]`` as min-max 8-bit codes.

    Each row is quantized linearly between its smallest and largest finite log-prob into 256
    levels (a step of ~0.1 nats for Gemma's ~25-nat spread), then compressed with
    ``header.compression`` (LZ4 in the papers). -inf entries get code 0.
    """
    lp = np.asarray(logprobs, dtype=np.float32)
    if lp.ndim != 2 or lp.shape[1] != header.vocab_size:
        raise ValueError(f"dense rows must be [n, vocab_size={header.vocab_size}], got {lp.shape}")
    finite = np.where(np.isfinite(lp), lp, np.nan)
    lo = np.nanmin(finite, axis=1).astype(np.float32)
    hi = np.nanmax(finite, axis=1).astype(np.float32)
    span = np.maximum(hi - lo, 1e-12)[:, None]
    codes = np.clip(np.round((np.nan_to_num(finite, nan=lo[0]) - lo[:, None]) / span * 255), 0, 255)
    codes = np.where(np.isfinite(lp), codes, 0).astype(np.uint8)
    raw = struct.pack("<II", *lp.shape) + lo.astype("<f4").tobytes() + hi.astype("<f4").tobytes()
    return _compress(raw + codes.tobytes(), header.compression)


class ShardWriter:
    """Writes one shard atomically: the shard is buffered, encoded on :meth:`close` (the id table
    needs every record's ids) into a temp file, and renamed onto ``path``.

    Use as a context manager; an exception inside the block discards everything, so a
    half-written shard never appears under ``path``. Dense shards are encoded as records arrive
    (they are large and need no table).
    """

    def __init__(self, path: str | Path, header: CacheHeader):
        if header.schema_version != SCHEMA_VERSION:
            raise ValueError(
                f"only schema {SCHEMA_VERSION} shards are written, got {header.schema_version}"
            )
        self.path = Path(path)
        self.header = header
        self._tmp = self.path.with_name(f".{self.path.name}.tmp-{os.getpid()}")
        self._pending: list[tuple[bytes, _Cut]] = []
        self._encoded: list[tuple[bytes, bytes, int]] = []
        self._keys: set[bytes] = set()
        self._closed = False

    def add(
        self,
        key: str,
        topk_ids: np.ndarray | None,
        topk_logprobs: np.ndarray,
        log_tail_mass: np.ndarray | None = None,
    ) -> None:
        """Add one example's rows under its content key (a sha256 hex, :func:`content_key`).

        Top-k shards take ``[n, k]`` ids and log-probs as in :func:`encode_record`; dense shards
        take ``topk_ids=None`` and ``[n, vocab]`` log-probs.
        """
        kb = _key_bytes(key)
        if kb in self._keys:
            raise ValueError(f"duplicate key {key!r} in shard {self.path}")
        self._keys.add(kb)
        if self.header.dense:
            payload = encode_dense_record(self.header, topk_logprobs)
            self._encoded.append((kb, payload, int(np.asarray(topk_logprobs).shape[0])))
            return
        ids, lp = np.asarray(topk_ids), np.asarray(topk_logprobs, dtype=np.float32)
        self._pending.append((kb, _cut(self.header, ids, lp, log_tail_mass)))

    def close(self) -> None:
        """Encode, write header, table, records, index and end marker, fsync, rename."""
        if self._closed:
            return
        table = id_table([cut.ids for _, cut in self._pending])
        for kb, cut in self._pending:
            self._encoded.append((kb, _encode_cut(self.header, cut, table), len(cut.counts)))
        head = self.header.to_json().encode("utf-8")
        table_bytes = (
            b""
            if self.header.dense
            else _compress(
                _planes(table, _id_bytes(self.header.vocab_size)), self.header.compression
            )
        )
        try:
            with open(self._tmp, "wb") as f:
                f.write(MAGIC + struct.pack("<II", len(head), zlib.crc32(head)) + head)
                f.write(struct.pack("<II", len(table_bytes), zlib.crc32(table_bytes)))
                f.write(table_bytes)
                index = []
                for kb, payload, n in self._encoded:
                    index.append(_INDEX_ENTRY.pack(kb, f.tell(), n))
                    f.write(_RECORD.pack(len(payload), zlib.crc32(payload, zlib.crc32(kb))))
                    f.write(kb + payload)
                blob = b"".join(index)
                offset = f.tell()
                f.write(blob + _TRAILER.pack(offset, len(blob), zlib.crc32(blob), END_MAGIC))
                f.flush()
                os.fsync(f.fileno())
            os.replace(self._tmp, self.path)
        finally:
            self._tmp.unlink(missing_ok=True)
            self._closed = True

    def abort(self) -> None:
        """Discard everything; ``path`` is left untouched."""
        self._pending.clear()
        self._encoded.clear()
        self._closed = True
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> ShardWriter:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def _key_bytes(key: str) -> bytes:
    try:
        kb = bytes.fromhex(key)
    except ValueError:
        kb = b""
    if len(kb) != 32:
        raise ValueError(f"cache keys are sha256 hex digests (content_key), got {key!r}")
    return kb


class ShardReader:
    """Reads a shard; refuses truncated or corrupt ones, and mismatched ones given ``expected``.

    Raises:
        TruncatedShard: no end marker.
        CorruptShard: bad magic, header, table or index checksum.
        CacheMismatch: ``expected`` given and an identity field differs.
    """

    def __init__(self, path: str | Path, expected: CacheHeader | None = None):
        self.path = Path(path)
        self._data = self.path.read_bytes()
        data = self._data
        if len(data) < len(MAGIC) + 16 + _TRAILER.size or data[-8:] != END_MAGIC:
            raise TruncatedShard(
                f"{self.path}: no end marker; the shard is truncated or unfinished"
            )
        if data[:8] != MAGIC:
            raise CorruptShard(f"{self.path}: not a teacher cache shard (bad magic)")
        head_len, head_crc = struct.unpack_from("<II", data, 8)
        head = data[16 : 16 + head_len]
        if zlib.crc32(head) != head_crc:
            raise CorruptShard(f"{self.path}: header checksum mismatch")
        self.header = CacheHeader.from_json(head.decode("utf-8"))
        if expected is not None:
            check_compatible(self.header, expected)
        pos = 16 + head_len
        table_len, table_crc = struct.unpack_from("<II", data, pos)
        table = data[pos + 8 : pos + 8 + table_len]
        if zlib.crc32(table) != table_crc:
            raise CorruptShard(f"{self.path}: id table checksum mismatch")
        self._table_bytes = table
        self._table: np.ndarray | None = None
        offset, length, crc, _ = _TRAILER.unpack_from(data, len(data) - _TRAILER.size)
        index = data[offset : offset + length]
        if (
            offset + length != len(data) - _TRAILER.size
            or length % _INDEX_ENTRY.size
            or zlib.crc32(index) != crc
        ):
            raise CorruptShard(f"{self.path}: index checksum mismatch")
        self._index = {kb.hex(): (off, n) for kb, off, n in _INDEX_ENTRY.iter_unpack(index)}

    @property
    def table(self) -> np.ndarray:
        """The shard's id table, decoded on first use."""
        if self._table is None:
            if self.header.dense:
                self._table = np.zeros(0, np.int64)
            else:
                raw = _decompress(self._table_bytes, self.header.compression)
                nb = _id_bytes(self.header.vocab_size)
                if len(raw) % nb:
                    raise CorruptShard(f"{self.path}: id table has {len(raw)} bytes")
                self._table = _unplanes(raw, 0, len(raw) // nb, nb)
        return self._table

    def keys(self) -> list[str]:
        return list(self._index)

    def __contains__(self, key: str) -> bool:
        return key in self._index

    def __len__(self) -> int:
        return len(self._index)

    def positions(self, key: str) -> int:
        return self._index[key][1]

    def _payload(self, key: str) -> bytes:
        off, _ = self._index[key]
        payload_len, crc = _RECORD.unpack_from(self._data, off)
        start = off + _RECORD.size
        kb = self._data[start : start + 32]
        payload = self._data[start + 32 : start + 32 + payload_len]
        if zlib.crc32(payload, zlib.crc32(kb)) != crc or kb.hex() != key:
            raise CorruptShard(f"{self.path}: checksum mismatch in record {key!r}")
        return payload

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids [n, k], logprobs [n, k], tail_mass [n])`` for a content key.

        Raises:
            KeyError: no entry for this content (e.g. the example changed since caching).
        """
        if key not in self._index:
            raise KeyError(
                f"no cache entry for content key {key[:16]}... in {self.path} "
                "(example not cached, or its content changed)"
            )
        return decode_record(self.header, self._payload(key), self.table)


@dataclass
class VerifyReport:
    """Outcome of :func:`verify_shard`; ``ok`` is True when every check passed."""

    path: str
    ok: bool
    n_entries: int = 0
    n_positions: int = 0
    n_bytes: int = 0
    errors: list[str] | None = None


def verify_shard(path: str | Path, expected: CacheHeader | None = None) -> VerifyReport:
    """Check the end marker, header, table, index and every record's checksum and decoding."""
    path = Path(path)
    errors: list[str] = []
    try:
        reader = ShardReader(path, expected)
        _ = reader.table
    except (CacheError, ValueError, UnicodeDecodeError, lzma.LZMAError, zlib.error) as exc:
        return VerifyReport(str(path), False, errors=[f"{type(exc).__name__}: {exc}"])
    n_positions = 0
    for key, (_, n) in reader._index.items():
        try:
            ids, lp, _ = reader.get(key)
            if ids.shape[0] != n:
                raise CorruptShard(f"record {key!r} has {ids.shape[0]} positions, index says {n}")
            n_positions += n
        except (CacheError, ValueError, zlib.error, lzma.LZMAError, struct.error) as exc:
            errors.append(f"{type(exc).__name__}: {exc}")
        except RuntimeError as exc:  # lz4.frame raises RuntimeError on corrupt input
            errors.append(f"{type(exc).__name__}: {exc}")
    return VerifyReport(
        str(path), not errors, len(reader), n_positions, path.stat().st_size, errors or None
    )
