"""``codistill student derive``: a smaller student of the teacher's family;
``codistill student export``: a student as a GGUF file for llama.cpp."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from codistill.config.distill import TASK_DEFAULTS
from codistill.config.fields import ConfigError
from codistill.config.heal import HealSettings
from codistill.data.jsonl import read_records
from codistill.data.prompts import assertion_prompt, has_chat_template, record_texts
from codistill.data.schema import RecordError
from codistill.models.export_quants import QUANTS
from codistill.models.registry import resolve_model


def register(sub) -> None:
    p = sub.add_parser("student", help="derive a student from a teacher, export it as GGUF")
    ssub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    d = ssub.add_parser(
        "derive", help="fewer layers (copied from the teacher) and a vocabulary trimmed to a corpus"
    )
    d.add_argument("--teacher", required=True, help="teacher model dir, or 'embedded'")
    d.add_argument(
        "--layers",
        required=True,
        help="number of layers (evenly spaced, ends kept) or a list like 0,5,11,17",
    )
    d.add_argument(
        "--vocab-from",
        nargs="*",
        default=[],
        metavar="DATA",
        help="JSONL task files or text files whose tokens the student keeps "
        "(omit to keep the full vocabulary)",
    )
    d.add_argument(
        "--choose-layers-on",
        metavar="DATA.jsonl",
        help="with a layer count: choose which layers from these held-out assertion or "
        "code-generation records (a validation split) instead of spacing them evenly; how: "
        "--layer-score",
    )
    d.add_argument(
        "--layer-score",
        choices=("loss", "angular"),  # codistill.models.layer_choice.LAYER_SCORES (torch-free here)
        help="with --choose-layers-on: loss (default): remove one at a time the layer whose "
        "removal raises the target cross entropy least (minutes for Gemma 3 270M on assertions; "
        "half an hour or more for a 0.5B on CPU, longer on code records); angular: drop the "
        "contiguous block that turns the residual stream "
        "least (one forward pass)",
    )
    d.add_argument(
        "--choice-records",
        type=int,
        default=32,
        help="records of --choose-layers-on the loss is measured on (32)",
    )
    d.add_argument(
        "--heal-on",
        nargs="+",
        metavar="DATA",
        help="code to heal the cuts on (JSONL task files or text files, e.g. source files): "
        "the student layer after each removed block is trained, alone, to map the teacher's "
        "stream entering the block to the stream leaving it; every other weight stays the "
        "teacher's",
    )
    d.add_argument(
        "--heal-tokens",
        type=int,
        default=HealSettings.tokens,
        help=f"tokens of --heal-on to train on, in {HealSettings.length}-token windows "
        f"({HealSettings.tokens}; recording the teacher over 200k tokens took 13 min for "
        "Qwen2.5-Coder-0.5B on 2 cores, an epoch 5 min)",
    )
    d.add_argument(
        "--heal-epochs", type=int, default=HealSettings.epochs, help=f"({HealSettings.epochs})"
    )
    d.add_argument("--heal-lr", type=float, default=HealSettings.lr, help=f"({HealSettings.lr})")
    d.add_argument("--out", required=True, help="output student directory")
    d.add_argument("--overwrite", action="store_true", help="replace --out if it exists")
    d.set_defaults(func=run_derive)
    _register_export(ssub)


def _register_export(ssub) -> None:
    e = ssub.add_parser(
        "export",
        help="write a Gemma 3 or Qwen2 model (e.g. a derived or distilled student) as a GGUF "
        "file that llama.cpp runs",
    )
    e.add_argument("--model", required=True, help="model directory, or 'embedded[:NAME]'")
    e.add_argument("--gguf", required=True, metavar="OUT.gguf", help="the file to write")
    e.add_argument(
        "--quant",
        choices=QUANTS,
        default="f16",
        help="weight format: f16 (default), bf16 (fastest to score with on CPUs with "
        "AVX512-BF16), q8_0, q4_k_m (runs llama.cpp's quantizer, needs llama-cpp-python), or "
        "f32 (unrounded, for checking the export)",
    )
    e.add_argument("--overwrite", action="store_true", help="replace --gguf if it exists")
    e.add_argument(
        "--verify",
        metavar="DATA.jsonl",
        help="after writing, decode the first --verify-prompts prompts of this task file "
        "greedily with both the model and the GGUF and print how often they agree "
        "(needs llama-cpp-python)",
    )
    e.add_argument(
        "--verify-task",
        choices=("assertion", "codegen"),
        default="assertion",
        help="task of the --verify records (default: assertion)",
    )
    e.add_argument("--verify-prompts", type=int, default=20, help="prompts to compare (20)")
    e.add_argument("--max-new-tokens", type=int, default=32, help="greedy steps per prompt (32)")
    e.set_defaults(func=run_export)


def parse_layers(text: str) -> int | list[int]:
    try:
        if "," in text or text.startswith("["):
            return [int(x) for x in text.strip("[]").split(",") if x.strip()]
        return int(text)
    except ValueError as exc:
        raise ConfigError(
            f"--layers must be an integer or a comma list of layer indices, got {text!r}"
        ) from exc


def read_task_records(path: str) -> list:
    """Assertion records, or code-generation records when the file is not an assertion file."""
    try:
        return read_records(path, task="assertion")
    except RecordError as assertion_error:
        try:
            return read_records(path, task="codegen")
        except RecordError:
            raise assertion_error from None  # name the problem as an assertion file


def corpus_texts(paths: list[str], tokenizer=None):
    """Texts of JSONL task records (prompt + target; assertion or code-generation records, the
    latter in raw form and, when ``tokenizer`` has a chat template, in chat form too) or of
    plain text files."""
    modes = ["raw"] + (["chat"] if tokenizer is not None and has_chat_template(tokenizer) else [])
    for path in paths:
        if not path.endswith(".jsonl"):
            with open(path, encoding="utf-8", errors="replace") as fh:
                yield fh.read()
            continue
        for record in read_task_records(path):
            for mode in modes if record.task == "codegen" else ["raw"]:
                texts = record_texts(record, tokenizer, prompt_mode=mode)
                yield from texts or (record.prompt,)


def run_derive(args) -> int:
    from codistill.models.student import derive_student  # lazy: torch, transformers

    # Checked before resolve_model: 'embedded' converts the teacher, which takes minutes.
    layers = parse_layers(args.layers)
    if Path(args.out).exists() and not args.overwrite:
        raise ConfigError(f"--out {args.out} already exists; pass --overwrite to replace it")
    choice_records = _choice_records(args, layers)
    heal = _heal_settings(args)
    try:
        teacher = resolve_model(args.teacher)
        notes = {}
        if choice_records:
            layers, notes["layer_choice"] = _choose_layers(
                teacher, choice_records, layers, args.layer_score or "loss"
            )
        texts = None
        if args.vocab_from:
            from codistill.models.loading import load_tokenizer  # lazy: torch, transformers

            texts = corpus_texts(args.vocab_from, load_tokenizer(teacher))
        healer = _healer(args.heal_on, heal, teacher) if args.heal_on else None
        summary = derive_student(
            teacher,
            args.out,
            layers,
            vocab_texts=texts,
            overwrite=args.overwrite,
            notes=notes,
            heal=healer,
        )
    except ValueError as exc:  # a layer index out of range, a bad --vocab-from record
        raise ConfigError(str(exc)) from exc
    print(json.dumps(summary, indent=2, default=str))
    return 0


def _healer(paths: list[str], settings: HealSettings, teacher_dir):
    """``derive_student``'s ``heal``: the cuts healed on the code of ``paths``, cut into windows
    by the teacher's tokenizer."""
    # lazy: torch, transformers
    from codistill.models.loading import load_tokenizer
    from codistill.training.heal import heal_cuts, token_windows

    def heal(teacher, student, layers: list[int]) -> dict:
        tokenizer = load_tokenizer(teacher_dir)
        windows = token_windows(
            corpus_texts(paths), tokenizer, settings.length, settings.tokens, settings.seed
        )
        return heal_cuts(teacher, student, layers, windows, settings)

    return heal


def _heal_settings(args) -> HealSettings:
    """``--heal-*`` checked before any model is loaded."""
    for name in ("heal_tokens", "heal_epochs"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")
    if not args.heal_lr > 0:
        raise ConfigError(f"--heal-lr must be > 0, got {args.heal_lr}")
    if args.heal_tokens < HealSettings.length:
        raise ConfigError(
            f"--heal-tokens must be at least one window ({HealSettings.length}), "
            f"got {args.heal_tokens}"
        )
    for path in args.heal_on or []:
        if not Path(path).is_file():
            raise ConfigError(f"--heal-on {path}: no such file")
    return HealSettings(tokens=args.heal_tokens, epochs=args.heal_epochs, lr=args.heal_lr)


def _choice_records(args, layers) -> list:
    """The held-out records of ``--choose-layers-on`` (checked before any model is loaded)."""
    if args.choose_layers_on is None:
        if args.layer_score is not None:
            raise ConfigError("--layer-score needs --choose-layers-on (the records it scores on)")
        return []
    if not isinstance(layers, int):
        raise ConfigError("--choose-layers-on needs --layers as a count, not a list of indices")
    if args.choice_records < 1:
        raise ConfigError(f"--choice-records must be >= 1, got {args.choice_records}")
    try:
        records = read_task_records(args.choose_layers_on)
    except (OSError, RecordError) as exc:
        raise ConfigError(f"--choose-layers-on: {exc}") from exc
    if not records:
        raise ConfigError(f"--choose-layers-on {args.choose_layers_on}: no records")
    return records[: args.choice_records]


def _choose_layers(teacher, records: list, keep: int, score: str) -> tuple[list[int], dict]:
    from codistill.models.layer_choice import choose_layers  # lazy: torch, transformers

    def progress(removal: dict) -> None:
        print(
            f"removed layer {removal['layer']}: loss {removal['loss']:.4f}, {removal['kept']} kept",
            file=sys.stderr,
            flush=True,
        )

    choice = choose_layers(
        teacher,
        records,
        keep,
        # Each task's records cut as `codistill distill` cuts them by default (a code solution
        # to 384 tokens, an assertion to 64), so the loss that chooses covers what the student
        # will train on, not a solution's first lines.
        **TASK_DEFAULTS[records[0].task],
        on_removal=progress,
        score=score,
    )
    return choice.layers, choice.to_dict()


def verify_prompts(path: str, task: str, count: int) -> list[str]:
    """The first ``count`` prompts of a task file, as the evaluation gives them to a model."""
    records = read_records(path, task=task)[:count]
    if not records:
        raise ConfigError(f"--verify {path}: no {task} records")
    return [assertion_prompt(r) if task == "assertion" else r.prompt for r in records]


def run_export(args) -> int:
    # lazy: gguf, numpy
    from codistill.models.export_gguf import ExportError, export_gguf, llama_cpp_module

    if args.verify_prompts < 1 or args.max_new_tokens < 1:
        raise ConfigError("--verify-prompts and --max-new-tokens must be >= 1")
    if Path(args.gguf).exists() and not args.overwrite:
        raise ConfigError(f"--gguf {args.gguf} already exists; pass --overwrite to replace it")
    try:
        # Checked before the export, which can take minutes on a real model.
        prompts = []
        if args.verify:
            prompts = verify_prompts(args.verify, args.verify_task, args.verify_prompts)
            llama_cpp_module("--verify (greedy decoding through llama.cpp)")
        model_dir = resolve_model(args.model)
        summary = export_gguf(model_dir, args.gguf, args.quant, overwrite=args.overwrite)
    except ExportError as exc:
        raise ConfigError(str(exc)) from exc
    if args.verify:
        from codistill.models.gguf_check import greedy_agreement  # lazy: torch, transformers

        result = greedy_agreement(model_dir, args.gguf, prompts, args.max_new_tokens)
        summary["verify"] = {k: v for k, v in result.items() if k != "per_prompt"}
    print(json.dumps(summary, indent=2, default=str))
    return 0
