import pytest
import torch
from transformers import (
    PreTrainedTokenizerFast,
    T5ForConditionalGeneration,
)

from codistill.models.loading import (
    count_parameters,
    dir_size_bytes,
    is_encoder_decoder,
    load_model,
    load_tokenizer,
    resolve_dtype,
)
from codistill.models.tiny import build_tiny_bpe_tokenizer


def test_load_model_picks_causal_class_for_decoder_only(gemma_dir):
    model = load_model(gemma_dir)
    assert type(model).__name__ == "Gemma3ForCausalLM"
    assert not model.training


def test_load_model_picks_seq2seq_class_for_encoder_decoder(t5_dir):
    assert isinstance(load_model(t5_dir), T5ForConditionalGeneration)


def test_load_model_casts_to_requested_dtype(gemma_dir):
    assert load_model(gemma_dir, dtype=torch.bfloat16).dtype == torch.bfloat16


def test_resolve_dtype_auto_follows_the_cpu_and_bad_names_are_refused(monkeypatch):
    assert resolve_dtype("float32") == torch.float32
    assert resolve_dtype("bfloat16") == torch.bfloat16
    monkeypatch.setattr("codistill.models.loading.bf16_is_fast", lambda: True)
    assert resolve_dtype("auto") == torch.bfloat16
    monkeypatch.setattr("codistill.models.loading.bf16_is_fast", lambda: False)
    assert resolve_dtype("auto") == torch.float32
    with pytest.raises(ValueError, match="dtype must be one of float32, bfloat16, auto"):
        resolve_dtype("fp8")


def test_load_model_without_config_names_the_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        load_model(tmp_path)


def test_load_tokenizer_uses_eos_as_pad_when_missing(tmp_path):
    base = build_tiny_bpe_tokenizer()
    no_pad = PreTrainedTokenizerFast(
        tokenizer_object=base.backend_tokenizer, bos_token="<bos>", eos_token="<eos>"
    )
    no_pad.save_pretrained(tmp_path)
    tokenizer = load_tokenizer(tmp_path)
    assert tokenizer.pad_token == "<eos>"


def test_load_tokenizer_keeps_existing_pad(gemma_dir):
    assert load_tokenizer(gemma_dir).pad_token == "<pad>"


def test_is_encoder_decoder_accepts_model_or_config(gemma_dir, t5_dir):
    t5 = load_model(t5_dir)
    assert is_encoder_decoder(t5) and is_encoder_decoder(t5.config)
    assert not is_encoder_decoder(load_model(gemma_dir))


def _layer_params(config, norms: int, qk_norm: bool) -> int:
    """One decoder layer's parameters, counted from the architecture (no biases): attention
    q/k/v/o, the gated MLP's gate/up/down, ``norms`` RMSNorm vectors, Gemma's q/k norms."""
    h, i, d = config.hidden_size, config.intermediate_size, config.head_dim
    heads, kv = config.num_attention_heads, config.num_key_value_heads
    attention = h * heads * d + 2 * h * kv * d + heads * d * h
    return attention + 3 * h * i + norms * h + (2 * d if qk_norm else 0)


def test_count_parameters_counts_tied_embeddings_once(gemma_dir):
    model = load_model(gemma_dir)
    c = model.config
    # hidden 32, 4 heads of 8, 2 KV heads, MLP 64: 9,360 per Gemma 3 layer, final norm 32.
    assert _layer_params(c, norms=4, qk_norm=True) == 9360
    embedding = c.vocab_size * c.hidden_size  # the tied head adds nothing
    body = c.num_hidden_layers * 9360 + c.hidden_size
    assert count_parameters(model) == {
        "total": embedding + body,
        "embedding": embedding,
        "non_embedding": body,
    }


def test_count_parameters_includes_untied_head(llama_untied_dir):
    model = load_model(llama_untied_dir)
    c = model.config
    assert _layer_params(c, norms=2, qk_norm=False) == 9280
    embedding = 2 * c.vocab_size * c.hidden_size  # input embeddings and the separate head
    body = c.num_hidden_layers * 9280 + c.hidden_size
    assert count_parameters(model) == {
        "total": embedding + body,
        "embedding": embedding,
        "non_embedding": body,
    }


def test_dir_size_bytes_sums_all_files(gemma_dir):
    expected = sum(f.stat().st_size for f in gemma_dir.iterdir())
    assert dir_size_bytes(gemma_dir) == expected


def test_dir_size_bytes_missing_path_raises(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing"):
        dir_size_bytes(tmp_path / "missing")
