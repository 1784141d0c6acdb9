"""``codistill fidelity`` end to end on the tiny fixture models (no real weights)."""

from __future__ import annotations

import json
import shutil

import pytest

from codistill.cli.main import main
from codistill.fidelity.gates import GateError, gate_value, parse_gates
from codistill.fidelity.runner import (
    FidelityError,
    FidelityOptions,
    assertion_record,
    codegen_input,
    load_items,
    run_fidelity,
)


def _opts(setup, out, **over) -> FidelityOptions:
    base = dict(
        teacher=str(setup["teacher"]),
        student=str(setup["student"]),
        task="assertion",
        data=str(setup["valid"]),
        out=str(out),
        attacks=["alert"],
        attack_records=2,
        attack_budget=12,
        n_resamples=100,
        max_new_tokens=12,
        cache_dir=str(out / "cache"),
        log=lambda _: None,
    )
    return FidelityOptions(**{**base, **over})


@pytest.fixture(scope="module")
def result(tiny_setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("fid")
    return out, run_fidelity(_opts(tiny_setup, out))


def test_writes_per_relation_metrics_with_intervals_and_validity(result):
    out, res = result
    doc = json.loads((out / "fidelity.json").read_text())
    assert doc["n_inputs"] == 6 and doc["n_variants"] > 0
    assert "rename_placeholder" in doc["relations"] and "all" in doc["relations"]
    agreement = doc["relations"]["all"]["metrics"]["agreement"]
    assert agreement["ci_low"] <= agreement["value"] <= agreement["ci_high"]
    v = doc["verification"]["per_relation"]["rename_placeholder"]
    assert v["generated"] >= v["verified"] > 0
    assert set(doc["attacks"]["alert"]) >= {"teacher", "student", "relative_drop"}
    assert doc["attacks"]["alert"]["teacher"]["summary"]["mean_queries"] <= 12
    assert (out / "fidelity.md").read_text().startswith("# Fidelity: assertion")
    for quality in doc["originals"].values():  # layout-blind exact match beside the paper's
        assert quality["exact_match"] <= quality["format_insensitive_match"] <= 1


def test_renamed_locals_are_renamed_in_the_target_the_model_is_judged_on(tiny_setup):
    from codistill.fidelity.relations import get_relation

    item = load_items("assertion", str(tiny_setup["valid"]), None)[0]
    import random

    variant = get_relation("rename_placeholder").apply(
        item.code, item.language, random.Random(0), item.target
    )
    old = next(iter(variant.renames))
    assert old in item.target and variant.renames[old] in variant.target
    record = assertion_record(item, variant.code, variant.target)
    new = variant.renames[old]
    assert "<AssertPlaceHolder>" in record.test_code and f"{new} = " in record.test_code
    assert record.target == variant.target


def test_second_run_reuses_every_cached_output(tiny_setup, result, tmp_path):
    out, _ = result
    logs: list[str] = []
    again = _opts(tiny_setup, tmp_path / "again", attacks=[], log=logs.append)
    again.cache_dir = str(out / "cache")
    run_fidelity(again)
    computed = [line for line in logs if "cache" in line]
    assert computed and all(line.endswith(" 0 computed") for line in computed)


def test_gates_exit_nonzero_only_when_one_fails(tiny_setup, result, tmp_path, capsys):
    out, res = result
    argv = [
        "fidelity",
        "--teacher",
        str(tiny_setup["teacher"]),
        "--student",
        str(tiny_setup["student"]),
        "--task",
        "assertion",
        "--data",
        str(tiny_setup["valid"]),
        "--attacks",
        "none",
        "--bootstrap",
        "50",
        "--max-new-tokens",
        "12",
        "--cache-dir",
        str(out / "cache"),
    ]
    ok = main([*argv, "--out", str(tmp_path / "a"), "--fail-under", "student_consistency=0"])
    assert ok == 0
    bad = main([*argv, "--out", str(tmp_path / "b"), "--fail-under", "agreement=1.01"])
    assert bad == 1 and "agreement" in capsys.readouterr().err
    assert main([*argv, "--out", str(tmp_path / "c"), "--fail-under", "agreement"]) == 2
    assert gate_value(res, "agreement") == res["relations"]["all"]["metrics"]["agreement"]["value"]
    assert gate_value(res, "rename_placeholder.student_consistency") is not None


def test_bad_gate_and_relation_are_named():
    with pytest.raises(GateError, match="METRIC=NUMBER"):
        parse_gates("agreement=high")
    assert parse_gates("agreement=0.9, x.y=1") == {"agreement": 0.9, "x.y": 1.0}


def test_unknown_relation_is_refused(tiny_setup, tmp_path):
    with pytest.raises(FidelityError, match="unknown relation"):
        run_fidelity(_opts(tiny_setup, tmp_path, relations=["spin"]))


def test_options_built_in_python_are_validated_before_anything_runs(tiny_setup, tmp_path):
    with pytest.raises(FidelityError, match="variants must be >= 1, got 0"):
        run_fidelity(_opts(tiny_setup, tmp_path / "out", variants=0))
    with pytest.raises(FidelityError, match="attacks: unknown"):
        run_fidelity(_opts(tiny_setup, tmp_path / "out", attacks=["alert", "fgsm"]))
    assert not (tmp_path / "out").exists()


def test_codegen_input_is_docstring_plus_part_of_the_body():
    code = 'def add(a, b):\n    """Add."""\n    s = a\n    s += b\n    return s\n'
    assert codegen_input(code, "add", 0.0) == 'def add(a, b):\n    """Add."""\n'
    assert codegen_input(code, "add", 0.5) == 'def add(a, b):\n    """Add."""\n    s = a\n'
    assert codegen_input(code, "nope", 0.5) is None


def test_report_has_a_fidelity_section(result, tmp_path):
    from codistill.report.collect import collect
    from codistill.report.render import build_sections

    out, _ = result
    data = collect([out])
    sections = {s.id: s for s in build_sections(data)}
    assert "fidelity" in sections
    titles = [getattr(b, "title", "") for b in sections["fidelity"].blocks]
    assert any(t.startswith("relations") for t in titles)


@pytest.mark.skipif(shutil.which("javac") is None, reason="javac not on PATH")
def test_java_assertion_variants_are_compiled_and_keep_the_hole(tiny_setup, tmp_path):
    from codistill.data.jsonl import write_records
    from codistill.data.schema import PLACEHOLDER, AssertionRecord

    test = (
        "@Test\npublic void testSum() {\n    int total = Calc.sum(2, 3);\n"
        "    for (int i = 0; i < 3; i++) {\n        total = total + i;\n    }\n"
        f"    {PLACEHOLDER}\n}}\n"
    )
    record = AssertionRecord(
        id="j0",
        language="java",
        repository="fixture",
        focal_path="",
        focal_name="",
        focal_code="",
        test_path="CalcTest.java",
        test_name="CalcTest.testSum",
        test_code=test,
        target="assertEquals(8, total);",
        assert_line=7,
        focal_link="none",
        split="test",
    )
    data = tmp_path / "java.jsonl"
    write_records(data, [record])
    res = run_fidelity(_opts(tiny_setup, tmp_path / "out", data=str(data), attacks=[], variants=2))
    per = res["verification"]["per_relation"]
    assert res["verification"]["summary"]["compile_possible"] == 1
    assert per["loop_exchange"]["verified"] >= 1 and per["rename_placeholder"]["verified"] >= 1
    assert res["n_variants"] >= 3


SHARED = __import__("pathlib").Path(__file__).resolve().parents[2].parent / "shared" / "data"
needs_humaneval = pytest.mark.skipif(
    not (SHARED / "humaneval-plus").is_dir(), reason="../shared/data absent"
)


@pytest.fixture(scope="module")
def humaneval_data(tmp_path_factory):
    """HumanEval/0 and /4 (HumanEval+ tests) as codistill codegen JSONL."""
    from codistill.data.benchmarks import load_humaneval_plus
    from codistill.data.jsonl import write_records

    path = next((SHARED / "humaneval-plus").glob("*.jsonl.gz"))
    records = [r for r in load_humaneval_plus(path) if r.id in ("HumanEval/0", "HumanEval/4")]
    data = tmp_path_factory.mktemp("he") / "he.jsonl"
    write_records(data, records)
    return data


@pytest.fixture(scope="module")
def codegen_run(tiny_setup, humaneval_data, tmp_path_factory):
    """One code-generation run of the tiny models; also returns each Generator's budget."""
    from codistill.fidelity import models

    budgets = []
    real_init = models.Generator.__init__

    def spy(self, path, **kwargs):
        budgets.append(kwargs["max_new_tokens"])
        real_init(self, path, **kwargs)

    out = tmp_path_factory.mktemp("codegen")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(models.Generator, "__init__", spy)
        res = run_fidelity(
            _opts(
                tiny_setup,
                out,
                task="codegen",
                data=str(humaneval_data),
                attacks=["mhm"],
                relations=["rename_placeholder", "loop_exchange", "dead_code"],
            )
        )
    return out, res, budgets


@needs_humaneval
def test_codegen_variants_are_verified_by_running_the_tests(codegen_run):
    _, res, _ = codegen_run
    assert res["verification"]["summary"]["variants"].get("tests", 0) >= 1


@needs_humaneval
def test_codegen_is_scored_the_recode_way(codegen_run):
    _, res, _ = codegen_run
    assert set(res["codegen"]) == {"teacher", "student"}
    assert res["codegen"]["student"]["inputs"] >= 1
    assert "pass@1" in res["originals"]["teacher"]


@needs_humaneval
def test_codegen_generates_with_the_given_budget_not_the_codegen_default(codegen_run):
    _, _, budgets = codegen_run
    assert budgets == [12, 12]


@needs_humaneval
def test_codegen_attacks_nothing_when_no_model_solves_an_input(codegen_run):
    _, res, _ = codegen_run
    assert not any(ok for q in res["originals"].values() for ok in q["_passed"].values())
    assert res["attacks"]["inputs"] == 0
    assert res["attacks"]["selection"].startswith("the first inputs the teacher or the student")


@needs_humaneval
def test_codegen_markdown_and_report_show_the_recode_table(codegen_run):
    from codistill.report.collect import collect
    from codistill.report.render import build_sections

    out, _, _ = codegen_run
    markdown = (out / "fidelity.md").read_text()
    assert "| model | pass@1 | robust pass |" in markdown
    assert "On the originals: teacher" in markdown
    blocks = {s.id: s for s in build_sections(collect([out]))}["fidelity"].blocks
    recode = [b for b in blocks if getattr(b, "title", "").startswith("code generation")]
    assert [row[0] for row in recode[0].rows] == ["teacher", "student"]


@needs_humaneval
def test_codegen_attacks_break_a_teacher_that_solves_only_the_originals(
    tiny_setup, humaneval_data, tmp_path, monkeypatch
):
    # The tiny random models pass no HumanEval test, and an attack only attacks inputs some
    # model solves; so the teacher is scripted: given the whole original program (partial=1)
    # it adds nothing (a pass), given anything else a failing statement. Any rename breaks it.
    from codistill.fidelity import models

    items = load_items("codegen", str(humaneval_data), None)
    originals = {codegen_input(it.code, it.record.entry_point, 1.0) for it in items}
    real_call = models.Generator.__call__

    def scripted(self, prompts):
        if self.path != str(tiny_setup["teacher"]):
            return real_call(self, prompts)
        return ["" if p in originals else "assert False\n" for p in prompts]

    monkeypatch.setattr(models.Generator, "__call__", scripted)
    res = run_fidelity(
        _opts(
            tiny_setup,
            tmp_path / "out",
            task="codegen",
            data=str(humaneval_data),
            partial=1.0,
            attacks=["mhm", "alert"],
            relations=["rename_placeholder"],
        )
    )
    assert res["originals"]["teacher"]["pass@1"] == 1.0
    assert res["attacks"]["inputs"] == 2
    for method in ("mhm", "alert"):
        teacher = res["attacks"][method]["teacher"]["summary"]
        assert teacher["attack_success_rate"] == 1.0 and 1 <= teacher["mean_queries"] <= 12
        assert teacher["drop"] == 1.0


def test_classifier_pair_on_c_defects_gives_distribution_metrics(tiny_setup, tmp_path):
    import torch

    from codistill.data.jsonl import write_records
    from codistill.data.schema import DefectRecord
    from codistill.models.classifier import ClassifierModel, build_classifier

    dirs = {}
    for name, seed in (("teacher", 0), ("student", 1)):
        torch.manual_seed(seed)
        model, tok = build_classifier(tiny_setup["teacher"], "defect")
        dirs[name] = ClassifierModel(model, tok, "defect", max_length=64).save(tmp_path / name)
    funcs = [
        "int f(int *p, int n) {\n    int total = 0;\n    for (int i = 0; i < n; i++) {\n"
        "        total += p[i];\n    }\n    if (total > 10) {\n        return 1;\n    } else {\n"
        "        return 0;\n    }\n}\n",
        "static int g(Ctx *ctx, int len) {\n    int ret = read_buf(ctx, len);\n"
        "    if (ret < 0)\n        return ret;\n    ctx->pos += len;\n    return 0;\n}\n",
    ]
    records = [
        DefectRecord(id=f"d{i}", language="c", code=f, label=i % 2, project="fixture")
        for i, f in enumerate(funcs)
    ]
    data = tmp_path / "defect.jsonl"
    write_records(data, records)
    res = run_fidelity(
        _opts(
            tiny_setup,
            tmp_path / "out",
            task="defect",
            data=str(data),
            teacher=str(dirs["teacher"]),
            student=str(dirs["student"]),
            attacks=["mhm"],
            attack_records=2,
            fail_under={"agreement": 0.0},
            fail_over={"all.jsd": 10.0},
        )
    )
    metrics = res["relations"]["all"]["metrics"]
    assert {"jsd", "teacher_ece", "high_confidence_preservation"} <= set(metrics)
    assert res["verification"]["summary"]["compile_attempted"] == 2
    assert res["attacks"]["target"] == "reference" and res["passed"]


def test_classifier_inputs_are_the_teachers_held_out_split(tmp_path):
    from codistill.data.jsonl import write_records
    from codistill.data.schema import DefectRecord
    from codistill.fidelity.runner import held_out
    from codistill.files import sha256_file as file_sha256
    from codistill.training.classifier import split_records

    records = [
        DefectRecord(
            id=f"d{i}",
            language="c",
            code="int f(void) { return 0; }\n",
            label=i % 2,
            project="fixture",
        )
        for i in range(40)
    ]
    data = tmp_path / "d.jsonl"
    write_records(data, records)
    split = {"fractions": [0.4, 0.4, 0.05, 0.15], "seed": 3}
    meta = {"task": "defect", "data_sha256": file_sha256(data), "split": split}
    (tmp_path / "classifier.json").write_text(json.dumps(meta))
    kept, why = held_out(records, str(tmp_path), str(data))
    expected = split_records(records, split["fractions"], split["seed"])["test"]
    assert [r.id for r in kept] == [r.id for r in expected] and "test part" in why
    other = tmp_path / "other.jsonl"
    write_records(other, records[:5])
    assert held_out(records[:5], str(tmp_path), str(other))[0] == records[:5]


def test_the_hole_takes_the_assertion_without_joining_the_next_line(tiny_setup):
    from codistill.fidelity.runner import Item, verify_text

    code = "def test_x(self):\n    x = 1\n    __codistill_hole__()\n    y = 2\n"
    item = Item("i", "python", code, "self.assertEqual(x, 1)")
    full = verify_text(item, code, item.target)
    assert "    self.assertEqual(x, 1)\n    y = 2\n" in full
    compile(full, "test", "exec")


def test_codegen_fidelity_refuses_a_record_in_another_language(humaneval_data, tmp_path):
    from dataclasses import replace

    from codistill.data.jsonl import read_records, write_records

    records = read_records(humaneval_data, "codegen")
    js = tmp_path / "js.jsonl"
    write_records(js, [records[0], replace(records[1], language="javascript")])
    with pytest.raises(FidelityError, match=r"js\.jsonl: record HumanEval/4 is in javascript"):
        load_items("codegen", str(js), None)
