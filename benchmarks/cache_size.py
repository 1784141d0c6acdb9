"""Teacher top-k cache: bytes per target token and what each cut loses, for both teacher families.

Runs each teacher once over the same records (teacher tokenization, exactly as training), keeps
the top-``k_max`` of every target position with the exact log-mass of the rest, then for each
configuration writes a real shard with ``ShardWriter`` (header, id table, keys and index
included) and reads it back. A configuration is ``K`` (a fixed k) or ``K@P`` (the entropy-
adaptive cut: the fewest tokens holding probability P, at most K). Printed per configuration:

- mean kept tokens per position, bytes per target token, and the papers' dense baseline (a
  full-vocabulary row as min-max uint8 codes + LZ4, ``encode_dense_record``, on a sample of rows)
  divided by it (anchor: DistillKit's budget setting, ~114 bytes/token);
- top-1 agreement of the decoded cache with the full teacher's argmax;
- kept mass: mean probability inside the kept tokens (what a sparse loss sees token by token;
  the rest is one exactly stored tail bucket), and the 90th percentile of the tail;
- quantization error: KL(exact || decoded) over the kept tokens plus the tail bucket, and the
  max |delta log p| over kept log-probs;
- "tail lost": the share of positions where the tail that training derives from the decoded
  values (1 - sum exp(logp), as ``sparse_teacher_targets`` does) is 0 while the true one is not
  (> 1e-6). The row ``64 (schema 2)`` emulates the schema-2 decoder (absolute codes of step
  1/32): its top-1 rounds to probability 1 once it is above exp(-1/64), erasing the tail.

    python benchmarks/cache_size.py [--data F.jsonl] [--records 32] \\
        [--teacher NAME=DIR[,BACKEND]] [--configs 64,64@0.99,64@0.999,128@0.999]
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

DEFAULT_CONFIGS = "64,64@0.99,64@0.999,128@0.999"


def _kl_buckets(p_kept, tail_exact, q_kept, tail_stored) -> np.ndarray:
    """Per-row KL(p || q) over the kept tokens plus one tail bucket, q renormalised."""
    p = np.concatenate([p_kept, tail_exact[:, None]], axis=1)
    q = np.concatenate([q_kept, tail_stored[:, None]], axis=1)
    q = q / q.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        terms = np.where(p > 0, p * (np.log(p) - np.log(np.maximum(q, 1e-300))), 0.0)
    return terms.sum(axis=1)


def teacher_rows(teacher_dir: Path, backend: str, records, args):
    """Top-``k_max`` ids/log-probs, the exact log tail beyond them, argmax and dense samples."""
    from codistill.data.batches import tokenize_records
    from codistill.models.loading import load_tokenizer
    from codistill.teacher.cache import (
        _load_torch_teacher,
        parse_backend,
        teacher_topk,
    )
    from codistill.teacher.llamacpp import LlamaCppTeacher

    tokenizer = load_tokenizer(teacher_dir)
    examples, _ = tokenize_records(
        records,
        tokenizer,
        max_source_tokens=args.max_source_tokens,
        max_target_tokens=args.max_target_tokens,
        token_map=None,
    )
    name, gguf = parse_backend(backend)
    if gguf is None:
        model = _load_torch_teacher(teacher_dir, name)
    else:
        n_ctx = max(len(e.prompt_ids) + len(e.target_ids) for e in examples)
        model = LlamaCppTeacher(gguf, n_ctx, torch.get_num_threads())
    n_pos = sum(len(e.target_ids) for e in examples)
    every = max(1, n_pos // args.dense_rows)
    ids, lps, tails, argmax, dense = [], [], [], [], []
    seen = 0
    t0 = time.perf_counter()
    # Whole rows once (k=None), so the argmax and the dense baseline come from the same pass.
    for _, _, full, _ in teacher_topk(model, examples, None, tokenizer.pad_token_id, 8):
        full_t = torch.from_numpy(np.ascontiguousarray(full))
        values, top = torch.topk(full_t, args.kmax, dim=-1)
        rest = full_t.scatter(-1, top, float("-inf"))
        ids.append(top.numpy())
        lps.append(values.numpy())
        tails.append(torch.logsumexp(rest.double(), -1).numpy())
        argmax.append(top[:, 0].numpy())
        for i in range(full.shape[0]):
            if (seen + i) % every == 0 and len(dense) < args.dense_rows:
                dense.append(np.array(full[i]))
        seen += full.shape[0]
    seconds = time.perf_counter() - t0
    if isinstance(model, LlamaCppTeacher):
        model.close()
    return examples, {
        "ids": np.concatenate(ids),
        "lp": np.concatenate(lps),
        "tail": np.concatenate(tails),
        "argmax": np.concatenate(argmax),
        "dense": dense,
        "seconds": seconds,
        "vocab": int(dense[0].shape[0]),
    }


def _tail_at(rows, k: int) -> np.ndarray:
    p = np.exp(rows["lp"][:, k:].astype(np.float64)).sum(1)
    return np.log(p + np.exp(rows["tail"]))


def measure(teacher_dir: Path, examples, rows, config: str, base_header) -> str:
    from codistill.teacher.cache import example_key
    from codistill.teacher.cache_format import ShardReader, ShardWriter

    kmax, _, mass = config.partition("@")
    k, mass = int(kmax), float(mass) if mass else None
    header = dataclasses.replace(base_header, k=k, min_kept_mass=mass)
    tail_k = _tail_at(rows, k)
    spans, seen, offset = [], set(), 0
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "shard-00000.cdt"
        with ShardWriter(path, header) as writer:
            for ex in examples:
                n = len(ex.target_ids)
                sl = slice(offset, offset + n)
                key = example_key(ex.prompt_ids, ex.target_ids)
                if key not in seen:
                    seen.add(key)
                    writer.add(key, rows["ids"][sl, :k], rows["lp"][sl, :k], tail_k[sl])
                    spans.append((key, sl))
                offset += n
        size = path.stat().st_size
        reader = ShardReader(path, header)
        got = [reader.get(key) for key, _ in spans]
    at = np.concatenate([np.arange(offset)[sl] for _, sl in spans])
    d_ids = np.concatenate([g[0] for g in got])
    d_lp = np.concatenate([g[1] for g in got]).astype(np.float64)
    d_tail = np.concatenate([g[2] for g in got]).astype(np.float64)
    kept = d_ids >= 0
    exact = rows["lp"][at, :k].astype(np.float64)
    assert (d_ids[kept] == rows["ids"][at, :k][kept]).all()
    p_kept = np.where(kept, np.exp(exact), 0.0)
    tail_exact = np.exp(tail_k[at]) + np.where(kept, 0.0, np.exp(exact)).sum(1)
    q_kept = np.where(kept, np.exp(d_lp), 0.0)
    kl = _kl_buckets(p_kept, tail_exact, q_kept, d_tail)
    derived = np.maximum(1 - q_kept.sum(1), 0)
    return _row(
        config,
        kept.sum(1).mean(),
        size / len(at),
        float((d_ids[:, 0] == rows["argmax"][at]).mean()),
        tail_exact,
        kl.mean(),
        float(np.abs(d_lp[kept] - exact[kept]).max()),
        float(((derived == 0) & (tail_exact > 1e-6)).mean()),
    )


def schema2_row(rows, examples) -> str:
    """Fixed k=64 as the schema-2 decoder returned it: absolute codes of step 1/32."""
    k, step = 64, 1 / 32
    exact = rows["lp"][:, :k].astype(np.float64)
    decoded = -np.round(-exact / step) * step
    tail_exact = np.exp(_tail_at(rows, k))
    q = np.exp(decoded)
    kl = _kl_buckets(np.exp(exact), tail_exact, q, tail_exact)
    derived = np.maximum(1 - q.sum(1), 0)
    lost = float(((derived == 0) & (tail_exact > 1e-6)).mean())
    agree = float((rows["ids"][:, 0] == rows["argmax"]).mean())
    dl = float(np.abs(decoded - exact).max())
    return _row("64 (schema 2)", k, float("nan"), agree, tail_exact, kl.mean(), dl, lost)


def _row(name, mean_k, per_token, agree, tail, kl, dlogp, lost) -> str:
    return (
        f"{name:>14} {mean_k:>7.1f} {per_token:>10.1f} {agree:>8.4f} {1 - tail.mean():>9.5f} "
        f"{np.quantile(tail, 0.9):>9.2e} {kl:>9.1e} {dlogp:>10.4f} {lost:>10.1%}"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="task JSONL (default: a few mined stdlib test files)")
    parser.add_argument("--records", type=int, default=32)
    parser.add_argument("--configs", default=DEFAULT_CONFIGS, help="K or K@P, comma-separated")
    parser.add_argument("--max-source-tokens", type=int, default=256)
    parser.add_argument("--max-target-tokens", type=int, default=64)
    parser.add_argument("--dense-rows", type=int, default=32, help="rows sampled for the baseline")
    parser.add_argument(
        "--teacher",
        action="append",
        default=[],
        help="NAME=DIR[,BACKEND] (BACKEND as in `teacher cache --backend`; default torch)",
    )
    args = parser.parse_args()
    configs = args.configs.split(",")
    args.kmax = max(int(c.partition("@")[0]) for c in configs)

    from teacher_throughput import default_teachers, small_data

    from codistill.data.jsonl import read_records
    from codistill.teacher.cache import cache_header
    from codistill.teacher.cache_format import encode_dense_record

    teachers = {}
    for name, (directory, _) in default_teachers().items():
        if directory is not None and "1.5b" not in name:
            teachers[name] = (directory, "torch")
    for spec in args.teacher:
        name, _, rest = spec.partition("=")
        directory, _, backend = rest.partition(",")
        teachers[name] = (Path(directory), backend or "torch")
    if not teachers:
        print("skipped: no converted teacher (`codistill teacher convert`) and no --teacher")
        return 0
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(args.data) if args.data else small_data(Path(tmp) / "d.jsonl", args.records)
        records = read_records(data)[: args.records]
    for name, (directory, backend) in teachers.items():
        examples, rows = teacher_rows(directory, backend, records, args)
        vocab = rows["vocab"]
        base = cache_header(directory, args.kmax, vocab, None)
        dense_header = cache_header(directory, args.kmax, vocab, None, fmt="dense8")
        dense_bytes = float(
            np.mean([len(encode_dense_record(dense_header, r[None])) for r in rows["dense"]])
        )
        print(
            f"\n{name} (vocab {vocab}, {backend}): {len(examples)} examples, "
            f"{len(rows['ids'])} target tokens, teacher {rows['seconds']:.0f} s; dense 8-bit+LZ4 "
            f"baseline {dense_bytes:.0f} bytes/token; DistillKit budget ~114 bytes/token"
        )
        print(
            f"{'config':>14} {'mean k':>7} {'bytes/tok':>10} {'top1':>8} {'kept':>9} "
            f"{'p90 tail':>9} {'quant KL':>9} {'max|dlogp|':>10} {'tail lost':>10}"
        )
        print(schema2_row(rows, examples))
        for config in configs:
            print(measure(directory, examples, rows, config, base))
    return 0


if __name__ == "__main__":
    sys.exit(main())
