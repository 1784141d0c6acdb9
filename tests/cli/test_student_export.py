"""``codistill student export``: a student as a GGUF file, user errors as exit code 2."""

from __future__ import annotations

import json

import gguf
import pytest

from codistill.cli.main import main
from codistill.evaluation.backends import llama_cpp_available
from codistill.models.tiny import make_tiny_seq2seq_lm


def _export(student, out, *extra) -> int:
    return main(["student", "export", "--model", str(student), "--gguf", str(out), *extra])


def test_student_export_writes_the_trimmed_student_and_prints_a_summary(
    tiny_setup, tmp_path, capsys
):
    out = tmp_path / "student.gguf"
    assert _export(tiny_setup["student"], out, "--quant", "q8_0") == 0
    summary = json.loads(capsys.readouterr().out)
    assert (summary["architecture"], summary["quant"], summary["gguf"]) == (
        "gemma3",
        "q8_0",
        str(out),
    )
    config = json.loads((tiny_setup["student"] / "config.json").read_text())
    reader = gguf.GGUFReader(out)
    assert len(reader.fields["tokenizer.ggml.tokens"].data) == config["vocab_size"]
    assert summary["bytes"] == out.stat().st_size


def test_student_export_refuses_an_existing_file_without_overwrite(tiny_setup, tmp_path, capsys):
    out = tmp_path / "student.gguf"
    out.write_bytes(b"keep me")
    assert _export(tiny_setup["student"], out) == 2
    assert "already exists; pass --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert _export(tiny_setup["student"], out, "--overwrite") == 0
    assert out.read_bytes()[:4] == b"GGUF"


def test_student_export_names_an_unsupported_model_type(tmp_path, capsys):
    t5 = make_tiny_seq2seq_lm(tmp_path / "t5", num_layers=1)
    assert _export(t5, tmp_path / "t5.gguf") == 2
    err = capsys.readouterr().err
    assert "model_type 't5' cannot be exported" in err and "Traceback" not in err
    assert not (tmp_path / "t5.gguf").exists()


def test_student_export_of_a_directory_without_a_model_is_a_usage_error(tmp_path, capsys):
    assert _export(tmp_path, tmp_path / "x.gguf") == 2
    assert "no config.json" in capsys.readouterr().err


@pytest.mark.skipif(not llama_cpp_available(), reason="llama-cpp-python not installed")
def test_student_export_verify_decodes_held_out_prompts_with_both_models(
    tiny_setup, tmp_path, capsys
):
    out = tmp_path / "student.gguf"
    argv = ["--verify", str(tiny_setup["valid"]), "--verify-prompts", "3", "--max-new-tokens", "4"]
    assert _export(tiny_setup["student"], out, *argv) == 0
    verify = json.loads(capsys.readouterr().out)["verify"]
    assert verify["prompts"] == 3 and verify["tokenization_match"] == 3
    assert verify["exact_match"] == 3
