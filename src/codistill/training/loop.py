"""The distillation loop, top to bottom: load, build, loop, validate, save.

One loop serves knowledge distillation (any objective with teacher terms, online teacher under
no-grad) and plain fine-tuning with CE alone (refining a teacher on the task, LoRA optional, and
the no-distillation baseline every KD result is compared against), for assertion and
code-generation records alike. The targets are the references or the teacher's own outputs
(sequence-level KD, :mod:`codistill.training.targets`); with ``on_policy`` some micro-batches
train on the student's own samples scored by the teacher (:mod:`codistill.training.onpolicy`).
"""

from __future__ import annotations

import functools
import hashlib
import importlib.util
import json
import math
import os
import sys
import time
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from accelerate import Accelerator, DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.state import AcceleratorState
from accelerate.utils import broadcast_object_list, set_seed
from tqdm.auto import tqdm

from codistill import rundir
from codistill.config.distill import DistillConfig
from codistill.config.fields import ConfigError
from codistill.data.batches import (
    Example,
    TokenizeStats,
    collate_causal,
    collate_seq2seq,
    tokenize_records,
)
from codistill.data.jsonl import read_records
from codistill.data.prompts import has_chat_template
from codistill.losses.hidden import layer_map_problem, matched_layers
from codistill.losses.objective import TERMS, Objective, parse_objective
from codistill.models.forward import restrict_output_vocab
from codistill.models.loading import (
    count_parameters,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from codistill.models.registry import resolve_model
from codistill.models.student import DERIVATION_FILE
from codistill.models.vocab import TokenMap
from codistill.teacher.cache import TeacherCache, example_key, open_cache
from codistill.training.onpolicy import OnPolicy
from codistill.training.semantic import SemanticTerm
from codistill.training.step import micro_batch_terms
from codistill.training.targets import records_for_targets
from codistill.training.validate import validate


@dataclass
class TrainState:
    epoch: int = 0
    step_in_epoch: int = 0  # optimizer steps already taken in ``epoch``
    global_step: int = 0
    best: float | None = None
    status: str = "running"


@dataclass
class RunResult:
    run_dir: Path
    status: str
    final_metrics: dict
    best: float | None


def _mixed_precision(choice: str) -> str:
    if choice != "auto":
        return choice
    if torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16"
    return "no"


def _allow_precision(precision: str) -> None:
    """Let this run choose its own mixed precision when an earlier run in the same process
    (a sweep, ``reproduce``, a test session) chose another: Accelerate keeps the first choice
    process-wide and refuses any other ("AcceleratorState has already been initialized"),
    which on a GPU is the first bf16 run followed by a ``mixed_precision=no`` one. Only the
    precision part of its state is dropped (``_reset_state``, Accelerate's own way between
    tests); the process group and device stay."""
    chosen = AcceleratorState._shared_state.get("_mixed_precision")
    if chosen is not None and chosen != precision:
        AcceleratorState._reset_state(reset_partial_state=False)


def multi_cpu() -> bool:
    """Accelerate runs several CPU processes (gloo) only when told ``cpu=True``; do so when
    launched with several processes and no GPU, or under ``accelerate launch --cpu``."""
    if os.environ.get("ACCELERATE_USE_CPU", "").lower() in ("1", "true", "yes"):
        return True
    return not torch.cuda.is_available() and int(os.environ.get("WORLD_SIZE", "1")) > 1


def strategy_plugins(cfg: DistillConfig) -> dict:
    """Accelerator keyword arguments for ``cfg.distributed``: nothing for DDP (Accelerate's
    default under a multi-process launch), else the FSDP or DeepSpeed plugin built from the
    config's options, so a run's sharding strategy lives in its YAML next to everything else.

    Raises:
        ConfigError: an option the plugin does not take, or DeepSpeed not installed.
    """

    if cfg.distributed == "ddp":
        if cfg.fsdp or cfg.deepspeed:
            raise ConfigError("fsdp/deepspeed options are set but distributed is 'ddp'")
        return {}
    if cfg.distributed == "fsdp":
        plugin, options, key = FullyShardedDataParallelPlugin, dict(cfg.fsdp or {}), "fsdp_plugin"
    else:
        plugin, options, key = DeepSpeedPlugin, dict(cfg.deepspeed or {}), "deepspeed_plugin"
        if importlib.util.find_spec("deepspeed") is None:
            raise ConfigError("distributed=deepspeed needs the deepspeed package (pip install it)")
    try:
        return {key: plugin(**options)}
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{cfg.distributed}: {exc}") from None


def _processes(cfg: DistillConfig, accelerator: Accelerator) -> dict:
    """What run.json records of the processes: their count and the strategy actually used,
    which differs from the configured one where Accelerate cannot apply it (it shards with FSDP
    or DeepSpeed only on accelerators; several CPU processes always run as DDP over gloo)."""
    used = str(accelerator.distributed_type.value)
    info = {"count": accelerator.num_processes, "configured": cfg.distributed, "strategy": used}
    wanted = {"fsdp": "FSDP", "deepspeed": "DEEPSPEED"}.get(cfg.distributed)
    if wanted and accelerator.num_processes > 1 and used != wanted:
        info["note"] = f"{cfg.distributed} needs GPUs under Accelerate; ran as {used} (DDP)"
        print(f"codistill distill: warning: {info['note']}", file=sys.stderr)
    return info


def epoch_batches(
    n: int, batch_size: int, seed: int, epoch: int, rank: int = 0, world: int = 1
) -> list[list[int]]:
    """Example indices per micro-batch: a permutation fixed by (seed, epoch), never by history,
    so a resumed run walks the same order from the step it stopped at."""
    order = torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))
    batches = [order[i : i + batch_size].tolist() for i in range(0, n, batch_size)]
    return batches[rank::world]


def build_optimizer(model, cfg: DistillConfig) -> torch.optim.Optimizer:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        # Norm gains and biases are not weight-decayed (the usual AdamW practice).
        (no_decay if p.ndim < 2 or "norm" in name.lower() else decay).append(p)
    groups = [
        {"params": decay, "weight_decay": cfg.weight_decay},
        {"params": no_decay, "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=cfg.lr)


def linear_schedule(optimizer, total_steps: int, warmup_ratio: float):
    """Linear warm-up over ``ceil(total_steps * warmup_ratio)`` steps, then linear decay to 0:
    the schedule of every training loop in codistill (students, teachers, classifiers)."""
    warmup = math.ceil(total_steps * warmup_ratio)

    def factor(step: int) -> float:  # linear warm-up, then linear decay to zero
        if step < warmup:
            return (step + 1) / (warmup + 1)
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def load_student(cfg: DistillConfig):
    path = resolve_model(cfg.student)  # embedded:NAME: a pretrained student (Qwen 0.5B)
    student = load_model(path)
    tokenizer = load_tokenizer(path)
    token_map = TokenMap.load_optional(path)
    if cfg.dropout is not None:
        for module in student.modules():
            if isinstance(module, torch.nn.Dropout):
                module.p = cfg.dropout
    if cfg.freeze_embeddings:
        student.get_input_embeddings().requires_grad_(False)
        head = student.get_output_embeddings()
        if head is not None:  # tied heads share the embedding's weight: frozen with it
            head.requires_grad_(False)
    if cfg.lora:
        from peft import LoraConfig, get_peft_model  # lazy: the optional [lora] extra

        student = get_peft_model(
            student,
            LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, target_modules="all-linear"),
        )
    return student, tokenizer, token_map


def load_teacher(
    path: str, token_map: TokenMap | None, student_vocab: int, dtype: torch.dtype | None = None
):
    """The frozen teacher (in ``dtype``; None: as saved), its tokenizer and its parameter counts
    (before any head restriction)."""
    teacher = load_model(path, dtype)
    teacher.eval().requires_grad_(False)
    teacher_tok = load_tokenizer(path)
    params = count_parameters(teacher)
    if token_map is not None and not token_map.is_identity:
        restrict_output_vocab(teacher, token_map.student_to_teacher_tensor)
    elif teacher.get_output_embeddings().weight.shape[0] != student_vocab:
        raise ValueError(
            f"teacher vocabulary ({teacher.get_output_embeddings().weight.shape[0]})"
            f" differs from the student's ({student_vocab}) and the student has no "
            "token_map.json: derive the student with `codistill student derive`"
        )
    return teacher, teacher_tok, params


def _examples(cfg, path, limit, tokenizer, token_map, objective: Objective, train: bool = False):
    """Tokenized examples of one data file, their tokenization counts and, for the training
    data under ``targets=teacher...``, the summary of the teacher's outputs used (else None)."""
    records = read_records(path, task=cfg.task)[:limit]
    summary = None
    if train:  # validation always scores against the references
        records, summary = records_for_targets(
            records,
            cfg.targets,
            task=cfg.task,
            prompt_mode=cfg.prompt_mode,
            prompt_style=cfg.prompt_style,
            data_name=str(path),
        )
    if cfg.prompt_mode == "chat" and not has_chat_template(tokenizer):
        name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
        raise ConfigError(f"prompt_mode=chat: {name} has no chat template; use prompt_mode=raw")
    focal = "focal" in objective.terms
    examples, stats = tokenize_records(
        records,
        tokenizer,
        max_source_tokens=cfg.max_source_tokens,
        max_target_tokens=cfg.max_target_tokens,
        token_map=token_map,
        critical_words=cfg.critical_tokens if focal else None,
        critical_weight=cfg.critical_weight,
        prompt_style=cfg.prompt_style,
        prompt_mode=cfg.prompt_mode,
        truncation=cfg.truncation,
    )
    if train and not examples:
        why = f"{stats.skipped_without_solution} code problems without a solution"
        if summary is not None:
            why += f", {summary['records_dropped']} records without a usable teacher output"
        raise ConfigError(f"train_data {path}: no training examples left ({why})")
    return examples, stats, summary


def _collate(examples: list[Example], model, tokenizer, teacher_tok, encoder_decoder: bool):
    pad = tokenizer.pad_token_id
    tpad = teacher_tok.pad_token_id if teacher_tok is not None else None
    if encoder_decoder:
        start = model.config.decoder_start_token_id
        return collate_seq2seq(examples, pad, start, tpad, start if teacher_tok is None else None)
    return collate_causal(examples, pad, tpad)


@dataclass
class Models:
    """What :func:`load_models` loads: the student and whatever stands for the teacher."""

    student: torch.nn.Module
    tokenizer: object
    token_map: TokenMap | None
    teacher: torch.nn.Module | None = None  # the online teacher, head on the student's vocab
    teacher_tok: object | None = None  # the teacher's tokenizer, online or cached
    teacher_params: dict | None = None  # the online teacher's, counted before the restriction
    teacher_path: str | None = None
    cache: TeacherCache | None = None
    teacher_to_student: torch.Tensor | None = None  # with a cache: teacher id -> student id
    semantic: SemanticTerm | None = None
    hidden_pairs: list[tuple[int, int]] | None = None  # the hidden term's matched layers


@dataclass
class Data:
    """What :func:`load_data` reads: tokenized examples and what run.json records of them."""

    train: list[Example]
    valid: list[Example] | None
    stats: TokenizeStats  # of the training data
    targets: dict | None  # the teacher outputs used under ``targets=teacher...``, else None
    stop_probability: float | None = None  # see :func:`teacher_stop_probability`


@dataclass
class Run:
    """Everything one distillation run holds, built once by :func:`build_run`."""

    cfg: DistillConfig
    run_dir: Path
    accelerator: Accelerator
    objective: Objective
    student: torch.nn.Module
    tokenizer: object
    token_map: TokenMap | None
    teacher: torch.nn.Module | None
    teacher_tok: object | None
    train: list[Example]
    valid: list[Example] | None
    semantic: SemanticTerm | None
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    total_steps: int
    teacher_to_student: torch.Tensor | None = None  # teacher id -> student id (-1: none)
    on_policy: OnPolicy | None = None
    hidden_pairs: list[tuple[int, int]] | None = None  # (student, teacher) hidden_states entries
    stop_id: int | None = None  # the EOS whose teacher terms are its CE (stop_target: label)

    @property
    def encoder_decoder(self) -> bool:
        return bool(self.accelerator.unwrap_model(self.student).config.is_encoder_decoder)

    def steps(self, epoch: int) -> list[list[list[int]]]:
        """This process's micro-batches of each optimizer step of ``epoch``."""
        acc = self.accelerator
        return epoch_steps(len(self.train), self.cfg, epoch, acc.process_index, acc.num_processes)


def epoch_steps(
    n: int, cfg: DistillConfig, epoch: int, rank: int = 0, world: int = 1
) -> list[list[list[int]]]:
    """Example indices per micro-batch, ``cfg.grad_accum`` micro-batches per optimizer step."""
    batches = epoch_batches(n, cfg.batch_size, cfg.seed, epoch, rank, world)
    return [batches[i : i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]


def distill(cfg: DistillConfig, resume: bool = False) -> RunResult:
    """Train ``cfg.student`` with ``cfg.loss``: load, build, loop, validate, save."""
    started = time.time()
    run, state = build_run(cfg, resume)
    state, last_valid = train_loop(run, state)
    if state.status == "finished" and run.accelerator.is_main_process:
        final = run.accelerator.unwrap_model(run.student)
        rundir.save_student(final, run.tokenizer, run.run_dir / "final", run.token_map)
    if run.accelerator.is_main_process:
        info = rundir.read_json(run.run_dir / "run.json")
        info.update(
            status=state.status,
            global_step=state.global_step,
            wall_seconds=info.get("wall_seconds", 0.0) + time.time() - started,
            final_validation=last_valid,
            best={"metric": cfg.best_metric, "value": state.best},
        )
        rundir.write_json(run.run_dir / "run.json", info)
    run.accelerator.end_training()
    return RunResult(run.run_dir, state.status, last_valid, state.best)


def build_run(cfg: DistillConfig, resume: bool) -> tuple[Run, TrainState]:
    """Load models and data, build optimizer and schedule, restore a checkpoint, write run.json."""
    objective = parse_objective(cfg.loss, **cfg.loss_settings())
    precision = _mixed_precision(cfg.mixed_precision)
    _allow_precision(precision)
    accelerator = Accelerator(
        cpu=multi_cpu(),
        mixed_precision=precision,
        log_with="tensorboard" if cfg.tensorboard else None,
        project_dir=str(cfg.output_dir),
        **strategy_plugins(cfg),
    )
    if accelerator.is_main_process:  # one process creates (or checks) the run directory
        rundir.prepare_run_dir(cfg.output_dir, resume)
    accelerator.wait_for_everyone()
    run_dir = Path(cfg.output_dir)
    set_seed(cfg.seed)
    models = load_models(cfg, objective, accelerator.device)
    data = load_data(cfg, objective, models)

    rank, world = accelerator.process_index, accelerator.num_processes
    total_steps = cfg.epochs * len(epoch_steps(len(data.train), cfg, 0, rank, world))
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    optimizer = build_optimizer(models.student, cfg)
    scheduler = linear_schedule(optimizer, total_steps, cfg.warmup_ratio)
    student, optimizer = accelerator.prepare(models.student, optimizer)
    accelerator.register_for_checkpointing(scheduler)
    state = TrainState()
    if resume:
        accelerator.load_state(str(run_dir / "checkpoint"))
        state = TrainState(**rundir.read_json(run_dir / "checkpoint" / "trainer_state.json"))
    run = Run(
        cfg=cfg,
        run_dir=run_dir,
        accelerator=accelerator,
        objective=objective,
        student=student,
        tokenizer=models.tokenizer,
        token_map=models.token_map,
        teacher=models.teacher,
        teacher_tok=models.teacher_tok,
        train=data.train,
        valid=data.valid,
        semantic=models.semantic,
        optimizer=optimizer,
        scheduler=scheduler,
        total_steps=total_steps,
        teacher_to_student=models.teacher_to_student,
        on_policy=_on_policy(cfg, models.tokenizer, models.token_map),
        hidden_pairs=models.hidden_pairs,
        stop_id=_stop_id(cfg, models.tokenizer),
    )
    if accelerator.is_main_process:
        write_run_json(run, models, data, resume)
    if cfg.tensorboard:
        accelerator.init_trackers("codistill")
    return run, state


def load_models(cfg: DistillConfig, objective: Objective, device) -> Models:
    """The student, and for an objective with teacher terms either the online teacher (frozen,
    on ``device``) or the teacher cache with the teacher's tokenizer; the sentence embedder of
    the semantic term when the objective has one."""
    student, tokenizer, token_map = load_student(cfg)
    models = Models(student, tokenizer, token_map)
    encoder_decoder = bool(student.config.is_encoder_decoder)
    if objective.has_semantic:  # its embedder loads on first use
        models.semantic = SemanticTerm(cfg, tokenizer, encoder_decoder)
    if not objective.needs_teacher:
        return models
    if cfg.teacher_cache is not None:
        models.cache = open_cache(cfg.teacher_cache)
        models.teacher_tok = load_tokenizer(models.cache.header.teacher_path)
        vocab = models.cache.header.vocab_size
        models.teacher_to_student = _teacher_to_student(token_map, vocab, cfg.teacher_cache)
        return models
    models.teacher_path = resolve_model(cfg.teacher)
    if models.teacher_path is not None:
        vocab = student.get_input_embeddings().weight.shape[0]
        teacher, models.teacher_tok, models.teacher_params = load_teacher(
            models.teacher_path, token_map, vocab, resolve_dtype(cfg.teacher_dtype)
        )
        models.teacher = teacher.to(device)
        if objective.has_hidden:
            models.hidden_pairs = hidden_pairs(cfg, student, teacher)
    return models


def hidden_pairs(cfg: DistillConfig, student, teacher) -> list[tuple[int, int]]:
    """The (student, teacher) ``hidden_states`` entries the hidden term matches: from
    ``cfg.hidden_layers``, else the teacher layers the student was derived from.

    Raises:
        ConfigError: no layer map, one of the wrong length, a layer out of range, a student
            derived from a teacher of another depth, or student and teacher states of
            different widths (:func:`codistill.losses.hidden.layer_map_problem`)."""
    where, layers, derived = "hidden_layers", cfg.hidden_layers, None
    if layers is None:
        derivation = Path(resolve_model(cfg.student)) / DERIVATION_FILE
        if not derivation.is_file():
            raise ConfigError(
                f"loss term 'hidden': {derivation} not found; the student was not derived from "
                "the teacher by `codistill student derive`, so set hidden_layers to the teacher "
                "layer behind each student layer"
            )
        record = rundir.read_json(derivation)
        layers, derived, where = record.get("layers"), record.get("teacher_layers"), str(derivation)
    if student.config.is_encoder_decoder:
        raise ConfigError("loss term 'hidden' is for decoder-only students")
    s_cfg, t_cfg = student.config, teacher.config
    problem = layer_map_problem(
        layers,
        (s_cfg.num_hidden_layers, s_cfg.hidden_size),
        (t_cfg.num_hidden_layers, t_cfg.hidden_size),
        derived,
    )
    if problem:
        raise ConfigError(f"{where}: {problem}")
    return matched_layers(layers, t_cfg.num_hidden_layers)


def load_data(cfg: DistillConfig, objective: Objective, models: Models) -> Data:
    """Training and validation examples, tokenized for the teacher and mapped to the student's
    ids when there is one (see :func:`codistill.data.batches.tokenize_records`), the training
    examples given their cached teacher outputs when distilling from a cache."""
    with_teacher = models.teacher is not None or models.cache is not None
    tok, tmap = (models.teacher_tok, models.token_map) if with_teacher else (models.tokenizer, None)
    train, stats, targets = _examples(
        cfg, cfg.train_data, cfg.max_train_examples, tok, tmap, objective, train=True
    )
    valid = None
    if cfg.valid_data:  # always the references: validation measures the task
        valid, _, _ = _examples(cfg, cfg.valid_data, cfg.max_valid_examples, tok, tmap, objective)
    stop = None
    if models.cache is not None:
        _attach_cache(train, models.cache, cfg, models.token_map)
        stop = teacher_stop_probability(train)
        if stop is not None and stop < 0.1 and cfg.stop_target == "teacher":
            print(
                f"codistill distill: warning: the cached teacher gives the EOS ending the "
                f"targets a mean probability of {stop:.2g} there: its KL teaches the student "
                "not to stop (stop_target: label learns the EOS from the label instead)",
                file=sys.stderr,
            )
    return Data(train, valid, stats, targets, stop)


def teacher_stop_probability(examples: list[Example]) -> float | None:
    """The cached teacher's mean probability of each target's last token (the EOS the data
    appends) at its position, over the examples with top-k rows (an id outside the top-k counts
    as 0, so a lower bound); None when none has them. A teacher given a raw prompt was never
    asked to stop there, and near 0 its KL teaches the student not to stop."""
    found = []
    for example in examples:
        if example.cache_ids is None or not example.target_ids:
            continue
        ids = example.teacher_target_ids or example.target_ids
        row = example.cache_ids[-1] == ids[-1]
        found.append(float(example.cache_logprobs[-1][row].exp().sum()))
    return sum(found) / len(found) if found else None


def write_run_json(run: Run, models: Models, data: Data, resume: bool) -> None:
    """Record in ``run.json`` what the run is: config, versions, seed, parameters, teacher,
    budget, tokenization, prompt, targets and processes. A resumed run keeps the file's other
    fields (its wall time so far)."""
    cfg, accelerator = run.cfg, run.accelerator
    params = {"student": count_parameters(accelerator.unwrap_model(run.student))}
    if models.teacher is not None:
        params["teacher"] = models.teacher_params
    info = rundir.read_json(run.run_dir / "run.json") if resume else {}
    info.update(
        config=rundir.config_dict(cfg),
        versions=rundir.versions(),
        seed=cfg.seed,
        parameters=params,
        teacher_path=models.teacher_path,
        status="running",
        total_steps=run.total_steps,
        tokenization=vars(data.stats),
        prompt={
            "mode": cfg.prompt_mode,
            "style": cfg.prompt_style if cfg.task == "assertion" else None,
        },
        targets=data.targets or {"kind": "reference"},
        teacher_stop_probability=data.stop_probability,
        processes=_processes(cfg, accelerator),
    )
    rundir.write_json(run.run_dir / "run.json", info)


def _stop_id(cfg: DistillConfig, tokenizer) -> int | None:
    """The student's EOS under ``stop_target: label`` (see :func:`micro_batch_terms`)."""
    if cfg.stop_target != "label":
        return None
    if tokenizer.eos_token_id is None:
        raise ConfigError(
            f"stop_target: label needs the student's EOS, and the tokenizer of {cfg.student} "
            "has none (set its eos_token, or stop_target: teacher)"
        )
    return tokenizer.eos_token_id


def _on_policy(cfg: DistillConfig, tokenizer, token_map: TokenMap | None) -> OnPolicy | None:
    if cfg.on_policy <= 0:
        return None
    eos = tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else eos
    s2t = None
    if token_map is not None and not token_map.is_identity:
        s2t = token_map.student_to_teacher_tensor
    return OnPolicy(
        cfg.on_policy, cfg.on_policy_temperature, cfg.max_target_tokens, cfg.seed, eos, pad, s2t
    )


def train_loop(run: Run, state: TrainState) -> tuple[TrainState, dict]:
    """Optimizer steps until the budget, epochs or ``halt_after_steps`` run out.

    Validates at every epoch end (and once more when ``max_steps`` stops inside an epoch),
    with ``valid_every_steps`` also before the first step and every that many steps,
    checkpoints at epoch ends, every ``save_every_steps`` and when halted.
    """
    cfg = run.cfg
    bar = tqdm(
        total=run.total_steps,
        initial=state.global_step,
        desc="distill",
        disable=not (cfg.progress and run.accelerator.is_main_process),
        dynamic_ncols=True,
    )
    halt_at = state.global_step + cfg.halt_after_steps if cfg.halt_after_steps else None
    last_valid = {}
    state.status = "running"  # a resumed checkpoint says "halted"
    if cfg.valid_every_steps and state.global_step == 0:  # curves start at the init
        last_valid = _validate(run, state)
    run.student.train()
    while state.epoch < cfg.epochs and state.global_step < run.total_steps:
        weights = run.objective.weights(state.epoch, cfg.epochs)
        steps = run.steps(state.epoch)
        for group in steps[state.step_in_epoch :]:
            _train_step(run, state, group, weights, bar)
            if _mid_epoch_validation_due(run, state, len(steps)):
                last_valid = _validate(run, state)
            if cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0:
                _save_checkpoint(run.accelerator, run.run_dir, state)
            if state.global_step >= run.total_steps:
                break
            if halt_at is not None and state.global_step >= halt_at:
                state.status = "halted"
                break
        if state.status == "halted" or state.step_in_epoch < len(steps):
            break  # halted, or max_steps reached inside the epoch
        last_valid = _validate(run, state)
        state.epoch += 1
        state.step_in_epoch = 0
        _save_checkpoint(run.accelerator, run.run_dir, state)
    bar.close()
    if state.status != "halted":
        if state.step_in_epoch:  # stopped by max_steps inside an epoch: validate that state
            last_valid = _validate(run, state)
        state.status = "finished"
    _save_checkpoint(run.accelerator, run.run_dir, state)
    return state, last_valid


def _train_step(run: Run, state: TrainState, group: list[list[int]], weights: dict, bar) -> None:
    """One optimizer step, counted in ``state`` and logged (progress bar, metrics.jsonl)."""
    tick = time.perf_counter()
    logged = optimizer_step(run, group, weights, step=state.global_step)
    state.global_step += 1
    state.step_in_epoch += 1
    logged.update(
        {f"w_{n}": w for n, w in weights.items()},
        step=state.global_step,
        epoch=state.epoch,
        lr=run.scheduler.get_last_lr()[0],
        tokens_per_s=logged["tokens"] / (time.perf_counter() - tick),
        # which examples this step saw: runs meant to share a data order can be checked
        batch_digest=hashlib.sha256(json.dumps(group).encode()).hexdigest()[:12],
    )
    _log_step(run, state, logged, bar, weights)


def _mid_epoch_validation_due(run: Run, state: TrainState, steps_in_epoch: int) -> bool:
    """``valid_every_steps`` says validate now, and the step is not one validated anyway: the
    run's last step and an epoch's last are validated by :func:`train_loop` after the step."""
    every = run.cfg.valid_every_steps
    return bool(
        every
        and state.global_step % every == 0
        and state.global_step < run.total_steps
        and state.step_in_epoch < steps_in_epoch
    )


def _log_step(run: Run, state: TrainState, logged: dict, bar, weights: dict) -> None:
    shown = {
        k: f"{v:.3g}" for k, v in logged.items() if k in weights or k in ("loss", "tokens_per_s")
    }
    bar.update(1)
    bar.set_postfix(shown)
    every = run.cfg.log_every
    if run.accelerator.is_main_process and (
        state.global_step % every == 0 or state.global_step == 1
    ):
        rundir.append_jsonl(run.run_dir / "metrics.jsonl", {"kind": "train", **logged})
        if run.cfg.tensorboard:
            run.accelerator.log(
                {f"train/{k}": v for k, v in logged.items()}, step=state.global_step
            )


def optimizer_step(run: Run, group: list[list[int]], weights: dict, step: int = 0) -> dict:
    """One optimizer step of ``run`` over the micro-batches ``group`` (indices into
    ``run.train``) with the term weights ``weights``; returns the logged values.

    Every term is normalised by the whole step's count (target tokens, or sequences for the
    semantic term), summed over processes, so accumulation and data parallelism give the
    same gradients as one big batch. On-policy micro-batches (``step`` and the micro-batch's
    index decide, see :class:`OnPolicy`) carry the teacher terms only: the student-only terms
    (ce, focal, semantic) need a reference, so they are normalised by the reference
    micro-batches' counts and the teacher terms by all target tokens.
    """
    accelerator, student, cfg = run.accelerator, run.student, run.cfg
    device, world = accelerator.device, accelerator.num_processes
    micro, sampled = _micro_batches(run, group, step)
    refs = [mb for mb, s in zip(micro, sampled, strict=True) if not s]
    counts = torch.tensor(
        [
            float(sum(len(e.target_ids) for mb in micro for e in mb)),
            float(sum(len(e.target_ids) for mb in refs for e in mb)),
            float(sum(len(mb) for mb in refs)),
        ],
        device=device,
    )
    n_tok, n_ref_tok, n_seq = accelerator.reduce(counts, "sum").clamp(min=1).unbind()
    n_input = sum(len(e.prompt_ids) + len(e.target_ids) for mb in micro for e in mb)
    denominators = {"sequences": n_seq, "teacher": n_tok, "student": n_ref_tok}
    scale = {n: world / denominators[_count_of(TERMS[n])] for n in weights}
    teacher_terms = [n for n in run.objective.terms if TERMS[n].needs_teacher]
    encoder_decoder = run.encoder_decoder
    sums = {name: 0.0 for name in weights}
    for i, examples in enumerate(micro):
        batch = _collate(examples, student, run.tokenizer, run.teacher_tok, encoder_decoder)
        batch = {k: v.to(device) for k, v in batch.items()}
        sync = accelerator.no_sync(student) if i < len(micro) - 1 else nullcontext()
        with sync:
            with accelerator.autocast():
                terms = micro_batch_terms(
                    student,
                    run.teacher,
                    batch,
                    run.objective,
                    cfg,
                    encoder_decoder,
                    run.teacher_to_student,
                    teacher_terms if sampled[i] else None,
                    run.hidden_pairs,
                    run.stop_id,
                    stop_ce=not sampled[i],  # a sampled EOS is the student's, not the data's
                )
                if run.semantic is not None and not sampled[i]:
                    model = accelerator.unwrap_model(student)
                    terms["semantic"] = run.semantic(model, examples, device)
                loss = sum(weights[n] * terms[n] * scale[n] for n in terms)
            accelerator.backward(loss)
        for n, v in terms.items():
            sums[n] += float(v.detach() * scale[n] / world)
    if world > 1:  # log the whole step's terms, not this rank's share
        names = list(sums)
        total = accelerator.reduce(torch.tensor([sums[n] for n in names], device=device), "sum")
        sums = dict(zip(names, total.tolist(), strict=True))
    if cfg.max_grad_norm is not None:
        accelerator.clip_grad_norm_(student.parameters(), cfg.max_grad_norm)
    run.optimizer.step()
    run.scheduler.step()
    run.optimizer.zero_grad(set_to_none=True)
    logged = {n: v for n, v in sums.items()}
    logged["loss"] = sum(weights[n] * v for n, v in sums.items())
    logged["target_tokens"] = float(n_tok)
    logged["tokens"] = float(n_input * world)
    if run.on_policy is not None:
        logged["on_policy_batches"] = float(sum(sampled))
    return logged


def _micro_batches(
    run: Run, group: list[list[int]], step: int
) -> tuple[list[list[Example]], list[bool]]:
    """The examples of each micro-batch of a step, and whether each is on-policy: the student's
    own samples standing in for the references (see :class:`OnPolicy`)."""
    micro = [[run.train[i] for i in idx] for idx in group]
    sampled = [False] * len(micro)
    if run.on_policy is not None:
        acc = run.accelerator
        model, rank = acc.unwrap_model(run.student), acc.process_index
        for i, examples in enumerate(micro):
            if run.on_policy.chosen(step, i, rank):
                micro[i] = run.on_policy.examples(
                    model, examples, step, i, rank, run.encoder_decoder
                )
                sampled[i] = True
    return micro, sampled


def _count_of(spec) -> str:
    """Which count of a step normalises a term (see :func:`optimizer_step`)."""
    if spec.unit == "sequences":
        return "sequences"
    return "teacher" if spec.needs_teacher else "student"


def _save_checkpoint(accelerator, run_dir: Path, state: TrainState) -> None:
    final = run_dir / "checkpoint"
    tmp = [str(rundir.fresh_tmp_dir(final)) if accelerator.is_main_process else ""]
    tmp = broadcast_object_list(tmp)[0]  # every process writes its shard into the same dir
    accelerator.save_state(str(tmp))
    accelerator.wait_for_everyone()
    if accelerator.is_main_process:
        rundir.write_json(Path(tmp) / "trainer_state.json", vars(state))
        rundir.replace_dir(Path(tmp), final)
    accelerator.wait_for_everyone()


def _validate(run: Run, state: TrainState) -> dict:
    """Validation metrics of the current student; keeps the best one under ``best/``."""
    if run.valid is None:
        return {}
    cfg, acc = run.cfg, run.accelerator
    model = acc.unwrap_model(run.student)
    enc_dec = run.encoder_decoder

    def collate(exs):
        return _collate(exs, model, run.tokenizer, run.teacher_tok, enc_dec)

    result = validate(model, run.tokenizer, run.valid, collate, cfg, enc_dec, acc.device)
    result.update(kind="valid", epoch=state.epoch, step=state.global_step)
    if acc.is_main_process:
        rundir.append_jsonl(run.run_dir / "metrics.jsonl", result)
        if cfg.tensorboard:
            acc.log(
                {f"valid/{k}": v for k, v in result.items() if isinstance(v, float)},
                step=state.global_step,
            )
        value = result[cfg.best_metric]
        lower_is_better = cfg.best_metric == "valid_loss"
        if state.best is None or (value < state.best if lower_is_better else value > state.best):
            state.best = value
            rundir.save_student(model, run.tokenizer, run.run_dir / "best", run.token_map)
    return result


def _attach_cache(examples: list[Example], cache, cfg: DistillConfig, token_map) -> None:
    """Give each training example its cached teacher outputs, found by content, never position.

    Top-k caches are decoded once here (small). Dense caches (the papers' baseline, ~256 KB per
    position) are read when an example is batched, restricted to the student's vocabulary: the
    teacher's mass on tokens the student lacks then falls into the sparse losses' tail bucket.
    """
    keep = None
    if cache.header.dense:
        keep = (
            token_map.student_to_teacher_tensor
            if token_map is not None and not token_map.is_identity
            else torch.arange(cache.header.vocab_size)
        )
    for i, example in enumerate(examples):
        # Without a token map the examples were tokenized by the teacher's tokenizer alone (a
        # student that shares it, e.g. Qwen2.5-Coder 1.5B -> 0.5B): their ids are the teacher's.
        if example.teacher_prompt_ids is None:
            key = example_key(example.prompt_ids, example.target_ids)
        else:
            key = example_key(example.teacher_prompt_ids, example.teacher_target_ids)
        if key not in cache:
            raise ConfigError(
                f"{cfg.teacher_cache}: no cached teacher outputs for record {i + 1} of "
                f"{cfg.train_data}: cache it with the same data, task, targets, "
                "max_source_tokens, truncation, max_target_tokens, prompt_style and prompt_mode "
                "(`codistill teacher cache`)"
            )
        n = cache.positions(key)
        if n != len(example.target_ids):
            raise ConfigError(
                f"{cfg.teacher_cache}: record {i + 1} has {n} cached "
                f"positions for {len(example.target_ids)} target tokens"
            )
        if keep is not None:
            example.cache_rows = functools.partial(_dense_rows, cache, key, keep)
            continue
        ids, logprobs, _ = cache.get(key)
        example.cache_ids = torch.as_tensor(ids, dtype=torch.long)
        example.cache_logprobs = torch.as_tensor(logprobs, dtype=torch.float32)


def _dense_rows(cache, key: str, keep: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The cached rows restricted to the student's vocabulary and renormalised over it: the
    teacher conditioned on the tokens the student can emit, as the online teacher's restricted
    head gives it. Left unnormalised, the teacher's mass outside the student's vocabulary would
    meet a student with no probability outside it, and the forward KL would be inf."""
    _, logprobs, _ = cache.get(key)
    rows = torch.from_numpy(np.ascontiguousarray(logprobs[:, keep.numpy()]))
    rows = rows - torch.logsumexp(rows.double(), dim=-1, keepdim=True).to(rows.dtype)
    return keep.expand(rows.shape[0], -1), rows


def _teacher_to_student(
    token_map: TokenMap | None, teacher_vocab: int, cache_dir: str
) -> torch.Tensor:
    """Teacher id -> student id over the cached teacher's ``teacher_vocab`` ids, -1 where the
    student lacks the token (never the unk fallback: teacher mass on tokens the student cannot
    emit belongs in the tail bucket).

    Raises:
        ConfigError: the student's token map was made for a teacher of another vocabulary.
    """
    if token_map is None or token_map.is_identity:
        # Still a map: it tells the sparse losses the vocabulary size, so a top-k covering the
        # whole vocabulary is known to leave no tail.
        return torch.arange(teacher_vocab)
    if token_map.teacher_vocab_size != teacher_vocab:
        raise ConfigError(
            f"{cache_dir}: the cached teacher has {teacher_vocab} tokens, the student's "
            f"token_map.json maps into {token_map.teacher_vocab_size}: cache the teacher the "
            "student was derived from"
        )
    return token_map.teacher_to_student_tensor
