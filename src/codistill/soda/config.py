"""The ``codistill soda`` configuration: every setting of a run, validated, and the budgets
(``smoke``, ``cpu``, ``full``) it starts from (budget < YAML < ``key=value`` < flags)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill.config.fields import ConfigError, build, field, load_yaml, parse_overrides
from codistill.soda.prompts import FAULT_TYPES


@dataclass(kw_only=True)
class SodaConfig:
    # --- what and where ---------------------------------------------------------------------
    teacher: str = field(
        help="teacher: DIR, embedded[:NAME], llamacpp:FILE.gguf | llamacpp:embedded:NAME, "
        "openai:URL"
    )
    student: str = field(help="the student's model directory (cycle 1 starts from it)")
    seeds: str = field(help="seed questions: codegen JSONL, each with tests")
    output_dir: str = field(help="run directory (created; an existing one is resumed)")
    budget: str = field(
        "cpu", help="the preset the other values start from", choices=("smoke", "cpu", "full")
    )
    judge_model: str | None = field(
        None, help="the judge's spec (as teacher); null = the teacher judges"
    )
    api_key_env: str | None = field(
        None, help="openai teacher/judge: the environment variable holding the API key"
    )
    server_model: str | None = field(None, help="openai: the model to request")
    teacher_prompt_mode: str = field(
        "auto", help="how the teacher is prompted", choices=("auto", "raw", "chat")
    )
    template_dir: str | None = field(None, help="a folder of your own prompt templates")
    cycles: int = field(3, help="distillation cycles (the paper: 3)", min=1)
    seed: int = field(0, help="seed of question split, fault sampling, new-question draws")
    # --- the paper's ablations and our baseline --------------------------------------------
    faults: bool = field(True, help="false: no faulty solutions, no contrastive stage")
    judge: bool = field(True, help="false: Stage II without model-based scoring")
    execution: bool = field(True, help="false: Stage II without execution")
    difficulty: bool = field(True, help="false: new questions from uniformly drawn seeds")
    ratio: Any = field(
        "1:1:2", help="easy:medium:hard weights of the new questions (1:1:2, 1:1:1, 0:0:1)"
    )
    sft_only: bool = field(
        False, help="the baseline: plain SFT on verified teacher solutions, no feedback"
    )
    match_calls: str | None = field(
        None, help="sft_only: a SODA run's results.json whose teacher calls per cycle to match"
    )
    keep_questions: bool = field(
        True, help="next cycle: the cycle's questions plus the new ones (false: new only)"
    )
    # --- Stage I / II / III -------------------------------------------------------------------
    n_new: int = field(20, help="new questions asked per cycle (before rejections)", min=0)
    teacher_fault_types: list = field(
        default_factory=lambda: list(FAULT_TYPES),
        help="fault types asked of the teacher (one call per type and solved question)",
    )
    injected_per_type: int = field(1, help="AST-injected faults per type and question", min=0)
    sft_share: float = field(0.8, help="share of questions for supervised learning", min=0, max=1)
    teacher_max_new_tokens: int = field(512, help="teacher answer length cap", min=1)
    student_max_new_tokens: int = field(512, help="student answer length cap (Stage II)", min=1)
    decontaminate: bool = field(True, help="drop new questions close to the evaluation items")
    timeout_s: float = field(5.0, help="sandbox limit per program", min=0, min_exclusive=True)
    workers: int = field(2, help="sandbox programs run at once", min=1)
    # --- training (the paper: 3 epochs, lr 2e-5 SFT, 5e-7 contrastive, Sec. 4.6) -------------
    prompt_mode: str = field(
        "chat",
        help="how the student sees a question (training, Stage II, eval)",
        choices=("raw", "chat"),
    )
    sft_lr: float = field(2e-5, help="supervised learning rate", min=0, min_exclusive=True)
    sft_epochs: int = field(3, help="supervised epochs", min=1)
    sft_max_steps: int | None = field(None, help="cap on supervised optimizer steps", min=1)
    sft_batch_size: int = field(2, help="supervised micro-batch", min=1)
    sft_grad_accum: int = field(1, help="supervised micro-batches per step", min=1)
    contrastive_lr: float = field(5e-7, help="contrastive learning rate", min=0, min_exclusive=True)
    contrastive_epochs: int = field(3, help="contrastive epochs", min=1)
    contrastive_max_steps: int | None = field(None, help="cap on contrastive steps", min=1)
    contrastive_batch_size: int = field(2, help="pairs per contrastive micro-batch", min=1)
    beta: float = field(0.1, help="DPO beta of the contrastive loss", min=0, min_exclusive=True)
    max_source_tokens: int = field(512, help="prompt tokens kept in training", min=8)
    max_target_tokens: int = field(384, help="solution tokens kept in training", min=1)
    device: str = field("auto", help="training device", choices=("auto", "cpu", "cuda"))
    # --- evaluation --------------------------------------------------------------------------
    eval_data: list = field(
        default_factory=list,
        help="held-out sets: humaneval-plus:PATH, humaneval:PATH, mbpp-test:PATH, mbpp:PATH or "
        "a codegen JSONL",
    )
    eval_holdout: int = field(0, help="seed questions held out for evaluation", min=0)
    eval_max_examples: int | None = field(None, help="evaluate the first N items only", min=1)
    eval_max_new_tokens: int = field(512, help="evaluation answer length cap", min=1)
    eval_batch_size: int = field(8, help="evaluation generation batch", min=1)
    student_backend: str = field(
        "torch",
        help="how the student writes its answers (Stage II and evaluation): torch in-process, "
        "or llamacpp: a bfloat16 GGUF export of each cycle's student run by llama.cpp "
        "(several times faster on a CPU; needs llama-cpp-python, the server extra)",
        choices=("torch", "llamacpp"),
    )

    def check(self) -> None:
        """Normalises ``ratio`` and checks what one field alone cannot say."""
        self.ratio = list(parse_ratio(self.ratio))
        unknown = [t for t in self.teacher_fault_types if t not in FAULT_TYPES]
        if unknown:
            raise ConfigError(
                f"teacher_fault_types: unknown fault type {unknown[0]!r}; expected "
                + ", ".join(FAULT_TYPES)
            )
        if not (self.judge or self.execution):
            raise ConfigError("judge and execution are both false: Stage II needs one view")
        if self.match_calls is not None and not self.sft_only:
            raise ConfigError("match_calls is for sft_only=true (the budget-matched baseline)")
        for spec in self.eval_data:
            if not isinstance(spec, str) or not spec:
                raise ConfigError(f"eval_data entries must be strings, got {spec!r}")
        if not self.eval_data and not self.eval_holdout:
            raise ConfigError("no evaluation set: give eval_data=[...] or eval_holdout=N")


def parse_ratio(value: Any) -> tuple[float, float, float]:
    """``easy:medium:hard`` weights from ``"1:1:2"``, ``[1, 1, 2]`` or YAML 1.1's reading of an
    unquoted ``1:1:2`` (a base-60 integer, 3662, read back digit by digit).

    Raises:
        ConfigError: anything else, or weights that are negative or all zero.
    """
    parts: list[Any]
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        parts = []
        while value:
            value, digit = divmod(value, 60)
            parts.insert(0, digit)
    elif isinstance(value, str):
        parts = value.split(":")
    elif isinstance(value, list | tuple):
        parts = list(value)
    else:
        parts = []
    try:
        weights = tuple(float(p) for p in parts)
    except (TypeError, ValueError):
        weights = ()
    if len(weights) != 3 or min(weights) < 0 or sum(weights) <= 0:
        raise ConfigError(f"ratio must be easy:medium:hard like 1:1:2, got {value!r}")
    return weights  # type: ignore[return-value]


# Each budget is the first layer of the config (then YAML, then key=value and flags). The cpu
# and full budgets evaluate on what the user names (the package ships no benchmark), e.g.
# eval_data='[humaneval-plus:HumanEvalPlus-v0.1.10.jsonl.gz,mbpp-test:sanitized-mbpp.json]';
# those items are also what new questions are decontaminated against.
BUDGETS: dict[str, dict[str, Any]] = {
    # Tiny random models, a scripted or tiny teacher; checks the pipeline in a couple of
    # minutes on 2 cores (what the tests run); measures nothing.
    "smoke": {
        "cycles": 2,
        "n_new": 4,
        "injected_per_type": 1,
        "teacher_max_new_tokens": 96,
        "student_max_new_tokens": 24,
        "timeout_s": 3.0,
        "sft_lr": 1e-3,
        "sft_epochs": 1,
        "sft_max_steps": 2,
        "contrastive_lr": 1e-3,
        "contrastive_epochs": 1,
        "contrastive_max_steps": 2,
        "max_source_tokens": 96,
        "max_target_tokens": 48,
        "device": "cpu",
        "eval_holdout": 2,
        "eval_max_new_tokens": 16,
    },
    # This 2-core machine: a Qwen2.5-Coder teacher through llama.cpp, a ~270M student, MBPP's
    # 170 non-test tasks as seeds, HumanEval+ (164) and MBPP test (257) held out. The teacher
    # is asked for logic faults only (the other four types come from AST injection, free of
    # teacher calls); learning rates raised over the paper's because ~100 steps of batch 8
    # replace thousands of batch 512 (a guess, not tuned). Estimated from token rates, not
    # run: ~3-4 h per cycle with the 1.5B teacher (~12 tokens/s), ~2 h with the 0.5B one, plus
    # ~1 h per evaluation of the 421 held-out items in torch (the student answers through a
    # llama.cpp export here).
    "cpu": {
        "cycles": 2,
        "n_new": 40,
        "teacher_fault_types": ["logic"],
        "injected_per_type": 1,
        "teacher_max_new_tokens": 384,
        "student_max_new_tokens": 384,
        "sft_lr": 5e-5,
        "sft_epochs": 3,
        "sft_batch_size": 8,
        "contrastive_lr": 5e-6,
        "contrastive_epochs": 3,
        "contrastive_batch_size": 4,
        "eval_max_new_tokens": 384,
        "student_backend": "llamacpp",
    },
    # The paper's scale (Sec. 4.6) for a GPU machine: 3 cycles, all five fault types asked of
    # the teacher, lr 2e-5 / 5e-7, 3 epochs, batch 512 as 16 x 32 accumulation, 2048 tokens,
    # new questions per cycle as the seed set allows (the paper: 10K on 110K seeds).
    "full": {
        "cycles": 3,
        "n_new": 2000,
        "teacher_max_new_tokens": 1024,
        "student_max_new_tokens": 512,
        "sft_lr": 2e-5,
        "sft_epochs": 3,
        "sft_batch_size": 16,
        "sft_grad_accum": 32,
        "contrastive_lr": 5e-7,
        "contrastive_epochs": 3,
        "contrastive_batch_size": 8,
        "max_source_tokens": 1024,
        "max_target_tokens": 1024,
        "timeout_s": 10.0,
        "workers": 8,
        "eval_max_new_tokens": 512,
        "eval_batch_size": 32,
    },
}


def load_soda_config(
    budget: str = "cpu",
    config: str | Path | None = None,
    overrides: list[str] | dict | None = None,
    **given: Any,
) -> SodaConfig:
    """Budget preset < YAML file < ``key=value`` overrides < ``given`` (the command's flags).

    Raises:
        ConfigError: an unknown budget or key, a wrong type or range, naming the field.
    """
    if budget not in BUDGETS:
        raise ConfigError(f"budget must be one of {list(BUDGETS)}, got {budget!r}")
    layers: list[tuple[str, dict[str, Any]]] = [(f"budget {budget}", BUDGETS[budget])]
    if config is not None:
        layers.append((str(config), load_yaml(config)))
    if overrides:
        parsed = overrides if isinstance(overrides, dict) else parse_overrides(list(overrides))
        layers.append(("command line", parsed))
    flags = {k: v for k, v in given.items() if v is not None}
    layers.append(("command line", {"budget": budget, **flags}))
    return build(SodaConfig, *layers)
