"""A tiny random Llama checkpoint and a GGUF file written from it, shared by the tests.

``make_tiny_llama_with_bytelevel_tokenizer`` saves a Hugging Face directory; ``write_llama_gguf``
writes the same weights and tokenizer as an F32 GGUF that both llama.cpp and transformers'
``gguf_file=`` loader read (the llama.cpp server tests and the GGUF conversion tests).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from codistill.models.tiny import CODE_CORPUS


def make_tiny_llama_with_bytelevel_tokenizer(
    out_dir: Path, tie_word_embeddings: bool = False
) -> Path:
    """A tiny random LlamaForCausalLM with a GPT-2-style byte-level BPE tokenizer.

    Byte-level BPE is what llama.cpp's ``gpt2`` tokenizer implements, so the GGUF written from
    this checkpoint tokenizes prompts exactly as the HF tokenizer does. Weights are drawn wider
    than usual (std 0.3) so greedy choices are far apart and float rounding cannot flip them.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    bpe.decoder = decoders.ByteLevel()
    bpe.train_from_iterator(
        CODE_CORPUS, trainers.BpeTrainer(vocab_size=400, special_tokens=["<|endoftext|>"])
    )
    bpe.post_processor = processors.TemplateProcessing(
        single="<|endoftext|> $A", special_tokens=[("<|endoftext|>", 0)]
    )
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        bos_token="<|endoftext|>",
        eos_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=256,
        rms_norm_eps=1e-6,
        initializer_range=0.3,
        bos_token_id=0,
        eos_token_id=0,
        tie_word_embeddings=tie_word_embeddings,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(out_dir)
    tokenizer.save_pretrained(out_dir)
    return out_dir


def permute_for_llama_cpp(w: np.ndarray, n_head: int) -> np.ndarray:
    # llama.cpp rotates interleaved pairs of each head's dimensions, HF rotates its two halves;
    # reordering the rows of W_q and W_k makes one rotation equal the other (as llama.cpp's
    # convert_hf_to_gguf.py does).
    return (
        w.reshape(n_head, 2, w.shape[0] // n_head // 2, *w.shape[1:])
        .swapaxes(1, 2)
        .reshape(w.shape)
    )


def write_llama_gguf(hf_dir: Path, gguf_path: Path, f16: bool = False) -> Path:
    """Write the checkpoint in ``hf_dir`` as a llama.cpp GGUF file.

    Tensors are F32, or with ``f16`` the matrices F16 (norms stay F32, as llama.cpp's own
    converter writes them). A checkpoint with tied embeddings gets no ``output.weight``, which
    is how llama.cpp (and transformers' GGUF loader) recognise a tied head.
    """
    gguf = pytest.importorskip("gguf")
    from transformers import AutoConfig, AutoTokenizer

    from codistill.models.loading import load_model

    cfg = AutoConfig.from_pretrained(hf_dir)
    tok = AutoTokenizer.from_pretrained(hf_dir)
    state = {k: v.float().numpy() for k, v in load_model(hf_dir).state_dict().items()}
    spec = json.loads((hf_dir / "tokenizer.json").read_text())["model"]
    vocab = sorted(tok.get_vocab().items(), key=lambda item: item[1])
    assert [i for _, i in vocab] == list(range(len(vocab)))

    writer = gguf.GGUFWriter(str(gguf_path), "llama")
    writer.add_context_length(cfg.max_position_embeddings)
    writer.add_embedding_length(cfg.hidden_size)
    writer.add_block_count(cfg.num_hidden_layers)
    writer.add_feed_forward_length(cfg.intermediate_size)
    writer.add_head_count(cfg.num_attention_heads)
    writer.add_head_count_kv(cfg.num_key_value_heads)
    writer.add_rope_dimension_count(cfg.hidden_size // cfg.num_attention_heads)
    writer.add_rope_freq_base(cfg.rope_parameters["rope_theta"])
    writer.add_layer_norm_rms_eps(cfg.rms_norm_eps)
    writer.add_vocab_size(len(vocab))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16 if f16 else gguf.LlamaFileType.ALL_F32)
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre("gpt-2")
    writer.add_token_list([t for t, _ in vocab])
    special = set(tok.all_special_ids)
    writer.add_token_types(
        [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for _, i in vocab]
    )
    writer.add_token_merges([m if isinstance(m, str) else " ".join(m) for m in spec["merges"]])
    writer.add_bos_token_id(tok.bos_token_id)
    writer.add_eos_token_id(tok.eos_token_id)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)

    def add(name: str, w: np.ndarray) -> None:
        writer.add_tensor(name, w.astype(np.float16) if f16 and w.ndim == 2 else w)

    add("token_embd.weight", state["model.embed_tokens.weight"])
    add("output_norm.weight", state["model.norm.weight"])
    if not cfg.tie_word_embeddings:
        add("output.weight", state["lm_head.weight"])
    names = {
        "input_layernorm": "attn_norm",
        "self_attn.v_proj": "attn_v",
        "self_attn.o_proj": "attn_output",
        "post_attention_layernorm": "ffn_norm",
        "mlp.gate_proj": "ffn_gate",
        "mlp.up_proj": "ffn_up",
        "mlp.down_proj": "ffn_down",
    }
    for layer in range(cfg.num_hidden_layers):
        hf, out = f"model.layers.{layer}.", f"blk.{layer}."
        q = permute_for_llama_cpp(state[hf + "self_attn.q_proj.weight"], cfg.num_attention_heads)
        k = permute_for_llama_cpp(state[hf + "self_attn.k_proj.weight"], cfg.num_key_value_heads)
        add(out + "attn_q.weight", q)
        add(out + "attn_k.weight", k)
        for src, dst in names.items():
            add(f"{out}{dst}.weight", state[f"{hf}{src}.weight"])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return gguf_path
