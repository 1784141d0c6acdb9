"""The run directory: ``run.json``, ``metrics.jsonl``, resumable checkpoints, saved students.

Layout::

    RUN_DIR/run.json          resolved config, versions, seed, wall time, parameter counts, status
    RUN_DIR/metrics.jsonl     one JSON object per logged step / validation
    RUN_DIR/checkpoint/       model, optimizer, scheduler, RNG (Accelerate) + trainer_state.json
    RUN_DIR/best/, final/     students as Hugging Face directories (+ token_map.json)
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import platform
import shutil
import tempfile
from importlib import metadata
from pathlib import Path
from typing import Any


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically: a reader never sees a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        json.dump(obj, fh, indent=2, default=str)
        fh.write("\n")
    os.replace(tmp, path)


def write_text(path: Path, text: str) -> None:
    """Write text atomically (temp file, then rename), like :func:`write_json`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    with os.fdopen(fd, "w") as fh:
        fh.write(text)
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


def append_jsonl(path: Path, obj: dict) -> None:
    with open(path, "a") as fh:
        fh.write(json.dumps(obj, default=float) + "\n")


def versions() -> dict[str, str]:
    out = {"python": platform.python_version()}
    for pkg in ("codistill", "torch", "transformers", "accelerate", "tokenizers", "peft"):
        try:
            out[pkg] = metadata.version(pkg)
        except metadata.PackageNotFoundError:
            out[pkg] = "not installed"
    return out


def replace_dir(tmp: Path, final: Path) -> None:
    """Move a finished directory into place, replacing an older one, never leaving a half."""
    old = final.with_name(final.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if final.exists():
        os.replace(final, old)
    os.replace(tmp, final)
    if old.exists():
        shutil.rmtree(old)


def fresh_tmp_dir(final: Path) -> Path:
    final.parent.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))


def prepare_run_dir(output_dir: str, resume: bool) -> Path:
    run = Path(output_dir)
    if resume:
        if not (run / "checkpoint" / "trainer_state.json").is_file():
            raise FileNotFoundError(f"--resume {run}: no checkpoint/trainer_state.json there")
        return run
    if run.exists() and any(run.iterdir()):
        raise FileExistsError(
            f"output_dir {run} exists and is not empty: choose another "
            "directory or continue it with --resume"
        )
    run.mkdir(parents=True, exist_ok=True)
    return run


def save_student(model, tokenizer, out: Path, token_map=None) -> None:
    """Save a student as a Hugging Face directory (merging LoRA adapters first)."""
    tmp = fresh_tmp_dir(out)
    to_save = model
    if hasattr(model, "merge_and_unload"):  # peft: ship plain weights, not adapters
        to_save = copy.deepcopy(model).merge_and_unload()
    to_save.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    if token_map is not None:
        token_map.save(tmp)
    replace_dir(tmp, out)


def config_dict(cfg: Any) -> dict:
    return dataclasses.asdict(cfg)
