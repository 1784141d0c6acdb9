"""A classifier teacher fine-tuned on labels, and a student distilled from its soft labels.

This is how the compression papers that MetaCompress tests build their models (Compressor,
AVATAR, MORPH on BigCloneBench and Devign): the labelled data is cut in two, one part fine-tunes
the teacher, the other is treated as *unlabelled* and only the teacher's output distribution on
it trains the student. Here the data file is split by a hash of each record's key
(`split_records`) into four disjoint parts:

==============  =====================================================  =========================
part            used for                                               default share
==============  =====================================================  =========================
``teacher``     the teacher's labelled training set                    0.40
``unlabeled``   the student's training inputs; labels unused unless    0.40
                ``alpha > 0``
``valid``       picking the teacher head's best epoch                  0.05
``test``        held-out accuracy / F1 of both models                  0.15
==============  =====================================================  =========================

Clone pairs are split by their first function's id (``id1``), so the pairs of one function stay
in one part (a function can still appear as the *second* member of pairs in several parts);
defects by their id. Within a part records are ordered by a seeded hash of their id, so
``train_size=N`` keeps a sample that does not depend on the file's order, and a larger ``N``
keeps a superset. Everything needed to rebuild the parts (seed, shares, the ids used) is stored
in ``classifier.json``, with the data file's sha256.

`train_teacher` on two CPU cores: by default the backbone is frozen, the pooled hidden states
(`codistill.models.classifier.pooled_hidden`) are computed once under ``no_grad`` and cached,
and only the ``score`` layer is fitted on them, as a class-balanced logistic regression by
AdamW; ``unfreeze_layers=n`` instead fine-tunes the top ``n`` layers end to end. With
``feature_cache=DIR`` the features survive the run (keyed by the backbone's weights and the
token ids), so refitting the head with other settings costs seconds instead of a forward pass
over the data. On a machine whose cores other jobs also use, ``OMP_NUM_THREADS=1`` was ~2.5x
faster than two threads for Gemma 3 270M (measured: 0.5 vs 1.26 s per 256-token pair).

`distill_student`: the student is derived from the teacher (evenly spaced layers copied, the
vocabulary trimmed to the unlabelled corpus, see `codistill.models.student`), starts from the
teacher's ``score`` weights, and is trained on ``T²·KL(p_teacher^T ‖ p_student^T)`` over the
unlabelled part, optionally mixed with cross-entropy on its true labels (``alpha``, default 0).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from codistill.config.fields import ConfigError, build, field, to_dict
from codistill.data.benchmarks import deterministic_split, load_bigclonebench, load_devign
from codistill.data.jsonl import read_records
from codistill.data.schema import CloneRecord, DefectRecord, RecordError
from codistill.evaluation.classification import classification_metrics
from codistill.files import sha256_file
from codistill.losses.divergences import forward_kl
from codistill.models.classifier import (
    TASK_LABELS,
    ClassifierModel,
    build_classifier,
    check_task,
    pooled_hidden,
    quiet_transformers,
    read_classifier_json,
    replace_dir,
    set_input_format,
    task_input,
)
from codistill.models.loading import count_parameters

SPLIT_NAMES = ("teacher", "unlabeled", "valid", "test")
TEST_LOGITS_FILE = "test_logits.json"

TaskRecord = CloneRecord | DefectRecord
_EXPECTED_FIELDS = {
    "clone": "BigCloneBench lines with id1, id2, code1, code2, label",
    "defect": "Devign lines with idx, project, commit_id, func, target",
}


# --- configuration ---------------------------------------------------------------------------


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


# --- data --------------------------------------------------------------------------------------


def load_task_records(task: str, path: str | Path) -> list[TaskRecord]:
    """Clone or defect records from CodeXGLUE JSONL or from codistill's own record JSONL.

    Raises:
        FileNotFoundError: The file is missing.
        RecordError: A line is malformed (e.g. a Devign file read as ``clone``).
    """
    check_task(task)
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{task} data file not found: {path}")
    with open(path, encoding="utf-8", errors="replace") as fh:
        first = next((line for line in fh if line.strip()), "")
    try:
        own_format = {"id", "label", "language"} <= set(json.loads(first))
    except (json.JSONDecodeError, TypeError):
        own_format = False
    try:
        if own_format:
            return read_records(path, task=task)  # type: ignore[return-value]
        return load_bigclonebench(path) if task == "clone" else load_devign(path)
    except RecordError as err:
        if not err.cause.startswith("field"):
            raise
        raise RecordError(
            f"{err.reason} (is this a {task} file? expected {_EXPECTED_FIELDS[task]})",
            where=err.where,
            cause=err.cause,
        ) from None


def split_key(record: TaskRecord) -> str:
    """What decides a record's part: a clone pair's first function id, else the record id."""
    if isinstance(record, CloneRecord):
        return str(record.extra.get("id1", record.id))
    return record.id


def _rank(seed: int, record_id: str) -> str:
    return hashlib.sha256(f"order\0{seed}\0{record_id}".encode()).hexdigest()


def split_records(
    records: Sequence[TaskRecord], fractions: Sequence[float], seed: int
) -> dict[str, list[TaskRecord]]:
    """The four parts of `SPLIT_NAMES`, each ordered by a seeded hash of the record id."""
    check_fractions(fractions)
    parts = deterministic_split(
        records, key=split_key, fractions=fractions, seed=seed, names=SPLIT_NAMES
    )
    return {name: sorted(part, key=lambda r: _rank(seed, r.id)) for name, part in parts.items()}


def _take(records: list[TaskRecord], n: int | None) -> list[TaskRecord]:
    return records if n is None else records[:n]


def _label_counts(records: Sequence[TaskRecord]) -> dict[str, int]:
    return {str(c): sum(r.label == c for r in records) for c in (0, 1)}


# --- shared maths ------------------------------------------------------------------------------


def class_weights(labels: torch.Tensor, num_labels: int = 2) -> torch.Tensor:
    """Inverse-frequency weights ``n / (num_labels · count_c)`` (1 for every class if balanced);
    a class absent from ``labels`` gets weight 0."""
    counts = torch.bincount(labels, minlength=num_labels).float()
    weights = labels.numel() / (num_labels * counts.clamp_min(1))
    return torch.where(counts > 0, weights, torch.zeros_like(weights))


def soft_label_loss(
    student_logits: torch.Tensor,
    teacher_logits: torch.Tensor,
    temperature: float,
    labels: torch.Tensor | None = None,
    alpha: float = 0.0,
) -> torch.Tensor:
    """``(1 − α)·T²·KL(p_t^T ‖ p_s^T) + α·CE(p_s, y)``, averaged over the batch.

    Args:
        student_logits: ``[batch, num_labels]``.
        teacher_logits: ``[batch, num_labels]``, treated as a constant.
        temperature: T > 0.
        labels: ``[batch]`` true labels; needed only when ``alpha > 0``.
        alpha: Weight of the hard-label term, in [0, 1].
    """
    mask = torch.ones(student_logits.shape[0], 1, dtype=torch.bool, device=student_logits.device)
    soft = forward_kl(student_logits[:, None], teacher_logits[:, None], mask, temperature)
    if alpha == 0:
        return soft
    if labels is None:
        raise ValueError("alpha > 0 needs labels")
    return (1 - alpha) * soft + alpha * F.cross_entropy(student_logits.float(), labels)


def mean_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor) -> float:
    """Mean KL(p_teacher ‖ p_student) at temperature 1, in nats."""
    return float(soft_label_loss(student_logits, teacher_logits, 1.0))


def _metrics(logits: torch.Tensor, labels: Sequence[int]) -> dict[str, float]:
    predictions = logits.argmax(-1).tolist()
    out = classification_metrics(predictions, list(labels))
    target = torch.tensor(list(labels), dtype=torch.long)
    out["loss"] = float(F.cross_entropy(logits.float(), target)) if len(target) else 0.0
    return {k: round(v, 6) for k, v in out.items()}


def _features(
    classifier: ClassifierModel, ids: list[list[int]], progress: bool, what: str
) -> torch.Tensor:
    """Pooled hidden states ``[n, hidden]`` of encoded inputs (batched by length, in order)."""
    model = classifier.model
    out = torch.empty((len(ids), model.config.hidden_size))
    order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
    bar = tqdm(total=len(ids), desc=f"features {what}", disable=not progress, unit="input")
    with torch.inference_mode():
        for start in range(0, len(order), classifier.batch_size):
            chunk = order[start : start + classifier.batch_size]
            input_ids, mask = classifier.collate([ids[i] for i in chunk])
            out[chunk] = pooled_hidden(model, input_ids, mask).float().cpu()
            bar.update(len(chunk))
    bar.close()
    return out


def backbone_fingerprint(path: str | Path) -> str:
    """sha256 of a model directory's config and weight files (what its features depend on)."""
    digest = hashlib.sha256()
    files = sorted(Path(path).glob("*.safetensors")) + sorted(Path(path).glob("*.bin"))
    for file in [Path(path) / "config.json", *files]:
        digest.update(file.name.encode() + b"\0" + sha256_file(file).encode())
    return digest.hexdigest()


def _cache_file(cache: Path, fingerprint: str, ids: list[list[int]]) -> Path:
    key = hashlib.sha256(f"{fingerprint}\0pooled-last-token\0{_ids_sha256(ids)}".encode())
    return cache / f"{key.hexdigest()}.pt"


def _cache_has(cache: Path | None, fingerprint: str, ids: list[list[int]]) -> bool:
    return cache is not None and _cache_file(cache, fingerprint, ids).is_file()


def cached_features(
    classifier: ClassifierModel,
    ids: list[list[int]],
    cache: Path | None,
    fingerprint: str,
    progress: bool,
    what: str,
) -> torch.Tensor:
    """`_features`, read from / written to ``cache`` under a key of the backbone fingerprint
    and the exact token ids, so a changed input length or tokenizer never reuses an entry."""
    if cache is None:
        return _features(classifier, ids, progress, what)
    file = _cache_file(cache, fingerprint, ids)
    if file.is_file():
        return torch.load(file)
    features = _features(classifier, ids, progress, what)
    cache.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{file.name}.", dir=cache)
    os.close(fd)
    torch.save(features, tmp)
    os.replace(tmp, file)
    return features


# --- teacher -----------------------------------------------------------------------------------


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
        "train": _take(parts["teacher"], cfg.train_size),
        "valid": _take(parts["valid"], cfg.valid_size),
        "test": _take(parts["test"], cfg.test_size),
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

    metrics = {k: _metrics(logits[k], labels[k].tolist()) for k in ids if len(ids[k])}
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
        "inputs_sha256": _ids_sha256(ids["test"]),
        "logits": logits["test"].tolist(),
    }
    _save_with(classifier, meta, cfg.out, {TEST_LOGITS_FILE: test_logits})
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
    cached = {k: _cache_has(cache, fingerprint, v) for k, v in ids.items()}
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
        "labels": {"teacher": _label_counts(used["train"]), "test": _label_counts(used["test"])},
        "ids": {
            "teacher": [r.id for r in used["train"]],
            "valid": [r.id for r in used["valid"]],
            "test": [r.id for r in used["test"]],
        },
    }


def _ids_sha256(ids: list[list[int]]) -> str:
    return hashlib.sha256(json.dumps(ids).encode()).hexdigest()


def _save_with(
    classifier: ClassifierModel, meta: dict[str, Any], out: str, extra: dict[str, Any]
) -> None:
    """Saves the classifier with ``extra`` JSON files, all appearing at once."""
    out_path = Path(out)
    out_path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{out_path.name}.", dir=out_path.parent) as tmp:
        staged = Path(tmp) / "out"
        classifier.save(staged, meta)
        for name, content in extra.items():
            (staged / name).write_text(json.dumps(content) + "\n")
        replace_dir(staged, out_path)


# --- student -----------------------------------------------------------------------------------


def _derive(
    teacher_dir: Path, layers: Any, texts: list[str] | None
) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """``(model, tokenizer, derivation summary, token map)`` of a student classifier derived
    from the teacher directory: fewer layers, optionally a trimmed vocabulary."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from codistill.models.student import derive_student

    with tempfile.TemporaryDirectory(prefix=".derive-") as tmp:
        work = Path(tmp) / "student"
        with quiet_transformers():
            summary = derive_student(teacher_dir, work, layers, vocab_texts=texts)
            model = AutoModelForSequenceClassification.from_pretrained(work, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(work)
        token_map = json.loads((work / "token_map.json").read_text())
    set_input_format(tokenizer)
    return model.eval(), tokenizer, summary, token_map


def distill_student(cfg: StudentConfig) -> dict[str, Any]:
    """Distils a smaller classifier from a teacher's soft labels on the unlabelled part.

    Steps: re-split ``cfg.data`` exactly as the teacher did (the file must be the same, by
    sha256); compute the teacher's logits on the unlabelled inputs; derive the student
    (``cfg.layers`` layers, vocabulary trimmed to the unlabelled corpus) and copy the teacher's
    ``score`` weight into it; train ``cfg.steps`` AdamW steps on `soft_label_loss`; measure on
    the teacher's test part accuracy / F1 against the labels, agreement with the teacher and
    KL to the teacher before and after training; save to ``cfg.out`` atomically.

    Returns:
        The content of the student's ``classifier.json``.

    Raises:
        FileNotFoundError: Teacher directory or data file missing.
        ConfigError: The data differ from the teacher's, or a bad setting.
    """
    start = time.perf_counter()
    seconds: dict[str, float] = {}
    teacher_dir = Path(cfg.teacher)
    tmeta = read_classifier_json(teacher_dir)
    if tmeta.get("role") != "teacher" or "split" not in tmeta:
        raise ConfigError(f"{teacher_dir} is not a classifier teacher made by train_teacher")
    task, split = tmeta["task"], tmeta["split"]
    unlabeled, test = _student_parts(cfg, tmeta)
    teacher = ClassifierModel.load(teacher_dir, batch_size=cfg.batch_size)
    seconds["load"] = time.perf_counter() - start

    tick = time.perf_counter()
    unl_inputs = [task_input(r) for r in unlabeled]
    test_inputs = [task_input(r) for r in test]
    teacher_unl = _teacher_logits(teacher, unl_inputs, cfg.progress, "teacher soft labels")
    teacher_test = _stored_test_logits(teacher, teacher_dir, test_inputs, cfg.progress)
    seconds["teacher_logits"] = time.perf_counter() - tick

    tick = time.perf_counter()
    texts = [t for x in unl_inputs for t in (x if isinstance(x, tuple) else (x,))]
    model, tokenizer, derivation, token_map = _derive(
        teacher_dir, cfg.layers, texts if cfg.trim_vocab else None
    )
    with torch.no_grad():
        model.score.weight.copy_(teacher.model.score.weight)
    student = ClassifierModel(model, tokenizer, task, teacher.max_length, cfg.batch_size)
    seconds["derive"] = time.perf_counter() - tick

    tick = time.perf_counter()
    unl_ids = student.encode(unl_inputs)
    test_ids = student.encode(test_inputs)
    before = student.logits_of_ids(test_ids)
    seconds["evaluate_before"] = time.perf_counter() - tick

    tick = time.perf_counter()
    unl_labels = torch.tensor([r.label for r in unlabeled], dtype=torch.long)
    history = _distill_loop(student, unl_ids, teacher_unl, unl_labels, cfg)
    seconds["train"] = time.perf_counter() - tick

    tick = time.perf_counter()
    after = student.logits_of_ids(test_ids)
    seconds["evaluate"] = time.perf_counter() - tick
    seconds["student_forward_ms_per_input"] = 1000 * seconds["evaluate"] / max(len(test_ids), 1)
    labels = [r.label for r in test]
    metrics = {
        "test": _metrics(after, labels),
        "test_before_training": _metrics(before, labels),
        "teacher_test": _metrics(teacher_test, labels),
        "agreement_with_teacher": _metrics(after, teacher_test.argmax(-1).tolist()),
        "kl_to_teacher_test": {
            "before": round(mean_kl(before, teacher_test), 6),
            "after": round(mean_kl(after, teacher_test), 6),
        },
    }
    seconds["total"] = time.perf_counter() - start
    meta = {
        "role": "student",
        "task": task,
        "teacher": str(teacher_dir),
        "data": str(cfg.data),
        "data_sha256": tmeta["data_sha256"],
        "split": {
            **{k: split[k] for k in ("method", "seed", "names", "fractions", "sizes")},
            "used": {"unlabeled": len(unlabeled), "test": len(test)},
            "labels_used_in_training": cfg.alpha > 0,
            "ids": {"unlabeled": [r.id for r in unlabeled], "test": split["ids"]["test"]},
        },
        "training": {"objective": _objective(cfg), **history},
        "derivation": derivation,
        "metrics": metrics,
        "parameters": count_parameters(model),
        "teacher_parameters": tmeta.get("parameters"),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "config": to_dict(cfg),
    }
    _save_with(student, meta, cfg.out, {"token_map.json": token_map})
    return meta


def _student_parts(
    cfg: StudentConfig, tmeta: dict[str, Any]
) -> tuple[list[TaskRecord], list[TaskRecord]]:
    """The unlabeled records (first ``cfg.unlabeled_size``) and the teacher's test records."""
    records = load_task_records(tmeta["task"], cfg.data)
    if sha256_file(cfg.data) != tmeta["data_sha256"]:
        raise ConfigError(
            f"{cfg.data} is not the file the teacher was trained on ({tmeta['data']}, sha256 "
            f"{tmeta['data_sha256'][:12]}...): the split would not be the teacher's"
        )
    split = tmeta["split"]
    parts = split_records(records, split["fractions"], split["seed"])
    unlabeled = _take(parts["unlabeled"], cfg.unlabeled_size)
    if not unlabeled:
        raise ConfigError("the unlabeled part is empty: raise its share in the teacher's split")
    by_id = {r.id: r for r in records}
    return unlabeled, [by_id[i] for i in split["ids"]["test"]]


def _objective(cfg: StudentConfig) -> str:
    kd = f"T^2 KL(teacher || student) at T={cfg.temperature:g}"
    return kd if cfg.alpha == 0 else f"{1 - cfg.alpha:g} * {kd} + {cfg.alpha:g} * CE(labels)"


def _teacher_logits(
    teacher: ClassifierModel, inputs: list[Any], progress: bool, what: str
) -> torch.Tensor:
    ids = teacher.encode(inputs)
    chunks = []
    bar = tqdm(total=len(ids), desc=what, disable=not progress, unit="input")
    step = max(teacher.batch_size * 8, 1)
    for start in range(0, len(ids), step):
        chunks.append(teacher.logits_of_ids(ids[start : start + step]))
        bar.update(len(chunks[-1]))
    bar.close()
    return torch.cat(chunks) if chunks else torch.zeros((0, 2))


def _stored_test_logits(
    teacher: ClassifierModel, teacher_dir: Path, inputs: list[Any], progress: bool
) -> torch.Tensor:
    """The teacher's test logits from ``test_logits.json`` when they are for these very inputs,
    else computed."""
    file = teacher_dir / TEST_LOGITS_FILE
    if file.is_file():
        stored = json.loads(file.read_text())
        if stored.get("inputs_sha256") == _ids_sha256(teacher.encode(inputs)):
            return torch.tensor(stored["logits"], dtype=torch.float32)
    return _teacher_logits(teacher, inputs, progress, "teacher test logits")


def _distill_loop(
    student: ClassifierModel,
    ids: list[list[int]],
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    cfg: StudentConfig,
) -> dict[str, Any]:
    """``cfg.steps`` AdamW steps of `soft_label_loss`, linear warm-up then linear decay."""
    model = student.model
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    warmup = max(1, round(cfg.warmup * cfg.steps))
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer,
        lambda s: min((s + 1) / warmup, max(0.0, (cfg.steps - s) / max(cfg.steps - warmup, 1))),
    )
    generator = torch.Generator().manual_seed(cfg.seed)
    order: list[int] = []
    losses: list[float] = []
    model.train()
    bar = tqdm(total=cfg.steps, desc="distil", disable=not cfg.progress)
    for _ in range(cfg.steps):
        if len(order) < cfg.batch_size:
            order += torch.randperm(len(ids), generator=generator).tolist()
        rows, order = order[: cfg.batch_size], order[cfg.batch_size :]
        input_ids, mask = student.collate([ids[i] for i in rows])
        logits = model(input_ids=input_ids, attention_mask=mask).logits.float()
        loss = soft_label_loss(
            logits, teacher_logits[rows], cfg.temperature, labels[rows], cfg.alpha
        )
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        losses.append(float(loss.detach()))
        bar.update(1)
        bar.set_postfix(loss=f"{losses[-1]:.4f}")
    bar.close()
    model.eval()
    model.requires_grad_(False)
    window = max(1, min(20, cfg.steps // 5))
    return {
        "steps": cfg.steps,
        "loss_first": round(sum(losses[:window]) / window, 6),
        "loss_last": round(sum(losses[-window:]) / window, 6),
        "loss_every_10": [
            round(sum(losses[i : i + 10]) / len(losses[i : i + 10]), 6)
            for i in range(0, len(losses), 10)
        ],
    }
