"""The configuration object of ``codistill fidelity``.

The field names are the keys of ``fidelity.json``'s ``options`` (``n_resamples`` is the
``--bootstrap`` flag, ``out`` the ``--out`` flag), so a run's recorded options can be fed back
as a YAML file.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill.config.fields import (
    ConfigError,
    field,
    load_layers,
    validate_field,
)
from codistill.data.prompts import TRUNCATIONS

FIDELITY_TASKS = ("assertion", "codegen", "clone", "defect")
CLASSIFIER_TASKS = ("clone", "defect")
ATTACKS = ("alert", "mhm")


def _names(value: Any) -> Any:
    """``"a, b"`` -> ``["a", "b"]``: the comma-separated form the flags have always taken."""
    if isinstance(value, str):
        return [x.strip() for x in value.split(",") if x.strip()]
    return value


@dataclass
class FidelityConfig:
    """Every setting of one ``codistill fidelity`` run (defaults < YAML < command line).

    Not keyword-only: the five required fields come first, so
    ``FidelityConfig(teacher, student, task, data, out)`` reads like the command line.
    """

    teacher: str = field(
        help="teacher model (or classifier) directory; embedded[:NAME] for an embedded model"
    )
    student: str = field(help="student model (or classifier) directory, or embedded[:NAME]")
    task: str = field(help="task of the data", choices=FIDELITY_TASKS)
    data: str = field(help="task JSONL (codistill data formats)")
    out: str = field(help="output directory: fidelity.json and fidelity.md")
    relations: list[str] | str | None = field(
        None,
        help="relation names (a list, or comma-separated); all or null: every relation of the "
        "data's language",
    )
    variants: int = field(1, help="variants per relation and input", min=1)
    max_records: int | None = field(50, help="inputs used (the first N; null: all)", min=1)
    attacks: list[str] | str = field(
        default_factory=lambda: list(ATTACKS),
        help="attacks run on each model: a list of alert, mhm (or comma-separated); none or [] "
        "to skip",
    )
    attack_budget: int = field(60, help="model queries per attacked input", min=1)
    attack_records: int = field(20, help="inputs attacked per model (0: no attacks)", min=0)
    attack_target: str = field(
        "auto",
        help="what an attack must break: the reference answer, or the model's own output on "
        "the original (auto: reference for classifiers, self for generators)",
        choices=("auto", "reference", "self"),
    )
    attack_mlm: str | None = field(
        None, help="masked LM directory for ALERT's candidate names; null: the synonym table"
    )
    teacher_backend: str | None = field(
        None,
        help="generate the teacher's text through a backend instead of in-process: "
        "llamacpp:FILE.gguf, openai:URL, transformers:DIR (generator tasks only)",
    )
    student_backend: str | None = field(None, help="the same for the student")
    verify: str = field(
        "compile",
        help="variant verification: compile (javac/gcc with stubs, tests for codegen) or parse",
        choices=("compile", "parse"),
    )
    partial: float = field(
        0.5, help="codegen: share of the body's statements given to the model", min=0, max=1
    )
    max_source_tokens: int = field(256, help="prompt tokens kept (cut by `truncation`)", min=1)
    truncation: str = field(
        "left",
        help="how a longer prompt is cut: left (keep its end) or middle (keep its first and "
        "last halves); as the student was trained",
        choices=TRUNCATIONS,
    )
    max_new_tokens: int | None = field(
        None, help="generation budget; null: 48 for assertions, 256 for code generation", min=1
    )
    batch_size: int = field(8, help="generation / classification batch size", min=1)
    prompt_style: str = field(
        "prefix", help="assertion prompt style", choices=("prefix", "placeholder")
    )
    cqs: bool = field(
        False,
        help="assertions: also compare teacher and student Code Quality Scores against the "
        "reference on every variant (loads the offline MiniLM)",
    )
    n_resamples: int = field(1000, help="bootstrap resamples for the intervals", min=1)
    seed: int = field(0, help="seed of variants, attacks and bootstrap")
    cache_dir: str | None = field(
        None, help="model output cache; null: ~/.cache/codistill/fidelity"
    )
    fail_under: dict[str, float] = field(
        default_factory=dict,
        help="gates METRIC: MIN (exit 1 below), e.g. agreement: 0.9, RELATION.METRIC, "
        "teacher.accuracy, attack.alert.student.attack_success_rate",
    )
    fail_over: dict[str, float] = field(
        default_factory=dict,
        help="gates METRIC: MAX (exit 1 above), e.g. attack.alert.relative_drop: 1",
    )
    worst: int = field(
        8, help="worst cases shown: variants where the student changed its output", min=0
    )

    def __post_init__(self) -> None:
        # One spelling inside: a list of names, or None for every relation.
        relations = _names(self.relations)
        self.relations = None if relations in (None, [], ["all"]) else relations
        attacks = _names(self.attacks)
        self.attacks = [] if attacks == ["none"] else attacks

    def check(self) -> None:
        """Cross-field rules; a single field's type and range are checked by ``fields``."""
        bad = [a for a in self.attacks if a not in ATTACKS]
        if bad:
            raise ConfigError(f"attacks: unknown {bad}; expected alert, mhm or none")
        for name in ("fail_under", "fail_over"):
            for metric, value in getattr(self, name).items():
                if isinstance(value, bool) or not isinstance(value, int | float):
                    raise ConfigError(f"{name}.{metric} must be a number, got {value!r}")
        if self.cqs and self.task != "assertion":
            raise ConfigError(
                f"--cqs scores outputs against a reference assertion; the {self.task} task has "
                "none (code generation is scored by its tests)"
            )
        for side in ("teacher", "student"):
            if getattr(self, f"{side}_backend") is not None and self.task in CLASSIFIER_TASKS:
                raise ConfigError(
                    f"--{side}-backend generates text; the {self.task} task needs classifier "
                    "directories"
                )


def check_fidelity_config(cfg: FidelityConfig) -> None:
    """Validate a config built in Python (not through :func:`load_fidelity_config`): every
    field's type, choices and range, then :meth:`FidelityConfig.check`.

    Raises:
        ConfigError: naming the field and what was expected.
    """
    hints = typing.get_type_hints(FidelityConfig)
    for f in dataclasses.fields(FidelityConfig):
        validate_field(f.name, getattr(cfg, f.name), f, hints)
    cfg.check()


def load_fidelity_config(
    config: str | Path | None, overrides: list[str] | dict | None = None
) -> FidelityConfig:
    """Defaults < YAML file < command-line overrides (``key=value`` strings or a mapping)."""
    return load_layers(FidelityConfig, config, overrides)
