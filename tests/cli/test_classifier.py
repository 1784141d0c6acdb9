import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification

from codistill.cli.main import main
from codistill.models.classifier import CLASSIFIER_FILE
from codistill.models.tiny import make_tiny_causal_lm
from tests.training.test_classifier import write_clone_data, write_defect_data


@pytest.fixture(autouse=True, scope="module")
def one_thread():
    # Two intra-op threads on a busy two-core machine make these tiny ops ~50x slower.
    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("classifier-cli")
    return {
        "backbone": make_tiny_causal_lm(root / "lm", num_layers=4, seed=2),
        "clone": write_clone_data(root / "bcb.jsonl", n=90),
        "defect": write_defect_data(root / "devign.jsonl", n=60),
    }


def _teacher(files, out, *extra, task="clone", data=None):
    argv = ["classifier", "teacher", "--backbone", str(files["backbone"]), "--task", task]
    argv += ["--data", str(data or files[task]), "--out", str(out), "--max-length", "32"]
    return main([*argv, "--epochs", "5", "--quiet", *extra])


def test_teacher_then_student_end_to_end(files, tmp_path, capsys):
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    assert _teacher(files, teacher, "--train-size", "20", "seed=3") == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["role"] == "teacher" and summary["split_used"]["teacher"] == 20
    assert json.loads((teacher / CLASSIFIER_FILE).read_text())["config"]["seed"] == 3
    argv = ["classifier", "student", "--teacher", str(teacher), "--data", str(files["clone"])]
    argv += ["--out", str(student), "--layers", "0,3", "--steps", "4", "--quiet"]
    assert main(argv) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["role"] == "student"
    assert set(summary["metrics"]) >= {"test", "agreement_with_teacher", "kl_to_teacher_test"}
    model = AutoModelForSequenceClassification.from_pretrained(student)
    assert model.config.num_hidden_layers == 2
    # Nothing but the two outputs (no temp dirs left behind).
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student", "teacher"]


def test_yaml_config_is_overridden_by_the_command_line(files, tmp_path, capsys):
    config = tmp_path / "teacher.yaml"
    config.write_text("train_size: 12\nmax_length: 16\n")
    assert _teacher(files, tmp_path / "t", "--config", str(config), "--train-size", "8") == 0
    meta = json.loads((tmp_path / "t" / CLASSIFIER_FILE).read_text())
    assert meta["split"]["used"]["teacher"] == 8 and meta["max_length"] == 32


def test_missing_data_file_is_a_usage_error(files, tmp_path, capsys):
    assert _teacher(files, tmp_path / "t", data=tmp_path / "nope.jsonl") == 2
    assert "nope.jsonl: no such file" in capsys.readouterr().err
    assert not (tmp_path / "t").exists()


def test_data_of_the_other_task_is_named(files, tmp_path, capsys):
    assert _teacher(files, tmp_path / "t", data=files["defect"]) == 2
    err = capsys.readouterr().err
    assert "codistill classifier: error:" in err and "is this a clone file?" in err
    assert not (tmp_path / "t").exists()


def test_unknown_task_is_rejected_by_the_parser(files, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _teacher(files, tmp_path / "t", task="summarize", data=files["clone"])
    assert exc.value.code == 2
    assert "invalid choice: 'summarize'" in capsys.readouterr().err


def test_existing_out_needs_overwrite(files, tmp_path, capsys):
    (tmp_path / "t").mkdir()
    assert _teacher(files, tmp_path / "t") == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err


def test_student_of_a_directory_that_is_not_a_teacher(files, tmp_path, capsys):
    argv = ["classifier", "student", "--teacher", str(files["backbone"])]
    argv += ["--data", str(files["clone"]), "--out", str(tmp_path / "s")]
    assert main(argv) == 2
    assert "is not a codistill classifier" in capsys.readouterr().err


def test_a_failed_run_leaves_no_output(files, tmp_path, monkeypatch):
    from codistill.training.classifier import outputs

    def boom(staged, final):
        assert (staged / CLASSIFIER_FILE).is_file()  # fully written, then the move fails
        raise OSError("disk full")

    monkeypatch.setattr(outputs, "replace_dir", boom)
    with pytest.raises(OSError, match="disk full"):
        _teacher(files, tmp_path / "t")
    assert list(tmp_path.iterdir()) == []
