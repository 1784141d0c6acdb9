from __future__ import annotations

import pytest

from codistill.config.distill import load_distill_config, resolve_preset
from codistill.config.fields import ConfigError, parse_overrides

REQUIRED = {"student": "s", "teacher": "t", "train_data": "d"}


def test_command_line_beats_yaml_beats_defaults(tmp_path):
    yml = tmp_path / "c.yaml"
    yml.write_text("alpha: 0.2\ntemperature: 3\nlr: 1.0e-4\n")
    cfg = load_distill_config(yml, ["alpha=0.7", *(f"{k}={v}" for k, v in REQUIRED.items())])
    assert cfg.alpha == 0.7  # command line
    assert cfg.temperature == 3.0 and isinstance(cfg.temperature, float)  # yaml, widened
    assert cfg.epochs == 3  # default


def test_out_of_range_value_names_field_and_range():
    with pytest.raises(ConfigError, match=r"alpha must be in \[0, 1\], got 1.5"):
        load_distill_config(None, {**REQUIRED, "alpha": 1.5})


def test_unknown_key_suggests_the_closest_one():
    with pytest.raises(ConfigError, match="unknown key 'temprature'; did you mean 'temperature'"):
        load_distill_config(None, {**REQUIRED, "temprature": 2})


def test_wrong_type_is_reported():
    with pytest.raises(ConfigError, match="epochs must be int, got 'three'"):
        load_distill_config(None, {**REQUIRED, "epochs": "three"})


def test_missing_required_field_says_what_it_is():
    with pytest.raises(ConfigError, match="student is required"):
        load_distill_config(None, {"train_data": "d"})


def test_choices_are_enforced():
    with pytest.raises(ConfigError, match="mixed_precision must be one of"):
        load_distill_config(None, {**REQUIRED, "mixed_precision": "fp8"})
    with pytest.raises(ConfigError, match="truncation must be one of"):
        load_distill_config(None, {**REQUIRED, "truncation": "right"})
    assert load_distill_config(None, {**REQUIRED, "truncation": "middle"}).truncation == "middle"
    assert load_distill_config(None, REQUIRED).truncation == "left"


def test_teacher_terms_need_a_teacher():
    with pytest.raises(ConfigError, match="needs a teacher"):
        load_distill_config(None, {**REQUIRED, "teacher": None})
    cfg = load_distill_config(None, {**REQUIRED, "teacher": None, "loss": "ce"})
    assert cfg.teacher is None


def test_loss_mapping_terms_and_schedules_are_validated():
    with pytest.raises(ConfigError, match="unknown term 'kld'"):
        load_distill_config(None, {**REQUIRED, "loss": {"kld": 1.0}})
    with pytest.raises(ConfigError, match="loss.jsd"):
        load_distill_config(None, {**REQUIRED, "loss": {"jsd": "lots"}})


def test_dotted_override_sets_one_loss_term():
    over = parse_overrides(["loss.jsd=[0.6,0.3]", "loss.focal=0.3"])
    assert over == {"loss": {"jsd": [0.6, 0.3], "focal": 0.3}}


# The values each preset must reach (README's preset table and the papers' sections), spelt out
# here rather than read back from the YAML, so a preset edited by mistake fails.
PRESET_VALUES = {
    "alpha-temperature": {
        "loss": "alpha_temperature",
        "alpha": 0.5,
        "temperature": 1.0,
        "epochs": 3,
        "batch_size": 2,
        "grad_accum": 1,
        "lr": 5e-5,
        "warmup_ratio": 0.1,
    },
    "ce-kl-baseline": {
        "loss": "alpha_temperature",
        "alpha": 0.5,
        "temperature": 4.0,
        "epochs": 12,
        "batch_size": 8,
        "grad_accum": 4,
        "warmup_ratio": 0.15,
        "max_target_tokens": 128,
    },
    "trident-static": {
        "loss": {"focal": 0.3, "jsd": 0.45, "semantic": 0.2},
        "temperature": 4.0,
        "epochs": 12,
        "batch_size": 8,
        "grad_accum": 4,
        "warmup_ratio": 0.15,
        "max_source_tokens": 512,
    },
    "trident-dynamic": {
        "loss": {"focal": 0.3, "jsd": [0.6, 0.3], "semantic": [0.1, 0.3]},
        "temperature": 4.0,
        "epochs": 12,
        "batch_size": 8,
        "grad_accum": 4,
        "warmup_ratio": 0.15,
    },
}


def test_the_shipped_presets_are_the_tested_ones():
    presets = sorted(p.stem for p in resolve_preset("alpha-temperature").parent.glob("*.yaml"))
    assert presets == sorted(PRESET_VALUES)


@pytest.mark.parametrize("name", sorted(PRESET_VALUES))
def test_every_preset_sets_its_papers_values_and_the_command_line_still_wins(name):
    cfg = load_distill_config(name, REQUIRED)
    got = {key: getattr(cfg, key) for key in PRESET_VALUES[name]}
    assert got == PRESET_VALUES[name]
    assert (cfg.student, cfg.teacher, cfg.train_data) == ("s", "t", "d")
    assert load_distill_config(name, {**REQUIRED, "epochs": 1}).epochs == 1


def test_trident_dynamic_preset_has_the_paper_schedule():
    from codistill.losses.objective import parse_objective

    cfg = load_distill_config("trident-dynamic", REQUIRED)
    obj = parse_objective(cfg.loss, **cfg.loss_settings())
    assert obj.weights(0, cfg.epochs) == {"focal": 0.3, "jsd": 0.6, "semantic": 0.1}
    assert cfg.temperature == 4.0 and cfg.warmup_ratio == 0.15
    assert obj.temperature == 4.0  # bound into the terms


def test_loss_settings_are_what_parse_objective_binds_and_share_its_defaults():
    import inspect

    from codistill.losses.objective import parse_objective

    cfg = load_distill_config(None, REQUIRED)
    params = inspect.signature(parse_objective).parameters
    assert set(cfg.loss_settings()) == {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY}
    assert cfg.loss_settings() == {n: params[n].default for n in cfg.loss_settings()}
    tuned = load_distill_config(None, {**REQUIRED, "temperature": 3, "jsd_beta": 0.2})
    assert tuned.loss_settings()["temperature"] == 3.0 and tuned.loss_settings()["jsd_beta"] == 0.2


def test_unknown_preset_lists_the_presets():
    with pytest.raises(ConfigError, match="presets: alpha-temperature"):
        resolve_preset("nope")


def test_lengths_default_by_task_and_explicit_values_win():
    cfg = load_distill_config(None, REQUIRED)
    assert (cfg.max_source_tokens, cfg.max_target_tokens) == (256, 64)
    cfg = load_distill_config(None, {**REQUIRED, "task": "codegen"})
    assert (cfg.max_source_tokens, cfg.max_target_tokens) == (512, 384)
    cfg = load_distill_config(None, {**REQUIRED, "task": "codegen", "max_target_tokens": 100})
    assert cfg.max_target_tokens == 100
    assert load_distill_config("trident-static", REQUIRED).max_target_tokens == 128


def test_chat_prompts_are_for_code_generation():
    with pytest.raises(ConfigError, match="prompt_mode=chat is for task=codegen"):
        load_distill_config(None, {**REQUIRED, "prompt_mode": "chat"})
    cfg = load_distill_config(None, {**REQUIRED, "task": "codegen", "prompt_mode": "chat"})
    assert cfg.prompt_mode == "chat"


@pytest.mark.parametrize("spec", ["teacher", "teacher:", "gold:G", "teacher-checked:G"])
def test_targets_must_name_a_known_kind_and_a_directory(spec):
    with pytest.raises(ConfigError, match="targets must be reference, teacher:DIR"):
        load_distill_config(None, {**REQUIRED, "targets": spec})
    cfg = load_distill_config(None, {**REQUIRED, "targets": "teacher-verified:gen"})
    assert cfg.targets == "teacher-verified:gen"


def test_on_policy_needs_the_online_teacher_and_a_teacher_term():
    with pytest.raises(ConfigError, match="on_policy > 0 needs the online teacher"):
        load_distill_config(None, {**REQUIRED, "teacher_cache": "c", "on_policy": 0.5})
    with pytest.raises(ConfigError, match="nothing to distil"):
        load_distill_config(None, {**REQUIRED, "loss": "ce", "on_policy": 0.5})
    with pytest.raises(ConfigError, match=r"on_policy must be in \[0, 1\]"):
        load_distill_config(None, {**REQUIRED, "on_policy": 1.5})
    assert load_distill_config(None, {**REQUIRED, "on_policy": 0.5}).on_policy == 0.5
