"""``codistill eval``: a model against the ground truth and against a reference model.

Writes ``metrics.json`` (the shape below; ``codistill report`` reads it) and
``predictions.jsonl`` (one line per record with every model's output) into the run directory::

    {"task", "data", "n", "decoding": {...},
     "models": {"student": {"path", "efficiency": {...}, "vs_truth": {...}, "vs_reference": {...}},
                "reference": {"path", "efficiency": {...}, "vs_truth": {...}}},
     "ratios": {efficiency figure: student / reference}}
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForSequenceClassification

from codistill import rundir
from codistill.config.evaluate import EvalConfig
from codistill.config.fields import ConfigError
from codistill.data.benchmarks import detect_benchmark, load_benchmark
from codistill.data.jsonl import read_records, write_text_atomic
from codistill.data.prompts import assertion_prompt, cut_text, encode_prompts
from codistill.evaluation import backends
from codistill.evaluation.assertion_metrics import assertion_metrics
from codistill.evaluation.classification import classification_metrics
from codistill.evaluation.codegen import evaluate_codegen
from codistill.evaluation.cqs import code_quality_score
from codistill.evaluation.efficiency import PeakRSS, measure_latency, ratios, rss_mb
from codistill.evaluation.generate import first_line, generate
from codistill.models.embedder import SentenceEmbedder
from codistill.models.loading import (
    count_parameters,
    dir_size_bytes,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from codistill.models.registry import resolve_model


@dataclasses.dataclass
class ModelOutputs:
    name: str
    path: str
    predictions: list[Any]
    efficiency: dict[str, float]
    probabilities: list[list[float]] | None = None


def _efficiency(model, path: str, base_rss: float, peak: PeakRSS, latency) -> dict[str, float]:
    params = count_parameters(model)
    out = {
        "params_total": params["total"],
        "params_non_embedding": params["non_embedding"],
        "size_mb": dir_size_bytes(path) / 2**20,
        "peak_memory_mb": peak.peak_mb - base_rss,
    }
    if latency is not None:
        out.update(ms_per_sample=latency.median_ms, tokens_per_s=latency.tokens_per_s)
    return out


def generate_assertions(
    name: str, path: str, records, cfg: EvalConfig, dtype: torch.dtype | None = None
) -> ModelOutputs:
    """Greedy one-line assertions for every record; latency from batch-1 decoding. ``dtype``:
    the model's (None: as saved)."""
    base = rss_mb()
    with PeakRSS() as peak:
        model, tokenizer = load_model(path, dtype), load_tokenizer(path)
        enc_dec = bool(model.config.is_encoder_decoder)
        prompts = encode_prompts(
            tokenizer, records, cfg.max_source_tokens, cfg.prompt_style, cfg.truncation
        )
        with torch.inference_mode():
            gen = generate(
                model,
                tokenizer,
                prompts,
                max_new_tokens=cfg.max_new_tokens,
                batch_size=cfg.batch_size,
                encoder_decoder=enc_dec,
            )

            def one(i: int) -> int:
                return generate(
                    model,
                    tokenizer,
                    [prompts[i]],
                    max_new_tokens=cfg.max_new_tokens,
                    batch_size=1,
                    encoder_decoder=enc_dec,
                ).new_tokens

            n_lat = min(cfg.latency_samples, len(prompts))
            latency = measure_latency(one, n_lat) if n_lat else None
    return ModelOutputs(name, path, gen.texts, _efficiency(model, path, base, peak, latency))


_COUNTS = {
    "exact_matches",
    "format_insensitive_matches",
    "generated",
    "references",
    "positives",
    "n",
}


def generate_assertions_backend(
    name: str, spec: str, path: str | None, records, cfg: EvalConfig
) -> ModelOutputs:
    """Assertions through a generation backend (an OpenAI-compatible or llama.cpp server).

    Prompts are cut to ``max_source_tokens`` with the model directory's tokenizer when one is
    given, else to 4 characters a token (the server tokenizes). Completions end at their first
    non-blank line (:func:`codistill.evaluation.backends.generate_first_lines`), as the
    in-process path's do.
    """
    if path is not None:
        tok = load_tokenizer(path)
        ids = encode_prompts(tok, records, cfg.max_source_tokens, cfg.prompt_style, cfg.truncation)
        prompts = [tok.decode(i, skip_special_tokens=True) for i in ids]
    else:
        n = 4 * cfg.max_source_tokens
        prompts = [
            cut_text(assertion_prompt(r, cfg.prompt_style), n, cfg.truncation) for r in records
        ]
    backend = backends.make_backend(spec)
    try:
        done = backends.generate_first_lines(backend, prompts, max_new_tokens=cfg.max_new_tokens)
        n_lat = min(cfg.latency_samples, len(prompts))
        latency = None
        if n_lat:

            def one(i: int) -> int:
                line = backends.generate_first_lines(
                    backend, [prompts[i]], max_new_tokens=cfg.max_new_tokens
                )
                return line[0].tokens

            latency = measure_latency(one, n_lat)
    finally:
        backend.close()
    eff: dict[str, float] = {"backend": spec}
    target = Path(spec.partition(":")[2])
    if target.is_file():
        eff["size_mb"] = target.stat().st_size / 2**20
    if latency is not None:
        eff.update(ms_per_sample=latency.median_ms, tokens_per_s=latency.tokens_per_s)
    return ModelOutputs(name, spec, [first_line(c.text) for c in done], eff)


def score_assertions(
    predictions: list[str], references: list[str], language: str, cfg: EvalConfig
) -> dict[str, float]:
    """The alpha-T metrics and, with ``cfg.cqs``, the Code Quality Score and its components.

    Every value is a score in [0, 1]; the counts behind them are under ``"counts"``.
    """
    scores = assertion_metrics(predictions, references, casefold=cfg.casefold, language=language)
    if cfg.cqs:
        cqs = code_quality_score(
            predictions,
            references,
            language,
            embedder=_embedder(cfg.semantic_model),
            javac=cfg.javac and language == "java",
        )
        scores.update({k: v for k, v in cqs.items() if isinstance(v, int | float)})
        parts = cqs.get("codebleu_components", {})
        for key in ("ngram_match", "weighted_ngram_match", "syntax_match", "dataflow_match"):
            if key in parts:  # dataflow_match apart: codebleu scores "no data flow" as 1
                scores[f"codebleu_{key}"] = parts[key]
        if "pairs_without_dataflow" in parts:
            scores["pairs_without_dataflow"] = parts["pairs_without_dataflow"]
    return _split_counts(scores)


@functools.lru_cache(maxsize=2)
def _embedder(model_path: str | None):
    """One sentence-embedding model per run, shared by every comparison that scores CQS."""
    return SentenceEmbedder(model_path)


def _split_counts(scores: dict) -> dict:
    """Scores in [0, 1] at the top level, the counts behind them under ``"counts"``."""
    counts = {k: scores.pop(k) for k in list(scores) if k in _COUNTS or k.startswith("pairs_")}
    return {**scores, "counts": counts}


def evaluate_assertions(cfg: EvalConfig, records) -> tuple[dict, list[dict]]:
    truth = [r.target for r in records]
    language = records[0].language
    outputs = {}
    for name, path, spec in (
        ("student", cfg.model, cfg.model_backend),
        ("reference", cfg.reference, cfg.reference_backend),
    ):
        if spec is not None:
            outputs[name] = generate_assertions_backend(name, spec, path, records, cfg)
        elif path is not None:
            dtype = resolve_dtype(cfg.reference_dtype) if name == "reference" else None
            outputs[name] = generate_assertions(name, path, records, cfg, dtype)
    models = {}
    for name, out in outputs.items():
        entry = {
            "path": out.path,
            "efficiency": out.efficiency,
            "vs_truth": score_assertions(out.predictions, truth, language, cfg),
        }
        if name == "student" and "reference" in outputs:
            entry["vs_reference"] = score_assertions(
                out.predictions, outputs["reference"].predictions, language, cfg
            )
        models[name] = entry
    rows = [
        {"id": r.id, "target": r.target, **{n: o.predictions[i] for n, o in outputs.items()}}
        for i, r in enumerate(records)
    ]
    return models, rows


def classify(name: str, path: str, texts: list, cfg: EvalConfig) -> ModelOutputs:
    """Labels and class probabilities of a sequence-classification model."""
    base = rss_mb()
    with PeakRSS() as peak:
        model = AutoModelForSequenceClassification.from_pretrained(path).eval()
        tokenizer = load_tokenizer(path)
        probs: list[list[float]] = []
        start = time.perf_counter()
        with torch.inference_mode():
            for i in range(0, len(texts), cfg.batch_size):
                chunk = texts[i : i + cfg.batch_size]
                pair = isinstance(chunk[0], tuple)
                enc = tokenizer(
                    *(zip(*chunk, strict=True) if pair else (chunk,)),
                    truncation=True,
                    max_length=cfg.max_source_tokens,
                    padding=True,
                    return_tensors="pt",
                )
                probs += torch.softmax(model(**enc).logits.float(), -1).tolist()
        seconds = time.perf_counter() - start
    eff = _efficiency(model, path, base, peak, None)
    eff["ms_per_sample"] = 1000 * seconds / max(len(texts), 1)
    preds = [max(range(len(p)), key=p.__getitem__) for p in probs]
    return ModelOutputs(name, path, preds, eff, probs)


def evaluate_classification(cfg: EvalConfig, records) -> tuple[dict, list[dict]]:
    if cfg.task == "clone":
        texts = [(r.code1, r.code2) for r in records]
    else:
        texts = [r.code for r in records]
    labels = [r.label for r in records]
    outputs = {"student": classify("student", cfg.model, texts, cfg)}
    if cfg.reference:
        outputs["reference"] = classify("reference", cfg.reference, texts, cfg)
    models = {}
    for name, out in outputs.items():
        entry = {
            "path": out.path,
            "efficiency": out.efficiency,
            "vs_truth": _split_counts(classification_metrics(out.predictions, labels)),
        }
        if name == "student" and "reference" in outputs:
            ref = outputs["reference"].predictions
            entry["vs_reference"] = _split_counts(classification_metrics(out.predictions, ref))
        models[name] = entry
    rows = [
        {
            "id": r.id,
            "label": r.label,
            **{
                n: {"prediction": o.predictions[i], "probabilities": o.probabilities[i]}
                for n, o in outputs.items()
            },
        }
        for i, r in enumerate(records)
    ]
    return models, rows


def _read_eval_records(cfg: EvalConfig) -> list:
    """The task's records: codistill JSONL, or for code generation a benchmark's own file
    (HumanEval/HumanEval+ JSONL, gzipped or not, MBPP JSON/JSONL), detected by its fields."""
    if cfg.task == "codegen":
        kind = detect_benchmark(cfg.data)
        if kind is not None:
            print(f"codistill eval: reading {cfg.data} as {kind}")
            return load_benchmark(kind, cfg.data)
    return read_records(cfg.data, task=cfg.task)


def run_eval(cfg: EvalConfig) -> dict:
    """Evaluate, write ``metrics.json`` and ``predictions.jsonl``, return the metrics."""
    out = rundir.prepare_run_dir(cfg.output_dir, resume=False)
    records = _read_eval_records(cfg)[: cfg.max_examples]
    if not records:
        raise ValueError(f"{cfg.data}: no records")
    # embedded / embedded:NAME: converted once, then evaluated as a plain directory.
    cfg = dataclasses.replace(
        cfg, model=resolve_model(cfg.model), reference=resolve_model(cfg.reference)
    )
    started = time.time()
    if cfg.task == "assertion":
        models, rows = evaluate_assertions(cfg, records)
    elif cfg.task == "codegen":
        untested = [r.id for r in records if not r.tests.strip()]
        if untested:  # training-only records (mined functions) cannot judge a candidate
            raise ConfigError(
                f"{cfg.data}: {len(untested)} codegen records have no tests (first: "
                f"{untested[0]}); pass@k needs tests"
            )
        models, rows = evaluate_codegen(cfg, records)
    else:
        models, rows = evaluate_classification(cfg, records)
    metrics = {
        "task": cfg.task,
        "data": cfg.data,
        "n": len(records),
        "config": dataclasses.asdict(cfg),
        "versions": rundir.versions(),
        "models": models,
        "wall_seconds": time.time() - started,
    }
    if cfg.task == "assertion":  # how predictions and references were compared (alpha-T Sec. 3)
        metrics["normalisation"] = "whitespace collapsed" + (", case folded" * cfg.casefold)
        metrics["language"] = records[0].language
    if cfg.task == "codegen":
        metrics["prompt_mode"] = cfg.prompt_mode
    if "reference" in models and "efficiency" in models["student"]:
        metrics["ratios"] = ratios(
            models["student"]["efficiency"], models["reference"]["efficiency"]
        )
    rundir.write_json(out / "metrics.json", metrics)
    write_records_plain(out / "predictions.jsonl", rows)
    return metrics


def write_records_plain(path: Path, rows: list[dict]) -> None:
    """Predictions as JSONL (atomic), one object per record."""
    write_text_atomic(path, "".join(json.dumps(r, default=str) + "\n" for r in rows))


def render_table(metrics: dict) -> str:
    """The metrics as a Markdown table: a row per model and comparison, a column per metric."""
    rows, keys = [], []
    for name, entry in metrics["models"].items():
        for against in ("vs_truth", "vs_reference"):
            if against in entry:
                values = {
                    k: v
                    for k, v in entry[against].items()
                    if isinstance(v, float) and k not in _COUNTS
                }
                keys += [k for k in values if k not in keys]
                rows.append((f"{name} {against.replace('_', ' ')}", values))
    lines = ["| | " + " | ".join(keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for label, values in rows:
        cells = [f"{values[k]:.3f}" if k in values else "" for k in keys]
        lines.append(f"| {label} | " + " | ".join(cells) + " |")
    eff = {n: e.get("efficiency", {}) for n, e in metrics["models"].items()}
    ekeys = list(dict.fromkeys(k for e in eff.values() for k in e))
    if ekeys:
        lines += ["", "| efficiency | " + " | ".join(ekeys) + " |", "|---" * (len(ekeys) + 1) + "|"]
        for name, e in eff.items():
            lines.append(f"| {name} | " + " | ".join(_fmt(e.get(k)) for k in ekeys) + " |")
        if metrics.get("ratios"):
            r = metrics["ratios"]
            lines.append(
                "| student / reference | "
                + " | ".join(f"{r[k]:.2f}x" if k in r else "" for k in ekeys)
                + " |"
            )
    return "\n".join(lines)


def _fmt(value) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.1f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)
