import dataclasses

import pytest

from codistill.losses.schedules import WeightSchedule, parse_weight


def test_static_weight_is_constant_over_epochs():
    schedule = WeightSchedule(0.3)
    assert [schedule.value(epoch, 8) for epoch in range(8)] == [0.3] * 8
    assert schedule.is_static


def test_trident_jsd_default_decreases_linearly_to_its_end_value_at_the_last_epoch():
    schedule = parse_weight([0.6, 0.3])
    got = [schedule.value(epoch, 3) for epoch in range(3)]
    assert got == pytest.approx([0.6, 0.45, 0.3])


@pytest.mark.parametrize("epochs", [2, 8, 12])
def test_the_last_epoch_reaches_the_end_value(epochs):
    # "JSD decreases from 0.6 to 0.3": with 8 epochs the paper's formula stopped at 0.3375.
    assert parse_weight([0.6, 0.3]).value(epochs - 1, epochs) == pytest.approx(0.3)


def test_a_one_epoch_run_uses_the_start_value():
    assert parse_weight([0.6, 0.3]).value(0, 1) == pytest.approx(0.6)


def test_trident_semantic_default_increases_linearly():
    schedule = parse_weight({"start": 0.1, "end": 0.3})
    got = [schedule.value(epoch, 5) for epoch in range(5)]
    assert got == pytest.approx([0.1, 0.15, 0.2, 0.25, 0.3])


def test_parse_number_gives_static_schedule():
    assert parse_weight(1) == WeightSchedule(1.0, None)


def test_parse_mapping_without_end_gives_static_schedule():
    assert parse_weight({"start": 0.5}) == WeightSchedule(0.5)


def test_parse_passes_a_schedule_through():
    schedule = WeightSchedule(0.2, 0.4)
    assert parse_weight(schedule) is schedule


@pytest.mark.parametrize("spec", [0.3, [0.6, 0.3], [0.0, 1.0]])
def test_to_spec_round_trips_through_parse(spec):
    assert parse_weight(parse_weight(spec).to_spec()) == parse_weight(spec)


@pytest.mark.parametrize(
    ("spec", "fragment"),
    [
        ("0.5", "'0.5'"),
        ([0.1, 0.2, 0.3], "[0.1, 0.2, 0.3]"),
        ([0.1], "[0.1]"),
        ({"begin": 0.1, "end": 0.2}, "'begin'"),
        ({"start": 0.1, "stop": 0.2}, "'stop'"),
        (None, "None"),
        (True, "True"),
        (-0.1, "-0.1"),
        ([0.6, -0.3], "-0.3"),
        ({"start": "high"}, "'high'"),
        (float("inf"), "inf"),
    ],
)
def test_parse_rejects_bad_spec_naming_the_value(spec, fragment):
    with pytest.raises(ValueError) as info:
        parse_weight(spec)
    assert fragment in str(info.value)


def test_negative_start_is_rejected_by_the_dataclass():
    with pytest.raises(ValueError, match="start must be a finite number >= 0, got -1"):
        WeightSchedule(-1)


@pytest.mark.parametrize(("epoch", "total"), [(3, 3), (-1, 3)])
def test_epoch_outside_training_is_rejected(epoch, total):
    with pytest.raises(ValueError, match=f"epoch must be an integer in \\[0, {total}\\)"):
        WeightSchedule(0.6, 0.3).value(epoch, total)


def test_zero_total_epochs_is_rejected():
    with pytest.raises(ValueError, match="total_epochs must be an integer >= 1, got 0"):
        WeightSchedule(0.6).value(0, 0)


def test_schedule_is_immutable():
    schedule = WeightSchedule(0.6, 0.3)
    with pytest.raises(dataclasses.FrozenInstanceError):
        schedule.start = 0.1
