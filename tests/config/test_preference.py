"""The fault-aware contrastive stage's config: SODA's values as defaults, one-line field errors."""

from __future__ import annotations

import pytest

from codistill.config.fields import ConfigError
from codistill.config.preference import load_preference_config

REQUIRED = {"student": "s", "pairs": "p.jsonl"}


def test_defaults_are_the_soda_preset():
    cfg = load_preference_config(None, REQUIRED)
    # SODA Sec. 4: 3 epochs, lr 5e-7 for fault-aware contrastive learning; beta from
    # LLaMA-Factory's default (the paper names the framework but not the value).
    assert (cfg.lr, cfg.epochs, cfg.beta) == (5e-7, 3, 0.1)
    assert cfg.prompt_mode == "raw" and (cfg.student, cfg.pairs) == ("s", "p.jsonl")


def test_command_line_beats_yaml_beats_defaults(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("beta: 0.5\nlr: 1.0e-6\nprompt_mode: chat\n")
    cfg = load_preference_config(yml, ["beta=0.25", *(f"{k}={v}" for k, v in REQUIRED.items())])
    assert (cfg.beta, cfg.lr, cfg.prompt_mode) == (0.25, 1e-6, "chat")


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"beta": 0}, "beta must be > 0, got 0"),
        ({"beta": -1.0}, "beta must be > 0, got -1"),
        ({"lr": "fast"}, "lr must be float, got 'fast'"),
        ({"prompt_mode": "fim"}, "prompt_mode must be one of ['raw', 'chat'], got 'fim'"),
        ({"batch_size": 0}, "batch_size must be >= 1, got 0"),
        ({"warmup_ratio": 1.5}, "warmup_ratio must be in [0, 1], got 1.5"),
        ({"bta": 0.2}, "command line: unknown key 'bta'; did you mean 'beta'?"),
        ({"device": "tpu"}, "device must be one of ['auto', 'cpu', 'cuda'], got 'tpu'"),
    ],
)
def test_bad_fields_are_one_line_errors_naming_the_field(override, message):
    with pytest.raises(ConfigError) as err:
        load_preference_config(None, {**REQUIRED, **override})
    assert str(err.value) == message


@pytest.mark.parametrize("missing", sorted(REQUIRED))
def test_student_and_pairs_are_required(missing):
    given = {k: v for k, v in REQUIRED.items() if k != missing}
    with pytest.raises(ConfigError, match=rf"^{missing} is required: "):
        load_preference_config(None, given)


def test_a_missing_yaml_file_is_named(tmp_path):
    with pytest.raises(ConfigError, match="nope.yaml does not exist"):
        load_preference_config(tmp_path / "nope.yaml", REQUIRED)
