"""`codistill.training.classifier.splits` and the shares of `config`: the four-part split."""

import random

import pytest

from codistill.config.fields import ConfigError
from codistill.data.benchmarks import load_bigclonebench
from codistill.data.schema import RecordError
from codistill.training.classifier.config import SPLIT_NAMES
from codistill.training.classifier.splits import load_task_records, split_records
from tests.training.test_classifier import write_clone_data, write_defect_data

SHARES = [0.4, 0.4, 0.05, 0.15]


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("classifier-splits")
    return {
        "root": root,
        "clone": write_clone_data(root / "bcb.jsonl"),
        "defect": write_defect_data(root / "devign.jsonl"),
    }


def test_split_is_deterministic_order_free_and_disjoint(data):
    records = load_bigclonebench(data["clone"])
    parts = split_records(records, SHARES, seed=0)
    shuffled = list(records)
    random.Random(1).shuffle(shuffled)
    again = split_records(shuffled, SHARES, seed=0)
    assert {k: [r.id for r in v] for k, v in parts.items()} == {
        k: [r.id for r in v] for k, v in again.items()
    }
    assert list(parts) == list(SPLIT_NAMES)
    ids = [r.id for part in parts.values() for r in part]
    assert sorted(ids) == sorted(r.id for r in records)  # a partition
    other_seed = split_records(records, SHARES, seed=1)
    assert [r.id for r in other_seed["teacher"]] != [r.id for r in parts["teacher"]]


def test_split_keeps_the_pairs_of_one_first_function_together(data):
    parts = split_records(load_bigclonebench(data["clone"]), SHARES, seed=0)
    home = {}
    for name, part in parts.items():
        for record in part:
            assert home.setdefault(record.extra["id1"], name) == name


def test_split_rejects_bad_fractions(data):
    records = load_bigclonebench(data["clone"])
    with pytest.raises(ConfigError, match="fractions must be 4 shares"):
        split_records(records, [0.5, 0.5], seed=0)
    with pytest.raises(ConfigError, match="sum to 1"):
        split_records(records, [0.4, 0.4, 0.4, 0.4], seed=0)
    with pytest.raises(ConfigError, match="teacher and test parts must not be empty"):
        split_records(records, [0.0, 0.8, 0.05, 0.15], seed=0)


def test_load_task_records_names_the_expected_format_for_the_wrong_task(data):
    with pytest.raises(RecordError, match="is this a clone file"):
        load_task_records("clone", data["defect"])
    with pytest.raises(FileNotFoundError, match="clone data file not found"):
        load_task_records("clone", data["root"] / "missing.jsonl")
