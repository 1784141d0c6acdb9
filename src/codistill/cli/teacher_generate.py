"""``codistill teacher generate``: the teacher's outputs for every record of a data set.

The outputs (and, for code generation, their sandbox verdicts) go to ``OUT/generations.jsonl``,
the format of :mod:`codistill.teacher.generations`, which ``codistill distill
targets=teacher:OUT`` trains on (sequence-level KD). A rerun skips records already there.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

from codistill.data.jsonl import read_records
from codistill.data.prompts import TRUNCATIONS
from codistill.data.schema import RecordError
from codistill.models.registry import ModelIntegrityError, parse_embedded, resolve_model

# Per-task defaults: assertions as training cuts and decodes them (one line), code generation
# as ``codistill eval`` does (a whole function; chat prompts carry a template around the task).
DEFAULT_MAX_NEW_TOKENS = {"assertion": 64, "codegen": 384}
DEFAULT_MAX_SOURCE_TOKENS = {"assertion": 256, "codegen": 1024}


def add_parser(tsub) -> None:
    """Adds ``generate`` to the ``codistill teacher`` subcommands."""
    g = tsub.add_parser(
        "generate",
        help="write the teacher's outputs for every record (sequence-level KD targets; resumable)",
    )
    g.add_argument(
        "--teacher",
        required=True,
        help="HF model dir, 'embedded' (Gemma 3 270M) or 'embedded:NAME'; with a server "
        "backend it supplies the tokenizer (chat template, prompt cutting)",
    )
    g.add_argument("--data", required=True, help="task JSONL")
    g.add_argument("--out", required=True, help="generations dir; outputs already there are kept")
    g.add_argument("--task", default="assertion", choices=["assertion", "codegen"])
    g.add_argument(
        "--backend",
        default="transformers",
        help="transformers (in-process, default), llamacpp:FILE.gguf (llama.cpp's server), "
        "llamacpp-batch:FILE.gguf (llama.cpp in-process, several answers per decode step) "
        "or openai:URL",
    )
    g.add_argument("--n", type=int, default=1, help="outputs per record (default 1)")
    g.add_argument("--temperature", type=float, default=0.0, help="0 = greedy (default)")
    g.add_argument("--top-p", type=float, default=1.0, help="nucleus mass when sampling")
    g.add_argument("--max-new-tokens", type=int, help="default 64 (assertion) / 384 (codegen)")
    g.add_argument("--seed", type=int, default=0, help="sampling seed (in-process)")
    g.add_argument(
        "--prompt-mode",
        default="raw",
        choices=["raw", "chat"],
        help="raw completion, or the model's chat template (codegen, instruct models)",
    )
    g.add_argument(
        "--prompt-style",
        default="prefix",
        choices=["prefix", "placeholder"],
        help="assertion prompt style, as in training",
    )
    g.add_argument(
        "--max-source-tokens", type=int, help="prompt tokens kept; default 256 / 1024 (codegen)"
    )
    g.add_argument(
        "--truncation",
        default="left",
        choices=TRUNCATIONS,
        help="how longer prompts are cut: left (keep the end) or middle (keep both halves)",
    )
    g.add_argument("--batch-size", type=int, default=8, help="in-process generation batch")
    g.add_argument("--timeout-s", type=float, default=10.0, help="sandbox limit per program")
    g.add_argument("--workers", type=int, default=2, help="sandbox workers")
    g.add_argument(
        "--api-key-env",
        metavar="VAR",
        help="openai: environment variable holding the API key (the key is never written)",
    )
    g.add_argument("--server-model", help="openai: model name to request (default: the first)")
    g.add_argument("--concurrency", type=int, default=2, help="server requests in flight")
    g.set_defaults(func=run_generate)


def resolve_teacher(spec: str) -> tuple[Path, str | None]:
    """The HF directory behind ``--teacher`` and the teacher's name (None for a plain dir).

    Raises:
        ValueError: an unknown embedded model, or a path that is not a directory.
    """
    name = parse_embedded(spec)  # embedded -> gemma-3-270m, embedded:NAME -> NAME
    if name is not None:
        return Path(resolve_model(spec)), name
    path = Path(spec)
    if not path.is_dir():
        raise ValueError(f"--teacher {spec}: not a model directory (or 'embedded[:NAME]')")
    return path, None


def settings_from_args(args):
    """:class:`GenerateSettings` from the parsed flags, with the per-task defaults."""
    from codistill.teacher.generations import GenerateSettings  # lazy: ~35 ms (backends, sandbox)

    return GenerateSettings(
        task=args.task,
        backend=args.backend,
        n=args.n,
        temperature=args.temperature,
        top_p=args.top_p,
        max_new_tokens=args.max_new_tokens or DEFAULT_MAX_NEW_TOKENS[args.task],
        seed=args.seed,
        prompt_mode=args.prompt_mode,
        prompt_style=args.prompt_style if args.task == "assertion" else None,
        max_source_tokens=args.max_source_tokens or DEFAULT_MAX_SOURCE_TOKENS[args.task],
        truncation=args.truncation,
        batch_size=args.batch_size,
        timeout_s=args.timeout_s,
        workers=args.workers,
        server_model=args.server_model,
        concurrency=args.concurrency,
    )


def _check_backend(spec: str) -> None:
    """Fails before any model loads on what can be checked up front."""
    if spec == "transformers":
        return
    if spec.startswith("transformers:"):
        raise ValueError("--backend transformers runs --teacher in-process: give no target")
    from codistill.fidelity.models import check_backend_spec  # lazy: torch

    check_backend_spec(spec)


def _api_key(args) -> str | None:
    if args.api_key_env is None:
        return None
    if not args.backend.startswith("openai:"):
        raise ValueError("--api-key-env is for --backend openai:URL")
    key = os.environ.get(args.api_key_env)
    if not key:
        raise ValueError(f"--api-key-env {args.api_key_env}: that environment variable is unset")
    return key


def run_generate(args) -> int:
    from codistill.teacher.generations import (  # lazy: ~35 ms (backends, sandbox)
        GenerationsError,
        TeacherBackendError,
        generate_teacher_outputs,
    )

    where = "codistill teacher generate"
    try:
        settings = settings_from_args(args)
        settings.check()
        _check_backend(args.backend)
        api_key = _api_key(args)
        records = read_records(args.data, task=args.task)
        if not records:
            raise ValueError(f"{args.data}: no records")
        teacher_dir, name = resolve_teacher(args.teacher)
        stats = generate_teacher_outputs(
            args.teacher,
            teacher_dir,
            records,
            args.out,
            settings,
            name=name,
            api_key=api_key,
            data_path=args.data,
        )
    except (
        GenerationsError,
        RecordError,
        ModelIntegrityError,
        TeacherBackendError,
        FileNotFoundError,
        ImportError,
        ValueError,
    ) as exc:
        print(f"{where}: error: {exc}", file=sys.stderr)
        return 2
    seconds = stats.generate_seconds
    rate = f", {stats.new_tokens / seconds:.1f} tok/s" if seconds else ""
    print(
        f"{stats.records} records ({stats.unique} distinct): {stats.computed} computed now, "
        f"{stats.reused} reused; generation {seconds:.1f} s ({stats.new_tokens} tokens{rate}), "
        f"verification {stats.verify_seconds:.1f} s"
    )
    if stats.prompts_cut:
        print(f"{stats.prompts_cut} prompts cut to {settings.max_source_tokens} tokens")
    if stats.verdicts:
        counts = ", ".join(f"{k} {v}" for k, v in sorted(stats.verdicts.items()))
        print(f"verdicts over {sum(stats.verdicts.values())} outputs: {counts}")
    print(f"-> {Path(args.out) / 'generations.jsonl'}")
    return 0
