"""The one configuration object of ``codistill distill`` (and ``sweep``/``quickstart``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from codistill.config.fields import (
    ConfigError,
    field,
    load_layers,
)
from codistill.data.prompts import TRUNCATIONS

# Assertion-API names whose tokens get the Trident critical-token weight in the focal loss.
DEFAULT_CRITICAL_TOKENS = [
    "assertEquals",
    "assertNotEquals",
    "assertTrue",
    "assertFalse",
    "assertNull",
    "assertNotNull",
    "assertSame",
    "assertNotSame",
    "assertArrayEquals",
    "assertThat",
    "assertThrows",
    "assertEqual",
    "assertNotEqual",
    "assertIs",
    "assertIsNot",
    "assertIsNone",
    "assertIsNotNone",
    "assertIn",
    "assertNotIn",
    "assertIsInstance",
    "assertRaises",
    "assertAlmostEqual",
    "assert",
]


TRAINABLE_TASKS = ("assertion", "codegen")
# An assertion is one line; a code solution is a whole function body or program, and a
# HumanEval-style prompt (imports, signature, docstring with examples) is longer than a test prefix.
TASK_DEFAULTS = {
    "assertion": {"max_source_tokens": 256, "max_target_tokens": 64},
    "codegen": {"max_source_tokens": 512, "max_target_tokens": 384},
}


@dataclass(kw_only=True)
class DistillConfig:
    # --- models -------------------------------------------------------------------------
    student: str = field(
        help="student model directory (e.g. from `codistill student derive`), or embedded:NAME "
        "(a pretrained model of the teacher's tokenizer, e.g. qwen2.5-coder-0.5b-instruct)"
    )
    teacher: str | None = field(
        None, help="teacher model directory; 'embedded' = Gemma 3 270M; null for CE-only runs"
    )
    teacher_cache: str | None = field(
        None,
        help="directory from `codistill teacher cache`: distil from the cached top-k "
        "teacher outputs instead of running the teacher",
    )
    teacher_dtype: str = field(
        "float32",
        help="the online teacher's weights and activations: float32, bfloat16 (about 1.7x "
        "faster on CPUs with AVX512-BF16; log-probs within ~1e-3 nats KL of float32) or auto "
        "(bfloat16 where the CPU has it)",
        choices=("float32", "bfloat16", "auto"),
    )
    hidden_layers: list[int] | None = field(
        None,
        help="for the loss term 'hidden': the teacher layer each student layer was copied "
        "from (0-based); null = the student's derivation.json (`codistill student derive`)",
    )
    # --- data ---------------------------------------------------------------------------
    train_data: str = field(help="training JSONL (records of `task`)")
    valid_data: str | None = field(None, help="validation JSONL; null = no validation")
    task: str = field(
        "assertion",
        help="task of the records: assertion (test prefix -> assertion) or codegen (prompt -> "
        "solution; records without a solution are skipped and counted in run.json)",
        choices=TRAINABLE_TASKS,
    )
    prompt_style: str = field(
        "prefix",
        help="assertion prompt: prefix (test up to the assertion; decoder-only) or placeholder "
        "(whole test with <AssertPlaceHolder>; ATLAS style)",
        choices=("prefix", "placeholder"),
    )
    prompt_mode: str = field(
        "raw",
        help="codegen prompt: raw (the prompt as is; the target continues it) or chat (one user "
        "turn of the model's chat template; the target is the fenced whole program)",
        choices=("raw", "chat"),
    )
    targets: str = field(
        "reference",
        help="what the student is trained to write: reference (the records' targets), "
        "teacher:DIR (the teacher's outputs from `codistill teacher generate --out DIR`, one "
        "example per distinct output: sequence-level KD) or teacher-verified:DIR (only outputs "
        "that passed their tests)",
    )
    max_source_tokens: int | None = field(
        None,
        help="prompt tokens kept (cut as `truncation` says); null = 256 for assertion, 512 for "
        "codegen",
        min=8,
    )
    truncation: str = field(
        "left",
        help="how a longer prompt is cut: left (keep its last tokens, the context nearest the "
        "answer) or middle (keep its first and last halves: the head of a test method stays, "
        "and the records of one method share a prefix that a llama.cpp teacher cache decodes "
        "once). `teacher cache` and `eval` must be given the same",
        choices=TRUNCATIONS,
    )
    max_target_tokens: int | None = field(
        None,
        help="target tokens kept (right-truncated); null = 64 for assertion, 384 for codegen",
        min=1,
    )
    max_train_examples: int | None = field(
        None, help="use only the first N training records", min=1
    )
    max_valid_examples: int | None = field(
        None, help="use only the first N validation records", min=1
    )
    # --- objective ----------------------------------------------------------------------
    loss: str | dict = field(
        "alpha_temperature",
        help="named objective (alpha_temperature, trident, ce) or a mapping term -> weight, "
        "a weight being a number (static) or [start, end] (linear per epoch)",
    )
    alpha: float = field(0.5, help="alpha_temperature: alpha*T^2*KL + (1-alpha)*CE", min=0, max=1)
    temperature: float = field(
        1.0, help="softmax temperature T of teacher and student", min=0, min_exclusive=True
    )
    jsd_beta: float = field(
        0.5, help="teacher weight beta of the generalized JSD term 'gjsd'", min=0, max=1
    )
    focal_alpha: float = field(0.25, help="focal loss alpha (Lin et al.)", min=0, max=1)
    focal_gamma: float = field(2.0, help="focal loss gamma (Lin et al.)", min=0)
    critical_tokens: list = field(
        default_factory=lambda: list(DEFAULT_CRITICAL_TOKENS),
        help="identifiers whose tokens get critical_weight in focal",
    )
    critical_weight: float = field(2.0, help="focal-loss multiplier on critical tokens", min=0)
    semantic_model: str | None = field(
        None, help="sentence-transformers dir for the semantic term; null = offline MiniLM-L6-v2"
    )
    semantic_samples: int = field(
        4, help="candidates sampled per example for the semantic term", min=1
    )
    semantic_max_new_tokens: int = field(48, help="length cap of sampled candidates", min=1)
    semantic_sharpness: float = field(
        1.0, help="scale of log-likelihoods in the MRT softmax", min=0, min_exclusive=True
    )
    on_policy: float = field(
        0.0,
        help="probability per micro-batch that the student samples its own continuations and "
        "the token-level teacher terms are computed on them against the online teacher "
        "(generalized KD); student-only terms skip those micro-batches",
        min=0,
        max=1,
    )
    on_policy_temperature: float = field(
        1.0, help="sampling temperature of on-policy continuations", min=0, min_exclusive=True
    )
    stop_target: str = field(
        "teacher",
        help="what the teacher terms match where the target's label is the student's EOS: "
        "teacher (its distribution there) or label (the EOS's cross-entropy: a teacher given "
        "a raw prompt was never asked to stop there, and its KL teaches the student not to; "
        "in on-policy micro-batches the EOS is the student's own choice, and takes no teacher "
        "term)",
        choices=("teacher", "label"),
    )
    # --- optimisation -------------------------------------------------------------------
    epochs: int = field(3, help="passes over the training data", min=1)
    max_steps: int | None = field(None, help="stop after N optimizer steps (budget)", min=1)
    batch_size: int = field(2, help="examples per micro-batch", min=1)
    grad_accum: int = field(1, help="micro-batches per optimizer step", min=1)
    lr: float = field(5e-5, help="peak learning rate (AdamW)", min=0, min_exclusive=True)
    weight_decay: float = field(0.01, help="AdamW decoupled weight decay", min=0)
    warmup_ratio: float = field(0.1, help="fraction of steps with linear warm-up", min=0, max=1)
    max_grad_norm: float | None = field(1.0, help="gradient clipping norm; null = none", min=0)
    dropout: float | None = field(None, help="set the student's dropout; null = keep", min=0, max=1)
    mixed_precision: str = field(
        "auto",
        help="auto (bf16 on a GPU that has it), no, bf16, fp16",
        choices=("auto", "no", "bf16", "fp16"),
    )
    loss_chunk_tokens: int = field(
        512, help="target positions per loss chunk (bounds memory)", min=1
    )
    distributed: str = field(
        "ddp",
        help="multi-process strategy under `accelerate launch`: ddp, fsdp or deepspeed "
        "(options in `fsdp` / `deepspeed`, passed to Accelerate's plugins unchanged)",
        choices=("ddp", "fsdp", "deepspeed"),
    )
    fsdp: dict | None = field(
        None, help="keyword arguments of accelerate.FullyShardedDataParallelPlugin"
    )
    deepspeed: dict | None = field(
        None, help="keyword arguments of accelerate.DeepSpeedPlugin (e.g. zero_stage: 2)"
    )
    lora: bool = field(False, help="train LoRA adapters (peft) instead of all weights")
    freeze_embeddings: bool = field(
        False,
        help="keep the token embeddings (and an untied output head) fixed; the usual choice "
        "when fine-tuning a teacher on a small task set",
    )
    lora_r: int = field(8, help="LoRA rank", min=1)
    lora_alpha: int = field(16, help="LoRA alpha", min=1)
    seed: int = field(42, help="seed of weights, data order and sampling")
    # --- validation, checkpoints, logging -----------------------------------------------
    best_metric: str = field(
        "valid_loss",
        help="metric that picks the best checkpoint",
        choices=("valid_loss", "valid_exact_match"),
    )
    valid_generate: int = field(
        0,
        help="validation records also decoded for exact match "
        "(0 = none; required for best_metric=valid_exact_match)",
        min=0,
    )
    max_new_tokens: int = field(48, help="generation length cap in validation", min=1)
    valid_every_steps: int | None = field(
        None,
        help="also validate before the first step and every N optimizer steps (quality-vs-steps "
        "curves); null = at epoch ends only",
        min=1,
    )
    save_every_steps: int | None = field(
        None, help="also checkpoint every N optimizer steps", min=1
    )
    halt_after_steps: int | None = field(
        None,
        help="stop this invocation after N optimizer steps, leaving a resumable "
        "checkpoint (as if killed)",
        min=1,
    )
    log_every: int = field(10, help="optimizer steps between log lines", min=1)
    tensorboard: bool = field(False, help="log to TensorBoard through Accelerate's trackers")
    progress: bool = field(True, help="show a progress bar")
    output_dir: str = field("runs/distill", help="run directory (created; must be new or a resume)")

    def loss_settings(self) -> dict[str, float]:
        """The settings ``parse_objective(self.loss, **settings)`` binds into the loss terms."""
        return {
            "alpha": self.alpha,
            "temperature": self.temperature,
            "jsd_beta": self.jsd_beta,
            "focal_alpha": self.focal_alpha,
            "focal_gamma": self.focal_gamma,
        }

    def check(self) -> None:
        from codistill.losses.objective import parse_objective  # lazy: torch (`--help` skips it)

        try:
            objective = parse_objective(self.loss, **self.loss_settings())
        except ValueError as exc:  # losses raise ValueError; here it is a config error
            raise ConfigError(str(exc)) from None
        if objective.has_hidden and (self.teacher is None or self.teacher_cache is not None):
            raise ConfigError(
                "loss term 'hidden' needs the online teacher's hidden states: set teacher=DIR "
                "and no teacher_cache (a cache holds only the teacher's top-k log-probs)"
            )
        if objective.needs_teacher and self.teacher is None and self.teacher_cache is None:
            raise ConfigError(
                f"loss {self.loss!r} needs a teacher: set teacher=DIR or teacher_cache=DIR"
            )
        if self.hidden_layers is not None and not objective.has_hidden:
            raise ConfigError(
                f"hidden_layers is for the loss term 'hidden', which loss {self.loss!r} lacks"
            )
        if self.hidden_layers is not None and not all(
            isinstance(x, int) and not isinstance(x, bool) and x >= 0 for x in self.hidden_layers
        ):
            raise ConfigError(
                "hidden_layers must be teacher layer indices (ints >= 0), "
                f"got {self.hidden_layers!r}"
            )
        if self.best_metric == "valid_exact_match" and not self.valid_generate:
            raise ConfigError("best_metric=valid_exact_match needs valid_generate > 0")
        if self.prompt_mode == "chat" and self.task != "codegen":
            raise ConfigError("prompt_mode=chat is for task=codegen; assertions are prompted raw")
        parse_targets(self.targets)
        if self.on_policy > 0:
            if self.teacher_cache is not None:
                raise ConfigError(
                    "on_policy > 0 needs the online teacher (teacher=DIR): a teacher_cache "
                    "cannot score sequences the student samples during training"
                )
            if not objective.needs_teacher:
                raise ConfigError(
                    f"on_policy > 0 needs a teacher term in loss (kl, reverse_kl, jsd, gjsd); "
                    f"loss {self.loss!r} has none, so there is nothing to distil"
                )
        # Task-dependent lengths, resolved once so run.json records the values used.
        if self.max_source_tokens is None:
            self.max_source_tokens = TASK_DEFAULTS[self.task]["max_source_tokens"]
        if self.max_target_tokens is None:
            self.max_target_tokens = TASK_DEFAULTS[self.task]["max_target_tokens"]


TARGET_KINDS = ("reference", "teacher", "teacher-verified")


def parse_targets(spec: str) -> tuple[str, str | None]:
    """``reference`` -> ("reference", None); ``teacher:DIR`` / ``teacher-verified:DIR`` ->
    (kind, DIR).

    Raises:
        ConfigError: any other form.
    """
    if spec == "reference":
        return "reference", None
    kind, sep, path = spec.partition(":")
    if kind in TARGET_KINDS[1:] and sep and path:
        return kind, path
    raise ConfigError(
        f"targets must be reference, teacher:DIR or teacher-verified:DIR, got {spec!r}"
    )


def load_distill_config(
    config: str | Path | None,
    overrides: list[str] | dict | None = None,
    base: dict[str, Any] | None = None,
) -> DistillConfig:
    """Defaults < ``base`` (programmatic) < YAML file < command-line overrides."""
    preset = None if config is None else resolve_preset(config)
    return load_layers(DistillConfig, preset, overrides, base)


PRESETS_DIR = Path(__file__).resolve().parent.parent / "configs"


def resolve_preset(name: str | Path) -> Path:
    """A path as given, or the name of a shipped preset (``alpha-temperature``)."""
    path = Path(name)
    if path.is_file():
        return path
    preset = PRESETS_DIR / f"{Path(name).stem}.yaml"
    if preset.is_file():
        return preset
    names = sorted(p.stem for p in PRESETS_DIR.glob("*.yaml"))
    raise ConfigError(f"config {name} is neither a file nor a preset (presets: {', '.join(names)})")
