"""Build and read the teacher top-k cache: run the teacher once, train from its shards many times.

The cache stores, per example and per target position, the teacher's top-k token ids (teacher
vocabulary, rank order), their log-probabilities (``log_softmax`` over the *full* vocabulary at
T=1) and the exact log of the mass outside the top-k (see :mod:`cache_format` for the bytes).

Alignment is the whole point, so nothing here tokenizes on its own: examples come from
:func:`codistill.data.batches.tokenize_records` with the teacher's tokenizer, exactly as the
trainer builds them, and an example's positions are its ``len(target_ids)`` target tokens (the
logits just before each one). Entries are keyed by :func:`example_key` of the teacher prompt and
target ids, never by position, so a reordered, filtered or edited dataset cannot misalign: an
edited example simply has another key and misses.

Resume: shards are written atomically (``ShardWriter``), so an interrupted run leaves only
complete shards; a rerun skips every example whose key is already in a compatible shard and
writes the rest into new shards numbered after the last one.

Several processes (``accelerate launch codistill teacher cache ...``): rank r of w takes the
examples whose content key, read as a number, is r modulo w (deterministic, independent of data
order) and writes its own shards, ``shard-NNNNN-rRR.cdt``, so ranks never write the same file.
Readers and ``verify`` take every shard of the directory, whichever rank wrote it, and a rerun
with another number of processes still skips what any rank cached.

``fmt="dense8"`` stores whole-vocabulary rows in the papers' dense 8-bit + LZ4 format instead
(a baseline: ~1000x larger). ``min_kept_mass=p`` keeps per position only the fewest top tokens
holding probability p (at most k), the rest going into the exactly stored tail.

Backends (``backend=``): ``"torch"`` runs the directory's model as stored; ``"torch-bf16"`` with
its weights and activations in bfloat16 (log-softmax in float32; about 1.8x float32 on CPUs with
AVX512-BF16 or AMX, slower on CPUs without); ``"torch-int8"`` with
its Linear layers (output head included, MLP down projections not: see ``INT8_SKIP``)
dynamically quantized to int8; ``"llamacpp:FILE.gguf"`` runs the GGUF in llama.cpp in-process
(:mod:`codistill.teacher.llamacpp`) while the directory supplies the tokenizer. Each gives
slightly different log-probs, so the backend is part of the header's identity and a cache made
by one is refused by another, naming ``backend``.
"""

from __future__ import annotations

import hashlib
import json
import re
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic
from transformers import AutoConfig

from codistill.data.batches import Example, collate_causal, tokenize_records
from codistill.evaluation.llamacpp_batch import check_gguf_file
from codistill.files import sha256_file
from codistill.models.forward import head_fn, target_states
from codistill.models.loading import is_encoder_decoder, load_model, load_tokenizer
from codistill.teacher.cache_format import (
    BACKENDS,
    CacheHeader,
    ShardReader,
    ShardWriter,
    content_key,
)
from codistill.teacher.llamacpp import LlamaCppTeacher, check_vocabulary

SHARD_PATTERN = re.compile(r"^shard-(\d{5,})(?:-r(\d{2,}))?\.cdt$")
FORMATS = ("topk", "dense8")


def shard_name(number: int, rank: int | None = None) -> str:
    """``shard-00000.cdt`` for 0; ``shard-00000-r01.cdt`` for rank 1 of a multi-process run."""
    return f"shard-{number:05d}.cdt" if rank is None else f"shard-{number:05d}-r{rank:02d}.cdt"


def list_shards(cache_dir: str | Path) -> list[Path]:
    """Complete-named shards of a cache directory, by number then rank (temp files excluded)."""
    cache_dir = Path(cache_dir)
    if not cache_dir.is_dir():
        return []
    found = [
        ((int(m.group(1)), int(m.group(2) or -1)), p)
        for p in cache_dir.iterdir()
        if (m := SHARD_PATTERN.match(p.name))
    ]
    return [p for _, p in sorted(found)]


def example_key(teacher_prompt_ids: Sequence[int], teacher_target_ids: Sequence[int]) -> str:
    """Content key of one example: its teacher-tokenized prompt and target ids.

    The trainer computes the same key from ``Example.teacher_prompt_ids`` and
    ``Example.teacher_target_ids`` (or ``prompt_ids``/``target_ids`` when tokenized without a
    token map, which are then teacher ids).
    """
    return content_key(
        json.dumps([list(map(int, teacher_prompt_ids)), list(map(int, teacher_target_ids))])
    )


def _sha256_files(paths: Sequence[Path], chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    for path in paths:
        # The name is hashed too, so moving bytes between two shards of the weights changes it.
        name = path.name.encode("utf-8")
        h.update(len(name).to_bytes(8, "little") + name)
        with open(path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def teacher_weights_hash(teacher_dir: str | Path) -> str:
    """sha256 over the teacher's ``*.safetensors`` files (sorted by name, streamed).

    Raises:
        FileNotFoundError: the directory holds no ``*.safetensors`` file.
    """
    files = sorted(Path(teacher_dir).glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{teacher_dir} holds no *.safetensors weights to hash")
    return _sha256_files(files)


def tokenizer_hash(teacher_dir: str | Path, tokenizer=None) -> str:
    """sha256 of ``tokenizer.json``, or of the tokenizer's vocabulary as JSON when it is absent."""
    path = Path(teacher_dir) / "tokenizer.json"
    if path.is_file():
        return _sha256_files([path])
    if tokenizer is None:
        raise FileNotFoundError(f"{teacher_dir} has no tokenizer.json and no tokenizer was given")
    vocab = json.dumps(tokenizer.get_vocab(), sort_keys=True).encode("utf-8")
    return hashlib.sha256(vocab).hexdigest()


def parse_backend(spec: str) -> tuple[str, Path | None]:
    """``"torch"``, ``"torch-bf16"``, ``"torch-int8"`` or ``"llamacpp:FILE.gguf"`` -> (name, GGUF
    path or None).

    Raises:
        ValueError: an unknown backend, or llamacpp without a GGUF file (one line).
    """
    name, _, rest = spec.partition(":")
    if name not in BACKENDS or bool(rest) != (name == "llamacpp"):
        raise ValueError(
            f"backend must be torch, torch-bf16, torch-int8 or llamacpp:FILE.gguf, got {spec!r}"
        )
    return name, check_gguf_file(rest) if rest else None


def cache_header(
    teacher_dir: str | Path,
    k: int,
    vocab_size: int,
    tokenizer=None,
    fmt: str = "topk",
    *,
    min_kept_mass: float | None = None,
    backend: str = "torch",
) -> CacheHeader:
    """The header a cache of this teacher directory at this ``k`` (and format) must carry.

    ``backend`` is a spec as in :func:`parse_backend`; with llama.cpp the ``teacher_hash`` is
    the GGUF file's sha256 (the weights that ran), the tokenizer still the directory's.
    """
    if fmt not in FORMATS:
        raise ValueError(f"cache format must be one of {FORMATS}, got {fmt!r}")
    name, gguf = parse_backend(backend)
    dense = fmt == "dense8"
    return CacheHeader(
        teacher_path=str(Path(teacher_dir).resolve()),
        teacher_hash=teacher_weights_hash(teacher_dir) if gguf is None else sha256_file(gguf),
        tokenizer_hash=tokenizer_hash(teacher_dir, tokenizer),
        vocab_size=int(vocab_size),
        k=int(vocab_size if dense else k),
        quantization="dense-u8" if dense else "topk-rank-u16",
        compression="lz4" if dense else "lzma",
        min_kept_mass=None if dense else min_kept_mass,
        backend=name,
    )


# Linear layers left in float: the MLP output projection reads the gated activations, whose
# outliers a per-tensor activation scale cannot hold. Measured on Qwen2.5-Coder-0.5B over stdlib
# tests (100 positions): every Linear in int8 agreed with float32 on the top-1 at 0.83 (KL 0.24
# nats); without down_proj at 0.98 (KL 0.03).
INT8_SKIP = ("down_proj",)


def quantize_int8(model: torch.nn.Module) -> torch.nn.Module:
    """The model with its ``nn.Linear`` layers (output head included, ``INT8_SKIP`` excluded)
    dynamically quantized to int8: weights per output channel (a per-tensor scale over a
    262,144-row head loses the rare rows), activations per tensor at run time (fbgemm on x86)."""
    names = [
        name
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.Linear) and not name.endswith(INT8_SKIP)
    ]
    with warnings.catch_warnings():
        # torch.ao.quantization warns that torchao replaces it; it still works in torch 2.13,
        # and torchao is not a dependency.
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", UserWarning)
        spec = dict.fromkeys(names, per_channel_dynamic_qconfig)
        return quantize_dynamic(model, spec, dtype=torch.qint8)


class TeacherCache:
    """Read access to every shard of a cache directory, by content key.

    Attributes:
        header: the header shared by all shards (the ``expected`` one when given).
    """

    def __init__(self, readers: list[ShardReader], header: CacheHeader | None):
        self._readers = readers
        self.header = header
        self._where: dict[str, ShardReader] = {}
        for reader in readers:
            for key in reader.keys():
                self._where.setdefault(key, reader)

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def __len__(self) -> int:
        return len(self._where)

    def keys(self) -> list[str]:
        return list(self._where)

    def positions(self, key: str) -> int:
        """Number of cached target positions of an example (KeyError when not cached)."""
        return self._where[key].positions(key)

    @property
    def shards(self) -> list[Path]:
        return [r.path for r in self._readers]

    def get(self, key: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """``(ids [n, k], logprobs [n, k], tail_mass [n])`` of one example.

        Raises:
            KeyError: no shard holds this content (not cached, or the example changed).
        """
        reader = self._where.get(key)
        if reader is None:
            raise KeyError(
                f"no teacher cache entry for content key {key[:16]}... "
                "(example not cached, or its content changed since caching)"
            )
        return reader.get(key)


def open_cache(cache_dir: str | Path, expected: CacheHeader | None = None) -> TeacherCache:
    """Open every shard of ``cache_dir``; all must match ``expected`` (or the first shard).

    Raises:
        FileNotFoundError: the directory holds no shard.
        CacheMismatch: a shard was made by another teacher, tokenizer or setting (the differing
            fields are named).
        TruncatedShard, CorruptShard: a shard is unreadable.
    """
    paths = list_shards(cache_dir)
    if not paths:
        raise FileNotFoundError(f"{cache_dir} holds no teacher cache shards (shard-*.cdt)")
    readers = []
    for path in paths:
        reader = ShardReader(path, expected)
        if expected is None:
            # Shards of one directory must agree with each other even when no teacher is named.
            expected = reader.header
        readers.append(reader)
    return TeacherCache(readers, expected)


def topk_with_tail(
    logprobs: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-k of full-vocabulary log-probs plus the exact log mass outside them.

    Args:
        logprobs: ``[n, vocab]`` log-softmax rows.
        k: how many tokens to keep.

    Returns:
        ``(ids [n, k] int64, logprobs [n, k], log_tail [n])``, ids in descending probability.
    """
    values, ids = torch.topk(logprobs, k, dim=-1, sorted=True)
    # logsumexp over the rest, not log(1 - sum(top-k)): the latter cancels catastrophically when
    # the tail is tiny, which is exactly when a peaked teacher's tail matters for the loss.
    rest = logprobs.scatter(-1, ids, float("-inf"))
    return ids, values, torch.logsumexp(rest, dim=-1)


def target_logprob_chunks(
    model, examples: Sequence[Example], pad_id: int, chunk: int = 128
) -> Iterator[torch.Tensor]:
    """Full-vocabulary teacher log-probs at the target positions of one batch, in chunks.

    Rows come in example order, then target order: ``sum(len(e.target_ids))`` rows in all; row
    t of an example is the distribution over its target token t (the logits one position
    before it). The head runs on ``chunk`` positions at a time so a 262k vocabulary never
    materialises ``[batch, seq, vocab]``.

    Args:
        model: a decoder-only teacher (eval mode).
        examples: tokenized with the teacher tokenizer (no token map), so ids are teacher ids.
        pad_id: the teacher's pad id.
        chunk: positions per head application.

    Yields:
        ``[m, vocab]`` float32 log-softmax rows (T=1).
    """
    if is_encoder_decoder(model):
        raise NotImplementedError(
            "the teacher cache supports decoder-only teachers only; encoder-decoder teachers "
            "(T5 family) must be run live during distillation"
        )
    batch = collate_causal(list(examples), pad_id)
    with torch.no_grad():
        states = target_states(
            model, batch["input_ids"], batch["attention_mask"], batch["target_mask"].bool()
        )
        head = head_fn(model)
        for start in range(0, states.shape[0], chunk):
            yield torch.log_softmax(head(states[start : start + chunk]).float(), dim=-1)


def teacher_topk(
    model,
    examples: Sequence[Example],
    k: int | None,
    pad_id: int,
    batch_size: int = 8,
    chunk: int = 128,
) -> Iterator[tuple[Example, np.ndarray | None, np.ndarray, np.ndarray | None]]:
    """``(example, ids [n, k], logprobs [n, k], log_tail [n])`` per example, n its target length.

    ``model`` is a torch teacher or a :class:`LlamaCppTeacher`. ``k=None`` yields the whole rows
    instead: ``(example, None, logprobs [n, vocab], None)``.
    """
    for start in range(0, len(examples), batch_size):
        group = list(examples[start : start + batch_size])
        if isinstance(model, LlamaCppTeacher):
            chunks = (torch.from_numpy(rows) for rows in model.logprob_rows(group))
        else:
            chunks = target_logprob_chunks(model, group, pad_id, chunk)
        if k is None:
            lps, ids, tails = torch.cat(list(chunks)).numpy(), None, None
        else:
            parts = [topk_with_tail(lp, k) for lp in chunks]
            ids = torch.cat([p[0] for p in parts]).numpy()
            lps = torch.cat([p[1] for p in parts]).numpy()
            tails = torch.cat([p[2] for p in parts]).numpy()
        offset = 0
        for ex in group:
            n = len(ex.target_ids)
            sl = slice(offset, offset + n)
            if ids is None:
                yield ex, None, lps[sl], None
            else:
                yield ex, ids[sl], lps[sl], tails[sl]
            offset += n


@dataclass
class BuildStats:
    """What one :func:`build_cache` run did."""

    examples: int = 0
    skipped_cached: int = 0
    duplicates: int = 0
    written: int = 0
    positions: int = 0
    new_shards: list[str] | None = None
    teacher_seconds: float = 0.0  # running the teacher and cutting its top-k, writing excluded


def _existing_keys(out_dir: Path, header: CacheHeader) -> tuple[set[str], int]:
    keys: set[str] = set()
    next_number = 0
    for path in list_shards(out_dir):
        # Raises CacheMismatch naming the field when the teacher or tokenizer changed.
        keys.update(ShardReader(path, header).keys())
        next_number = max(next_number, int(SHARD_PATTERN.match(path.name).group(1)) + 1)
    return keys, next_number


def owner_rank(key: str, world_size: int) -> int:
    """The rank that caches an example: its content key as a number, modulo the world size."""
    return int(key[:16], 16) % world_size


def build_cache(
    teacher_dir: str | Path,
    records: Sequence,
    out_dir: str | Path,
    *,
    k: int = 64,
    max_source_tokens: int = 256,
    max_target_tokens: int = 64,
    prompt_style: str = "prefix",
    prompt_mode: str = "raw",
    truncation: str = "left",
    batch_size: int = 8,
    shard_size: int = 256,
    fmt: str = "topk",
    min_kept_mass: float | None = None,
    backend: str = "torch",
    rank: int = 0,
    world_size: int = 1,
    log: Callable[[str], None] | None = None,
) -> BuildStats:
    """Run the teacher over ``records`` and write the examples not yet cached into new shards.

    Args:
        teacher_dir: a local decoder-only model directory (safetensors weights and tokenizer;
            with llama.cpp only its tokenizer and config are read).
        records: task records (tokenized here exactly as the trainer does).
        out_dir: cache directory; created if missing, existing shards are reused.
        k: top tokens kept per position (the most, with ``min_kept_mass``).
        max_source_tokens, max_target_tokens, prompt_style, prompt_mode, truncation: as in
            the distill config; they must match training, or the trainer's keys will not be found.
        batch_size: teacher forward batch size (torch backends).
        shard_size: examples per shard.
        fmt: "topk" (the compact format) or "dense8" (the papers' dense 8-bit + LZ4 baseline).
        min_kept_mass: None keeps ``k`` tokens per position; p in (0, 1] keeps the fewest
            holding probability p, at most ``k`` (see :mod:`cache_format`).
        backend: "torch", "torch-bf16", "torch-int8" or "llamacpp:FILE.gguf" (module doc).
        rank, world_size: this process's share of a multi-process run (see the module doc);
            ``stats`` then counts this rank's examples only.
        log: called with one line per shard written.

    Raises:
        CacheMismatch: a shard in ``out_dir`` was made by another teacher, tokenizer, backend,
            k or cut.
        NotImplementedError: the teacher is an encoder-decoder.
        ValueError: a bad backend, or a GGUF whose vocabulary is not the tokenizer's.
    """
    if shard_size < 1 or batch_size < 1:
        raise ValueError(f"shard_size and batch_size must be >= 1, got {shard_size}, {batch_size}")
    if not 0 <= rank < world_size:
        raise ValueError(f"rank must be in [0, world_size={world_size}), got {rank}")
    tokenizer, model, gguf, header = _open_teacher(teacher_dir, k, fmt, min_kept_mass, backend)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    cached, number = _existing_keys(out_dir, header)
    examples, _ = tokenize_records(
        list(records),
        tokenizer,
        max_source_tokens=max_source_tokens,
        max_target_tokens=max_target_tokens,
        token_map=None,
        prompt_style=prompt_style,
        prompt_mode=prompt_mode,
        truncation=truncation,
    )
    stats = BuildStats(new_shards=[])
    pending = _claim_examples(examples, cached, rank, world_size, stats)
    if gguf is not None and pending:
        model = _start_llamacpp(gguf, pending, tokenizer, header.vocab_size)
    top = None if header.dense else k
    try:
        for path, part in _shard_parts(out_dir, pending, shard_size, number, rank, world_size):
            rows = teacher_topk(
                model, [ex for _, ex in part], top, tokenizer.pad_token_id, batch_size
            )
            _write_shard(path, header, part, rows, stats)
            if log is not None:
                log(f"wrote {path} ({len(part)} examples)")
    finally:
        if isinstance(model, LlamaCppTeacher):
            model.close()
    return stats


def _open_teacher(
    teacher_dir: str | Path, k: int, fmt: str, min_kept_mass: float | None, backend: str
) -> tuple[object, torch.nn.Module | None, Path | None, CacheHeader]:
    """``(tokenizer, torch model or None, GGUF path or None, header)`` of a cache run.

    A llama.cpp teacher is not loaded here: its context length depends on the examples left to
    run (:func:`_start_llamacpp`), and a run with nothing to do should not load it at all.
    """
    name, gguf = parse_backend(backend)
    tokenizer = load_tokenizer(teacher_dir)
    model = None if gguf is not None else _load_torch_teacher(teacher_dir, name)
    vocab = _model_vocab(teacher_dir) if model is None else _head_rows(model)
    header = cache_header(
        teacher_dir, k, vocab, tokenizer, fmt, min_kept_mass=min_kept_mass, backend=backend
    )
    return tokenizer, model, gguf, header


def _claim_examples(
    examples: Sequence[Example],
    cached: set[str],
    rank: int,
    world_size: int,
    stats: BuildStats,
) -> list[tuple[str, Example]]:
    """``(key, example)`` of this rank's examples not yet cached, one per key, in data order.

    Counts into ``stats`` this rank's examples, those already cached and the duplicates.
    """
    todo: dict[str, Example] = {}
    for ex in examples:
        key = example_key(ex.prompt_ids, ex.target_ids)
        if owner_rank(key, world_size) != rank:
            continue
        stats.examples += 1
        if key in cached:
            stats.skipped_cached += 1
        elif key in todo:
            stats.duplicates += 1  # identical content: one entry serves both
        else:
            todo[key] = ex
    return list(todo.items())


def _start_llamacpp(
    gguf: Path, pending: Sequence[tuple[str, Example]], tokenizer, vocab: int
) -> LlamaCppTeacher:
    """The GGUF teacher, with a context that fits the longest pending example.

    Raises:
        ValueError: the GGUF's vocabulary is not the tokenizer's (the model is closed first).
    """
    n_ctx = max(len(ex.prompt_ids) + len(ex.target_ids) for _, ex in pending)
    model = LlamaCppTeacher(gguf, n_ctx=n_ctx, n_threads=torch.get_num_threads())
    try:
        check_vocabulary(model, tokenizer, vocab)
    except BaseException:
        model.close()
        raise
    return model


def _shard_parts(
    out_dir: Path,
    pending: Sequence[tuple[str, Example]],
    shard_size: int,
    first_number: int,
    rank: int,
    world_size: int,
) -> Iterator[tuple[Path, Sequence[tuple[str, Example]]]]:
    """``(shard path, its examples)``: ``pending`` cut into shards numbered from ``first_number``
    (rank-suffixed names only in a multi-process run, so ranks never write the same file)."""
    for number, start in enumerate(range(0, len(pending), shard_size), first_number):
        path = out_dir / shard_name(number, rank if world_size > 1 else None)
        yield path, pending[start : start + shard_size]


def _write_shard(
    path: Path,
    header: CacheHeader,
    part: Sequence[tuple[str, Example]],
    rows: Iterator[tuple[Example, np.ndarray | None, np.ndarray, np.ndarray | None]],
    stats: BuildStats,
) -> None:
    """Writes ``part``'s teacher rows (from :func:`teacher_topk`) as one shard, atomically."""
    with ShardWriter(path, header) as writer:
        t0 = time.perf_counter()
        # ``rows`` is lazy: the teacher runs between two adds, which is the time counted.
        for (key, _), (_, ids, lps, tails) in zip(part, rows, strict=True):
            stats.teacher_seconds += time.perf_counter() - t0
            writer.add(key, ids, lps, tails)
            stats.positions += lps.shape[0]
            t0 = time.perf_counter()
    stats.written += len(part)
    stats.new_shards.append(path.name)


def _load_torch_teacher(teacher_dir: str | Path, backend: str) -> torch.nn.Module:
    model = load_model(teacher_dir, dtype=torch.bfloat16 if backend == "torch-bf16" else None)
    if is_encoder_decoder(model):
        raise NotImplementedError(
            "the teacher cache supports decoder-only teachers only; encoder-decoder teachers "
            "(T5 family) must be run live during distillation"
        )
    model.requires_grad_(False)
    return quantize_int8(model) if backend == "torch-int8" else model


def _head_rows(model: torch.nn.Module) -> int:
    head = model.get_output_embeddings()
    weight = head.weight() if callable(head.weight) else head.weight  # int8 heads: a method
    return int(weight.shape[0])


def _model_vocab(teacher_dir: str | Path) -> int:
    """The model vocabulary from the directory's config (no weights loaded)."""
    config = AutoConfig.from_pretrained(teacher_dir)
    vocab = getattr(config, "vocab_size", None) or config.get_text_config().vocab_size
    return int(vocab)
