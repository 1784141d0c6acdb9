import json

from transformers import AutoModelForCausalLM, AutoTokenizer

from codistill.models.tiny import build_tiny_bpe_tokenizer, make_tiny_causal_lm


def test_tiny_bpe_tokenizer_is_the_same_on_every_build():
    # Session fixtures and subprocess-built models must agree on ids, so the trainer may not
    # depend on hash order or threads; a different corpus must give a different tokenizer.
    first, second = build_tiny_bpe_tokenizer(), build_tiny_bpe_tokenizer()
    assert first.backend_tokenizer.to_str() == second.backend_tokenizer.to_str()
    other = build_tiny_bpe_tokenizer(["zebra quokka " * 20])
    assert other.get_vocab() != first.get_vocab()


def test_tiny_causal_tokenizer_has_gemma_layout(gemma_dir):
    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    spec = json.loads(tokenizer.backend_tokenizer.to_str())
    ids = (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.bos_token_id)
    assert ids + (tokenizer.unk_token_id,) == (0, 1, 2, 3)
    assert spec["model"]["type"] == "BPE" and spec["model"]["byte_fallback"]
    assert len(spec["model"]["merges"]) > 50
    assert all(f"<0x{b:02X}>" in spec["model"]["vocab"] for b in range(256))
    assert tokenizer("x = 1").input_ids[0] == tokenizer.bos_token_id


def test_tiny_causal_tokenizer_round_trips_unseen_characters(gemma_dir):
    tokenizer = AutoTokenizer.from_pretrained(gemma_dir)
    text = "naïve = '🙂'"
    ids = tokenizer(text, add_special_tokens=False).input_ids
    assert tokenizer.unk_token_id not in ids
    assert tokenizer.decode(ids) == text


def test_tiny_causal_lm_mixes_sliding_and_full_attention(gemma_dir):
    model = AutoModelForCausalLM.from_pretrained(gemma_dir)
    assert set(model.config.layer_types) == {"sliding_attention", "full_attention"}
    assert model.config.tie_word_embeddings


def test_tiny_causal_lm_vocab_matches_tokenizer(tmp_path):
    path = make_tiny_causal_lm(tmp_path / "m", vocab_texts=["def f(x):\n    return x\n"] * 3)
    model = AutoModelForCausalLM.from_pretrained(path)
    assert model.config.vocab_size == len(AutoTokenizer.from_pretrained(path))


def test_tiny_seq2seq_tokenizer_has_t5_ids(t5_dir):
    tokenizer = AutoTokenizer.from_pretrained(t5_dir)
    assert (tokenizer.pad_token_id, tokenizer.eos_token_id, tokenizer.unk_token_id) == (0, 1, 2)
    assert tokenizer("x = 1").input_ids[-1] == tokenizer.eos_token_id
