"""`codistill.training.classifier`: the teacher (head, features, fine-tuning) and the student."""

import json
import random
from pathlib import Path

import pytest
import torch
from transformers import AutoConfig, AutoModelForCausalLM

from codistill.config.fields import ConfigError
from codistill.models.classifier import ClassifierModel, read_classifier_json, task_input
from codistill.models.tiny import make_tiny_causal_lm
from codistill.training.classifier import features
from codistill.training.classifier import student as student_module
from codistill.training.classifier.config import student_config, teacher_config
from codistill.training.classifier.outputs import TEST_LOGITS_FILE
from codistill.training.classifier.splits import load_task_records
from codistill.training.classifier.student import distill_student
from codistill.training.classifier.teacher import fit_head, train_teacher
from codistill.training.loop import linear_schedule

PYTHON = [
    "def {n}(items):\n    return items.pop()\n",
    "for index in range({k}):\n    print(index * index)\n",
    "class Stack:\n    def push(self, item):\n        self.items.append(item)\n",
]
JAVA = [
    "public int {n}(int a, int b) {{\n    return a + b;\n}}\n",
    'List<String> items = new ArrayList<>();\nitems.add("{n}");\n',
    "private boolean isEven(int number) {{\n    return number % {k} == 0;\n}}\n",
]
NAMES = ["add", "total", "value", "size", "count"]


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two intra-op threads on a busy two-core machine make these tiny ops ~50x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


def _snippet(rng: random.Random, family: list[str]) -> str:
    return rng.choice(family).format(n=rng.choice(NAMES), k=rng.randint(2, 9))


def write_defect_data(path: Path, n: int = 240, seed: int = 0) -> Path:
    """Devign-format lines whose label is the snippet's language (separable by its tokens)."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n):
            label = i % 2
            func = _snippet(rng, PYTHON if label else JAVA)
            row = {"idx": i, "project": "p", "commit_id": "c", "func": func, "target": label}
            fh.write(json.dumps(row) + "\n")
    return path


def write_clone_data(path: Path, n: int = 120, seed: int = 0) -> Path:
    """BigCloneBench-format pairs: a clone is two snippets of one language, else mixed."""
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n):
            label = i % 2
            first = rng.choice([PYTHON, JAVA])
            second = first if label else (JAVA if first is PYTHON else PYTHON)
            row = {
                "id1": str(i // 3),
                "id2": str(1000 + i),
                "code1": _snippet(rng, first),
                "code2": _snippet(rng, second),
                "label": label,
            }
            fh.write(json.dumps(row) + "\n")
    return path


@pytest.fixture(scope="module")
def setup(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("classifier")
    return {
        "root": root,
        "backbone": make_tiny_causal_lm(root / "lm", num_layers=4, seed=1),
        "defect": write_defect_data(root / "devign.jsonl"),
        "clone": write_clone_data(root / "bcb.jsonl"),
    }


@pytest.fixture(scope="module")
def teacher(setup) -> dict:
    out = setup["root"] / "teacher"
    meta = train_teacher(
        teacher_config(
            backbone=str(setup["backbone"]),
            task="defect",
            data=str(setup["defect"]),
            out=str(out),
            max_length=48,
            epochs=40,
            progress=False,
        )
    )
    return {"dir": out, "meta": meta}


# --- head ----------------------------------------------------------------------------------------


def test_fit_head_separates_features_with_a_large_constant_dimension():
    """No bias in the head: the constant (Gemma-like, huge) dimension must stand in for one."""
    gen = torch.Generator().manual_seed(0)
    y = torch.arange(200) % 2
    x = torch.randn(200, 8, generator=gen)
    x[:, 0] = 300.0  # a massive, constant activation
    x[:, 1] += 6 * y + 2  # separable, but not through the origin without the constant
    weight, history = fit_head(x[:150], y[:150], x[150:], y[150:], epochs=100, lr=1e-2)
    accuracy = float(((x[150:] @ weight.T).argmax(-1) == y[150:]).float().mean())
    assert accuracy >= 0.95
    assert 1 <= history["best_epoch"] <= 100


# --- teacher -------------------------------------------------------------------------------------


def test_train_teacher_beats_chance_on_a_separable_task(teacher):
    metrics = teacher["meta"]["metrics"]
    assert metrics["train"]["accuracy"] >= 0.9
    assert metrics["test"]["accuracy"] >= 0.8 and metrics["test"]["f1"] >= 0.8


def test_teacher_directory_records_split_data_hash_and_reproduces_its_test_logits(teacher, setup):
    meta = read_classifier_json(teacher["dir"])
    ids = meta["split"]["ids"]
    assert not set(ids["teacher"]) & set(ids["test"]) and not set(ids["valid"]) & set(ids["test"])
    assert len(meta["data_sha256"]) == 64 and meta["task"] == "defect"
    assert meta["seconds"]["total"] > 0
    # The saved model, loaded fresh, gives the logits fitted on cached features.
    stored = json.loads((teacher["dir"] / TEST_LOGITS_FILE).read_text())
    by_id = {r.id: r for r in load_task_records("defect", setup["defect"])}
    loaded = ClassifierModel.load(teacher["dir"])
    logits = loaded.logits([task_input(by_id[i]) for i in stored["ids"]])
    torch.testing.assert_close(logits, torch.tensor(stored["logits"]), atol=1e-4, rtol=1e-4)


def test_train_size_takes_a_nested_sample(setup, tmp_path):
    common = {"backbone": str(setup["backbone"]), "task": "clone", "data": str(setup["clone"])}
    small = train_teacher(
        teacher_config(
            **common,
            out=str(tmp_path / "a"),
            train_size=10,
            epochs=2,
            max_length=32,
            progress=False,
        )
    )
    large = train_teacher(
        teacher_config(
            **common,
            out=str(tmp_path / "b"),
            train_size=20,
            epochs=2,
            max_length=32,
            progress=False,
        )
    )
    small_ids, large_ids = small["split"]["ids"]["teacher"], large["split"]["ids"]["teacher"]
    assert len(small_ids) == 10 and large_ids[:10] == small_ids


def test_feature_cache_is_reused_only_for_the_same_inputs(setup, tmp_path, monkeypatch):
    def run(out, max_length):
        return train_teacher(
            teacher_config(
                backbone=str(setup["backbone"]),
                task="clone",
                data=str(setup["clone"]),
                out=str(tmp_path / out),
                max_length=max_length,
                epochs=3,
                feature_cache=str(tmp_path / "cache"),
                progress=False,
            )
        )

    first = run("a", 32)
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 3  # train, valid, test
    real = features._features
    monkeypatch.setattr(features, "_features", lambda *a: pytest.fail("cache missed"))
    assert run("b", 32)["metrics"] == first["metrics"]
    monkeypatch.setattr(features, "_features", real)
    run("c", 24)  # other token ids: new entries, not the old ones
    assert len(list((tmp_path / "cache").glob("*.pt"))) == 6


def test_unfreezing_trains_only_the_top_layers(setup, tmp_path):
    out = tmp_path / "unfrozen"
    meta = train_teacher(
        teacher_config(
            backbone=str(setup["backbone"]),
            task="defect",
            data=str(setup["defect"]),
            out=str(out),
            unfreeze_layers=1,
            epochs=1,
            train_size=24,
            test_size=8,
            max_length=32,
            backbone_lr=1e-2,
            progress=False,
        )
    )
    assert meta["training"]["mode"] == "top 1 layers fine-tuned"
    tuned = ClassifierModel.load(out).model.state_dict()
    base = AutoModelForCausalLM.from_pretrained(setup["backbone"]).state_dict()
    key = "model.layers.{}.mlp.up_proj.weight"
    assert torch.equal(tuned[key.format(0)], base[key.format(0)])
    assert not torch.equal(tuned[key.format(3)], base[key.format(3)])


# --- student -------------------------------------------------------------------------------------


def test_distill_student_reduces_kl_to_the_teacher(teacher, setup, tmp_path):
    out = tmp_path / "student"
    meta = distill_student(
        student_config(
            teacher=str(teacher["dir"]),
            data=str(setup["defect"]),
            out=str(out),
            layers=2,
            steps=30,
            lr=1e-3,
            progress=False,
        )
    )
    kl = meta["metrics"]["kl_to_teacher_test"]
    assert kl["after"] < kl["before"]
    assert meta["training"]["loss_last"] < meta["training"]["loss_first"]
    assert meta["split"]["labels_used_in_training"] is False
    assert meta["split"]["ids"]["test"] == teacher["meta"]["split"]["ids"]["test"]
    teacher_ids = set(teacher["meta"]["split"]["ids"]["teacher"])
    assert not set(meta["split"]["ids"]["unlabeled"]) & teacher_ids
    config = AutoConfig.from_pretrained(out)
    assert config.num_hidden_layers == 2
    assert config.vocab_size < AutoConfig.from_pretrained(setup["backbone"]).vocab_size
    assert (out / "token_map.json").is_file()
    assert ClassifierModel.load(out).predict_proba(["def add(a, b):"]).shape == (1, 2)


def test_distill_student_follows_the_schedule_of_the_main_loop(
    teacher, setup, tmp_path, monkeypatch
):
    factors = []

    def spy(optimizer, total_steps, warmup_ratio):
        schedule = linear_schedule(optimizer, total_steps, warmup_ratio)
        factors.extend(schedule.lr_lambdas[0](s) for s in range(total_steps))
        return schedule

    monkeypatch.setattr(student_module, "linear_schedule", spy)
    distill_student(
        student_config(
            teacher=str(teacher["dir"]),
            data=str(setup["defect"]),
            out=str(tmp_path / "s"),
            layers=1,
            unlabeled_size=8,
            steps=4,
            warmup=0.5,
            progress=False,
        )
    )
    # ceil(4 * 0.5) = 2 warm-up steps at (s + 1) / (warmup + 1), then linear decay.
    assert factors == pytest.approx([1 / 3, 2 / 3, 1.0, 0.5])


def test_distill_student_refuses_a_different_data_file(teacher, setup, tmp_path):
    other = write_defect_data(tmp_path / "other.jsonl", n=100, seed=5)
    with pytest.raises(ConfigError, match="not the file the teacher was trained on"):
        distill_student(
            student_config(teacher=str(teacher["dir"]), data=str(other), out=str(tmp_path / "s"))
        )
    assert not (tmp_path / "s").exists()
