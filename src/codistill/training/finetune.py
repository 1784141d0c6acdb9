"""Task-tuning a teacher before distilling it (``codistill teacher finetune``).

The papers distil teachers that were fine-tuned on the task first (alpha-T and Trident fine-tune
CodeT5 on the assertion training split); a zero-shot base model is a poor teacher. This module
prepares such a teacher with the same training loop as every student:

1. optionally trim the vocabulary to the training corpus, keeping every layer (a full-depth
   :func:`~codistill.models.student.derive_student`): on CPU most of Gemma 3's cost is its
   262k-token output layer, and a student derived from the tuned teacher then shares its
   vocabulary one to one;
2. train on the *training split only* with cross-entropy, either all weights with the
   embeddings frozen (``mode="full"``) or LoRA adapters merged back into plain weights
   (``mode="lora"``);
3. write the tuned model as a plain Hugging Face directory and ``finetune.json``: what was
   trained on what, and the held-out loss before and after.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from codistill import rundir
from codistill.config.distill import load_distill_config

MODES = ("full", "lora")


def finetune_teacher(
    model: str,
    train_data: str,
    out: str | Path,
    *,
    valid_data: str | None = None,
    task: str = "assertion",
    mode: str = "full",
    vocab_texts: Iterable[str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Fine-tune ``model`` (a directory) on ``train_data`` and save it to ``out/model``.

    Args:
        model: the base model's directory (already resolved from ``embedded:NAME``).
        train_data: training JSONL of ``task``; the teacher never sees the test split.
        out: work directory; ``out/model`` is the tuned teacher, ``out/finetune.json`` the
            summary. A run interrupted in training resumes from its checkpoint.
        valid_data: held-out JSONL for the loss before and after (recommended).
        mode: ``full`` (every weight but the embeddings) or ``lora`` (merged on save).
        vocab_texts: corpus whose tokens the tuned teacher keeps; None keeps the vocabulary.
        overrides: distill config keys (``max_steps``, ``lr``, ``batch_size``, lengths, ...).

    Returns:
        The summary written to ``finetune.json``.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    out = Path(out)
    if (out / "model" / "config.json").exists():
        raise FileExistsError(f"{out / 'model'} already exists: the teacher is tuned")
    started = time.time()
    base = Path(model)
    derivation = None
    if vocab_texts is not None:
        base, derivation = _trimmed_base(base, out / "base", vocab_texts)
    settings = {
        "student": str(base),
        "teacher": None,
        "loss": "ce",
        "task": task,
        "train_data": train_data,
        "valid_data": valid_data,
        "lora": mode == "lora",
        "freeze_embeddings": mode == "full",
        "output_dir": str(out / "run"),
        **dict(overrides or {}),
    }
    if valid_data is not None:  # validate the untouched model too: the "before" of the summary
        settings.setdefault("valid_every_steps", 10**9)
    cfg = load_distill_config(None, settings)
    resume = (out / "run" / "checkpoint" / "trainer_state.json").exists()
    from codistill.training.loop import distill  # lazy: torch (`codistill --help` imports us)

    result = distill(cfg, resume=resume)
    if result.status != "finished":
        raise RuntimeError(f"fine-tuning stopped early ({result.status}); run it again to resume")
    rundir.replace_dir(_staged_copy(out / "run" / "final"), out / "model")
    valid = [r for r in _metrics(out / "run") if r.get("kind") == "valid"]
    before = next((r["valid_loss"] for r in valid if r["step"] == 0), None)
    info = rundir.read_json(out / "run" / "run.json")
    summary = {
        "base_model": str(model),
        "mode": mode,
        "task": task,
        "train_data": train_data,
        "valid_data": valid_data,
        "vocabulary": derivation,
        "config": rundir.config_dict(cfg),
        "held_out_loss": {"before": before, "after": result.final_metrics.get("valid_loss")},
        "steps": info.get("global_step"),
        "seconds": round(time.time() - started, 1),
        "model": str(out / "model"),
    }
    rundir.write_json(out / "finetune.json", summary)
    return summary


def _trimmed_base(model: Path, target: Path, texts: Iterable[str]) -> tuple[Path, dict]:
    """A full-depth copy of ``model`` with the corpus' vocabulary (reused when present)."""
    from transformers import AutoConfig  # lazy: transformers

    from codistill.models.student import derive_student  # lazy: torch

    if (target / "derivation.json").exists():
        summary = json.loads((target / "derivation.json").read_text())
    else:
        config = AutoConfig.from_pretrained(model)
        layers = config.get_text_config().num_hidden_layers
        summary = derive_student(model, target, layers, vocab_texts=texts, overwrite=True)
    return target, {
        "base_vocab_size": summary["teacher_vocab_size"],
        "vocab_size": summary["student_vocab_size"],
    }


def _staged_copy(final: Path) -> Path:
    """A copy of the run's final weights beside the target, ready to be renamed into place."""
    tmp = rundir.fresh_tmp_dir(final.parent.parent / "model")
    shutil.rmtree(tmp)
    shutil.copytree(final, tmp)
    return tmp


def _metrics(run_dir: Path) -> list[dict]:
    path = run_dir / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
