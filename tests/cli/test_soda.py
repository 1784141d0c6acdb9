"""``codistill soda``: a smoke run through the real command (a tiny random teacher and student),
and bad input as one-line errors with exit status 2."""

from __future__ import annotations

import json

import pytest

from codistill.cli.main import main
from codistill.data.jsonl import write_records
from tests.qwen_fixtures import make_tiny_qwen2
from tests.soda.fault_questions import COUNT_BETWEEN, DIGIT_SUM, MAX_GAP, PALINDROME, SUM_TO


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("soda-cli")
    make_tiny_qwen2(root / "teacher", num_layers=2, seed=1)
    make_tiny_qwen2(root / "student", num_layers=2, seed=3)
    write_records(root / "seeds.jsonl", [SUM_TO, COUNT_BETWEEN, DIGIT_SUM, MAX_GAP, PALINDROME])
    return root


def _argv(root, out, *extra):
    return [
        "soda",
        "--teacher",
        str(root / "teacher"),
        "--student",
        str(root / "student"),
        "--seeds",
        str(root / "seeds.jsonl"),
        "--out",
        str(out),
        "--budget",
        "smoke",
        *extra,
    ]


def test_smoke_run_through_the_command_prints_each_cycle(files, tmp_path, capsys):
    # A random teacher solves nothing: nothing is trained, no new question is kept, and the
    # cycle still runs to its report (the pipeline's plumbing, not its quality).
    argv = _argv(files, tmp_path / "run", "--cycles", "1", "n_new=2", "teacher_max_new_tokens=16")
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "| 0 |" in out and "| 1 |" in out
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    report = results["cycles"][1]
    assert report["sft"] == {"trained": False, "reason": "no verified solution on the sft split"}
    assert report["new_questions"]["asked"] == 2
    assert report["teacher_calls"]["stage1"]["calls"] == 3  # 5 seeds, 2 held out
    assert (tmp_path / "run" / "cycle-1" / "eval" / "run" / "metrics.json").is_file()
    # The same command again: everything is up to date.
    assert main(argv) == 0
    again = json.loads((tmp_path / "run" / "results.json").read_text())["cycles"][1]
    assert len(again["skipped_now"]) == 6


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["ratio=1:2"], "ratio must be easy:medium:hard like 1:1:2, got '1:2'"),
        (["n_neww=3"], "unknown key 'n_neww'; did you mean 'n_new'?"),
        (["--cycles", "0"], "cycles must be >= 1, got 0"),
        (["judge=false", "execution=false"], "judge and execution are both false"),
    ],
)
def test_bad_settings_exit_2_with_one_line(files, tmp_path, capsys, extra, message):
    assert main(_argv(files, tmp_path / "run", *extra)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("codistill soda: error: ") and message in err and "\n" not in err


def test_missing_seeds_and_missing_flags_exit_2(files, tmp_path, capsys):
    argv = _argv(files, tmp_path / "run")
    argv[argv.index("--seeds") + 1] = str(tmp_path / "nope.jsonl")
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert "nope.jsonl" in err and "\n" not in err
    assert main(["soda", "--student", "s", "--seeds", "q", "--out", "o"]) == 2
    assert "--teacher is required" in capsys.readouterr().err
