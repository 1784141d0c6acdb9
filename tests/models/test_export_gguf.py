"""GGUF export of Gemma 3 and Qwen2 models and of students with trimmed vocabularies.

The file's structure (names, shapes, values, hyperparameters, vocabulary) is read back with
gguf-py's reader, so those tests need no llama.cpp. With llama-cpp-python installed, the file is
also run: llama.cpp must tokenize as the Hugging Face tokenizer does and decode greedily as the
Hugging Face model does.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import gguf
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from codistill.evaluation.backends import llama_cpp_available
from codistill.models.export_gguf import ExportError, export_gguf
from codistill.models.student import derive_student
from codistill.models.tiny import CODE_CORPUS, make_tiny_causal_lm
from tests.qwen_fixtures import EXTRA_ROWS, make_tiny_qwen2

needs_llama_cpp = pytest.mark.skipif(
    not llama_cpp_available(), reason="llama-cpp-python not installed"
)
VOCAB_TEXTS = CODE_CORPUS[:6]
# Held out from the trimmed students' vocabulary corpus; include text outside both tokenizers'
# training data, so byte fallback and unseen characters are exercised.
PROMPTS = [
    *(text[:60] for text in CODE_CORPUS[5:11]),
    "def main():\n    value = compute(1, 2)\n",
    "unicode ünïcödé 🚀 text\n\tindented",
]


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("export")
    # 4 layers: sliding, sliding, full, sliding with an 8-token window, so prompts longer than
    # the window tell a wrong attention pattern apart.
    gemma = make_tiny_causal_lm(root / "gemma", num_layers=4)
    qwen = make_tiny_qwen2(root / "qwen", num_layers=3)
    derive_student(gemma, root / "gemma_trimmed", [0, 2], vocab_texts=VOCAB_TEXTS)
    derive_student(qwen, root / "qwen_trimmed", 2, vocab_texts=VOCAB_TEXTS)
    return {
        "gemma": gemma,
        "qwen": qwen,
        "gemma_trimmed": root / "gemma_trimmed",
        "qwen_trimmed": root / "qwen_trimmed",
    }


def _export(models, name: str, tmp_path: Path, quant: str = "f16") -> tuple[Path, dict]:
    out = tmp_path / f"{name}.{quant}.gguf"
    return out, export_gguf(models[name], out, quant)


def _field(reader: gguf.GGUFReader, key: str):
    return reader.fields[key].contents()


def _tensor(reader: gguf.GGUFReader, name: str):
    return next(t for t in reader.tensors if t.name == name)


def _hf_tokens(model_dir: Path) -> dict[int, str]:
    spec = json.loads((model_dir / "tokenizer.json").read_text())
    tokens = {i: t for t, i in spec["model"]["vocab"].items()}
    tokens.update({a["id"]: a["content"] for a in spec["added_tokens"]})
    return tokens


def test_gemma3_tensors_are_named_shaped_and_norm_shifted_as_llama_cpp_reads_them(models, tmp_path):
    out, summary = _export(models, "gemma", tmp_path)
    reader = gguf.GGUFReader(out)
    state = load_file(models["gemma"] / "model.safetensors")
    per_layer = (
        "attn_norm attn_q attn_k attn_v attn_output attn_q_norm attn_k_norm post_attention_norm "
        "ffn_norm ffn_gate ffn_up ffn_down post_ffw_norm"
    ).split()
    expected = {"token_embd.weight", "output_norm.weight"} | {
        f"blk.{i}.{n}.weight" for i in range(4) for n in per_layer
    }
    assert {t.name for t in reader.tensors} == expected  # tied head: no output.weight
    assert summary["tensors"] == len(expected) and summary["architecture"] == "gemma3"

    embed = state["model.embed_tokens.weight"]
    token_embd = _tensor(reader, "token_embd.weight")
    assert list(token_embd.shape) == list(reversed(embed.shape))  # GGUF lists dims innermost first
    assert token_embd.tensor_type == gguf.GGMLQuantizationType.F16
    np.testing.assert_allclose(token_embd.data, embed.numpy(), atol=1e-3)
    # Gemma's RMSNorm scales by (1 + w), llama.cpp's by w.
    for hf, name in [
        ("model.layers.2.pre_feedforward_layernorm.weight", "blk.2.ffn_norm.weight"),
        ("model.layers.1.self_attn.q_norm.weight", "blk.1.attn_q_norm.weight"),
        ("model.norm.weight", "output_norm.weight"),
    ]:
        tensor = _tensor(reader, name)
        assert tensor.tensor_type == gguf.GGMLQuantizationType.F32
        np.testing.assert_allclose(tensor.data, state[hf].numpy() + 1.0, rtol=1e-6)
    attn_k = _tensor(reader, "blk.3.attn_k.weight").data
    np.testing.assert_allclose(
        attn_k, state["model.layers.3.self_attn.k_proj.weight"].numpy(), atol=1e-3
    )


def test_gemma3_hyperparameters_carry_the_per_layer_sliding_pattern(models, tmp_path):
    out, _ = _export(models, "gemma", tmp_path)
    reader = gguf.GGUFReader(out)
    config = json.loads((models["gemma"] / "config.json").read_text())
    assert _field(reader, "general.architecture") == "gemma3"
    assert _field(reader, "gemma3.block_count") == 4
    assert _field(reader, "gemma3.embedding_length") == config["hidden_size"]
    assert _field(reader, "gemma3.attention.head_count_kv") == config["num_key_value_heads"]
    assert _field(reader, "gemma3.attention.key_length") == config["head_dim"]
    assert _field(reader, "gemma3.attention.sliding_window") == 8
    # Layer types sliding, sliding, full, sliding: not llama.cpp's default 5:1 pattern.
    assert _field(reader, "gemma3.attention.sliding_window_pattern") == [True, True, False, True]
    rope = config["rope_parameters"]
    assert _field(reader, "gemma3.rope.freq_base") == rope["full_attention"]["rope_theta"]
    assert _field(reader, "gemma3.rope.freq_base_swa") == rope["sliding_attention"]["rope_theta"]


def test_gemma3_vocabulary_is_sentencepiece_style_with_scores_in_merge_order(models, tmp_path):
    out, summary = _export(models, "gemma", tmp_path)
    reader = gguf.GGUFReader(out)
    hf_tokens = _hf_tokens(models["gemma"])
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    scores = _field(reader, "tokenizer.ggml.scores")
    assert _field(reader, "tokenizer.ggml.model") == "llama" and summary["tokenizer"] == "llama"
    assert tokens == [hf_tokens[i] for i in range(len(tokens))]
    assert types[:5] == [gguf.TokenType.CONTROL] * 5  # <pad> <eos> <bos> <unk> <mask>
    assert tokens[5 + 0x41] == "<0x41>" and types[5 + 0x41] == gguf.TokenType.BYTE
    assert (
        _field(reader, "tokenizer.ggml.bos_token_id"),
        _field(reader, "tokenizer.ggml.eos_token_id"),
    ) == (2, 1)
    assert _field(reader, "tokenizer.ggml.add_bos_token") is True
    assert _field(reader, "tokenizer.ggml.add_space_prefix") is False
    # llama.cpp merges the adjacent pair whose result scores highest; Hugging Face applies the
    # lowest-ranked merge. The first merge producing each token must carry the highest score.
    spec = json.loads((models["gemma"] / "tokenizer.json").read_text())
    by_token = {t: i for i, t in enumerate(tokens)}
    seen: set[str] = set()
    previous = None
    for left, right in (
        m if isinstance(m, list) else m.split(" ", 1) for m in spec["model"]["merges"]
    ):
        merged = left + right
        if merged in seen:
            continue
        seen.add(merged)
        score = scores[by_token[merged]]
        assert previous is None or score < previous
        previous = score


def test_qwen2_vocabulary_is_byte_level_bpe_padded_to_the_embedding_rows(models, tmp_path):
    out, summary = _export(models, "qwen", tmp_path)
    reader = gguf.GGUFReader(out)
    spec = json.loads((models["qwen"] / "tokenizer.json").read_text())
    hf_tokens = _hf_tokens(models["qwen"])
    tokens = _field(reader, "tokenizer.ggml.tokens")
    types = _field(reader, "tokenizer.ggml.token_type")
    config = json.loads((models["qwen"] / "config.json").read_text())
    assert (_field(reader, "tokenizer.ggml.model"), _field(reader, "tokenizer.ggml.pre")) == (
        "gpt2",
        "qwen2",
    )
    assert len(tokens) == config["vocab_size"] == len(hf_tokens) + EXTRA_ROWS
    assert tokens[: len(hf_tokens)] == [hf_tokens[i] for i in range(len(hf_tokens))]
    assert tokens[-1] == f"[PAD{len(tokens) - 1}]" and types[-1] == gguf.TokenType.UNUSED
    endoftext = tokens.index("<|endoftext|>")
    assert types[endoftext] == gguf.TokenType.CONTROL
    merges = [m if isinstance(m, str) else " ".join(m) for m in spec["model"]["merges"]]
    assert _field(reader, "tokenizer.ggml.merges") == merges
    assert _field(reader, "tokenizer.ggml.add_bos_token") is False
    assert _field(reader, "tokenizer.ggml.eos_token_id") == tokens.index("<|im_end|>")
    assert "<|im_start|>" in _field(reader, "tokenizer.chat_template")
    names = {t.name for t in reader.tensors}
    assert "output.weight" not in names  # tied
    assert {"blk.0.attn_q.bias", "blk.2.attn_v.bias"} <= names
    assert _tensor(reader, "blk.0.attn_q.bias").tensor_type == gguf.GGMLQuantizationType.F32
    assert summary["vocab_size"] == config["vocab_size"]


@pytest.mark.parametrize("name", ["gemma_trimmed", "qwen_trimmed"])
def test_a_trimmed_student_is_written_with_its_own_smaller_vocabulary(models, tmp_path, name):
    teacher = name.removesuffix("_trimmed")
    out, summary = _export(models, name, tmp_path)
    reader = gguf.GGUFReader(out)
    student_tokens = _hf_tokens(models[name])
    vocab = json.loads((models[name] / "config.json").read_text())["vocab_size"]
    assert vocab < json.loads((models[teacher] / "config.json").read_text())["vocab_size"]
    tokens = _field(reader, "tokenizer.ggml.tokens")
    assert len(tokens) == vocab == summary["vocab_size"]
    assert tokens == [student_tokens.get(i, f"[PAD{i}]") for i in range(vocab)]
    assert list(_tensor(reader, "token_embd.weight").shape)[1] == vocab
    assert _field(reader, f"{summary['architecture']}.block_count") == 2


def test_q8_0_quantises_matrices_and_keeps_vectors_in_float32(models, tmp_path):
    out, summary = _export(models, "qwen_trimmed", tmp_path, "q8_0")
    reader = gguf.GGUFReader(out)
    types = {t.name: t.tensor_type for t in reader.tensors}
    assert types["blk.0.ffn_up.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["token_embd.weight"] == gguf.GGMLQuantizationType.Q8_0
    assert types["blk.0.attn_norm.weight"] == gguf.GGMLQuantizationType.F32
    assert _field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_Q8_0
    f16, _ = _export(models, "qwen_trimmed", tmp_path, "f16")
    assert summary["bytes"] < f16.stat().st_size


def test_bf16_keeps_the_upper_half_of_each_float32_matrix_weight(models, tmp_path):
    out, _ = _export(models, "qwen_trimmed", tmp_path, "bf16")
    reader = gguf.GGUFReader(out)
    tensors = {t.name: t for t in reader.tensors}
    up = tensors["blk.0.ffn_up.weight"]
    assert up.tensor_type == gguf.GGMLQuantizationType.BF16
    assert tensors["blk.0.attn_norm.weight"].tensor_type == gguf.GGMLQuantizationType.F32
    assert _field(reader, "general.file_type") == gguf.LlamaFileType.MOSTLY_BF16
    weights = load_file(models["qwen_trimmed"] / "model.safetensors")
    want = weights["model.layers.0.mlp.up_proj.weight"]
    got = torch.from_numpy(np.array(up.data).view(np.uint16).astype(np.int32) << 16)
    got = got.view(torch.float32).reshape(want.shape)
    # bfloat16 keeps 8 bits of mantissa: rounding moves a weight by at most 2^-8 of itself.
    assert torch.allclose(got, want, rtol=2**-8, atol=0)
    assert not torch.equal(got, want)


def test_an_unsupported_architecture_is_refused_by_name(tmp_path):
    llama = make_tiny_causal_lm(tmp_path / "llama", num_layers=1, model_type="llama")
    with pytest.raises(ExportError, match="model_type 'llama' cannot be exported; supported"):
        export_gguf(llama, tmp_path / "x.gguf")
    assert not (tmp_path / "x.gguf").exists()


def test_a_gemma_attention_scale_llama_cpp_cannot_express_is_refused(models, tmp_path):
    changed = tmp_path / "gemma"
    changed.mkdir()
    for item in models["gemma"].iterdir():
        os.symlink(item, changed / item.name)
    config = json.loads((models["gemma"] / "config.json").read_text())
    (changed / "config.json").unlink()
    (changed / "config.json").write_text(json.dumps({**config, "query_pre_attn_scalar": 64}))
    with pytest.raises(ExportError, match="query_pre_attn_scalar=64"):
        export_gguf(changed, tmp_path / "x.gguf")


def test_a_failed_export_leaves_the_old_file_and_no_temporary_files(models, tmp_path, monkeypatch):
    out = tmp_path / "student.gguf"
    out.write_bytes(b"old")
    with pytest.raises(FileExistsError, match="already exists"):
        export_gguf(models["gemma"], out)

    def broken(*args, **kwargs):
        yield "token_embd.weight", np.zeros((4, 4), dtype=np.float32)
        raise RuntimeError("disk full")

    monkeypatch.setattr("codistill.models.export_gguf._tensors", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        export_gguf(models["gemma"], out, overwrite=True)
    assert out.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["student.gguf"]


def test_q4_k_m_without_llama_cpp_is_refused_before_writing(models, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "llama_cpp", None)  # import llama_cpp raises ImportError
    with pytest.raises(ExportError, match="needs llama-cpp-python.*pip install"):
        export_gguf(models["gemma"], tmp_path / "q4.gguf", "q4_k_m")
    assert list(tmp_path.iterdir()) == []


def test_an_unknown_quantisation_is_refused(models, tmp_path):
    with pytest.raises(
        ExportError, match="quant must be one of f16, bf16, q8_0, q4_k_m, f32, got 'q2_k'"
    ):
        export_gguf(models["gemma"], tmp_path / "x.gguf", "q2_k")


@needs_llama_cpp
# The trimmed students cover both tokenizers on their hardest (trimmed) vocabularies; the Gemma
# one keeps layers 0 and 2 (sliding, full), so the attention pattern is exercised too.
@pytest.mark.parametrize("name", ["gemma_trimmed", "qwen_trimmed"])
def test_llama_cpp_tokenizes_and_decodes_greedily_like_the_hf_model(models, tmp_path, name):
    from codistill.models.gguf_check import greedy_agreement

    out, _ = _export(models, name, tmp_path)
    result = greedy_agreement(models[name], out, PROMPTS, max_new_tokens=6, threads=1)
    assert result["tokenization_match"] == len(PROMPTS)
    assert result["exact_match"] == len(PROMPTS)
    # float16 weights against float32: measured <= 0.001 on these models' logits (~0.1-0.3).
    assert result["max_first_logit_diff"] < 0.005


# Decodes a few tokens of a GGUF in a fresh process, with llama.cpp's extra CPU buffer types
# (repacked and AMX weights) on or off; exit status 0 when it decoded.
_DECODE = """
import sys, llama_cpp as L
L.llama_backend_init()
params = L.llama_model_default_params()
params.use_extra_bufts = sys.argv[2] == "on"
model = L.llama_model_load_from_file(sys.argv[1].encode(), params)
ctx_params = L.llama_context_default_params()
ctx_params.n_ctx = ctx_params.n_batch = 64
ctx = L.llama_init_from_model(model, ctx_params)
tokens = (L.llama_token * 4)(1, 2, 3, 4)
sys.exit(L.llama_decode(ctx, L.llama_batch_get_one(tokens, 4)))
"""


def _decodes(gguf_file: Path, extra_buffers: bool) -> bool:
    import subprocess

    argv = [sys.executable, "-c", _DECODE, str(gguf_file), "on" if extra_buffers else "off"]
    return subprocess.run(argv, capture_output=True, timeout=120).returncode == 0


def _skip_if_llama_cpp_crashes_on(gguf_file: Path) -> None:
    """Skips when llama.cpp's AMX or repacked weights crash on a file its plain CPU path
    decodes (ggml-org/llama.cpp#20824: a segfault in ggml_backend_amx_mul_mat on AMX-INT8
    CPUs, seen here for Q8_0 with llama-cpp-python 0.3.36 built -DGGML_NATIVE=ON); a file the
    plain path cannot decode either fails the test, as an export error."""
    if _decodes(gguf_file, extra_buffers=True):
        return
    assert _decodes(gguf_file, extra_buffers=False), f"llama.cpp cannot decode {gguf_file}"
    pytest.skip(f"llama.cpp's extra CPU buffer types crash on {gguf_file.name} on this CPU")


@needs_llama_cpp
@pytest.mark.parametrize("quant, bound", [("bf16", 0.05), ("q8_0", 0.05), ("q4_k_m", 0.5)])
def test_quantised_exports_stay_within_a_measured_logit_error(models, tmp_path, quant, bound):
    from codistill.models.gguf_check import greedy_agreement

    out, summary = _export(models, "qwen_trimmed", tmp_path, quant)
    _skip_if_llama_cpp_crashes_on(out)
    reader = gguf.GGUFReader(out)
    assert _field(reader, "general.file_type") == gguf.LlamaFileType[f"MOSTLY_{quant.upper()}"]
    result = greedy_agreement(models["qwen_trimmed"], out, PROMPTS[:6], max_new_tokens=4, threads=1)
    assert result["tokenization_match"] == 6
    assert result["max_first_logit_diff"] < bound


def test_a_byte_level_tokenizer_llama_cpp_would_split_differently_is_refused(tmp_path):
    from codistill.models.gguf_vocab import VocabError, read_vocab
    from tests.gguf_fixtures import make_tiny_llama_with_bytelevel_tokenizer

    # GPT-2's ByteLevel(use_regex=True) splitting, not Qwen2's Split regex.
    model_dir = make_tiny_llama_with_bytelevel_tokenizer(tmp_path / "llama")
    vocab_size = json.loads((model_dir / "config.json").read_text())["vocab_size"]
    with pytest.raises(VocabError, match="llama.cpp would split it differently"):
        read_vocab(model_dir, vocab_size)
