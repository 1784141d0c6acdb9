"""A classifier teacher fine-tuned on labels, and a student distilled from its soft labels.

This is how the compression papers that MetaCompress tests build their models (Compressor,
AVATAR, MORPH on BigCloneBench and Devign): the labelled data is cut in two, one part fine-tunes
the teacher, the other is treated as *unlabelled* and only the teacher's output distribution on
it trains the student. The data file is split by a hash of each record's key
(`splits.split_records`) into four disjoint parts:

==============  =====================================================  =========================
part            used for                                               default share
==============  =====================================================  =========================
``teacher``     the teacher's labelled training set                    0.40
``unlabeled``   the student's training inputs; labels unused unless    0.40
                ``alpha > 0``
``valid``       picking the teacher head's best epoch                  0.05
``test``        held-out accuracy / F1 of both models                  0.15
==============  =====================================================  =========================

Everything needed to rebuild the parts (seed, shares, the ids used) is stored in
``classifier.json``, with the data file's sha256.

One module per job:

- `config`: `TeacherConfig`, `StudentConfig` and the shares of the split;
- `splits`: reading a clone/defect file and cutting it into the parts;
- `features`: pooled backbone features, cached on disk by content;
- `teacher`: `train_teacher` (a head on a frozen backbone, or the top layers fine-tuned);
- `student`: `distill_student` (a derived student trained on the teacher's soft labels);
- `outputs`: the metrics and the atomically saved directory both write.

The loss is `codistill.losses.soft_labels.soft_label_loss`. The names below are the public
interface; import them from here or from their module.
"""

from codistill.training.classifier.config import (
    SPLIT_NAMES,
    StudentConfig,
    TeacherConfig,
    check_fractions,
    student_config,
    teacher_config,
)
from codistill.training.classifier.features import backbone_fingerprint, cached_features
from codistill.training.classifier.outputs import TEST_LOGITS_FILE
from codistill.training.classifier.splits import (
    TaskRecord,
    load_task_records,
    split_key,
    split_records,
)
from codistill.training.classifier.student import distill_student
from codistill.training.classifier.teacher import fit_head, train_teacher

__all__ = [
    "SPLIT_NAMES",
    "TEST_LOGITS_FILE",
    "StudentConfig",
    "TaskRecord",
    "TeacherConfig",
    "backbone_fingerprint",
    "cached_features",
    "check_fractions",
    "distill_student",
    "fit_head",
    "load_task_records",
    "split_key",
    "split_records",
    "student_config",
    "teacher_config",
    "train_teacher",
]
