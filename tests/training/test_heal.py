"""``training.heal``: which student layers stand at cuts, the token windows, the recorded teacher
streams, and healing itself (on tiny random models: it must lower the held-out error at each cut
and touch nothing else)."""

import json

import pytest
import torch

from codistill.config.heal import HealSettings
from codistill.models.loading import load_model, load_tokenizer
from codistill.models.student import DERIVATION_FILE, derive_student
from codistill.models.tiny import CODE_CORPUS, make_tiny_causal_lm
from codistill.training.heal import (
    Cut,
    _cut_losses,
    _record,
    find_cuts,
    heal_cuts,
    token_windows,
)


@pytest.fixture(scope="module")
def teacher_dir(tmp_path_factory):
    """A tiny 6-layer Gemma 3: sliding-window (8) and full attention mixed, so each layer's own
    attention mask must reach it."""
    return make_tiny_causal_lm(tmp_path_factory.mktemp("heal") / "gemma", num_layers=6, seed=5)


@pytest.fixture(scope="module")
def windows(teacher_dir):
    return token_windows(CODE_CORPUS * 4, load_tokenizer(teacher_dir), 24, 24 * 40)


# --- find_cuts --------------------------------------------------------------------------------


def test_a_middle_cut_is_absorbed_by_the_next_kept_layer():
    assert find_cuts([0, 1, 4, 5], 6) == [Cut(student_layer=2, copied_from=4, reads=2, writes=4)]


def test_cuts_at_the_bottom_and_the_top():
    assert find_cuts([2, 3], 5) == [
        Cut(student_layer=0, copied_from=2, reads=0, writes=2),
        Cut(student_layer=1, copied_from=3, reads=3, writes=4),
    ]


def test_one_layer_can_absorb_blocks_on_both_sides():
    assert find_cuts([0, 3], 6) == [Cut(student_layer=1, copied_from=3, reads=1, writes=5)]


def test_a_whole_stack_has_no_cuts():
    assert find_cuts([0, 1, 2], 3) == []


@pytest.mark.parametrize("layers", [[], [1, 0], [0, 0, 1], [0, 6], [-1, 2]])
def test_bad_layer_lists_are_refused(layers):
    with pytest.raises(ValueError, match="layer"):
        find_cuts(layers, 6)


# --- token_windows ----------------------------------------------------------------------------


def test_windows_are_whole_and_bounded(teacher_dir):
    tok = load_tokenizer(teacher_dir)
    w = token_windows(CODE_CORPUS, tok, 16, 16 * 5 + 3)
    assert w.shape == (5, 16) and w.dtype == torch.long
    joined = []
    for text in CODE_CORPUS:
        joined += tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    expected = {tuple(joined[i * 16 : (i + 1) * 16]) for i in range(5)}
    assert {tuple(row.tolist()) for row in w} == expected
    assert torch.equal(w, token_windows(CODE_CORPUS, tok, 16, 16 * 5 + 3))  # same seed
    assert not torch.equal(w, token_windows(CODE_CORPUS, tok, 16, 16 * 5 + 3, seed=1))


def test_too_little_text_is_refused(teacher_dir):
    with pytest.raises(ValueError, match="fewer than one window"):
        token_windows(["x"], load_tokenizer(teacher_dir), 64, 640)


# --- recording and healing --------------------------------------------------------------------


def test_a_teacher_layer_fed_its_recorded_input_reproduces_its_output(teacher_dir, windows):
    """The recorded keyword arguments (rotary embeddings, each layer's own mask) are what the
    layer ran with: every teacher layer, given what it read, writes what it wrote."""
    teacher = load_model(teacher_dir).eval()
    assert windows.shape[1] > 8  # longer than the sliding window
    for i in range(6):
        cut = Cut(student_layer=i, copied_from=i, reads=i, writes=i)
        examples = _record(teacher, windows[:4], [cut], batch_size=2)
        with torch.no_grad():
            errors = [float(_cut_losses(teacher, e, [cut])[0]) for e in examples]
        assert max(errors) < 1e-4, (i, errors)  # bfloat16 storage, nothing more


def test_a_removed_layer_is_not_the_identity(teacher_dir, windows):
    """The test above cannot pass by comparing a stream with itself: across a removed layer
    the same call misses."""
    teacher = load_model(teacher_dir).eval()
    cut = Cut(student_layer=3, copied_from=3, reads=2, writes=3)
    (example,) = _record(teacher, windows[:2], [cut], batch_size=2)
    with torch.no_grad():
        assert float(_cut_losses(teacher, example, [cut])[0]) > 1e-2


def test_healing_lowers_the_error_at_every_cut_and_touches_only_those_layers(
    teacher_dir, windows, tmp_path
):
    teacher = load_model(teacher_dir).eval()
    layers = [0, 2, 3, 5]  # layers 1 and 4 removed
    derive_student(teacher_dir, tmp_path / "s", layers)
    student = load_model(tmp_path / "s")
    before = {k: v.clone() for k, v in student.state_dict().items()}
    summary = heal_cuts(
        teacher, student, layers, windows, HealSettings(epochs=4, lr=3e-3, batch_size=4)
    )
    assert [c["student_layer"] for c in summary["cuts"]] == [1, 3]
    for b, a in zip(summary["held_out_error_before"], summary["held_out_error_after"], strict=True):
        assert a < 0.8 * b, summary
    changed = {k for k, v in student.state_dict().items() if not torch.equal(v, before[k])}
    assert changed and all(k.startswith(("model.layers.1.", "model.layers.3.")) for k in changed)
    assert all(p.requires_grad for p in student.parameters())  # restored
    assert summary["windows"]["held_out"] == 2 and summary["steps"] == 4 * 10


def test_derive_with_healing_saves_the_healed_student_and_says_so(teacher_dir, tmp_path):
    settings = HealSettings(tokens=24 * 20, length=24, epochs=2, lr=3e-3)
    windows = token_windows(CODE_CORPUS * 4, load_tokenizer(teacher_dir), 24, settings.tokens)

    def heal(teacher, student, layers):
        return heal_cuts(teacher, student, layers, windows, settings)

    summary = derive_student(teacher_dir, tmp_path / "h", [0, 1, 3, 4, 5], heal=heal)
    plain = derive_student(teacher_dir, tmp_path / "p", [0, 1, 3, 4, 5])
    saved = json.loads((tmp_path / "h" / DERIVATION_FILE).read_text())
    assert saved["healing"]["held_out_error_after"] == summary["healing"]["held_out_error_after"]
    assert "healing" not in plain
    healed, copied = load_model(tmp_path / "h"), load_model(tmp_path / "p")
    assert not torch.equal(
        healed.model.layers[2].mlp.down_proj.weight, copied.model.layers[2].mlp.down_proj.weight
    )
    assert torch.equal(
        healed.model.layers[3].mlp.down_proj.weight, copied.model.layers[3].mlp.down_proj.weight
    )


def test_healing_needs_a_held_out_window(teacher_dir, windows, tmp_path):
    layers = [0, 1, 3, 4, 5]
    derive_student(teacher_dir, tmp_path / "s", layers)
    teacher, student = load_model(teacher_dir), load_model(tmp_path / "s")
    with pytest.raises(ValueError, match="at least two windows"):
        heal_cuts(teacher, student, layers, windows[:1], HealSettings())


def test_healing_a_seq2seq_model_is_refused(tmp_path):
    from codistill.models.tiny import make_tiny_seq2seq_lm

    t5 = load_model(make_tiny_seq2seq_lm(tmp_path / "t5", num_layers=2))
    with pytest.raises(ValueError, match="healing needs a decoder-only model"):
        heal_cuts(t5, t5, [0], torch.zeros(2, 4, dtype=torch.long), HealSettings())
