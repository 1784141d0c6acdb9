"""``models.layer_choice``: running a subset of layers in place, greedy removal by loss, and the
angular block choice."""

import json

import pytest
import torch

from codistill.data.batches import collate_causal, tokenize_records
from codistill.models.layer_choice import (
    _layer_inputs,
    block_distances,
    block_layer_choice,
    choose_layers,
    decoder_layers,
    greedy_layer_choice,
    only_layers,
    target_cross_entropy,
)
from codistill.models.loading import load_model, load_tokenizer
from codistill.models.student import DERIVATION_FILE, derive_student
from tests.helpers import make_records


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    """A tiny 5-layer Gemma 3 (sliding and full attention mixed), with held-out batches whose
    sequences are longer than its sliding window (8), so the attention kind of each layer
    matters."""
    from codistill.models.tiny import make_tiny_causal_lm

    path = make_tiny_causal_lm(tmp_path_factory.mktemp("lc") / "gemma", num_layers=5, seed=3)
    tokenizer = load_tokenizer(path)
    examples, _ = tokenize_records(
        make_records(12, "valid"), tokenizer, max_source_tokens=40, max_target_tokens=16
    )
    assert max(len(e.prompt_ids) + len(e.target_ids) for e in examples) > 8
    batches = [collate_causal(examples[i : i + 4], tokenizer.pad_token_id) for i in (0, 4, 8)]
    return path, load_model(path).eval(), batches


def _derived_loss(path, layers, batches, tmp_path) -> float:
    out = tmp_path / ("s" + "-".join(map(str, layers)))
    derive_student(path, out, layers)
    return target_cross_entropy(load_model(out).eval(), batches)


def test_running_a_layer_subset_equals_the_derived_student(teacher, tmp_path):
    path, model, batches = teacher
    for layers in ([0, 2, 4], [1, 2], [3]):
        with only_layers(model, layers):
            in_place = target_cross_entropy(model, batches)
        assert in_place == pytest.approx(_derived_loss(path, layers, batches, tmp_path), rel=1e-5)


def test_a_trial_from_the_recorded_stream_equals_the_trial_from_the_embeddings(teacher):
    _, model, batches = teacher
    kept = [0, 1, 3, 4]
    streams = _layer_inputs(model, batches, kept)
    for j in range(len(kept)):
        trial = kept[:j] + kept[j + 1 :]
        with only_layers(model, trial):
            full = target_cross_entropy(model, batches)
        start = min(j, len(trial) - 1)  # as greedy_layer_choice starts each trial
        with only_layers(model, trial[start:]):
            suffix = target_cross_entropy(model, batches, [s[start] for s in streams])
        assert suffix == pytest.approx(full, rel=1e-5)
    # the stream entering layer 0 is the scaled embedding, not the raw table row
    embed = model.get_input_embeddings()(batches[0]["input_ids"])
    assert torch.allclose(streams[0][0], embed)


def test_the_model_is_restored_after_a_subset_even_on_error(teacher):
    _, model, batches = teacher
    before = target_cross_entropy(model, batches)
    types = list(model.config.layer_types)
    with pytest.raises(RuntimeError, match="boom"), only_layers(model, [4, 0]):
        assert len(model.model.layers) == 2
        assert model.config.layer_types == [types[4], types[0]]
        raise RuntimeError("boom")
    assert len(model.model.layers) == 5 and model.config.num_hidden_layers == 5
    assert model.config.layer_types == types
    assert target_cross_entropy(model, batches) == before


def test_greedy_choice_follows_an_exhaustive_search_one_removal_at_a_time(teacher, tmp_path):
    path, model, batches = teacher
    choice = greedy_layer_choice(model, batches, keep=3)
    assert len(choice.layers) == 3 and choice.layers == sorted(choice.layers)
    assert [r["kept"] for r in choice.removed] == [4, 3]
    # The first removal is the best single removal, found here through derived students.
    costs = {
        layer: _derived_loss(path, [i for i in range(5) if i != layer], batches, tmp_path)
        for layer in range(5)
    }
    assert choice.removed[0]["layer"] == min(costs, key=costs.get)
    assert choice.removed[0]["loss"] == pytest.approx(min(costs.values()), abs=1e-3)
    # The reported loss is the kept layers' loss, and the full stack's is the teacher's own.
    assert choice.loss == pytest.approx(_derived_loss(path, choice.layers, batches, tmp_path))
    assert choice.full_loss == pytest.approx(target_cross_entropy(model, batches))
    assert json.loads(json.dumps(choice.to_dict()))["layers"] == choice.layers


def test_a_derived_student_records_the_choice(teacher, tmp_path):
    path, model, batches = teacher
    choice = greedy_layer_choice(model, batches, keep=2)
    out = tmp_path / "chosen"
    derive_student(path, out, choice.layers, notes={"layer_choice": choice.to_dict()})
    saved = json.loads((out / DERIVATION_FILE).read_text())
    assert saved["layers"] == choice.layers
    assert saved["layer_choice"]["removed"] == choice.removed


def test_bad_keep_and_models_without_a_decoder_stack_are_refused(teacher, t5_dir):
    _, model, batches = teacher
    with pytest.raises(ValueError, match=r"keep must be in \[1, 5\]"):
        greedy_layer_choice(model, batches, keep=0)
    with pytest.raises(ValueError, match="decoder-only"):
        greedy_layer_choice(load_model(t5_dir), batches, keep=1)
    with pytest.raises(ValueError, match="at least one target token"):
        empty = {**batches[0], "target_mask": torch.zeros_like(batches[0]["target_mask"])}
        target_cross_entropy(model, [empty])


def _angular(a: torch.Tensor, b: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    cos = torch.nn.functional.cosine_similarity(a[mask], b[mask], dim=-1).clamp(-1, 1)
    return torch.arccos(cos) / torch.pi


def test_block_distances_match_the_models_own_hidden_states(teacher):
    _, model, batches = teacher
    for drop in (1, 2, 3):
        distances = block_distances(model, batches, drop)
        assert len(distances) == 5 - drop + 1
        # every block that ends before the last layer, from the model's recorded streams
        for start in range(5 - drop):
            total, count = 0.0, 0
            for b in batches:
                with torch.no_grad():
                    hidden = model(
                        input_ids=b["input_ids"],
                        attention_mask=b["attention_mask"],
                        output_hidden_states=True,
                        use_cache=False,
                    ).hidden_states
                mask = b["attention_mask"].bool()
                total += float(_angular(hidden[start], hidden[start + drop], mask).sum())
                count += int(mask.sum())
            assert distances[start] == pytest.approx(total / count, rel=1e-4, abs=1e-6)


@pytest.fixture()
def fresh_teacher(teacher):
    """The teacher's model loaded anew, for tests that change its weights."""
    path, _, batches = teacher
    return load_model(path).eval(), batches


def test_a_block_ending_at_the_last_layer_is_scored_before_the_final_norm(fresh_teacher):
    model, batches = fresh_teacher
    before = block_distances(model, batches, 2)
    with torch.no_grad():
        norm = model.model.norm.weight
        norm.copy_(torch.rand_like(norm) * 3 - 1.5)  # the model's last hidden state changes
    after = block_distances(model, batches, 2)
    assert after == pytest.approx(before, rel=1e-6)


def test_the_block_that_leaves_the_stream_unchanged_is_dropped(fresh_teacher):
    model, batches = fresh_teacher
    with torch.no_grad():  # layers 1 and 2 add nothing to the residual stream
        for i in (1, 2):
            layer = decoder_layers(model)[i]
            layer.self_attn.o_proj.weight.zero_()
            layer.mlp.down_proj.weight.zero_()  # (Gemma's post-branch norms keep a zero zero)
    distances = block_distances(model, batches, 2)
    assert distances[1] == pytest.approx(0.0, abs=1e-3)
    assert min(d for i, d in enumerate(distances) if i != 1) > 0.01
    choice = block_layer_choice(model, batches, keep=3)
    assert choice.layers == [0, 3, 4] and choice.method == "angular-block"
    assert [r["layer"] for r in choice.removed] == [1, 2]
    with only_layers(model, [0, 3, 4]):
        assert choice.loss == pytest.approx(target_cross_entropy(model, batches), rel=1e-5)
    assert choice.loss == pytest.approx(choice.full_loss, rel=1e-3)  # nothing was lost
    saved = json.loads(json.dumps(choice.to_dict()))
    assert saved["method"] == "angular-block" and len(saved["block_distances"]) == 4


def test_an_unknown_score_and_a_bad_block_are_refused(teacher, tmp_path):
    _, model, batches = teacher
    with pytest.raises(ValueError, match="unknown layer score 'bi'"):  # before any model loads
        choose_layers(
            tmp_path / "missing",
            make_records(2, "valid"),
            1,
            max_source_tokens=8,
            max_target_tokens=8,
            score="bi",
        )
    with pytest.raises(ValueError, match=r"drop must be in \[1, 4\]"):
        block_distances(model, batches, 5)
    with pytest.raises(ValueError, match=r"keep must be in \[1, 5\]"):
        block_layer_choice(model, batches, keep=6)
