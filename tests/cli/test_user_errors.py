"""Every subcommand answers bad user input with one line naming the file or field, exit 2.

Tracebacks are for bugs: a case here that raises instead of returning 2 fails the test.
"""

from __future__ import annotations

import pytest

from codistill.cli.main import main


@pytest.fixture
def files(tmp_path, tiny_setup):
    bad = tmp_path / "bad.jsonl"
    first = (tiny_setup["train"]).read_text().splitlines()[0]
    bad.write_text(first + "\n{not json\n")
    return {
        "bad": bad,
        "missing": tmp_path / "missing.jsonl",
        "nodir": tmp_path / "no-such-dir",
        "out": tmp_path / "out",
        "teacher": tiny_setup["teacher"],
        "student": tiny_setup["student"],
        "train": tiny_setup["train"],
    }


CASES = {
    # name: (argv template, text the one-line message must contain)
    "distill bad line": (
        ["distill", "student={student}", "loss=ce", "train_data={bad}", "output_dir={out}"],
        "bad.jsonl:2",
    ),
    "distill missing data": (
        ["distill", "student={student}", "loss=ce", "train_data={missing}", "output_dir={out}"],
        "missing.jsonl",
    ),
    "distill unknown key": (
        ["distill", "student={student}", "train_data={train}", "temprature=2"],
        "temprature",
    ),
    "eval bad line": (
        [
            "eval",
            "--model",
            "{student}",
            "--task",
            "assertion",
            "--data",
            "{bad}",
            "--out",
            "{out}",
        ],
        "bad.jsonl:2",
    ),
    "eval missing model": (
        [
            "eval",
            "--model",
            "{nodir}",
            "--task",
            "assertion",
            "--data",
            "{train}",
            "--out",
            "{out}",
        ],
        "no-such-dir",
    ),
    "teacher cache bad line": (
        ["teacher", "cache", "--teacher", "{teacher}", "--data", "{bad}", "--out", "{out}"],
        "bad.jsonl:2",
    ),
    "teacher generate bad line": (
        ["teacher", "generate", "--teacher", "{teacher}", "--data", "{bad}", "--out", "{out}"],
        "bad.jsonl:2",
    ),
    "teacher finetune bad line": (
        ["teacher", "finetune", "--model", "{teacher}", "--train", "{bad}", "--out", "{out}"],
        "bad.jsonl:2",
    ),
    "teacher verify missing cache": (["teacher", "verify", "{nodir}"], "no-such-dir"),
    "student derive missing teacher": (
        ["student", "derive", "--teacher", "{nodir}", "--layers", "1", "--out", "{out}"],
        "no-such-dir",
    ),
    "student derive bad vocab file": (
        [
            "student",
            "derive",
            "--teacher",
            "{teacher}",
            "--layers",
            "1",
            "--vocab-from",
            "{bad}",
            "--out",
            "{out}",
        ],
        "bad.jsonl:2",
    ),
    "student derive bad choice file": (
        [
            "student",
            "derive",
            "--teacher",
            "{teacher}",
            "--layers",
            "1",
            "--choose-layers-on",
            "{bad}",
            "--out",
            "{out}",
        ],
        "bad.jsonl:2",
    ),
    "student derive choice with a layer list": (
        [
            "student",
            "derive",
            "--teacher",
            "{teacher}",
            "--layers",
            "0,1",
            "--choose-layers-on",
            "{train}",
            "--out",
            "{out}",
        ],
        "--layers as a count",
    ),
    "student derive layer score without records": (
        [
            "student",
            "derive",
            "--teacher",
            "{teacher}",
            "--layers",
            "1",
            "--layer-score",
            "angular",
            "--out",
            "{out}",
        ],
        "--layer-score needs --choose-layers-on",
    ),
    "data stats bad line": (["data", "stats", "{bad}"], "bad.jsonl:2"),
    "data decontaminate missing": (
        ["data", "decontaminate", "{missing}", "--against", "mbpp={missing}", "--out", "{out}"],
        "missing.jsonl",
    ),
    "fidelity bad line": (
        [
            "fidelity",
            "--teacher",
            "{teacher}",
            "--student",
            "{student}",
            "--task",
            "assertion",
            "--data",
            "{bad}",
            "--out",
            "{out}",
        ],
        "bad.jsonl:2",
    ),
    "compare missing run": (
        [
            "compare",
            "--arm",
            "a={nodir}",
            "--arm",
            "b={nodir}",
            "--baseline",
            "a",
            "--out",
            "{out}",
        ],
        "no-such-dir",
    ),
    "report missing dir": (["report", "{nodir}", "--out", "{out}"], "no-such-dir"),
    "sweep unknown key": (
        ["sweep", "--out", "{out}", "alpha=0.1,0.2", "temprature=1"],
        "temprature",
    ),
    "classifier teacher missing data": (
        [
            "classifier",
            "teacher",
            "--backbone",
            "{teacher}",
            "--task",
            "defect",
            "--data",
            "{missing}",
            "--out",
            "{out}",
        ],
        "missing.jsonl",
    ),
    "student export missing model": (
        ["student", "export", "--model", "{nodir}", "--gguf", "{out}"],
        "no-such-dir",
    ),
    "data import bad file": (["data", "import", "mbpp", "{bad}", "--out", "{out}"], "bad.jsonl"),
    "eval missing samples": (
        [
            "eval",
            "--model",
            "{student}",
            "--task",
            "codegen",
            "--data",
            "{train}",
            "--samples",
            "{missing}",
            "--out",
            "{out}",
        ],
        "train.jsonl",
    ),
    "reproduce missing data dir": (
        ["reproduce", "alpha-t", "--budget", "smoke", "--data", "{nodir}", "--out", "{out}"],
        "no-such-dir",
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_user_error_is_one_line_and_exit_2(name, files, capsys):
    template, needle = CASES[name]
    argv = [a.format(**files) for a in template]
    code = main(argv)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, f"{name}: exit {code}"
    messages = [line for line in err if "error" in line.lower() or needle in line]
    assert messages and any(needle in line for line in messages), err
    assert not any(line.startswith("Traceback") for line in err)
    if name.startswith("reproduce"):  # a failed stage leaves no half-built directory
        assert not any(files["out"].glob(".*")), sorted(files["out"].iterdir())
