"""SODA's fault-aware contrastive learning (Sec. 3.2.2, Eq. 2): the DPO form, top to bottom.

The policy starts from the supervised student (SODA's ``S_cls``) and a frozen copy of that same
student is the reference. The reference's sequence log-probabilities of every correct and faulty
solution are computed once, before training (batched, no gradient), and kept in memory and in
the run directory keyed by content (reference weights, prompt and solution token ids), so only
one model is in memory while training and a resumed run does not score them again. The loss is
:func:`codistill.losses.contrastive.fault_contrastive_loss` over log-probabilities of the
solution tokens only (their closing EOS included), the question rendered exactly as supervised
code-generation training renders it (:func:`codistill.data.prompts.codegen_texts`, raw or chat).

Pairs file (JSONL, one object a line)::

    {"question_id": "Mbpp/2", "prompt": "<text>" | {codegen record}, "correct": "<code>",
     "faulty": "<code>", "fault_type": "logic", "meta": {...}}   # meta: optional, kept as is

A text ``prompt`` is a task description answered by a whole program (as MBPP's prompts are); a
codegen record (:class:`codistill.data.schema.CodegenRecord`) is rendered as distill renders it
(HumanEval-style prompts are continued by the solution). Bad lines stop the read with one line,
``FILE:LINE: ...``.

Run directory: ``run.json`` (config, data hash, counts, reference scoring, status),
``metrics.jsonl`` (per logged step: loss, mean margin, accuracy), ``reference_logprobs.json``,
``checkpoint/`` while a run is halted, ``final/`` (the trained student, saved atomically).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import torch

from codistill import rundir
from codistill.config.fields import ConfigError
from codistill.config.preference import PreferenceConfig
from codistill.data.batches import Example, TokenizeStats, collate_causal, tokenize_records
from codistill.data.prompts import has_chat_template
from codistill.data.schema import CodegenRecord, RecordError
from codistill.files import sha256_file
from codistill.losses.contrastive import fault_contrastive_loss, sequence_logprobs
from codistill.models.loading import count_parameters, load_model, load_tokenizer
from codistill.models.registry import resolve_model
from codistill.models.vocab import TokenMap
from codistill.training.classifier.features import backbone_fingerprint
from codistill.training.loop import build_optimizer, epoch_batches, linear_schedule

PAIR_FIELDS = ("question_id", "prompt", "correct", "faulty", "fault_type")
OPTIONAL_PAIR_FIELDS = ("meta",)
REFERENCE_FILE = "reference_logprobs.json"
REFERENCE_FORMAT = 1


@dataclass(frozen=True)
class Pair:
    """One question with a correct and a faulty solution (SODA's ``(x, y_c, y_f)``)."""

    question_id: str
    record: CodegenRecord
    correct: str
    faulty: str
    fault_type: str


@dataclass
class PairExample:
    """A pair tokenized: the correct and the faulty solution after the same prompt ids."""

    pair: Pair
    correct: Example
    faulty: Example


@dataclass
class PreferenceResult:
    run_dir: Path
    status: str  # "finished", or "halted" (halt_after_steps; resumable)
    global_step: int
    final: dict | None  # margin, accuracy, policy_prefers_correct over all pairs (finished)


# --- the pairs file -----------------------------------------------------------------------


def _entry_point(code: str) -> str:
    found = re.search(r"^(?:async\s+)?def\s+([A-Za-z_]\w*)\s*\(", code, re.MULTILINE)
    return found.group(1) if found else "solution"


def _text(obj: dict, name: str, where: str) -> str:
    value = obj[name]
    if not isinstance(value, str) or not value.strip():
        raise RecordError(
            f"field '{name}' must be a non-empty string, got {value!r:.40}", where=where
        )
    return value


def parse_pair(obj: object, where: str) -> Pair:
    """Validate one decoded line of a pairs file.

    Raises:
        RecordError: ``where: what is wrong`` (one line).
    """
    if not isinstance(obj, dict):
        raise RecordError(f"expected a JSON object, got {type(obj).__name__}", where=where)
    for name in PAIR_FIELDS:
        if name not in obj:
            raise RecordError(f"field '{name}' missing", where=where)
    unknown = sorted(set(obj) - set(PAIR_FIELDS) - set(OPTIONAL_PAIR_FIELDS))
    if unknown:
        known = ", ".join(PAIR_FIELDS + OPTIONAL_PAIR_FIELDS)
        raise RecordError(f"unexpected field '{unknown[0]}' (known fields: {known})", where=where)
    if not isinstance(obj.get("meta", {}), dict):
        raise RecordError(f"field 'meta' must be an object, got {obj['meta']!r:.40}", where=where)
    question_id = _text(obj, "question_id", where)
    correct, faulty = _text(obj, "correct", where), _text(obj, "faulty", where)
    fault_type = _text(obj, "fault_type", where)
    if correct == faulty:
        raise RecordError("fields 'correct' and 'faulty' are identical", where=where)
    prompt = obj["prompt"]
    if isinstance(prompt, dict):
        record = CodegenRecord.from_dict(prompt, where=f"{where}: field 'prompt'")
    elif isinstance(prompt, str) and prompt.strip():
        # A text prompt is a task description answered by a whole program: codegen_program
        # treats sources starting with "mbpp" that way, so the record says it is MBPP-style.
        record = CodegenRecord(
            id=question_id,
            source="mbpp-style",
            prompt=prompt,
            entry_point=_entry_point(correct),
            tests="",
        )
    else:
        raise RecordError(
            f"field 'prompt' must be a non-empty string or a codegen record object, "
            f"got {prompt!r:.40}",
            where=where,
        )
    return Pair(question_id, record, correct, faulty, fault_type)


def read_pairs(path: str | Path) -> list[Pair]:
    """Every pair of a pairs JSONL file (blank lines skipped), stopping at the first bad line.

    Raises:
        FileNotFoundError: no such file.
        RecordError: ``FILE:LINE: what is wrong``, or a file with no pair.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"pairs file {path} does not exist")
    pairs = []
    with open(path, "rb") as fh:
        for number, raw in enumerate(fh, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            try:
                obj = json.loads(raw.decode("utf-8"))
            except UnicodeDecodeError as err:
                raise RecordError(f"invalid UTF-8 at byte {err.start}", where=where) from None
            except json.JSONDecodeError as err:
                raise RecordError(
                    f"invalid JSON: {err.msg} (column {err.colno})", where=where
                ) from None
            pairs.append(parse_pair(obj, where))
    if not pairs:
        raise RecordError(f"{path}: no pairs in the file")
    return pairs


# --- tokenization and batches -----------------------------------------------------------


def tokenize_pairs(
    pairs: list[Pair], tokenizer, cfg: PreferenceConfig
) -> tuple[list[PairExample], dict]:
    """Both solutions of every pair as distill's codegen examples (prompt ids, solution ids +
    EOS), and counts: tokenization of each side, and pairs dropped because truncation to
    ``max_target_tokens`` left the two solutions identical (no signal, zero gradient).

    Raises:
        ConfigError: chat mode with a tokenizer that has no chat template.
    """
    if cfg.prompt_mode == "chat" and not has_chat_template(tokenizer):
        name = getattr(tokenizer, "name_or_path", "") or "the tokenizer"
        raise ConfigError(f"prompt_mode=chat: {name} has no chat template; use prompt_mode=raw")
    sides: dict[str, tuple[list[Example], TokenizeStats]] = {}
    for side in ("correct", "faulty"):
        records = [
            dataclasses.replace(p.record, canonical_solution=getattr(p, side)) for p in pairs
        ]
        sides[side] = tokenize_records(
            records,
            tokenizer,
            max_source_tokens=cfg.max_source_tokens,
            max_target_tokens=cfg.max_target_tokens,
            prompt_mode=cfg.prompt_mode,
            truncation=cfg.truncation,
        )
    (correct, c_stats), (faulty, f_stats) = sides["correct"], sides["faulty"]
    # read_pairs refuses blank solutions, so no record was skipped and the lists align.
    assert len(correct) == len(faulty) == len(pairs)
    out, identical = [], 0
    for pair, c, f in zip(pairs, correct, faulty, strict=True):
        if c.prompt_ids + c.target_ids == f.prompt_ids + f.target_ids:
            identical += 1
            continue
        out.append(PairExample(pair, c, f))
    counts = {
        "correct": vars(c_stats),
        "faulty": vars(f_stats),
        "identical_after_truncation": identical,
    }
    return out, counts


def collate_pairs(examples: list[PairExample], pad_id: int) -> dict[str, torch.Tensor]:
    """One right-padded batch of ``2n`` rows: the n correct solutions, then the n faulty ones
    (one forward pass scores both sides; ``labels``/``target_mask`` as in
    :func:`codistill.data.batches.collate_causal`: the mask is True on solution tokens only)."""
    return collate_causal([e.correct for e in examples] + [e.faulty for e in examples], pad_id)


def batch_logprobs(model, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    """``[rows]`` sum of the log-probabilities of each row's solution tokens (prompt and padding
    masked out), under ``model``; differentiable unless called under no-grad."""
    device = next(model.parameters()).device
    logits = model(
        input_ids=batch["input_ids"].to(device),
        attention_mask=batch["attention_mask"].to(device),
    ).logits
    return sequence_logprobs(
        logits, batch["labels"].to(device), batch["target_mask"].to(device), shift=False
    )


# --- the reference, scored once -------------------------------------------------------------


def example_key(fingerprint: str, example: Example) -> str:
    """Content key of one scored sequence: reference weights, prompt ids and solution ids."""
    ids = json.dumps([example.prompt_ids, example.target_ids]).encode()
    return hashlib.sha256(fingerprint.encode() + b"\0" + ids).hexdigest()


def reference_logprobs(
    model,
    examples: list[PairExample],
    fingerprint: str,
    cache_path: Path,
    batch_size: int,
    pad_id: int,
) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The reference's sequence log-probs of every correct and faulty solution.

    Entries already in ``cache_path`` (keyed by :func:`example_key`, so entries of another
    reference or another tokenization are never served) are reused; the others are scored in
    batches of similar length under no-grad and the file is rewritten atomically.

    Returns:
        ``([n] correct, [n] faulty, number of sequences scored now)``.
    """
    entries: dict[str, float] = {}
    if cache_path.is_file():
        stored = rundir.read_json(cache_path)
        if stored.get("format") == REFERENCE_FORMAT:
            entries = stored["entries"]
    seqs = [e.correct for e in examples] + [e.faulty for e in examples]
    keys = [example_key(fingerprint, s) for s in seqs]
    todo = sorted(
        {k: s for k, s in zip(keys, seqs, strict=True) if k not in entries}.items(),
        key=lambda item: len(item[1].prompt_ids) + len(item[1].target_ids),
    )
    with torch.inference_mode():
        for start in range(0, len(todo), batch_size):
            chunk = todo[start : start + batch_size]
            values = batch_logprobs(model, collate_causal([s for _, s in chunk], pad_id))
            entries.update({k: float(v) for (k, _), v in zip(chunk, values.tolist(), strict=True)})
    if todo:
        rundir.write_json(cache_path, {"format": REFERENCE_FORMAT, "entries": entries})
    values = torch.tensor([entries[k] for k in keys], dtype=torch.float32)
    return values[: len(examples)], values[len(examples) :], len(todo)


# --- the loop -----------------------------------------------------------------------------


@dataclass
class _State:
    epoch: int = 0
    step_in_epoch: int = 0
    global_step: int = 0


def _device(choice: str) -> torch.device:
    if choice == "cuda" and not torch.cuda.is_available():
        raise ConfigError("device=cuda: no CUDA device is available")
    if choice == "auto":
        choice = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(choice)


def pair_steps(n: int, cfg: PreferenceConfig, epoch: int) -> list[list[list[int]]]:
    """Pair indices per micro-batch, ``grad_accum`` micro-batches per optimizer step; the order
    is a permutation fixed by (seed, epoch), so a resumed run walks the same one."""
    batches = epoch_batches(n, cfg.batch_size, cfg.seed, epoch)
    return [batches[i : i + cfg.grad_accum] for i in range(0, len(batches), cfg.grad_accum)]


def pair_stats(
    policy_c: torch.Tensor, policy_f: torch.Tensor, ref_c: torch.Tensor, ref_f: torch.Tensor
) -> dict[str, float]:
    """Mean margin (log-ratio of the correct minus that of the faulty solution, in nats,
    before beta), accuracy (share of pairs with a positive margin: the policy moved towards
    the correct solution relative to the reference) and the share where the policy gives the
    correct solution a higher log-probability than the faulty one outright."""
    margin = (policy_c - ref_c) - (policy_f - ref_f)
    return {
        "margin": float(margin.mean()),
        "accuracy": float((margin > 0).float().mean()),
        "policy_prefers_correct": float((policy_c > policy_f).float().mean()),
    }


def score_pairs(model, examples: list[PairExample], batch_size: int, pad_id: int):
    """``([n] correct, [n] faulty)`` sequence log-probs under ``model`` (no gradient)."""
    out_c, out_f = [], []
    with torch.inference_mode():
        for start in range(0, len(examples), batch_size):
            chunk = examples[start : start + batch_size]
            values = batch_logprobs(model, collate_pairs(chunk, pad_id)).float().cpu()
            out_c.append(values[: len(chunk)])
            out_f.append(values[len(chunk) :])
    return torch.cat(out_c), torch.cat(out_f)


def _save_checkpoint(run: _Run, state: _State) -> None:
    """Policy weights, optimizer, schedule and data position, written aside then renamed."""
    tmp = rundir.fresh_tmp_dir(run.run_dir / "checkpoint")
    run.policy.save_pretrained(tmp / "model", safe_serialization=True)
    run.tokenizer.save_pretrained(tmp / "model")
    optim = {"optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict()}
    torch.save(optim, tmp / "optim.pt")
    rundir.write_json(tmp / "trainer_state.json", dataclasses.asdict(state))
    rundir.replace_dir(tmp, run.run_dir / "checkpoint")


def _trim_metrics(path: Path, global_step: int) -> None:
    """Drop log lines past the checkpoint: a killed run logged steps it will take again."""
    if path.is_file():
        lines = [ln for ln in path.read_text().splitlines() if ln.strip()]
        kept = [ln for ln in lines if json.loads(ln).get("step", 0) <= global_step]
        rundir.write_text(path, "".join(ln + "\n" for ln in kept))


def train_preference(cfg: PreferenceConfig, resume: bool = False) -> PreferenceResult:
    """SODA's fault-aware contrastive learning: load, score the reference, loop, save.

    Args:
        cfg: the validated config (:func:`codistill.config.preference.load_preference_config`).
        resume: continue the halted or interrupted run in ``cfg.output_dir`` from its
            checkpoint (same data order, optimizer and schedule; the reference is not scored
            again).

    Raises:
        RecordError: a bad line of the pairs file (``FILE:LINE: ...``).
        ConfigError: chat mode without a chat template, ``device=cuda`` without CUDA, or no
            pair left after tokenization.
        FileNotFoundError, FileExistsError: a missing student or pairs file; an output
            directory that is not new (without ``resume``) or has no checkpoint (with it).
    """
    started = time.time()
    cfg = dataclasses.replace(cfg, student=resolve_model(cfg.student))  # embedded:NAME
    pairs = read_pairs(cfg.pairs)[: cfg.max_pairs]
    run_dir = rundir.prepare_run_dir(cfg.output_dir, resume)
    tokenizer = load_tokenizer(cfg.student)
    examples, token_counts = tokenize_pairs(pairs, tokenizer, cfg)
    if not examples:
        raise ConfigError(
            f"pairs {cfg.pairs}: no pair left (all {len(pairs)} identical after truncation to "
            f"max_target_tokens={cfg.max_target_tokens})"
        )
    run, state, scored = _build_run(cfg, run_dir, tokenizer, examples, resume)
    info = rundir.read_json(run_dir / "run.json") if resume else {}
    info.update(
        config=rundir.config_dict(cfg),
        versions=rundir.versions(),
        seed=cfg.seed,
        status="running",
        total_steps=run.total_steps,
        parameters={"student": count_parameters(run.policy)},
        data={
            "pairs": str(cfg.pairs),
            "sha256": sha256_file(cfg.pairs),
            "pairs_read": len(pairs),
            "pairs_used": len(examples),
            "fault_types": dict(Counter(e.pair.fault_type for e in examples).most_common()),
            "tokenization": token_counts,
        },
        prompt={"mode": cfg.prompt_mode},
        reference={
            "model": str(cfg.student),
            "fingerprint": run.fingerprint,
            "sequences_scored": scored,
            "sequences_reused": 2 * len(examples) - scored,
            "before_training": pair_stats(run.ref_c, run.ref_f, run.ref_c, run.ref_f),
        },
    )
    rundir.write_json(run_dir / "run.json", info)

    status = _loop(run, state)
    final = None
    if status == "finished":
        pol_c, pol_f = score_pairs(run.policy, examples, cfg.reference_batch_size, run.pad_id)
        final = pair_stats(pol_c, pol_f, run.ref_c.cpu(), run.ref_f.cpu())
        token_map = TokenMap.load_optional(cfg.student)
        rundir.save_student(run.policy, tokenizer, run_dir / "final", token_map)
    info.update(
        status=status,
        global_step=state.global_step,
        wall_seconds=info.get("wall_seconds", 0.0) + time.time() - started,
        final=final,
    )
    rundir.write_json(run_dir / "run.json", info)
    return PreferenceResult(run_dir, status, state.global_step, final)


@dataclass
class _Run:
    cfg: PreferenceConfig
    run_dir: Path
    policy: torch.nn.Module
    tokenizer: object
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    examples: list[PairExample]
    ref_c: torch.Tensor  # [n] reference log-probs of the correct solutions, on the device
    ref_f: torch.Tensor  # [n] the same for the faulty ones
    pad_id: int
    total_steps: int
    fingerprint: str


def _build_run(cfg, run_dir, tokenizer, examples, resume) -> tuple[_Run, _State, int]:
    """Score the reference (or read its scores back), then load the policy, build optimizer and
    schedule and, on resume, restore them. Returns the run, its state and the number of
    sequences the reference scored now."""
    device = _device(cfg.device)
    pad_id = tokenizer.pad_token_id
    pad_id = tokenizer.eos_token_id if pad_id is None else pad_id
    # The reference is the supervised student itself, scored before the policy is loaded, so
    # one model at a time is in memory.
    fingerprint = backbone_fingerprint(cfg.student)
    reference = load_model(cfg.student).to(device).eval()
    ref_c, ref_f, scored = reference_logprobs(
        reference, examples, fingerprint, run_dir / REFERENCE_FILE, cfg.reference_batch_size, pad_id
    )
    del reference

    policy = load_model(run_dir / "checkpoint" / "model" if resume else cfg.student).to(device)
    # Dropout off (TRL's disable_dropout): at step 0 the policy computes exactly the
    # reference's function, so the loss starts at log 2 and margins measure weights, not noise.
    policy.eval()
    optimizer = build_optimizer(policy, cfg)
    total_steps = cfg.epochs * len(pair_steps(len(examples), cfg, 0))
    if cfg.max_steps is not None:
        total_steps = min(total_steps, cfg.max_steps)
    scheduler = linear_schedule(optimizer, total_steps, cfg.warmup_ratio)
    state = _State()
    if resume:
        saved = torch.load(run_dir / "checkpoint" / "optim.pt", map_location=device)
        optimizer.load_state_dict(saved["optimizer"])
        scheduler.load_state_dict(saved["scheduler"])
        state = _State(**rundir.read_json(run_dir / "checkpoint" / "trainer_state.json"))
        _trim_metrics(run_dir / "metrics.jsonl", state.global_step)
    run = _Run(
        cfg, run_dir, policy, tokenizer, optimizer, scheduler, examples,
        ref_c.to(device), ref_f.to(device), pad_id, total_steps, fingerprint,
    )  # fmt: skip
    return run, state, scored


def _loop(run: _Run, state: _State) -> str:
    """Optimizer steps until ``total_steps`` (epochs or ``max_steps``) or ``halt_after_steps``
    run out; ``state`` is advanced in place. Returns ``finished`` or ``halted``."""
    cfg, taken = run.cfg, 0
    while state.global_step < run.total_steps:
        steps = pair_steps(len(run.examples), cfg, state.epoch)
        epoch = state.epoch
        logged = contrastive_step(
            cfg, run.policy, run.optimizer, run.scheduler, steps[state.step_in_epoch],
            run.examples, run.ref_c, run.ref_f, run.pad_id,
        )  # fmt: skip
        state.step_in_epoch += 1
        state.global_step += 1
        taken += 1
        if state.step_in_epoch == len(steps):
            state.epoch, state.step_in_epoch = state.epoch + 1, 0
        if state.global_step % cfg.log_every == 0 or state.global_step == run.total_steps:
            line = {"step": state.global_step, "epoch": epoch, **logged}
            rundir.append_jsonl(run.run_dir / "metrics.jsonl", line)
        if state.global_step == run.total_steps:
            break
        halt = cfg.halt_after_steps is not None and taken >= cfg.halt_after_steps
        if halt or (cfg.save_every_steps and state.global_step % cfg.save_every_steps == 0):
            _save_checkpoint(run, state)
        if halt:
            return "halted"
    return "finished"


def contrastive_step(cfg, policy, optimizer, scheduler, group, examples, ref_c, ref_f, pad_id):
    """One optimizer step over ``group`` (micro-batches of pair indices): each micro-batch's
    loss is weighted by its share of the step's pairs, so the step minimises the mean over its
    pairs whatever the split. Returns the step's loss, margin and accuracies."""
    n = sum(len(micro) for micro in group)
    stats = {"loss": 0.0, "margin": 0.0, "accuracy": 0.0, "policy_prefers_correct": 0.0}
    for micro in group:
        batch = collate_pairs([examples[i] for i in micro], pad_id)
        values = batch_logprobs(policy, batch)
        pol_c, pol_f = values[: len(micro)], values[len(micro) :]
        rc, rf = ref_c[micro], ref_f[micro]
        loss = fault_contrastive_loss(pol_c, pol_f, rc, rf, cfg.beta)
        (loss * len(micro) / n).backward()
        share = len(micro) / n
        stats["loss"] += float(loss.detach()) * share
        for key, value in pair_stats(pol_c.detach(), pol_f.detach(), rc, rf).items():
            stats[key] += value * share
    if cfg.max_grad_norm is not None:
        torch.nn.utils.clip_grad_norm_(policy.parameters(), cfg.max_grad_norm)
    stats["lr"] = scheduler.get_last_lr()[0]
    optimizer.step()
    scheduler.step()
    optimizer.zero_grad(set_to_none=True)
    return stats
