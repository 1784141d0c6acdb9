"""``codistill teacher``: prepare teachers (convert the embedded GGUF teacher once), cache their
top-k log-probs over a dataset, and verify such a cache."""

from __future__ import annotations

import sys


def register(sub) -> None:
    p = sub.add_parser("teacher", help="prepare the teacher")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    c = tsub.add_parser(
        "convert",
        help="convert the embedded Gemma 3 270M GGUF (or --gguf FILE) to a safetensors directory",
    )
    c.add_argument(
        "--gguf", help="another causal-LM .gguf file to convert (needs --out), e.g. SmolLM2"
    )
    c.add_argument("--out", help="target dir (default for the embedded teacher: the cache)")
    c.add_argument(
        "--force",
        action="store_true",
        help="convert the embedded teacher again (--gguf always does)",
    )
    c.set_defaults(func=run_convert)

    k = tsub.add_parser(
        "cache",
        help="run the teacher once over a dataset and store its top-k log-probs (resumable)",
    )
    k.add_argument("--teacher", required=True, help="decoder-only teacher dir, or 'embedded'")
    k.add_argument("--data", required=True, help="task JSONL to cache")
    k.add_argument("--out", required=True, help="cache dir; existing compatible shards are kept")
    k.add_argument("--top-k", type=int, default=64, help="tokens kept per position (default 64)")
    k.add_argument("--task", default="assertion", help="task of the JSONL records")
    k.add_argument(
        "--max-source-tokens", type=int, default=256, help="as in training (default 256)"
    )
    k.add_argument("--max-target-tokens", type=int, default=64, help="as in training (default 64)")
    k.add_argument(
        "--prompt-style", default="prefix", choices=["prefix", "placeholder"], help="as in training"
    )
    k.add_argument("--batch-size", type=int, default=8, help="teacher forward batch (default 8)")
    k.add_argument("--shard-size", type=int, default=256, help="examples per shard (default 256)")
    k.add_argument(
        "--format",
        default="topk",
        choices=["topk", "dense8"],
        help="topk (compact, default) or dense8 (the papers' dense 8-bit + LZ4 baseline)",
    )
    k.set_defaults(func=run_cache)

    v = tsub.add_parser("verify", help="check every shard of a teacher cache; exit 1 if any is bad")
    v.add_argument("dir", help="cache dir")
    v.set_defaults(func=run_verify)


def run_convert(args) -> int:
    from codistill.models.gemma import convert_gguf, ensure_gemma_teacher

    if args.gguf is None:
        print(ensure_gemma_teacher(args.out, force=args.force))
        return 0
    if args.out is None:
        print("codistill teacher convert: --gguf needs --out DIR", file=sys.stderr)
        return 2
    try:
        print(convert_gguf(args.gguf, args.out))
    except (OSError, ImportError, ValueError, RuntimeError) as exc:
        print(f"codistill teacher convert: {exc}", file=sys.stderr)
        return 2
    return 0


def run_cache(args) -> int:
    from codistill.data.jsonl import read_records
    from codistill.teacher.cache import build_cache
    from codistill.teacher.cache_format import CacheMismatch

    teacher = args.teacher
    if teacher == "embedded":
        from codistill.models.gemma import ensure_gemma_teacher

        teacher = str(ensure_gemma_teacher())
    records = read_records(args.data, task=args.task)
    state = _distributed_state()
    try:
        stats = build_cache(
            teacher,
            records,
            args.out,
            k=args.top_k,
            max_source_tokens=args.max_source_tokens,
            max_target_tokens=args.max_target_tokens,
            prompt_style=args.prompt_style,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            fmt=args.format,
            rank=0 if state is None else state.process_index,
            world_size=1 if state is None else state.num_processes,
            log=print,
        )
    except (CacheMismatch, NotImplementedError, ValueError) as exc:
        print(f"codistill teacher cache: error: {exc}", file=sys.stderr)
        return 2
    who = "" if state is None else f"rank {state.process_index}/{state.num_processes}: "
    if state is not None:
        state.wait_for_everyone()  # every rank's shards are complete before anyone reads them
    print(
        f"{who}{stats.examples} examples: {stats.written} cached now ({stats.positions} positions, "
        f"{len(stats.new_shards)} new shards), {stats.skipped_cached} already cached, "
        f"{stats.duplicates} duplicates"
    )
    return 0


def _distributed_state():
    """Accelerate's process state when launched with several processes, else None."""
    import os

    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState

    from codistill.training.loop import multi_cpu

    return PartialState(cpu=multi_cpu())


def run_verify(args) -> int:
    from codistill.teacher.cache import list_shards
    from codistill.teacher.cache_format import ShardReader, verify_shard

    shards = list_shards(args.dir)
    if not shards:
        print(f"{args.dir}: no shards (shard-*.cdt) found", file=sys.stderr)
        return 1
    bad = entries = positions = size = 0
    expected = None  # every shard must agree with the first readable one (same teacher, k...)
    for path in shards:
        report = verify_shard(path, expected)
        if report.ok and expected is None:
            expected = ShardReader(path).header
        entries, positions, size = (
            entries + report.n_entries,
            positions + report.n_positions,
            size + report.n_bytes,
        )
        status = "ok" if report.ok else "BAD"
        print(f"{status:3} {path.name}: {report.n_entries} entries, {report.n_positions} positions")
        for err in report.errors or []:
            print(f"    {err}")
        bad += not report.ok
    per_token = size / positions if positions else float("nan")
    print(
        f"{len(shards)} shards, {bad} bad; {entries} entries, {positions} positions, "
        f"{size} bytes ({per_token:.1f} bytes/position)"
    )
    return 1 if bad else 0
