"""What the teacher and the student both write: metrics of their logits, the saved directory."""

from __future__ import annotations

import json
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from codistill.evaluation.classification import classification_metrics
from codistill.models.classifier import ClassifierModel, replace_dir

# The teacher's logits on its test part, next to the model: the student measures agreement
# with them without running the teacher again.
TEST_LOGITS_FILE = "test_logits.json"


def logit_metrics(logits: torch.Tensor, labels: Sequence[int]) -> dict[str, float]:
    """Classification metrics of ``[n, num_labels]`` logits against labels, with their mean
    cross-entropy as ``loss`` (0 for no rows), rounded to 6 digits."""
    predictions = logits.argmax(-1).tolist()
    out = classification_metrics(predictions, list(labels))
    target = torch.tensor(list(labels), dtype=torch.long)
    out["loss"] = float(F.cross_entropy(logits.float(), target)) if len(target) else 0.0
    return {k: round(v, 6) for k, v in out.items()}


def save_with(
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
