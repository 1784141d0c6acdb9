"""The classifier teacher: a head on a backbone, trained on the teacher part of the split.

On two CPU cores: by default the backbone is frozen, the pooled hidden states
(`codistill.models.classifier.pooled_hidden`) are computed once under ``no_grad`` and cached,
and only the ``score`` layer is fitted on them, as a class-balanced logistic regression by
AdamW; ``unfreeze_layers=n`` instead fine-tunes the top ``n`` layers end to end. With
``feature_cache=DIR`` the features survive the run (keyed by the backbone's weights and the
token ids), so refitting the head with other settings costs seconds instead of a forward pass
over the data. On a machine whose cores other jobs also use, ``OMP_NUM_THREADS=1`` was ~2.5x
faster than two threads for Gemma 3 270M (measured: 0.5 vs 1.26 s per 256-token pair).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from codistill.config.fields import ConfigError, to_dict
from codistill.files import sha256_file
from codistill.losses.soft_labels import class_weights
from codistill.models.classifier import ClassifierModel, build_classifier, task_input
from codistill.models.loading import count_parameters
from codistill.training.classifier.config import SPLIT_NAMES, TeacherConfig
from codistill.training.classifier.features import (
    backbone_fingerprint,
    cache_has,
    cached_features,
    ids_sha256,
)
from codistill.training.classifier.outputs import TEST_LOGITS_FILE, logit_metrics, save_with
from codistill.training.classifier.splits import (
    TaskRecord,
    label_counts,
    load_task_records,
    split_records,
    take,
)


def fit_head(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    valid_x: torch.Tensor | None,
    valid_y: torch.Tensor | None,
    *,
    num_labels: int = 2,
    epochs: int = 200,
    lr: float = 1e-3,
    weight_decay: float = 1e-2,
    batch_size: int = 64,
    seed: int = 0,
) -> tuple[torch.Tensor, dict[str, Any]]:
    """A bias-free linear head ``[num_labels, hidden]`` fitted by class-balanced AdamW.

    The head is fitted on features divided by their per-dimension RMS (Gemma's hidden states
    have a few dimensions hundreds of times larger than the rest, which would make plain
    gradient descent crawl), then the scale is folded back into the weight. No centring: the
    model's ``score`` layer has no bias, so the features' mean direction has to stand in for one.
    The weight of the epoch with the lowest class-balanced valid loss is returned (the last
    epoch's without a valid set).

    Returns:
        ``(weight, history)``, ``history`` holding the best epoch and per-epoch losses.
    """
    scale = train_x.pow(2).mean(0).sqrt().clamp_min(1e-6)
    weights = class_weights(train_y, num_labels)
    generator = torch.Generator().manual_seed(seed)
    head = torch.zeros(num_labels, train_x.shape[1], requires_grad=True)
    optimizer = torch.optim.AdamW([head], lr=lr, weight_decay=weight_decay)
    best = (math.inf, 0, head.detach().clone())
    history: dict[str, Any] = {"train_loss": [], "valid_loss": []}
    scaled = train_x / scale
    valid_scaled = valid_x / scale if valid_x is not None and len(valid_x) else None
    valid_weights = class_weights(valid_y, num_labels) if valid_scaled is not None else None
    for epoch in range(1, epochs + 1):
        order = torch.randperm(len(scaled), generator=generator)
        total = 0.0
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            loss = F.cross_entropy(scaled[rows] @ head.T, train_y[rows], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        history["train_loss"].append(round(total / len(order), 6))
        if valid_scaled is not None:
            with torch.no_grad():
                loss = float(F.cross_entropy(valid_scaled @ head.T, valid_y, weight=valid_weights))
            history["valid_loss"].append(round(loss, 6))
            if loss < best[0]:
                best = (loss, epoch, head.detach().clone())
        else:
            best = (math.inf, epoch, head.detach().clone())
    history["best_epoch"] = best[1]
    return best[2] / scale, history


def _unfreeze_top(model: Any, n: int) -> list[torch.nn.Parameter]:
    """Freezes the model but its top ``n`` layers, final norm and head; returns the unfrozen
    backbone parameters (the head is ``model.score``)."""
    layers = model.base_model.layers
    if n > len(layers):
        raise ConfigError(
            f"unfreeze_layers must be <= {len(layers)} (the backbone's layers), got {n}"
        )
    model.requires_grad_(False)
    modules = [*layers[len(layers) - n :], model.base_model.norm]
    backbone = [p for m in modules for p in m.parameters()]
    for p in [*backbone, model.score.weight]:
        p.requires_grad_(True)
    return backbone


def _finetune(
    classifier: ClassifierModel,
    ids: dict[str, list[list[int]]],
    labels: dict[str, torch.Tensor],
    cfg: TeacherConfig,
) -> dict[str, Any]:
    """Fine-tunes the top ``cfg.unfreeze_layers`` layers, final norm and head end to end with
    class-balanced CE, keeping the epoch of lowest valid loss (the last without a valid set)."""
    model, epochs = classifier.model, cfg.epochs or 2
    backbone = _unfreeze_top(model, cfg.unfreeze_layers)
    optimizer = torch.optim.AdamW(
        [
            {"params": backbone, "lr": cfg.backbone_lr},
            {"params": [model.score.weight], "lr": cfg.lr},
        ],
        weight_decay=cfg.weight_decay,
    )
    train_ids, train_y = ids["train"], labels["train"]
    weights = class_weights(train_y)
    generator = torch.Generator().manual_seed(cfg.seed)
    trainable = {n: p for n, p in model.named_parameters() if p.requires_grad}
    best: tuple[float, int, dict[str, torch.Tensor]] = (math.inf, 0, {})
    history: dict[str, Any] = {"train_loss": [], "valid_loss": []}
    for epoch in range(1, epochs + 1):
        model.train()
        order = torch.randperm(len(train_ids), generator=generator).tolist()
        total = 0.0
        for start in tqdm(
            range(0, len(order), cfg.batch_size), desc=f"epoch {epoch}", disable=not cfg.progress
        ):
            rows = order[start : start + cfg.batch_size]
            input_ids, mask = classifier.collate([train_ids[i] for i in rows])
            logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
            loss = F.cross_entropy(logits, train_y[rows], weight=weights)
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            total += float(loss.detach()) * len(rows)
        model.eval()
        history["train_loss"].append(round(total / len(order), 6))
        loss = -epoch  # no valid set: keep the last epoch
        if ids["valid"]:
            logits = classifier.logits_of_ids(ids["valid"])
            valid_y = labels["valid"]
            loss = float(F.cross_entropy(logits, valid_y, weight=class_weights(valid_y)))
            history["valid_loss"].append(round(loss, 6))
        if loss < best[0]:
            best = (loss, epoch, {n: p.detach().clone() for n, p in trainable.items()})
    with torch.no_grad():
        for name, value in best[2].items():
            trainable[name].copy_(value)
    model.requires_grad_(False)
    mode = f"top {cfg.unfreeze_layers} layers fine-tuned"
    return {"mode": mode, "epochs": epochs, **history, "best_epoch": best[1]}


def train_teacher(cfg: TeacherConfig) -> dict[str, Any]:
    """Fine-tunes a classifier teacher on the teacher part and saves it to ``cfg.out``.

    The output directory (written to a temp dir and renamed) is a Hugging Face classifier plus
    ``classifier.json`` (task, input length, split, data sha256, config, metrics on the
    teacher (``train``) / valid / test parts, timings) and ``test_logits.json`` (the teacher's
    logits on the test part, which `distill_student` reuses to measure agreement).

    Returns:
        The content of ``classifier.json``.

    Raises:
        FileNotFoundError: Missing backbone or data.
        RecordError: A malformed data line (or a file of the other task).
        ConfigError: Too few records in a part, or a bad setting.
    """
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    records = load_task_records(cfg.task, cfg.data)
    parts = split_records(records, cfg.fractions, cfg.seed)
    used = {
        "train": take(parts["teacher"], cfg.train_size),
        "valid": take(parts["valid"], cfg.valid_size),
        "test": take(parts["test"], cfg.test_size),
    }
    if len({r.label for r in used["train"]}) < 2:
        raise ConfigError(
            f"the teacher part has {len(used['train'])} records of a single class; need both "
            "labels (more data, or a larger train_size)"
        )
    torch.manual_seed(cfg.seed)
    model, tokenizer = build_classifier(cfg.backbone, cfg.task)
    classifier = ClassifierModel(model, tokenizer, cfg.task, cfg.max_length, cfg.batch_size)
    ids = {name: classifier.encode([task_input(r) for r in rs]) for name, rs in used.items()}
    labels = {name: torch.tensor([r.label for r in rs]) for name, rs in used.items()}
    seconds["load"] = time.perf_counter() - start

    if cfg.unfreeze_layers == 0:
        logits, history = _train_frozen(classifier, ids, labels, cfg, seconds)
    else:
        tick = time.perf_counter()
        history = _finetune(classifier, ids, labels, cfg)
        seconds["finetune"] = time.perf_counter() - tick
        tick = time.perf_counter()
        logits = {k: classifier.logits_of_ids(v) for k, v in ids.items()}
        seconds["evaluate"] = time.perf_counter() - tick
        seconds["forward_ms_per_input"] = _ms_per_input(seconds["evaluate"], ids)

    metrics = {k: logit_metrics(logits[k], labels[k].tolist()) for k in ids if len(ids[k])}
    seconds["total"] = time.perf_counter() - start
    meta = {
        "role": "teacher",
        "task": cfg.task,
        "backbone": str(cfg.backbone),
        "data": str(cfg.data),
        "data_sha256": sha256_file(cfg.data),
        "split": _teacher_split_meta(cfg, parts, used),
        "training": history,
        "metrics": metrics,
        "parameters": count_parameters(model),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "config": to_dict(cfg),
    }
    test_logits = {
        "ids": [r.id for r in used["test"]],
        # Keyed by content: a reader with other inputs (length, tokenizer) must not reuse them.
        "inputs_sha256": ids_sha256(ids["test"]),
        "logits": logits["test"].tolist(),
    }
    save_with(classifier, meta, cfg.out, {TEST_LOGITS_FILE: test_logits})
    return meta


def _ms_per_input(seconds: float, ids: dict[str, list[list[int]]]) -> float:
    return 1000 * seconds / max(sum(len(v) for v in ids.values()), 1)


def _train_frozen(
    classifier: ClassifierModel,
    ids: dict[str, list[list[int]]],
    labels: dict[str, torch.Tensor],
    cfg: TeacherConfig,
    seconds: dict[str, float],
) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Caches pooled features once, fits ``score`` on them; returns logits of every part."""
    tick = time.perf_counter()
    cache = Path(cfg.feature_cache) if cfg.feature_cache else None
    fingerprint = backbone_fingerprint(cfg.backbone) if cache else ""
    cached = {k: cache_has(cache, fingerprint, v) for k, v in ids.items()}
    feats = {
        k: cached_features(classifier, v, cache, fingerprint, cfg.progress, k)
        for k, v in ids.items()
    }
    seconds["features"] = time.perf_counter() - tick
    seconds["forward_ms_per_input"] = _ms_per_input(seconds["features"], ids)
    tick = time.perf_counter()
    epochs = cfg.epochs or 200
    weight, history = fit_head(
        feats["train"],
        labels["train"],
        feats["valid"],
        labels["valid"],
        epochs=epochs,
        lr=cfg.lr,
        weight_decay=cfg.weight_decay,
        batch_size=cfg.head_batch_size,
        seed=cfg.seed,
    )
    score = classifier.model.score.weight
    with torch.no_grad():
        score.copy_(weight.to(score.dtype))
    seconds["head"] = time.perf_counter() - tick
    # score(features) is exactly the saved model's forward (tested in tests/training).
    logits = {k: f @ score.detach().float().T for k, f in feats.items()}
    mode = "frozen backbone, cached features, head only"
    # Timings of features read from the cache are not forward-pass timings.
    history["features_from_cache"] = cached
    return logits, {"mode": mode, "epochs": epochs, **history}


def _teacher_split_meta(
    cfg: TeacherConfig, parts: dict[str, list[TaskRecord]], used: dict[str, list[TaskRecord]]
) -> dict[str, Any]:
    return {
        "method": "codistill.training.classifier.split_records: deterministic_split by "
        "split_key (clone: id1, defect: id), parts ordered by sha256(seed, id)",
        "seed": cfg.seed,
        "names": list(SPLIT_NAMES),
        "fractions": list(cfg.fractions),
        "sizes": {name: len(records) for name, records in parts.items()},
        "used": {
            "teacher": len(used["train"]),
            "valid": len(used["valid"]),
            "test": len(used["test"]),
        },
        "labels": {"teacher": label_counts(used["train"]), "test": label_counts(used["test"])},
        "ids": {
            "teacher": [r.id for r in used["train"]],
            "valid": [r.id for r in used["valid"]],
            "test": [r.id for r in used["test"]],
        },
    }
