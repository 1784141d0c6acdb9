"""The configuration of SODA's fault-aware contrastive stage (:mod:`codistill.training.preference`).

The defaults are the preset: they reproduce SODA's setting (Sec. 4, "Implementation details")
where the paper gives one, and say where they come from otherwise. Presets in ``configs/`` are
``codistill distill`` configs (its test pins their list), so this stage keeps its preset here;
a YAML file of the same keys and ``key=value`` overrides change it (command line > YAML >
defaults).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill.config.fields import field, load_layers
from codistill.data.prompts import TRUNCATIONS


@dataclass(kw_only=True)
class PreferenceConfig:
    # --- models and data ----------------------------------------------------------------
    student: str = field(
        help="the supervised student directory (SODA's S_cls): the policy starts from it and a "
        "frozen copy of it is the reference"
    )
    pairs: str = field(
        help="pairs JSONL, one (question, correct, faulty) triple a line: question_id, prompt "
        "(text, or a codegen record), correct, faulty, fault_type"
    )
    prompt_mode: str = field(
        "raw",
        help="how the question is rendered, as in supervised training: raw (the prompt as is; "
        "the solution continues it) or chat (one user turn of the chat template; the solution "
        "is the fenced whole program)",
        choices=("raw", "chat"),
    )
    max_source_tokens: int = field(
        512, help="prompt tokens kept (cut by `truncation`), as distill's codegen default", min=8
    )
    truncation: str = field(
        "left",
        help="how a longer prompt is cut: left (keep its end) or middle (keep its first and "
        "last halves), as in distill",
        choices=TRUNCATIONS,
    )
    max_target_tokens: int = field(
        384, help="solution tokens kept (right-truncated), as distill's codegen default", min=1
    )
    max_pairs: int | None = field(None, help="use only the first N pairs of the file", min=1)
    # --- objective ----------------------------------------------------------------------
    beta: float = field(
        0.1,
        help="DPO's beta in SODA's Eq. 2 (the paper gives no value; 0.1 is the default of "
        "LLaMA-Factory, the framework it trained with)",
        min=0,
        min_exclusive=True,
    )
    # --- optimisation -------------------------------------------------------------------
    epochs: int = field(3, help="passes over the pairs (SODA: 3 training epochs)", min=1)
    max_steps: int | None = field(None, help="stop after N optimizer steps (budget)", min=1)
    batch_size: int = field(2, help="pairs per micro-batch (each pair is two sequences)", min=1)
    grad_accum: int = field(1, help="micro-batches per optimizer step", min=1)
    lr: float = field(
        5e-7,
        help="peak learning rate of AdamW (SODA: 5e-7 for fault-aware contrastive learning)",
        min=0,
        min_exclusive=True,
    )
    weight_decay: float = field(
        0.0, help="AdamW decoupled weight decay (LLaMA-Factory's default: none)", min=0
    )
    warmup_ratio: float = field(
        0.1, help="fraction of steps with linear warm-up, then linear decay", min=0, max=1
    )
    max_grad_norm: float | None = field(1.0, help="gradient clipping norm; null = none", min=0)
    reference_batch_size: int = field(
        8, help="sequences per forward pass when scoring the pairs with the reference", min=1
    )
    device: str = field(
        "auto", help="auto (CUDA when there is one), cpu or cuda", choices=("auto", "cpu", "cuda")
    )
    seed: int = field(42, help="seed of the data order")
    # --- logging and checkpoints --------------------------------------------------------
    log_every: int = field(1, help="optimizer steps between lines of metrics.jsonl", min=1)
    save_every_steps: int | None = field(
        None, help="also checkpoint every N optimizer steps", min=1
    )
    halt_after_steps: int | None = field(
        None,
        help="stop this invocation after N optimizer steps, leaving a resumable checkpoint "
        "(as if killed)",
        min=1,
    )
    output_dir: str = field(
        "runs/soda-contrastive", help="run directory (created; must be new or a resume)"
    )


def load_preference_config(
    config: str | Path | None,
    overrides: list[str] | dict | None = None,
    base: dict[str, Any] | None = None,
) -> PreferenceConfig:
    """Defaults (the SODA preset) < ``base`` (programmatic) < YAML file < command-line overrides.

    Raises:
        ConfigError: unknown key (with a suggestion), wrong type or out-of-range value, naming
            the field; a missing YAML file.
    """
    return load_layers(PreferenceConfig, config, overrides, base)
