import json

import pytest
import torch
from transformers import AutoConfig

from codistill.cli.main import main
from codistill.models.loading import load_model


def _finetune(setup, out, *extra):
    argv = ["teacher", "finetune", "--model", str(setup["teacher"]), "--train", str(setup["train"])]
    argv += ["--valid", str(setup["valid"]), "--out", str(out), *extra]
    argv += ["max_steps=4", "batch_size=4", "lr=0.01", "progress=false"]
    return main(argv)


def test_full_finetune_trims_the_vocabulary_freezes_embeddings_and_lowers_held_out_loss(
    tiny_setup, tmp_path
):
    out = tmp_path / "ft"
    assert _finetune(tiny_setup, out, "--vocab-from", str(tiny_setup["train"])) == 0
    summary = json.loads((out / "finetune.json").read_text())
    tuned = AutoConfig.from_pretrained(out / "model")
    base = AutoConfig.from_pretrained(tiny_setup["teacher"])
    assert tuned.num_hidden_layers == base.num_hidden_layers  # every layer kept
    assert tuned.vocab_size == summary["vocabulary"]["vocab_size"] < base.vocab_size
    loss = summary["held_out_loss"]
    assert loss["after"] < loss["before"]
    assert summary["steps"] == 4 and summary["config"]["freeze_embeddings"] is True
    start, end = load_model(out / "base"), load_model(out / "model")
    emb = lambda m: m.get_input_embeddings().weight  # noqa: E731
    assert torch.equal(emb(start), emb(end))  # frozen
    moved = [
        n
        for (n, a), (_, b) in zip(start.named_parameters(), end.named_parameters(), strict=True)
        if not torch.equal(a, b)
    ]
    assert moved and not any("embed" in n for n in moved)


def test_lora_finetune_saves_plain_weights(tiny_setup, tmp_path):
    out = tmp_path / "lora"
    assert _finetune(tiny_setup, out, "--mode", "lora") == 0
    names = [n for n, _ in load_model(out / "model").named_parameters()]
    assert not any("lora" in n for n in names)
    assert not (out / "model" / "adapter_config.json").exists()


def test_finetune_refuses_a_tuned_teacher_and_fixed_keys(tiny_setup, tmp_path, capsys):
    (tmp_path / "done" / "model").mkdir(parents=True)
    (tmp_path / "done" / "model" / "config.json").write_text("{}")
    assert _finetune(tiny_setup, tmp_path / "done") == 2
    assert "already tuned" in capsys.readouterr().err
    argv = ["teacher", "finetune", "--model", str(tiny_setup["teacher"]), "--train", "x.jsonl"]
    assert main([*argv, "--out", str(tmp_path / "o"), "loss=alpha_temperature"]) == 2
    assert "loss: set by teacher finetune" in capsys.readouterr().err


@pytest.mark.parametrize("every, expected", [(2, [0, 2, 4, 5]), (None, [5])])
def test_valid_every_steps_validates_the_init_and_every_n_steps(
    tiny_setup, tmp_path, every, expected
):
    out = tmp_path / "run"
    argv = ["distill", f"student={tiny_setup['student']}", "loss=ce", "progress=false"]
    argv += [f"train_data={tiny_setup['train']}", f"valid_data={tiny_setup['valid']}"]
    argv += ["max_steps=5", "batch_size=2", f"output_dir={out}"]
    if every:
        argv.append(f"valid_every_steps={every}")
    assert main(argv) == 0
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "valid"] == expected
