"""The quickstart's student layers: chosen by held-out loss, or evenly spaced when asked."""

from __future__ import annotations

from codistill.data.jsonl import read_records
from codistill.models.layer_choice import choose_layers
from codistill.quickstart import QuickstartOptions, choose_student_layers


def test_layers_are_chosen_on_the_first_valid_records(tiny_setup):
    opts = QuickstartOptions(layers=2, choice_records=3, max_source_tokens=64)
    paths = {"valid": tiny_setup["valid"]}
    layers, notes = choose_student_layers(opts, str(tiny_setup["teacher"]), paths)
    want = choose_layers(
        tiny_setup["teacher"],
        read_records(tiny_setup["valid"])[:3],
        2,
        max_source_tokens=64,
        max_target_tokens=48,
    )
    assert layers == want.layers and len(layers) == 2
    assert notes["layer_choice"]["layers"] == layers
    assert len(notes["layer_choice"]["removed"]) == 2  # 4 teacher layers -> 2


def test_zero_choice_records_keeps_even_spacing(tiny_setup):
    opts = QuickstartOptions(layers=2, choice_records=0)
    assert choose_student_layers(opts, str(tiny_setup["teacher"]), {}) == (2, {})
