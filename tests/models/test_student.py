import json

import pytest
import torch
from transformers import (
    AutoModelForCausalLM,
    AutoModelForSeq2SeqLM,
    AutoTokenizer,
    GPT2Config,
    GPT2LMHeadModel,
)

from codistill.models.student import DERIVATION_FILE, derive_student, select_layers
from codistill.models.vocab import TOKEN_MAP_FILE, TokenMap


def causal_logits(model_dir, ids: torch.Tensor) -> torch.Tensor:
    model = AutoModelForCausalLM.from_pretrained(model_dir).eval()
    with torch.no_grad():
        return model(ids).logits


@pytest.fixture(scope="module")
def trimmed_gemma(gemma_dir, tmp_path_factory, vocab_texts):
    """A trimmed Gemma student keeping every layer: (dir, summary)."""
    out = tmp_path_factory.mktemp("students") / "gemma_trimmed"
    return out, derive_student(gemma_dir, out, layers=4, vocab_texts=vocab_texts)


# --- select_layers ----------------------------------------------------------------------------


def test_select_layers_keeps_first_and_last():
    assert select_layers(18, 4) == [0, 6, 11, 17]
    assert select_layers(12, 2) == [0, 11]


def test_select_layers_spaces_evenly():
    layers = select_layers(13, 5)
    assert layers == [0, 3, 6, 9, 12]


def test_select_layers_all_layers_is_identity():
    assert select_layers(6, 6) == list(range(6))


def test_select_layers_single_layer_is_first():
    assert select_layers(18, 1) == [0]


@pytest.mark.parametrize("count", [0, 19])
def test_select_layers_rejects_out_of_range_count(count):
    with pytest.raises(ValueError, match=r"num_student_layers must be in \[1, 18\]"):
        select_layers(18, count)


# --- layer copying ----------------------------------------------------------------------------


def test_all_layers_untrimmed_student_reproduces_teacher_logits(gemma_dir, tmp_path):
    derive_student(gemma_dir, tmp_path / "s", layers=4)
    ids = torch.randint(0, 400, (2, 24), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(
        causal_logits(tmp_path / "s", ids), causal_logits(gemma_dir, ids), rtol=0, atol=0
    )


def test_subset_student_copies_selected_layer_weights(gemma_dir, tmp_path):
    derive_student(gemma_dir, tmp_path / "s", layers=[1, 3])
    teacher = AutoModelForCausalLM.from_pretrained(gemma_dir)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    assert student.config.num_hidden_layers == 2
    for student_index, teacher_index in enumerate([1, 3]):
        expected = teacher.model.layers[teacher_index].state_dict()
        actual = student.model.layers[student_index].state_dict()
        assert expected.keys() == actual.keys()
        for key in expected:
            assert torch.equal(actual[key], expected[key]), key
    assert torch.equal(student.model.norm.weight, teacher.model.norm.weight)


def test_subset_student_layer_types_follow_copied_layers(gemma_dir, tmp_path):
    teacher_types = AutoModelForCausalLM.from_pretrained(gemma_dir).config.layer_types
    derive_student(gemma_dir, tmp_path / "s", layers=[1, 2])
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    assert student.config.layer_types == [teacher_types[1], teacher_types[2]]
    assert student.config.layer_types == ["sliding_attention", "full_attention"]


def test_t5_student_without_block_zero_keeps_relative_attention_bias(t5_dir, tmp_path):
    derive_student(t5_dir, tmp_path / "s", layers=[1])
    teacher = AutoModelForSeq2SeqLM.from_pretrained(t5_dir)
    student = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "s")
    assert (student.config.num_layers, student.config.num_decoder_layers) == (1, 1)
    for stack in ("encoder", "decoder"):
        attention = getattr(student, stack).block[0].layer[0].SelfAttention
        teacher_bias = getattr(teacher, stack).block[0].layer[0].SelfAttention
        assert attention.has_relative_attention_bias
        assert torch.equal(
            attention.relative_attention_bias.weight, teacher_bias.relative_attention_bias.weight
        )
        q_teacher = getattr(teacher, stack).block[1].layer[0].SelfAttention.q.weight
        assert torch.equal(attention.q.weight, q_teacher)


def test_t5_student_runs(t5_dir, tmp_path, vocab_texts):
    derive_student(t5_dir, tmp_path / "s", layers=1, vocab_texts=vocab_texts)
    student = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "s")
    tokenizer = AutoTokenizer.from_pretrained(tmp_path / "s")
    inputs = tokenizer(["def add(a, b):"], return_tensors="pt")
    out = student.generate(**inputs, max_new_tokens=3, do_sample=False)
    assert out.shape[0] == 1 and int(out.max()) < len(tokenizer)


# --- vocabulary trimming -----------------------------------------------------------------------


def test_trimmed_student_logits_equal_gathered_teacher_logits(gemma_dir, trimmed_gemma):
    out, _ = trimmed_gemma
    token_map = TokenMap.load(out)
    student_ids = torch.randint(0, token_map.student_vocab_size, (2, 24))
    teacher_ids = token_map.student_to_teacher_tensor[student_ids]
    expected = causal_logits(gemma_dir, teacher_ids)[..., token_map.student_to_teacher_tensor]
    torch.testing.assert_close(causal_logits(out, student_ids), expected, rtol=0, atol=0)


def test_trimmed_untied_student_gathers_head_rows(llama_untied_dir, tmp_path, vocab_texts):
    out = tmp_path / "s"
    derive_student(llama_untied_dir, out, layers=3, vocab_texts=vocab_texts)
    student = AutoModelForCausalLM.from_pretrained(out)
    assert not student.config.tie_word_embeddings
    token_map = TokenMap.load(out)
    student_ids = torch.randint(0, token_map.student_vocab_size, (1, 16))
    teacher_ids = token_map.student_to_teacher_tensor[student_ids]
    expected = causal_logits(llama_untied_dir, teacher_ids)[
        ..., token_map.student_to_teacher_tensor
    ]
    torch.testing.assert_close(causal_logits(out, student_ids), expected, rtol=0, atol=0)


def test_trimmed_student_tokenizer_matches_mapped_teacher_ids(
    gemma_dir, trimmed_gemma, vocab_texts
):
    out, _ = trimmed_gemma
    teacher_tok, student_tok = (AutoTokenizer.from_pretrained(d) for d in (gemma_dir, out))
    token_map = TokenMap.load(out)
    for text in vocab_texts:
        expected = token_map.teacher_to_student(teacher_tok(text).input_ids)
        assert student_tok(text).input_ids == expected


def test_trimmed_student_config_uses_student_special_ids(trimmed_gemma):
    out, _ = trimmed_gemma
    model = AutoModelForCausalLM.from_pretrained(out)
    tokenizer = AutoTokenizer.from_pretrained(out)
    assert model.config.vocab_size == len(tokenizer)
    assert model.config.bos_token_id == tokenizer.bos_token_id
    assert model.config.eos_token_id == tokenizer.eos_token_id
    assert model.generation_config.pad_token_id == tokenizer.pad_token_id


def test_trimmed_student_writes_all_files(trimmed_gemma):
    out, summary = trimmed_gemma
    names = {p.name for p in out.iterdir()}
    assert {"model.safetensors", "tokenizer.json", TOKEN_MAP_FILE, DERIVATION_FILE} <= names
    assert json.loads((out / DERIVATION_FILE).read_text()) == summary
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_trimmed_summary_reports_smaller_vocab_and_parameters(trimmed_gemma):
    _, summary = trimmed_gemma
    assert summary["vocab_trimmed"] and summary["tokens_seen"] > 0
    assert summary["student_vocab_size"] < summary["teacher_vocab_size"]
    student, teacher = summary["student_parameters"], summary["teacher_parameters"]
    assert student["embedding"] < teacher["embedding"]
    assert student["non_embedding"] == teacher["non_embedding"]


def test_untrimmed_student_has_identity_token_map(gemma_dir, tmp_path):
    summary = derive_student(gemma_dir, tmp_path / "s", layers=2)
    token_map = TokenMap.load(tmp_path / "s")
    assert token_map.is_identity
    assert summary["layers"] == [0, 3] and summary["student_layers"] == 2


def test_student_saved_in_requested_dtype(gemma_dir, tmp_path):
    derive_student(gemma_dir, tmp_path / "s", layers=1, dtype=torch.bfloat16)
    assert json.loads((tmp_path / "s" / "config.json").read_text())["dtype"] == "bfloat16"


# --- validation --------------------------------------------------------------------------------


def test_bad_layer_index_error_names_index_and_range(gemma_dir, tmp_path):
    with pytest.raises(ValueError, match=r"layers\[1\]=4 is out of range.*0\.\.3"):
        derive_student(gemma_dir, tmp_path / "s", layers=[0, 4])


def test_unsorted_layers_are_rejected(gemma_dir, tmp_path):
    with pytest.raises(ValueError, match="strictly increasing"):
        derive_student(gemma_dir, tmp_path / "s", layers=[2, 1])


def test_empty_layer_list_is_rejected(gemma_dir, tmp_path):
    with pytest.raises(ValueError, match="at least one layer"):
        derive_student(gemma_dir, tmp_path / "s", layers=[])


def test_existing_output_dir_is_refused_without_overwrite(gemma_dir, tmp_path):
    (tmp_path / "s").mkdir()
    with pytest.raises(FileExistsError, match="overwrite"):
        derive_student(gemma_dir, tmp_path / "s", layers=1)


def test_overwrite_replaces_existing_output_dir(gemma_dir, tmp_path):
    (tmp_path / "s").mkdir()
    (tmp_path / "s" / "stale.txt").write_text("old")
    derive_student(gemma_dir, tmp_path / "s", layers=1, overwrite=True)
    assert not (tmp_path / "s" / "stale.txt").exists()
    assert (tmp_path / "s" / "config.json").exists()


def test_unsupported_architecture_is_rejected(tmp_path):
    config = GPT2Config(n_layer=2, n_embd=16, n_head=2, vocab_size=50, n_positions=32)
    GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    with pytest.raises(ValueError, match="cannot derive a student from GPT2LMHeadModel"):
        derive_student(tmp_path / "gpt2", tmp_path / "s", layers=1)


# --- Qwen2 (byte-level BPE, tied head, padded embedding rows) ---------------------------------


@pytest.fixture(scope="module")
def qwen_dir(tmp_path_factory):
    from tests.qwen_fixtures import make_tiny_qwen2

    return make_tiny_qwen2(tmp_path_factory.mktemp("teachers") / "qwen", num_layers=4)


def test_qwen2_trimmed_student_with_all_layers_gives_gathered_teacher_logits(
    qwen_dir, tmp_path, vocab_texts
):
    out = tmp_path / "s"
    summary = derive_student(qwen_dir, out, layers=4, vocab_texts=vocab_texts)
    token_map = TokenMap.load(out)
    assert summary["architecture"] == "Qwen2ForCausalLM"
    assert summary["student_vocab_size"] < summary["teacher_vocab_size"]
    teacher_tok = AutoTokenizer.from_pretrained(qwen_dir)
    student_tok = AutoTokenizer.from_pretrained(out)
    for text in vocab_texts:
        teacher_ids = teacher_tok(text)["input_ids"]
        assert student_tok(text)["input_ids"] == token_map.teacher_to_student(teacher_ids)
    ids = torch.tensor([teacher_tok(vocab_texts[1])["input_ids"]])
    expected = causal_logits(qwen_dir, ids)[..., token_map.student_to_teacher_tensor]
    got = causal_logits(out, token_map.teacher_to_student(ids))
    torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_qwen2_subset_student_copies_evenly_spaced_layers(qwen_dir, tmp_path, vocab_texts):
    summary = derive_student(qwen_dir, tmp_path / "s", layers=2, vocab_texts=vocab_texts)
    assert summary["layers"] == [0, 3]
    teacher = AutoModelForCausalLM.from_pretrained(qwen_dir)
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    assert student.config.num_hidden_layers == 2 and len(student.config.layer_types) == 2
    for student_index, teacher_index in enumerate([0, 3]):
        expected = teacher.model.layers[teacher_index].state_dict()
        actual = student.model.layers[student_index].state_dict()
        for key in expected:  # q/k/v biases included (Qwen2 has them)
            assert torch.equal(actual[key], expected[key]), key
    assert student.config.tie_word_embeddings
    assert student.lm_head.weight.data_ptr() == student.model.embed_tokens.weight.data_ptr()


def test_qwen2_student_keeps_chat_specials_and_maps_special_ids(qwen_dir, tmp_path, capfd):
    derive_student(qwen_dir, tmp_path / "s", layers=2, vocab_texts=["def f():\n    pass\n"])
    # Teacher ids past the student's vocabulary never reach the student config's range check.
    assert "within the vocabulary" not in capfd.readouterr().err
    tok = AutoTokenizer.from_pretrained(tmp_path / "s")
    teacher_tok = AutoTokenizer.from_pretrained(qwen_dir)
    token_map = TokenMap.load(tmp_path / "s")
    student = AutoModelForCausalLM.from_pretrained(tmp_path / "s")
    eos, endoftext = tok.eos_token_id, tok.convert_tokens_to_ids("<|endoftext|>")
    assert tok.eos_token == "<|im_end|>" and tok.pad_token == "<|endoftext|>"
    assert token_map.student_to_teacher[eos] == teacher_tok.eos_token_id
    assert student.config.eos_token_id == eos and student.config.pad_token_id == endoftext
    assert student.generation_config.eos_token_id == [eos, endoftext]
    chat = tok.apply_chat_template(
        [{"role": "user", "content": "def f():"}], tokenize=False, add_generation_prompt=True
    )
    assert chat == teacher_tok.apply_chat_template(
        [{"role": "user", "content": "def f():"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(chat)["input_ids"]
    assert ids.count(tok.convert_tokens_to_ids("<|im_start|>")) == 2
    # Byte-level BPE: text made of unseen words still encodes (to bytes) and decodes exactly.
    unseen = 'System.out.println("Héllo 🙂");'
    assert tok.decode(tok(unseen)["input_ids"]) == unseen
