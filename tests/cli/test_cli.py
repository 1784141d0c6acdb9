from __future__ import annotations

import json

import pytest
from transformers import AutoConfig

from codistill.cli.main import main
from codistill.data.jsonl import write_records
from codistill.data.schema import CodegenRecord
from codistill.models.tiny import CODE_CORPUS


def _derive(setup, out, layers, *extra):
    argv = ["student", "derive", "--teacher", str(setup["teacher"]), "--layers", layers]
    return main([*argv, "--vocab-from", str(setup["train"]), "--out", str(out), *extra])


def _distill_args(setup, out, **over):
    pairs = {
        "student": setup["student"],
        "teacher": setup["teacher"],
        "train_data": setup["train"],
        "valid_data": setup["valid"],
        "output_dir": out,
        "progress": "false",
        "batch_size": 2,
        "epochs": 1,
        "lr": 0.001,
    }
    pairs.update(over)
    return ["distill", *(f"{k}={v}" for k, v in pairs.items())]


def test_student_derive_keeps_the_requested_layer_count_and_trims_the_vocabulary(
    tiny_setup, tmp_path
):
    out = tmp_path / "student"
    assert _derive(tiny_setup, out, "2") == 0
    assert (out / "token_map.json").is_file()
    config = AutoConfig.from_pretrained(out)
    assert config.num_hidden_layers == 2
    assert config.vocab_size < AutoConfig.from_pretrained(tiny_setup["teacher"]).vocab_size


def test_student_derive_copies_an_explicit_layer_list(tiny_setup, tmp_path):
    out = tmp_path / "student"
    assert _derive(tiny_setup, out, "0,3") == 0
    assert json.loads((out / "derivation.json").read_text())["layers"] == [0, 3]


def test_student_derive_chooses_layers_by_loss_on_held_out_records(tiny_setup, tmp_path, capsys):
    out = tmp_path / "student"
    assert _derive(tiny_setup, out, "2", "--choose-layers-on", str(tiny_setup["valid"])) == 0
    derivation = json.loads((out / "derivation.json").read_text())
    choice = derivation["layer_choice"]
    assert derivation["layers"] == choice["layers"] and len(choice["layers"]) == 2
    assert [r["kept"] for r in choice["removed"]] == [3, 2]
    assert "removed layer" in capsys.readouterr().err


def test_student_derive_drops_the_least_turning_block_on_code_records(tiny_setup, tmp_path):
    from codistill.models.layer_choice import LAYER_SCORES

    assert LAYER_SCORES == ("loss", "angular")  # the CLI's choices, written out torch-free
    valid = tmp_path / "code.jsonl"
    records = [
        CodegenRecord(
            id=f"valid/{i}",
            source="stdlib",
            prompt=f'def add_{i}(a, b):\n    """Return a plus b."""\n',
            entry_point=f"add_{i}",
            tests="",
            canonical_solution="    return a + b\n",
            split="valid",
        )
        for i in range(6)
    ]
    write_records(valid, records)
    out = tmp_path / "student"
    args = ("--choose-layers-on", str(valid), "--layer-score", "angular")
    assert _derive(tiny_setup, out, "2", *args) == 0
    derivation = json.loads((out / "derivation.json").read_text())
    choice = derivation["layer_choice"]
    assert choice["method"] == "angular-block" and derivation["layers"] == choice["layers"]
    dropped = [r["layer"] for r in choice["removed"]]
    assert len(dropped) == 2 and dropped[1] == dropped[0] + 1  # one contiguous block
    assert sorted(choice["layers"] + dropped) == [0, 1, 2, 3]


def test_student_derive_reads_each_task_as_distill_cuts_it(tiny_setup, tmp_path, monkeypatch):
    """The layer choice reads a code solution to codegen's default target length (384 tokens),
    not an assertion's (64)."""
    import codistill.models.layer_choice as layer_choice
    from codistill.config.distill import TASK_DEFAULTS

    seen = {}

    def fake_choose(model_dir, records, keep, **kw):
        seen[records[0].task] = {k: kw[k] for k in ("max_source_tokens", "max_target_tokens")}
        return layer_choice.LayerChoice(layers=[0, 1], full_loss=1.0, loss=1.0)

    monkeypatch.setattr(layer_choice, "choose_layers", fake_choose)
    code = tmp_path / "code.jsonl"
    write_records(
        code,
        [
            CodegenRecord(
                id="valid/0",
                source="stdlib",
                prompt="def add(a, b):\n",
                entry_point="add",
                tests="",
                canonical_solution="    return a + b\n",
                split="valid",
            )
        ],
    )
    for i, valid in enumerate((code, tiny_setup["valid"])):
        assert _derive(tiny_setup, tmp_path / f"s{i}", "2", "--choose-layers-on", str(valid)) == 0
    assert seen == TASK_DEFAULTS
    assert seen["codegen"]["max_target_tokens"] > seen["assertion"]["max_target_tokens"]


def test_student_derive_rejects_a_non_numeric_layers_value(tiny_setup, tmp_path, capsys):
    assert _derive(tiny_setup, tmp_path / "student", "x") == 2
    err = capsys.readouterr().err
    assert "codistill student: error: --layers" in err
    assert not (tmp_path / "student").exists()


def test_student_derive_reports_a_layer_out_of_range_as_a_usage_error(tiny_setup, tmp_path, capsys):
    assert _derive(tiny_setup, tmp_path / "student", "0,9") == 2
    assert "codistill student: error:" in capsys.readouterr().err


def test_student_derive_refuses_an_existing_out_without_overwrite(tiny_setup, tmp_path, capsys):
    out = tmp_path / "student"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert _derive(tiny_setup, out, "2") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert (out / "keep.txt").exists()


def test_student_derive_overwrite_replaces_an_existing_out(tiny_setup, tmp_path):
    out = tmp_path / "student"
    out.mkdir()
    (out / "keep.txt").write_text("x")
    assert _derive(tiny_setup, out, "2", "--overwrite") == 0
    assert (out / "token_map.json").is_file() and not (out / "keep.txt").exists()


def test_student_derive_heals_its_cuts_on_text_files(tiny_setup, tmp_path):
    code = tmp_path / "code.py"
    code.write_text("\n".join(CODE_CORPUS * 6))
    out = tmp_path / "student"
    heal = ["--heal-on", str(code), "--heal-tokens", "640", "--heal-epochs", "2"]
    assert _derive(tiny_setup, out, "0,3", *heal, "--heal-lr", "0.003") == 0
    healing = json.loads((out / "derivation.json").read_text())["healing"]
    assert [c["student_layer"] for c in healing["cuts"]] == [1]  # layers 1-2 absorbed by 3
    assert healing["settings"]["lr"] == 0.003 and healing["steps"] > 0
    assert healing["held_out_error_after"][0] < healing["held_out_error_before"][0]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--heal-tokens", "0"], "--heal-tokens must be >= 1"),
        (["--heal-tokens", "100"], "--heal-tokens must be at least one window"),
        (["--heal-epochs", "0"], "--heal-epochs must be >= 1"),
        (["--heal-lr", "0"], "--heal-lr must be > 0"),
        (["--heal-on", "nowhere.py"], "--heal-on nowhere.py: no such file"),
    ],
)
def test_student_derive_checks_its_healing_options_before_loading_anything(
    tiny_setup, tmp_path, capsys, extra, message
):
    assert _derive(tiny_setup, tmp_path / "student", "0,3", *extra) == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "student").exists()


def test_distill_reports_an_out_of_range_override(tiny_setup, tmp_path, capsys):
    assert main(_distill_args(tiny_setup, tmp_path / "run", alpha=1.5)) == 2
    err = capsys.readouterr().err
    assert "codistill distill: error:" in err
    assert "alpha must be in [0, 1], got 1.5" in err


def test_distill_suggests_the_closest_key_for_an_unknown_one(tiny_setup, tmp_path, capsys):
    assert main(_distill_args(tiny_setup, tmp_path / "run", temprature=2)) == 2
    assert "unknown key 'temprature'; did you mean 'temperature'?" in capsys.readouterr().err


def test_distill_help_config_lists_every_key(capsys):
    assert main(["distill", "--help-config"]) == 0
    out = capsys.readouterr().out
    assert "temperature = 1.0" in out and "halt_after_steps" in out


def test_distill_resume_finishes_a_halted_run(tiny_setup, tmp_path):
    run = tmp_path / "run"
    assert main(_distill_args(tiny_setup, run, max_steps=3, halt_after_steps=1)) == 0
    assert json.loads((run / "run.json").read_text())["status"] == "halted"
    # The saved config holds halt_after_steps=1; the resumed invocation must not halt again.
    assert main(["distill", "--resume", str(run)]) == 0
    info = json.loads((run / "run.json").read_text())
    assert info["status"] == "finished" and info["global_step"] == 3
    assert (run / "final" / "config.json").is_file()


def test_distill_refuses_a_non_empty_output_dir_without_resume(tiny_setup, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "notes.txt").write_text("x")
    assert main(_distill_args(tiny_setup, run, max_steps=1)) == 2
    err = capsys.readouterr().err
    assert "exists and is not empty" in err and "--resume" in err


def test_distill_resume_of_a_directory_without_a_run_is_a_usage_error(tmp_path, capsys):
    assert main(["distill", "--resume", str(tmp_path)]) == 2
    assert "no run.json" in capsys.readouterr().err


def test_distill_names_the_file_and_line_of_a_bad_record(tiny_setup, tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    lines = tiny_setup["train"].read_text().splitlines()
    bad.write_text("\n".join([lines[0], '{"id": "x"}', *lines[1:]]) + "\n")
    assert main(_distill_args(tiny_setup, tmp_path / "run", train_data=bad, max_steps=1)) == 2
    assert f"{bad}:2" in capsys.readouterr().err


def test_sweep_without_a_swept_key_is_a_usage_error(tmp_path, capsys):
    assert main(["sweep", "--out", str(tmp_path / "s"), "alpha=0.5"]) == 2
    assert "codistill sweep: error: nothing to sweep" in capsys.readouterr().err


def test_teacher_convert_names_a_missing_or_non_gguf_file_and_leaves_nothing(tmp_path, capsys):
    out = tmp_path / "converted"
    assert (
        main(["teacher", "convert", "--gguf", str(tmp_path / "none.gguf"), "--out", str(out)]) == 2
    )
    assert "none.gguf: no such GGUF file" in capsys.readouterr().err
    fake = tmp_path / "model.gguf"
    fake.write_bytes(b"PK\x03\x04 not a gguf")
    assert main(["teacher", "convert", "--gguf", str(fake), "--out", str(out)]) == 2
    assert "model.gguf: not a GGUF file" in capsys.readouterr().err
    assert main(["teacher", "convert", "--gguf", str(fake)]) == 2
    assert "--gguf needs --out" in capsys.readouterr().err
    assert not out.exists()
