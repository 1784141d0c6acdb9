"""The settings of `train_teacher` and `distill_student`, and the shares of the data split."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from codistill.config.fields import ConfigError, build, field
from codistill.models.classifier import TASK_LABELS

SPLIT_NAMES = ("teacher", "unlabeled", "valid", "test")


@dataclass(kw_only=True)
class TeacherConfig:
    backbone: str = field(help="decoder-only backbone directory (model + tokenizer)")
    task: str = field(help="classification task", choices=tuple(TASK_LABELS))
    data: str = field(help="BigCloneBench / Devign JSONL (CodeXGLUE or codistill records)")
    out: str = field(help="output classifier directory")
    seed: int = field(0, help="seed of the split and of the head's training")
    fractions: list = field(
        default_factory=lambda: [0.4, 0.4, 0.05, 0.15],
        help="shares of the teacher / unlabeled / valid / test parts (sum to 1)",
    )
    train_size: int | None = field(None, help="use the first N teacher-part records", min=1)
    valid_size: int | None = field(None, help="use the first N valid-part records", min=1)
    test_size: int | None = field(None, help="use the first N test-part records", min=1)
    max_length: int = field(256, help="tokens per input, specials included (pairs share)", min=8)
    batch_size: int = field(8, help="inputs per forward pass", min=1)
    unfreeze_layers: int = field(
        0, help="top layers fine-tuned end to end; 0 = frozen backbone, cached features", min=0
    )
    epochs: int | None = field(
        None, help="passes over the training part; null = 200 (frozen) or 2 (unfrozen)", min=1
    )
    lr: float = field(1e-3, help="learning rate of the score head", min=0, min_exclusive=True)
    backbone_lr: float = field(
        2e-5, help="learning rate of unfrozen layers", min=0, min_exclusive=True
    )
    weight_decay: float = field(1e-2, help="AdamW weight decay", min=0)
    head_batch_size: int = field(64, help="feature rows per head step (frozen mode)", min=1)
    feature_cache: str | None = field(
        None,
        help="directory keeping pooled features between runs (frozen mode), keyed by the "
        "backbone's weights and the token ids; null = no cache",
    )
    progress: bool = field(True, help="show progress bars")

    def check(self) -> None:
        check_fractions(self.fractions)


@dataclass(kw_only=True)
class StudentConfig:
    teacher: str = field(help="teacher classifier directory (from train_teacher)")
    data: str = field(help="the data file the teacher was trained on")
    out: str = field(help="output student classifier directory")
    layers: Any = field(4, help="student layers (evenly spaced) or a list of teacher indices")
    unlabeled_size: int | None = field(None, help="use the first N unlabeled records", min=1)
    trim_vocab: bool = field(True, help="trim the vocabulary to the unlabeled corpus")
    temperature: float = field(2.0, help="softening temperature T of the KD loss", min=0)
    alpha: float = field(
        0.0, help="weight of hard-label CE (uses the unlabeled part's labels); 0 = pure KD", min=0
    )
    steps: int = field(300, help="optimizer steps", min=1)
    batch_size: int = field(8, help="inputs per step", min=1)
    lr: float = field(1e-4, help="peak AdamW learning rate", min=0, min_exclusive=True)
    weight_decay: float = field(1e-2, help="AdamW weight decay", min=0)
    warmup: float = field(0.1, help="share of steps of linear warm-up", min=0, max=1)
    seed: int = field(0, help="seed of batch order")
    progress: bool = field(True, help="show progress bars")

    def check(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature:g}")
        if self.alpha > 1:
            raise ConfigError(f"alpha must be in [0, 1], got {self.alpha:g}")
        if isinstance(self.layers, bool) or not isinstance(self.layers, int | list):
            raise ConfigError(f"layers must be an integer or a list, got {self.layers!r}")


def teacher_config(**values: Any) -> TeacherConfig:
    """A validated `TeacherConfig` (raises ConfigError naming the bad field)."""
    return build(TeacherConfig, ("arguments", values))


def student_config(**values: Any) -> StudentConfig:
    """A validated `StudentConfig` (raises ConfigError naming the bad field)."""
    return build(StudentConfig, ("arguments", values))


def check_fractions(fractions: Sequence[float]) -> None:
    """Checks the shares of the four parts of `SPLIT_NAMES`.

    Raises:
        ConfigError: Not four shares >= 0, not summing to 1, or an empty teacher or test part.
    """
    if len(fractions) != len(SPLIT_NAMES) or any(
        not isinstance(f, int | float) or f < 0 for f in fractions
    ):
        raise ConfigError(
            f"fractions must be {len(SPLIT_NAMES)} shares >= 0 ({', '.join(SPLIT_NAMES)}), "
            f"got {list(fractions)}"
        )
    if not math.isclose(sum(fractions), 1.0, abs_tol=1e-6):
        raise ConfigError(f"fractions must sum to 1, got {sum(fractions):g}")
    if fractions[0] == 0 or fractions[3] == 0:
        raise ConfigError("fractions: the teacher and test parts must not be empty")
