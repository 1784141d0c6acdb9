"""``convert_gguf`` on a tiny Llama GGUF written here (fast; the real Gemma file is in
test_gemma.py behind the ``teacher`` marker)."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

import pytest
import torch

from codistill.cli.main import main
from codistill.models import gemma
from codistill.models.gemma import SOURCE_MARKER, convert_gguf
from codistill.models.loading import load_model, load_tokenizer
from tests.gguf_fixtures import make_tiny_llama_with_bytelevel_tokenizer, write_llama_gguf

pytest.importorskip("gguf")

SNIPPETS = [
    "def add(a, b):\n    return a + b",
    'public static int max(int[] xs) {\n\tint m = xs[0];  // "first"\n}',
    "for (i, x) in enumerate(items):  # naïve → émoji 🐍\n        total += x ** 2",
    "<|endoftext|>class  Foo :\r\n  pass\n\n\n",
]
# F32 weights come back bit-exact up to summation order; F16 ones are rounded to 11 bits.
VARIANTS = {
    "f32-untied": {"tie": False, "f16": False, "atol": 1e-4},
    "f16-tied": {"tie": True, "f16": True, "atol": 0.1},
}


@pytest.fixture(scope="module", params=list(VARIANTS))
def converted(request, tmp_path_factory) -> dict:
    variant = VARIANTS[request.param]
    root = tmp_path_factory.mktemp(request.param)
    hf = make_tiny_llama_with_bytelevel_tokenizer(root / "hf", tie_word_embeddings=variant["tie"])
    gguf_file = write_llama_gguf(hf, root / "tiny.gguf", f16=variant["f16"])
    out = convert_gguf(gguf_file, root / "converted" / "tiny", name="tiny-llama", package="pkg")
    return {"hf": hf, "gguf": gguf_file, "out": out, **variant}


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_writes_safetensors_tokenizer_and_the_files_sha256(converted):
    out = converted["out"]
    assert out == converted["gguf"].parent / "converted" / "tiny"
    assert [p.name for p in out.parent.iterdir()] == ["tiny"]  # no temp dir left behind
    assert list(out.glob("*.safetensors")) and not list(out.glob("*.bin"))
    umask = os.umask(0)
    os.umask(umask)
    assert out.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert (out / "tokenizer.json").is_file() and (out / "tokenizer_config.json").is_file()
    source = json.loads((out / SOURCE_MARKER).read_text())
    assert source == {
        "name": "tiny-llama",
        "package": "pkg",
        "gguf": "tiny.gguf",
        "gguf_sha256": _sha256(converted["gguf"]),
    }
    config = json.loads((out / "config.json").read_text())
    assert "quantization_config" not in config
    assert config["model_type"] == "llama"
    assert config["tie_word_embeddings"] is converted["tie"]


def test_converted_model_gives_the_original_logits(converted):
    original, model = load_model(converted["hf"]), load_model(converted["out"])
    assert model.dtype == torch.float32
    for key in ("num_hidden_layers", "num_attention_heads", "num_key_value_heads", "vocab_size"):
        assert getattr(model.config, key) == getattr(original.config, key)
    if converted["tie"]:
        assert model.lm_head.weight.data_ptr() == model.model.embed_tokens.weight.data_ptr()
    tok = load_tokenizer(converted["hf"])
    batch = tok(SNIPPETS[:2], return_tensors="pt", padding=True)
    with torch.no_grad():
        want, got = original(**batch).logits, model(**batch).logits
    mask = batch["attention_mask"].bool()
    assert want[mask].abs().max() > 1  # far from zero, so the tolerance below means something
    torch.testing.assert_close(got[mask], want[mask], atol=converted["atol"], rtol=0)


def test_converted_tokenizer_encodes_code_like_the_original(converted):
    original, tok = load_tokenizer(converted["hf"]), load_tokenizer(converted["out"])
    assert (tok.bos_token_id, tok.eos_token_id) == (original.bos_token_id, original.eos_token_id)
    assert len(tok) == len(original)
    for text in SNIPPETS:
        ids = original(text)["input_ids"]
        assert tok(text)["input_ids"] == ids
        assert tok.decode(ids, skip_special_tokens=True) == original.decode(
            ids, skip_special_tokens=True
        )


def test_cli_converts_a_gguf_replacing_an_old_directory(converted, tmp_path, capsys):
    out = tmp_path / "cli-out"
    out.mkdir()
    (out / "stale.txt").write_text("from an earlier conversion")
    (out / SOURCE_MARKER).write_text("{}")  # an earlier conversion's marker
    argv = ["teacher", "convert", "--gguf", str(converted["gguf"]), "--out", str(out)]
    assert main(argv) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(out)
    assert not (out / "stale.txt").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["cli-out"]
    source = json.loads((out / SOURCE_MARKER).read_text())
    assert source == {
        "name": "tiny",
        "package": None,
        "gguf": "tiny.gguf",
        "gguf_sha256": _sha256(converted["gguf"]),
    }
    assert (
        load_tokenizer(out)(SNIPPETS[0])["input_ids"]
        == load_tokenizer(converted["hf"])(SNIPPETS[0])["input_ids"]
    )


def _fail_tokenizer_save(monkeypatch, exc: BaseException) -> None:
    """Make the tokenizer's save (after the weights are written) raise ``exc``."""
    import transformers

    load = transformers.AutoTokenizer.from_pretrained

    def from_pretrained(*args, **kwargs):
        tokenizer = load(*args, **kwargs)

        def save_pretrained(*_args, **_kwargs):
            raise exc

        tokenizer.save_pretrained = save_pretrained
        return tokenizer

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", from_pretrained)


def _fail_source_record(monkeypatch, exc: BaseException) -> None:
    """Make hashing the GGUF (after weights and tokenizer are written) raise ``exc``."""

    def boom(*_args, **_kwargs):
        raise exc

    monkeypatch.setattr(gemma, "sha256_file", boom)


@pytest.mark.parametrize(
    ("fail", "exc"),
    [(_fail_tokenizer_save, KeyboardInterrupt()), (_fail_source_record, OSError("disk full"))],
    ids=["tokenizer-interrupted", "source-oserror"],
)
def test_a_failure_mid_save_leaves_no_out_dir_and_no_temp_dir(
    converted, tmp_path, monkeypatch, fail, exc
):
    parent = tmp_path / "models"
    fail(monkeypatch, exc)
    with pytest.raises(type(exc)):
        convert_gguf(converted["gguf"], parent / "tiny")
    assert not (parent / "tiny").exists()
    assert list(parent.iterdir()) == []


def test_a_failed_reconversion_keeps_the_previous_directory(converted, tmp_path, monkeypatch):
    out = convert_gguf(converted["gguf"], tmp_path / "tiny")
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    _fail_source_record(monkeypatch, OSError("disk full"))
    with pytest.raises(OSError, match="disk full"):
        convert_gguf(converted["gguf"], out)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == before
    assert [p.name for p in tmp_path.iterdir()] == ["tiny"]


def test_an_unrelated_non_empty_directory_is_never_replaced(converted, tmp_path):
    mine = tmp_path / "models"
    mine.mkdir()
    (mine / "notes.txt").write_text("keep me")
    with pytest.raises(FileExistsError, match="not a codistill conversion"):
        convert_gguf(converted["gguf"], mine)
    assert (mine / "notes.txt").read_text() == "keep me"
