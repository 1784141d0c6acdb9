import json
from pathlib import Path

import pytest

from codistill.cli.main import main
from codistill.data.jsonl import write_records
from codistill.reproduce import BUDGETS, STUDIES, content_key
from tests.helpers import make_records


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("reproduce")
    data = root / "data"
    for split, n in (("train", 96), ("valid", 8), ("test", 24)):
        write_records(data / f"{split}.jsonl", make_records(n, split))
    out = root / "out"
    argv = ["reproduce", "alpha-t", "--budget", "smoke", "--out", str(out), "--data", str(data)]
    assert main([*argv, "--arms", "alpha_t,seq_kd"]) == 0
    return out, argv


def _train_rows(run_dir):
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return [r for r in rows if r["kind"] == "train"]


def test_smoke_study_ends_in_a_paired_comparison(smoke_run):
    out, _ = smoke_run
    report = (out / "alpha-t" / "report.md").read_text()
    assert "Does distillation pay?" in report and "Against the teacher" in report
    result = json.loads((out / "alpha-t" / "comparison.json").read_text())
    assert result["n"] == 24 and result["baseline"] == "ce"
    assert set(result["arms"]) == {"teacher", "student_init", "ce", "alpha_t", "seq_kd"}
    assert set(result["paired"]) == {"teacher", "student_init", "alpha_t", "seq_kd"}
    for name in ("quality_vs_steps.png", "ratios.png"):
        assert (out / "alpha-t" / name).read_bytes()[:4] == b"\x89PNG"


def test_the_students_layers_are_chosen_by_loss_and_reported(smoke_run):
    out, _ = smoke_run
    summary = json.loads((out / "alpha-t" / "reproduce.json").read_text())
    derivation = json.loads((Path(summary["stages"]["student"]) / "derivation.json").read_text())
    choice = derivation["layer_choice"]
    assert derivation["layers"] == choice["layers"] and len(choice["layers"]) == 2
    assert [r["kept"] for r in choice["removed"]] == [3, 2]  # the tiny teacher has 4 layers
    assert (
        f"layers {choice['layers']}, chosen by removing"
        in (out / "alpha-t" / "report.md").read_text()
    )


def test_equal_budget_arms_see_the_same_examples_in_the_same_order(smoke_run):
    out, _ = smoke_run
    summary = json.loads((out / "alpha-t" / "reproduce.json").read_text())
    runs = {arm: _train_rows(Path(p)) for arm, p in summary["runs"].items()}
    steps = {arm: [r["step"] for r in rows] for arm, rows in runs.items()}
    assert len(set(map(tuple, steps.values()))) == 1  # same budget
    assert steps["ce"] == list(range(1, BUDGETS["smoke"].student_steps + 1))
    # Token-level arms train on the same records: same batches in the same order. Sequence-level
    # KD trains on the teacher's usable outputs, a set of its own.
    digests = {arm: [r["batch_digest"] for r in runs[arm]] for arm in ("ce", "alpha_t")}
    assert digests["ce"] == digests["alpha_t"]
    assert len(set(digests["ce"])) == len(digests["ce"])  # and the batches do change
    configs = {
        arm: json.loads((Path(p) / "run.json").read_text())["config"]
        for arm, p in summary["runs"].items()
    }
    shared = ("student", "lr", "batch_size", "max_steps", "seed", "train_data")
    for key in shared:
        assert len({json.dumps(c[key]) for c in configs.values()}) == 1, key
    assert configs["seq_kd"]["targets"].startswith("teacher:")


def test_a_second_run_reuses_every_stage(smoke_run, capsys):
    out, argv = smoke_run
    before = sorted(p.name for p in out.iterdir())
    assert main([*argv, "--arms", "alpha_t,seq_kd"]) == 0
    assert sorted(p.name for p in out.iterdir()) == before
    assert "building" not in capsys.readouterr().out


def test_unknown_arm_is_a_clear_error(tmp_path, capsys):
    argv = [
        "reproduce",
        "trident",
        "--budget",
        "smoke",
        "--out",
        str(tmp_path),
        "--arms",
        "alpha_t",
    ]
    assert main(argv) == 2
    assert "not part of the trident study" in capsys.readouterr().err


def test_budgets_and_content_keys():
    assert set(BUDGETS) == {"smoke", "cpu", "full"}
    assert all("ce" in arms for arms in STUDIES.values())
    assert content_key("a", 1) == content_key("a", 1) != content_key("a", 2)


def test_arms_can_be_scored_at_their_best_held_out_checkpoint(smoke_run, capsys):
    """``--checkpoint best`` reuses the trained arms and scores each at its lowest held-out CE."""
    out, argv = smoke_run
    assert main([*argv, "--arms", "alpha_t", "--checkpoint", "best"]) == 0
    log = capsys.readouterr().out
    assert "arm-alpha_t: cached" in log and "arm-ce: cached" in log  # training is not redone
    summary = json.loads((out / "alpha-t" / "reproduce.json").read_text())
    assert summary["checkpoint"] == "best"
    for arm in ("ce", "alpha_t"):
        metrics = json.loads((Path(summary["evals"][arm]) / "metrics.json").read_text())
        assert metrics["config"]["model"] == str(Path(summary["runs"][arm]) / "best")
    report = (out / "alpha-t" / "report.md").read_text()
    assert "lowest held-out CE on the valid split" in report and "(step " in report


def test_best_validation_and_a_missing_checkpoint(tmp_path):
    from codistill.reproduce import best_validation, scored_checkpoint

    rows = [
        {"kind": "valid", "step": 0, "valid_loss": 2.0},
        {"kind": "train", "step": 1, "loss": 0.1},
        {"kind": "valid", "step": 2, "valid_loss": 1.5},
        {"kind": "valid", "step": 4, "valid_loss": 1.5},
        {"kind": "valid", "step": 6, "valid_loss": 1.7},
    ]
    (tmp_path / "metrics.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert best_validation(tmp_path) == (2, 1.5)  # the first of equal values, as training keeps
    assert best_validation(tmp_path / "nothing") is None
    with pytest.raises(ValueError, match="no 'best' checkpoint to score"):
        scored_checkpoint(tmp_path, "best")
    with pytest.raises(ValueError, match="unknown checkpoint 'last'"):
        scored_checkpoint(tmp_path, "last")
    (tmp_path / "best").mkdir()
    (tmp_path / "best" / "config.json").write_text("{}")
    assert scored_checkpoint(tmp_path, "best") == tmp_path / "best"
