import json
import logging
import random

import pytest
import torch
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from codistill.models.vocab import TOKEN_MAP_FILE, TokenMap, collect_token_ids, trim_tokenizer

# Java tokens the teacher learned from snippets outside the vocabulary texts, plus characters
# it never saw.
UNSEEN_TEXT = 'System.out.println("Héllo 🙂");'


@pytest.fixture(scope="module")
def teacher_tokenizer(gemma_dir):
    return AutoTokenizer.from_pretrained(gemma_dir)


@pytest.fixture(scope="module")
def trimmed(teacher_tokenizer, vocab_texts):
    """(student tokenizer, token map) trimmed to the vocabulary texts."""
    keep = collect_token_ids(teacher_tokenizer, vocab_texts)
    student, student_to_teacher = trim_tokenizer(teacher_tokenizer, keep)
    return student, TokenMap(student_to_teacher, len(teacher_tokenizer), student.unk_token_id)


def corpus_word_texts(vocab_texts: tuple[str, ...], count: int = 20, seed: int = 0) -> list[str]:
    """New texts recombining the corpus's space-preceded words (▁-initial chunks)."""
    words = sorted({w for text in vocab_texts for w in text.split(" ")[1:] if w})
    rng = random.Random(seed)
    return [" " + " ".join(rng.choices(words, k=12)) for _ in range(count)]


def test_collect_token_ids_is_union_of_encodings(teacher_tokenizer, vocab_texts):
    expected = {i for text in vocab_texts for i in teacher_tokenizer(text).input_ids}
    assert collect_token_ids(teacher_tokenizer, iter(vocab_texts), batch_size=2) == expected


def test_trimmed_vocabulary_is_smaller_and_contiguous(teacher_tokenizer, trimmed):
    student, token_map = trimmed
    assert len(student) == token_map.student_vocab_size < len(teacher_tokenizer)
    assert sorted(student.get_vocab().values()) == list(range(len(student)))


def test_trimmed_keeps_special_ids(trimmed):
    student, _ = trimmed
    ids = (student.pad_token_id, student.eos_token_id, student.bos_token_id, student.unk_token_id)
    assert ids == (0, 1, 2, 3)


def test_trimmed_keeps_every_byte_token(trimmed):
    vocab = trimmed[0].get_vocab()
    assert all(f"<0x{b:02X}>" in vocab for b in range(256))


def test_trimmed_merges_are_closed(teacher_tokenizer, trimmed):
    student_spec = json.loads(trimmed[0].backend_tokenizer.to_str())["model"]
    teacher_merges = json.loads(teacher_tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    kept = set(student_spec["vocab"])
    for left, right in student_spec["merges"]:
        assert {left, right, left + right} <= kept
    for left, right in teacher_merges:
        if left + right in kept:
            assert left in kept and right in kept, (left, right)


def test_trimmed_merges_keep_teacher_rank_order(teacher_tokenizer, trimmed):
    student_merges = json.loads(trimmed[0].backend_tokenizer.to_str())["model"]["merges"]
    teacher_merges = json.loads(teacher_tokenizer.backend_tokenizer.to_str())["model"]["merges"]
    rank = {tuple(m): r for r, m in enumerate(teacher_merges)}
    ranks = [rank[tuple(m)] for m in student_merges]
    assert ranks == sorted(ranks)


def test_student_tokenizer_matches_mapped_teacher_ids_on_corpus(
    teacher_tokenizer, trimmed, vocab_texts
):
    student, token_map = trimmed
    for text in vocab_texts:
        teacher_ids = teacher_tokenizer(text).input_ids
        assert student(text).input_ids == token_map.teacher_to_student(teacher_ids)


def test_student_tokenizer_matches_mapped_teacher_ids_on_new_corpus_word_texts(
    teacher_tokenizer, trimmed, vocab_texts
):
    student, token_map = trimmed
    for text in corpus_word_texts(vocab_texts):
        teacher_ids = teacher_tokenizer(text).input_ids
        assert token_map.count_unmapped(teacher_ids) == 0
        assert student(text).input_ids == token_map.teacher_to_student(teacher_ids)


def test_student_tokenizer_matches_teacher_on_substrings_with_kept_tokens(
    teacher_tokenizer, trimmed, vocab_texts
):
    student, token_map = trimmed
    rng = random.Random(0)
    checked = 0
    for _ in range(300):
        text = rng.choice(vocab_texts)
        start = rng.randrange(len(text))
        piece = text[start : rng.randrange(start, len(text) + 1)]
        teacher_ids = teacher_tokenizer(piece).input_ids
        if token_map.count_unmapped(teacher_ids) == 0:
            checked += 1
            assert student(piece).input_ids == token_map.teacher_to_student(teacher_ids), piece
    assert checked > 200


def test_student_decoding_matches_teacher_decoding(teacher_tokenizer, trimmed, vocab_texts):
    student, _ = trimmed
    for text in [*vocab_texts, *corpus_word_texts(vocab_texts, 5)]:
        expected = teacher_tokenizer.decode(teacher_tokenizer(text).input_ids)
        assert student.decode(student(text).input_ids) == expected


def test_unseen_text_maps_teacher_ids_to_fallback_and_counts_them(teacher_tokenizer, trimmed):
    _, token_map = trimmed
    teacher_ids = teacher_tokenizer(UNSEEN_TEXT).input_ids
    unmapped = token_map.count_unmapped(teacher_ids)
    mapped = token_map.teacher_to_student(teacher_ids)
    assert unmapped > 0
    assert mapped.count(token_map.fallback_student_id) == unmapped


def test_student_tokenizer_round_trips_unseen_text_without_unk(trimmed):
    student, _ = trimmed
    ids = student(UNSEEN_TEXT, add_special_tokens=False).input_ids
    assert student.unk_token_id not in ids
    assert student.decode(ids) == UNSEEN_TEXT


def test_student_post_processor_adds_student_bos(trimmed):
    student, _ = trimmed
    assert student("x").input_ids[0] == student.bos_token_id


def test_trimmed_tokenizer_survives_save_and_load(trimmed, tmp_path, vocab_texts):
    student, _ = trimmed
    student.save_pretrained(tmp_path)
    reloaded = AutoTokenizer.from_pretrained(tmp_path)
    assert reloaded(vocab_texts[0]).input_ids == student(vocab_texts[0]).input_ids
    assert reloaded.bos_token_id == student.bos_token_id


def test_trim_carries_model_specific_and_extra_special_tokens(teacher_tokenizer):
    teacher = PreTrainedTokenizerFast(
        tokenizer_object=teacher_tokenizer.backend_tokenizer,
        bos_token="<bos>",
        eos_token="<eos>",
        model_specific_special_tokens={"image_token": "<mask>"},
        extra_special_tokens=["<unk>"],
    )
    student, _ = trim_tokenizer(teacher, set())
    assert student.image_token == "<mask>"
    assert student.extra_special_tokens == ["<unk>"]
    assert student.bos_token == "<bos>"


def placeholder_tokenizer(teacher_tokenizer) -> PreTrainedTokenizerFast:
    backend = Tokenizer.from_str(teacher_tokenizer.backend_tokenizer.to_str())
    backend.add_special_tokens(["<unused0>", "<unused1>", "<start_of_turn>"])
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<bos>", unk_token="<unk>")


def test_trim_drops_unused_placeholders_but_keeps_other_added_tokens(teacher_tokenizer):
    student, _ = trim_tokenizer(placeholder_tokenizer(teacher_tokenizer), set())
    vocab = student.get_vocab()
    assert "<start_of_turn>" in vocab
    assert "<unused0>" not in vocab and "<unused1>" not in vocab


def test_trim_keeps_placeholders_when_asked(teacher_tokenizer):
    teacher = placeholder_tokenizer(teacher_tokenizer)
    unused1 = teacher.convert_tokens_to_ids("<unused1>")
    assert "<unused1>" in trim_tokenizer(teacher, {unused1})[0].get_vocab()
    student, _ = trim_tokenizer(teacher, set(), keep_unused_placeholders=True)
    assert "<unused0>" in student.get_vocab()


def test_trim_rejects_ids_outside_vocabulary(teacher_tokenizer):
    with pytest.raises(ValueError, match="not in the tokenizer vocabulary"):
        trim_tokenizer(teacher_tokenizer, {len(teacher_tokenizer) + 5})


def test_trim_max_id_drops_ids_past_the_model_vocabulary(teacher_tokenizer):
    last = len(teacher_tokenizer) - 1
    _, student_to_teacher = trim_tokenizer(teacher_tokenizer, {last}, max_id=last)
    assert last not in student_to_teacher


def test_trim_unigram_matches_teacher_on_corpus(t5_dir, vocab_texts):
    teacher = AutoTokenizer.from_pretrained(t5_dir)
    student, student_to_teacher = trim_tokenizer(teacher, collect_token_ids(teacher, vocab_texts))
    token_map = TokenMap(student_to_teacher, len(teacher), student.unk_token_id)
    assert len(student) < len(teacher)
    assert student.eos_token_id == token_map.teacher_to_student([teacher.eos_token_id])[0]
    for text in vocab_texts:
        assert student(text).input_ids == token_map.teacher_to_student(teacher(text).input_ids)


def test_trim_word_level_keeps_subset():
    vocab = {"[UNK]": 0, "def": 1, "return": 2, "class": 3, "x": 4}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    teacher = PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="[UNK]")
    student, student_to_teacher = trim_tokenizer(teacher, {2, 4})
    assert student_to_teacher == [0, 2, 4]
    assert student("return x class").input_ids == [1, 2, 0]


# --- TokenMap -------------------------------------------------------------------------------


@pytest.fixture
def small_map() -> TokenMap:
    return TokenMap([0, 1, 2, 3, 10, 20], teacher_vocab_size=30, fallback_student_id=3)


def test_token_map_maps_kept_ids(small_map):
    assert small_map.teacher_to_student([0, 10, 20, 2]) == [0, 4, 5, 2]


def test_token_map_maps_missing_and_out_of_range_ids_to_fallback(small_map):
    assert small_map.teacher_to_student([11, 29, 99]) == [3, 3, 3]


def test_token_map_counts_unmapped_ids(small_map):
    assert small_map.count_unmapped(torch.tensor([[0, 11], [12, 20]])) == 2


def test_token_map_keeps_negative_ignore_index(small_map):
    labels = torch.tensor([[-100, 10], [20, -100]])
    assert small_map.teacher_to_student(labels).tolist() == [[-100, 4], [5, -100]]


def test_token_map_tensor_input_keeps_shape_and_dtype(small_map):
    ids = torch.tensor([[0, 10, 11]], dtype=torch.int32)
    mapped = small_map.teacher_to_student(ids)
    assert mapped.shape == ids.shape and mapped.dtype == torch.int32


def test_token_map_warns_with_count_of_unmapped(small_map, caplog):
    with caplog.at_level(logging.WARNING, logger="codistill.models.vocab"):
        small_map.teacher_to_student([11, 12, 0], warn=True)
    assert "2 of 3" in caplog.text


def test_token_map_tensor_gathers_teacher_logits(small_map):
    logits = torch.arange(30.0).expand(2, 30)
    gathered = logits[..., small_map.student_to_teacher_tensor]
    assert gathered[0].tolist() == [0.0, 1.0, 2.0, 3.0, 10.0, 20.0]


def test_token_map_inverse_table_marks_missing_teacher_ids_without_fallback(small_map):
    table = small_map.teacher_to_student_tensor
    assert table.shape == (30,) and table.dtype == torch.long
    assert table[[0, 1, 2, 3, 10, 20]].tolist() == [0, 1, 2, 3, 4, 5]
    missing = [i for i in range(30) if i not in (0, 1, 2, 3, 10, 20)]
    assert (table[missing] == -1).all()  # not the fallback id 3
    assert torch.equal(table[small_map.student_to_teacher_tensor], torch.arange(6))


def test_token_map_identity_maps_every_id_to_itself():
    token_map = TokenMap.identity(7)
    assert token_map.is_identity and token_map.student_vocab_size == 7
    assert token_map.teacher_to_student([6, 0, 3]) == [6, 0, 3]


def test_token_map_save_load_round_trip(small_map, tmp_path):
    path = small_map.save(tmp_path)
    assert path == tmp_path / TOKEN_MAP_FILE
    data = json.loads(path.read_text())
    assert data["version"] == 1 and data["student_to_teacher"] == [0, 1, 2, 3, 10, 20]
    assert TokenMap.load(tmp_path).to_dict() == small_map.to_dict()


def test_token_map_load_missing_file_names_it(tmp_path):
    with pytest.raises(FileNotFoundError, match=TOKEN_MAP_FILE):
        TokenMap.load(tmp_path)


def test_token_map_load_optional_returns_none_when_absent(tmp_path):
    assert TokenMap.load_optional(tmp_path) is None


def test_token_map_load_malformed_file_names_field(tmp_path):
    (tmp_path / TOKEN_MAP_FILE).write_text(json.dumps({"version": 1, "student_to_teacher": 5}))
    with pytest.raises(ValueError, match="student_to_teacher"):
        TokenMap.load(tmp_path)


def test_token_map_rejects_ids_past_teacher_vocab():
    with pytest.raises(ValueError, match="teacher_vocab_size=4"):
        TokenMap([0, 9], teacher_vocab_size=4, fallback_student_id=0)


def test_token_map_rejects_repeated_teacher_ids():
    with pytest.raises(ValueError, match="repeat"):
        TokenMap([0, 1, 1], teacher_vocab_size=4, fallback_student_id=0)


def test_qwen_byte_level_trim_keeps_alphabet_and_segments_corpus_like_the_teacher(vocab_texts):
    from tests.qwen_fixtures import QWEN_SPECIALS, build_qwen_tokenizer

    teacher = build_qwen_tokenizer()
    keep = collect_token_ids(teacher, vocab_texts)
    student, student_to_teacher = trim_tokenizer(teacher, keep)
    token_map = TokenMap(student_to_teacher, len(teacher), student.pad_token_id)
    kept = set(student.get_vocab())
    assert set(pre_tokenizers.ByteLevel.alphabet()) <= kept
    assert set(QWEN_SPECIALS) <= kept and len(student) < len(teacher)
    for text in [*vocab_texts, *corpus_word_texts(vocab_texts)]:
        assert student(text).input_ids == token_map.teacher_to_student(teacher(text).input_ids)
    ids = student(UNSEEN_TEXT).input_ids
    assert student.decode(ids) == UNSEEN_TEXT
    assert token_map.count_unmapped(teacher(UNSEEN_TEXT).input_ids) > 0
