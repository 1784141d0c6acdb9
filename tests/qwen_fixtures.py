"""A tiny random Qwen2 checkpoint laid out like Qwen2.5-Coder, for student and training tests.

What it shares with the real models, because it is what the code handling them must get right:
``Qwen2ForCausalLM`` with tied embeddings and more embedding rows than tokenizer entries (the
real models have 151,936 rows for 151,665 entries), a byte-level BPE tokenizer with Qwen's
pre-tokenizer (a regex ``Split`` then ``ByteLevel`` without its own regex), NFC normalisation,
no BOS, ``<|endoftext|>`` as pad, ``<|im_end|>`` as EOS, the FIM and chat special tokens as added
tokens after the learned vocabulary, and a ChatML chat template.
"""

from __future__ import annotations

from pathlib import Path

import torch

from codistill.models.tiny import CODE_CORPUS

# Qwen2's pre-tokenizer pattern (tokenizer.json of Qwen2.5-Coder).
QWEN_SPLIT = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
QWEN_SPECIALS = (
    "<|endoftext|>",
    "<|im_start|>",
    "<|im_end|>",
    "<|fim_prefix|>",
    "<|fim_middle|>",
    "<|fim_suffix|>",
    "<|fim_pad|>",
)
CHATML_TEMPLATE = (
    "{% for message in messages %}<|im_start|>{{ message['role'] }}\n"
    "{{ message['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
EXTRA_ROWS = 13  # embedding rows past the tokenizer, as Qwen's padded vocabulary has


def build_qwen_tokenizer(texts=None, vocab_size: int = 500):
    """A Qwen2-style byte-level BPE tokenizer trained on ``texts`` (the code corpus by default)."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.normalizer = normalizers.NFC()
    bpe.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split(Regex(QWEN_SPLIT), behavior="isolated"),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
        ]
    )
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size, initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator(list(CODE_CORPUS if texts is None else texts), trainer)
    bpe.add_special_tokens(list(QWEN_SPECIALS))
    tok = PreTrainedTokenizerFast(
        tokenizer_object=bpe,
        eos_token="<|im_end|>",
        pad_token="<|endoftext|>",
        clean_up_tokenization_spaces=False,
    )
    tok.chat_template = CHATML_TEMPLATE
    return tok


def make_tiny_qwen2(out_dir: Path, num_layers: int = 4, seed: int = 0, texts=None) -> Path:
    """Save a tiny random ``Qwen2ForCausalLM`` and its tokenizer into ``out_dir``."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    tok = build_qwen_tokenizer(texts)
    config = Qwen2Config(
        vocab_size=len(tok) + EXTRA_ROWS,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        max_window_layers=num_layers // 2,
        tie_word_embeddings=True,
        bos_token_id=tok.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    torch.manual_seed(seed)
    model = Qwen2ForCausalLM(config).eval()
    model.generation_config.eos_token_id = [
        tok.eos_token_id,
        tok.convert_tokens_to_ids("<|endoftext|>"),
    ]
    out_dir = Path(out_dir)
    model.save_pretrained(out_dir)
    tok.save_pretrained(out_dir)
    return out_dir
