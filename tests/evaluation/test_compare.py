import json

import numpy as np
import pytest

from codistill.cli.main import main
from codistill.evaluation.compare import (
    arm_scores,
    assertion_item_scores,
    codegen_item_scores,
    compare_arms,
    read_eval_run,
    render_comparison,
    verdict,
)


def _eval_run(path, task, rows, language="python"):
    path.mkdir(parents=True)
    meta = {"task": task, "n": len(rows)}
    if task == "assertion":
        meta["language"] = language
    (path / "metrics.json").write_text(json.dumps(meta))
    (path / "predictions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


TRUTH = [f"self.assertEqual(x, {i})" for i in range(40)]


def _assertion_rows(preds, order=None):
    order = order or range(len(preds))
    return [{"id": f"r{i}", "target": TRUTH[i], "student": preds[i]} for i in order]


def test_assertion_item_scores_per_item():
    scores = assertion_item_scores(
        ["self.assertEqual(x,1)", "SELF.assertEqual(x, 2)", "assertTrue(y)"],
        ["self.assertEqual(x, 1)", "self.assertEqual(x, 2)", "self.assertEqual(x, 3)"],
        "python",
    )
    # whitespace collapsed but not removed: "x,1" differs from "x, 1"; case folded.
    assert scores["exact_match"].tolist() == [0.0, 1.0, 0.0]
    assert scores["format_insensitive_match"].tolist() == [1.0, 0.0, 0.0]
    assert 0 < scores["char_similarity"][2] < 1


def test_compare_arms_pairs_every_arm_with_the_baseline():
    truth_kd = np.array([1.0] * 30 + [0.0] * 10)
    truth_ce = np.array([1.0] * 10 + [0.0] * 30)
    teacher = np.array([1.0] * 36 + [0.0] * 4)
    scores = {
        "ce": {"truth": {"exact_match": truth_ce}},
        "kd": {"truth": {"exact_match": truth_kd}},
        "teacher": {"truth": {"exact_match": teacher}},
    }
    result = compare_arms(scores, baseline="ce", teacher="teacher", n_resamples=400)
    diff = result["paired"]["kd"]["truth"]["exact_match"]
    assert diff["value"] == pytest.approx(0.5)
    assert verdict(diff) == "better"
    assert diff["mcnemar"]["b"] == 20 and diff["mcnemar"]["c"] == 0
    gap = result["gap_closed"]["kd"]["exact_match"]
    assert gap["value"] == pytest.approx(20 / 26)
    assert "ce" not in result["paired"]
    text = render_comparison(result)
    assert "Does distillation pay?" in text and "better" in text and "+50.0" in text


def test_compare_arms_refuses_arms_of_different_sizes():
    scores = {"a": {"truth": {"m": np.zeros(3)}}, "b": {"truth": {"m": np.zeros(4)}}}
    with pytest.raises(ValueError, match="number of items"):
        compare_arms(scores, baseline="a")
    with pytest.raises(ValueError, match="baseline arm 'c'"):
        compare_arms({"a": scores["a"]}, baseline="c")


def test_arm_scores_align_items_by_id_and_score_against_the_teacher(tmp_path):
    preds = list(TRUTH)
    runs = {
        "teacher": read_eval_run(_eval_run(tmp_path / "t", "assertion", _assertion_rows(preds))),
        # the student's file lists the same records in reverse order
        "kd": read_eval_run(
            _eval_run(tmp_path / "k", "assertion", _assertion_rows(preds, range(39, -1, -1)))
        ),
    }
    scores = arm_scores(runs, teacher="teacher")
    assert scores["kd"]["truth"]["exact_match"].sum() == 40
    assert scores["kd"]["teacher"]["exact_match"].sum() == 40
    assert "teacher" not in scores["teacher"]


def test_arm_scores_refuse_runs_on_different_items(tmp_path):
    a = _eval_run(tmp_path / "a", "assertion", _assertion_rows(TRUTH))
    b = _eval_run(tmp_path / "b", "assertion", _assertion_rows(TRUTH[:39]))
    with pytest.raises(ValueError, match="different items"):
        arm_scores({"a": read_eval_run(a), "b": read_eval_run(b)})


def test_codegen_item_scores_average_samples_per_task():
    rows = [
        {"task_id": "t1", "passed": True, "passed_plus": False},
        {"task_id": "t1", "passed": False, "passed_plus": False},
        {"task_id": "t2", "passed": True, "passed_plus": True},
    ]
    scores = codegen_item_scores(rows, ["t2", "t1"])
    assert scores["pass@1"].tolist() == [1.0, 0.5]
    assert scores["pass@1_plus"].tolist() == [1.0, 0.0]
    with pytest.raises(ValueError, match="no samples"):
        codegen_item_scores(rows, ["t3"])


def test_compare_cli_writes_json_and_markdown(tmp_path, capsys):
    good = [t if i % 2 else "self.assertTrue(x)" for i, t in enumerate(TRUTH)]
    bad = ["self.assertTrue(x)"] * 40
    _eval_run(tmp_path / "kd", "assertion", _assertion_rows(good))
    _eval_run(tmp_path / "ce", "assertion", _assertion_rows(bad))
    _eval_run(tmp_path / "teacher", "assertion", _assertion_rows(list(TRUTH)))
    argv = ["compare", "--arm", f"kd={tmp_path / 'kd'}", "--arm", f"ce={tmp_path / 'ce'}"]
    argv += ["--arm", f"teacher={tmp_path / 'teacher'}", "--baseline", "ce"]
    argv += ["--teacher", "teacher", "--out", str(tmp_path / "cmp"), "--resamples", "200"]
    assert main(argv) == 0
    result = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert result["paired"]["kd"]["teacher"]["exact_match"]["value"] == pytest.approx(0.5)
    assert result["n"] == 40
    assert "Against the teacher" in (tmp_path / "cmp" / "comparison.md").read_text()
    assert "Does distillation pay?" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--arm", "kd"], "expected NAME=RUN_DIR"),
        (["--arm", "kd=x"], "at least two"),
        (["--arm", "kd=x", "--arm", "ce=y", "--baseline", "zz"], "--baseline 'zz'"),
        (["--arm", "kd=missing1", "--arm", "ce=missing2"], "metrics.json: not found"),
    ],
)
def test_compare_cli_errors_name_the_problem(tmp_path, capsys, argv, message):
    full = ["compare", *argv, "--out", str(tmp_path / "o")]
    if "--baseline" not in argv:
        full += ["--baseline", "ce"]
    assert main(full) == 2
    assert message in capsys.readouterr().err


def test_no_gap_closed_where_the_teacher_is_not_ahead():
    ahead = {"truth": {"exact_match": np.array([1.0, 1.0, 0.0, 0.0])}}
    behind = {"truth": {"exact_match": np.array([0.0, 0.0, 0.0, 0.0])}}
    scores = {"ce": ahead, "kd": ahead, "teacher": behind}
    result = compare_arms(scores, baseline="ce", teacher="teacher", n_resamples=50)
    assert result["gap_closed"]["kd"] == {}
    assert "gap closed" not in render_comparison(result)


def _codegen_rows(passed: dict[str, bool]):
    return [{"task_id": t, "passed": p, "passed_plus": p} for t, p in passed.items()]


def test_codegen_comparison_is_also_made_within_each_benchmark(tmp_path):
    from codistill.evaluation.compare import compare_eval_runs

    # kd wins every HumanEval task sft loses and loses every MBPP task sft wins: pooled, the two
    # cancel; within each benchmark they do not.
    he = [f"HumanEval/{i}" for i in range(20)]
    mb = [f"Mbpp/{i}" for i in range(30)]
    sft = {t: False for t in he} | {t: i < 10 for i, t in enumerate(mb)}
    kd = {t: i < 10 for i, t in enumerate(he)} | {t: False for t in mb}
    teacher = dict.fromkeys(he + mb, True)
    runs = {}
    for name, passed in (("sft", sft), ("kd", kd), ("teacher", teacher)):
        runs[name] = _eval_run(tmp_path / name, "codegen", _codegen_rows(passed))
    result, text = compare_eval_runs(
        runs, tmp_path / "cmp", baseline="sft", teacher="teacher", n_resamples=200
    )
    assert result["paired"]["kd"]["truth"]["pass@1"]["value"] == pytest.approx(0.0)
    parts = result["by_benchmark"]
    assert {b: p["n"] for b, p in parts.items()} == {"HumanEval": 20, "Mbpp": 30}
    assert parts["HumanEval"]["paired"]["kd"]["truth"]["pass@1"]["value"] == pytest.approx(0.5)
    assert parts["Mbpp"]["paired"]["kd"]["truth"]["pass@1"]["value"] == pytest.approx(-1 / 3)
    assert parts["HumanEval"]["paired"]["kd"]["truth"]["pass@1"]["ci_low"] > 0
    assert "#### HumanEval (20 tasks)" in text and "#### Mbpp (30 tasks)" in text
    saved = json.loads((tmp_path / "cmp" / "comparison.json").read_text())
    assert set(saved["by_benchmark"]) == {"HumanEval", "Mbpp"}


def test_one_benchmark_gets_no_breakdown(tmp_path):
    from codistill.evaluation.compare import compare_eval_runs

    runs = {
        name: _eval_run(tmp_path / name, "codegen", _codegen_rows({"HumanEval/0": ok}))
        for name, ok in (("sft", False), ("kd", True))
    }
    result, text = compare_eval_runs(runs, tmp_path / "cmp", baseline="sft", n_resamples=20)
    assert "by_benchmark" not in result and "Within each benchmark" not in text


def test_a_task_without_plus_tests_scores_its_base_tests_as_plus():
    # MBPP beside HumanEval+: the eval writes passed_plus None, and its pass@1_plus counts the
    # base verdict there; the comparison must agree with it.
    rows = [
        {"task_id": "HumanEval/0", "passed": True, "passed_plus": False},
        {"task_id": "Mbpp/2", "passed": True, "passed_plus": None},
        {"task_id": "Mbpp/3", "passed": False, "passed_plus": None},
    ]
    scores = codegen_item_scores(rows, ["HumanEval/0", "Mbpp/2", "Mbpp/3"])
    assert scores["pass@1_plus"].tolist() == [0.0, 1.0, 0.0]
    only_base = [{"task_id": "Mbpp/2", "passed": True, "passed_plus": None}]
    assert "pass@1_plus" not in codegen_item_scores(only_base, ["Mbpp/2"])
