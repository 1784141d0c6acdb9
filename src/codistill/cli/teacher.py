"""``codistill teacher``: prepare teachers (convert the embedded GGUF teacher once), cache their
top-k log-probs over a dataset, and verify such a cache."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from codistill.cli.teacher_finetune import add_parser as add_finetune
from codistill.cli.teacher_generate import add_parser as add_generate
from codistill.config.distill import TASK_DEFAULTS
from codistill.data.jsonl import read_records
from codistill.data.prompts import TRUNCATIONS
from codistill.models.gemma import convert_gguf
from codistill.models.registry import (
    DEFAULT_MODEL,
    ModelIntegrityError,
    ensure_model,
    resolve_model,
)
from codistill.teacher.cache_defaults import KEPT_MASS_DEFAULT, KMAX_DEFAULT


def register(sub) -> None:
    """Add ``codistill teacher`` and its subcommands, in the order ``--help`` lists them."""
    p = sub.add_parser("teacher", help="prepare the teacher")
    tsub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    _add_convert(tsub)
    _add_cache(tsub)
    _add_verify(tsub)
    add_generate(tsub)
    add_finetune(tsub)


def _add_convert(tsub) -> None:
    c = tsub.add_parser(
        "convert",
        help="convert an embedded model (default Gemma 3 270M; --model NAME) or --gguf FILE to a "
        "safetensors directory",
    )
    c.add_argument(
        "--model",
        default=None,
        help="embedded model to convert (see `codistill models list`; default gemma-3-270m)",
    )
    c.add_argument(
        "--gguf", help="another causal-LM .gguf file to convert (needs --out), e.g. SmolLM2"
    )
    c.add_argument("--out", help="target dir (default for an embedded model: the cache)")
    c.add_argument(
        "--force",
        action="store_true",
        help="convert the embedded model again (--gguf always does)",
    )
    c.set_defaults(func=run_convert)


def _add_cache(tsub) -> None:
    k = tsub.add_parser(
        "cache",
        help="run the teacher once over a dataset and store its top-k log-probs (resumable)",
    )
    k.add_argument(
        "--teacher",
        required=True,
        help="decoder-only teacher dir, or embedded / embedded:NAME (`codistill models list`)",
    )
    k.add_argument("--data", required=True, help="task JSONL to cache")
    k.add_argument("--out", required=True, help="cache dir; existing compatible shards are kept")
    k.add_argument(
        "--top-k",
        type=int,
        default=KMAX_DEFAULT,
        help=f"most tokens kept per position (default {KMAX_DEFAULT})",
    )
    k.add_argument(
        "--kept-mass",
        type=float,
        default=KEPT_MASS_DEFAULT,
        help="keep per position only the fewest top tokens holding this probability, at most "
        f"--top-k; the rest goes into the exactly stored tail (default {KEPT_MASS_DEFAULT}; "
        "1 keeps --top-k everywhere)",
    )
    k.add_argument(
        "--backend",
        default="torch",
        help="what runs the teacher: torch (the directory's weights as stored, default), "
        "torch-bf16 (weights and activations in bfloat16: fast on CPUs with AVX512-BF16), "
        "torch-int8 (Linear layers but the MLP down projections dynamically quantized to "
        "int8) or llamacpp:FILE.gguf "
        "(llama.cpp in-process on the GGUF the --teacher directory was converted from; the "
        "directory then supplies only the tokenizer). A cache is tied to its backend",
    )
    k.add_argument(
        "--task", default="assertion", choices=["assertion", "codegen"], help="task of the records"
    )
    k.add_argument(
        "--max-source-tokens", type=int, help="as in training (default 256; codegen 512)"
    )
    k.add_argument(
        "--truncation",
        default="left",
        choices=TRUNCATIONS,
        help="how longer prompts are cut, as in training; middle lets a llama.cpp teacher "
        "decode the head the records of one test method share once",
    )
    k.add_argument("--max-target-tokens", type=int, help="as in training (default 64; codegen 384)")
    k.add_argument(
        "--prompt-style", default="prefix", choices=["prefix", "placeholder"], help="as in training"
    )
    k.add_argument(
        "--prompt-mode", default="raw", choices=["raw", "chat"], help="codegen: as in training"
    )
    k.add_argument(
        "--targets",
        default="reference",
        help="as in training: reference, teacher:DIR or teacher-verified:DIR (the teacher's "
        "own outputs from `codistill teacher generate`, for sequence- plus token-level KD)",
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


def _add_verify(tsub) -> None:
    v = tsub.add_parser("verify", help="check every shard of a teacher cache; exit 1 if any is bad")
    v.add_argument("dir", help="cache dir")
    v.set_defaults(func=run_verify)


def run_convert(args) -> int:
    if args.gguf is not None and args.model is not None:
        print("codistill teacher convert: give --model or --gguf, not both", file=sys.stderr)
        return 2
    if args.gguf is not None and args.out is None:
        print("codistill teacher convert: --gguf needs --out DIR", file=sys.stderr)
        return 2
    try:
        if args.gguf is None:
            print(ensure_model(args.model or DEFAULT_MODEL, args.out, force=args.force))
        else:
            print(convert_gguf(args.gguf, args.out))
    except (OSError, ImportError, ValueError, RuntimeError, ModelIntegrityError) as exc:
        print(f"codistill teacher convert: {exc}", file=sys.stderr)
        return 2
    return 0


def run_cache(args) -> int:
    from codistill.teacher.cache import build_cache  # lazy: torch, transformers
    from codistill.teacher.cache_format import CacheMismatch  # lazy: numpy
    from codistill.training.targets import records_for_targets  # lazy: run-time only

    if not 0 < args.kept_mass <= 1:
        print(
            f"codistill teacher cache: --kept-mass must be in (0, 1], got {args.kept_mass}",
            file=sys.stderr,
        )
        return 2
    try:
        teacher = resolve_model(args.teacher)  # embedded / embedded:NAME -> its directory
    except (OSError, ValueError, RuntimeError) as exc:  # not installed, wrong hash, ...
        print(f"codistill teacher cache: {exc}", file=sys.stderr)
        return 2
    records = read_records(args.data, task=args.task)
    lengths = TASK_DEFAULTS[args.task]
    max_source = args.max_source_tokens or lengths["max_source_tokens"]
    max_target = args.max_target_tokens or lengths["max_target_tokens"]
    try:
        records, _ = records_for_targets(
            records,
            args.targets,
            task=args.task,
            prompt_mode=args.prompt_mode,
            prompt_style=args.prompt_style,
            data_name=args.data,
        )
    except ValueError as exc:  # ConfigError, GenerationsMismatch: named one-line errors
        print(f"codistill teacher cache: error: {exc}", file=sys.stderr)
        return 2
    state = _distributed_state()
    try:
        stats = build_cache(
            teacher,
            records,
            args.out,
            k=args.top_k,
            max_source_tokens=max_source,
            max_target_tokens=max_target,
            prompt_style=args.prompt_style,
            prompt_mode=args.prompt_mode,
            truncation=args.truncation,
            batch_size=args.batch_size,
            shard_size=args.shard_size,
            fmt=args.format,
            min_kept_mass=None if args.kept_mass >= 1 else args.kept_mass,
            backend=args.backend,
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
        + (
            f"; teacher ({args.backend}) {stats.positions / stats.teacher_seconds:.1f} tokens/s"
            if stats.teacher_seconds > 0
            else ""
        )
    )
    return 0


def _distributed_state():
    """Accelerate's process state when launched with several processes, else None."""
    if int(os.environ.get("WORLD_SIZE", "1")) <= 1:
        return None
    from accelerate import PartialState  # lazy: accelerate loads torch

    from codistill.training.loop import multi_cpu  # lazy: torch

    return PartialState(cpu=multi_cpu())


def run_verify(args) -> int:
    from codistill.teacher.cache import list_shards  # lazy: torch, transformers
    from codistill.teacher.cache_format import ShardReader, verify_shard  # lazy: numpy

    if not Path(args.dir).is_dir():
        print(f"codistill teacher verify: error: {args.dir}: no such directory", file=sys.stderr)
        return 2
    shards = list_shards(args.dir)
    if not shards:  # a directory that is not a cache is a usage error, not a bad cache
        print(
            f"codistill teacher verify: error: {args.dir}: no shards (shard-*.cdt) found",
            file=sys.stderr,
        )
        return 2
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
