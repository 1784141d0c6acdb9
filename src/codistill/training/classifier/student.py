"""The classifier student: fewer layers, distilled from the teacher's soft labels.

The student is derived from the teacher (evenly spaced layers copied, the vocabulary trimmed to
the unlabelled corpus, see `codistill.models.student`), starts from the teacher's ``score``
weights, and is trained on ``T²·KL(p_teacher^T ‖ p_student^T)`` over the unlabelled part,
optionally mixed with cross-entropy on its true labels (``alpha``, default 0).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from codistill.config.fields import ConfigError, to_dict
from codistill.files import sha256_file
from codistill.losses.soft_labels import mean_kl, soft_label_loss
from codistill.models.classifier import (
    ClassifierModel,
    quiet_transformers,
    read_classifier_json,
    set_input_format,
    task_input,
)
from codistill.models.loading import count_parameters
from codistill.models.student import derive_student
from codistill.training.classifier.config import StudentConfig
from codistill.training.classifier.features import ids_sha256
from codistill.training.classifier.outputs import TEST_LOGITS_FILE, logit_metrics, save_with
from codistill.training.classifier.splits import (
    TaskRecord,
    load_task_records,
    split_records,
    take,
)
from codistill.training.loop import linear_schedule


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
    student, derivation, token_map = _student_of(teacher, teacher_dir, unl_inputs, cfg)
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
    metrics = _student_metrics(before, after, teacher_test, [r.label for r in test])
    seconds["total"] = time.perf_counter() - start
    meta = {
        "role": "student",
        "task": tmeta["task"],
        "teacher": str(teacher_dir),
        "data": str(cfg.data),
        "data_sha256": tmeta["data_sha256"],
        "split": _student_split_meta(cfg, tmeta["split"], unlabeled, test),
        "training": {"objective": _objective(cfg), **history},
        "derivation": derivation,
        "metrics": metrics,
        "parameters": count_parameters(student.model),
        "teacher_parameters": tmeta.get("parameters"),
        "seconds": {k: round(v, 3) for k, v in seconds.items()},
        "config": to_dict(cfg),
    }
    save_with(student, meta, cfg.out, {"token_map.json": token_map})
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
    unlabeled = take(parts["unlabeled"], cfg.unlabeled_size)
    if not unlabeled:
        raise ConfigError("the unlabeled part is empty: raise its share in the teacher's split")
    by_id = {r.id: r for r in records}
    return unlabeled, [by_id[i] for i in split["ids"]["test"]]


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
        if stored.get("inputs_sha256") == ids_sha256(teacher.encode(inputs)):
            return torch.tensor(stored["logits"], dtype=torch.float32)
    return _teacher_logits(teacher, inputs, progress, "teacher test logits")


def _derive(
    teacher_dir: Path, layers: Any, texts: list[str] | None
) -> tuple[Any, Any, dict[str, Any], dict[str, Any]]:
    """``(model, tokenizer, derivation summary, token map)`` of a student classifier derived
    from the teacher directory: fewer layers, optionally a trimmed vocabulary."""
    with tempfile.TemporaryDirectory(prefix=".derive-") as tmp:
        work = Path(tmp) / "student"
        with quiet_transformers():
            summary = derive_student(teacher_dir, work, layers, vocab_texts=texts)
            model = AutoModelForSequenceClassification.from_pretrained(work, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(work)
        token_map = json.loads((work / "token_map.json").read_text())
    set_input_format(tokenizer)
    return model.eval(), tokenizer, summary, token_map


def _student_of(
    teacher: ClassifierModel, teacher_dir: Path, unl_inputs: list[Any], cfg: StudentConfig
) -> tuple[ClassifierModel, dict[str, Any], dict[str, Any]]:
    """``(student, derivation summary, token map)``: derived from the teacher (vocabulary
    trimmed to the unlabelled inputs' texts unless ``cfg.trim_vocab`` is off), starting from
    the teacher's ``score`` weight."""
    texts = [t for x in unl_inputs for t in (x if isinstance(x, tuple) else (x,))]
    model, tokenizer, derivation, token_map = _derive(
        teacher_dir, cfg.layers, texts if cfg.trim_vocab else None
    )
    with torch.no_grad():
        model.score.weight.copy_(teacher.model.score.weight)
    student = ClassifierModel(model, tokenizer, teacher.task, teacher.max_length, cfg.batch_size)
    return student, derivation, token_map


def _student_metrics(
    before: torch.Tensor, after: torch.Tensor, teacher_test: torch.Tensor, labels: list[int]
) -> dict[str, Any]:
    """Test-part metrics of the student (before and after training) and of the teacher,
    against the labels and against the teacher's predictions."""
    return {
        "test": logit_metrics(after, labels),
        "test_before_training": logit_metrics(before, labels),
        "teacher_test": logit_metrics(teacher_test, labels),
        "agreement_with_teacher": logit_metrics(after, teacher_test.argmax(-1).tolist()),
        "kl_to_teacher_test": {
            "before": round(mean_kl(before, teacher_test), 6),
            "after": round(mean_kl(after, teacher_test), 6),
        },
    }


def _student_split_meta(
    cfg: StudentConfig,
    split: dict[str, Any],
    unlabeled: list[TaskRecord],
    test: list[TaskRecord],
) -> dict[str, Any]:
    return {
        **{k: split[k] for k in ("method", "seed", "names", "fractions", "sizes")},
        "used": {"unlabeled": len(unlabeled), "test": len(test)},
        "labels_used_in_training": cfg.alpha > 0,
        "ids": {"unlabeled": [r.id for r in unlabeled], "test": split["ids"]["test"]},
    }


def _objective(cfg: StudentConfig) -> str:
    kd = f"T^2 KL(teacher || student) at T={cfg.temperature:g}"
    return kd if cfg.alpha == 0 else f"{1 - cfg.alpha:g} * {kd} + {cfg.alpha:g} * CE(labels)"


def _distill_loop(
    student: ClassifierModel,
    ids: list[list[int]],
    teacher_logits: torch.Tensor,
    labels: torch.Tensor,
    cfg: StudentConfig,
) -> dict[str, Any]:
    """``cfg.steps`` AdamW steps of `soft_label_loss` on the schedule of every codistill loop
    (`codistill.training.loop.linear_schedule`: linear warm-up, then linear decay to 0)."""
    model = student.model
    model.requires_grad_(True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    schedule = linear_schedule(optimizer, cfg.steps, cfg.warmup)
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
