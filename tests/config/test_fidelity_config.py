"""``FidelityConfig``: validation, YAML + ``key=value`` layering, and the ``codistill fidelity``
command line on top of it (the run itself is replaced: nothing here loads a model)."""

from __future__ import annotations

import dataclasses

import pytest

from codistill.cli.main import main
from codistill.config.fidelity import (
    FidelityConfig,
    check_fidelity_config,
    load_fidelity_config,
)
from codistill.config.fields import ConfigError

REQUIRED = ["teacher=t", "student=s", "task=assertion", "data=d.jsonl", "out=o"]


def test_unknown_key_suggests_the_closest_one(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'attack_budjet'; did you mean 'attack_bud"):
        load_fidelity_config(None, [*REQUIRED, "attack_budjet=5"])
    yaml_file = tmp_path / "fid.yaml"
    yaml_file.write_text("varaints: 2\n")
    with pytest.raises(ConfigError, match=r"fid.yaml: unknown key 'varaints'.*'variants'"):
        load_fidelity_config(yaml_file, REQUIRED)


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("partial=1.5", r"partial must be in \[0, 1\], got 1.5"),
        ("variants=0", "variants must be >= 1, got 0"),
        ("attack_records=-1", "attack_records must be >= 0, got -1"),
        ("max_new_tokens=0", "max_new_tokens must be >= 1, got 0"),
        ("verify=javac", r"verify must be one of \['compile', 'parse'\], got 'javac'"),
        ("task=summarise", "task must be one of"),
        ("n_resamples=many", "n_resamples must be int, got 'many'"),
    ],
)
def test_out_of_range_or_mistyped_values_name_the_field(override, message):
    with pytest.raises(ConfigError, match=message):
        load_fidelity_config(None, [*REQUIRED, override])


def test_a_missing_required_key_is_named():
    with pytest.raises(ConfigError, match="teacher is required"):
        load_fidelity_config(None, REQUIRED[1:])


def test_command_line_wins_over_yaml_which_wins_over_defaults(tmp_path):
    yaml_file = tmp_path / "fid.yaml"
    yaml_file.write_text("variants: 3\nseed: 7\nfail_under:\n  agreement: 0.5\n")
    cfg = load_fidelity_config(yaml_file, [*REQUIRED, "variants=2", "fail_under.x.y=1"])
    assert cfg.variants == 2  # command line over YAML
    assert cfg.seed == 7  # YAML over the default
    assert cfg.attack_budget == 60  # the default
    assert cfg.fail_under == {"agreement": 0.5, "x.y": 1}  # gate mappings merge key by key


def test_names_take_a_list_or_the_comma_separated_flag_form():
    cfg = load_fidelity_config(None, [*REQUIRED, "relations=dead_code, loop_exchange"])
    assert cfg.relations == ["dead_code", "loop_exchange"] and cfg.attacks == ["alert", "mhm"]
    assert load_fidelity_config(None, [*REQUIRED, "relations=all"]).relations is None
    assert load_fidelity_config(None, [*REQUIRED, "attacks=none"]).attacks == []
    assert load_fidelity_config(None, [*REQUIRED, "attacks=[mhm]"]).attacks == ["mhm"]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["attacks=alert,fgsm"], r"attacks: unknown \['fgsm'\]"),
        (["task=codegen", "cqs=true"], "--cqs scores outputs against a reference assertion"),
        (["task=clone", "student_backend=openai:http://x"], "needs classifier directories"),
        (["fail_under.agreement=high"], "fail_under.agreement must be a number, got 'high'"),
    ],
)
def test_cross_field_rules(overrides, message):
    with pytest.raises(ConfigError, match=message):
        load_fidelity_config(None, [*REQUIRED, *overrides])


def test_a_config_built_in_python_is_checked_too():
    cfg = FidelityConfig("t", "s", "assertion", "d", "o", variants=2)
    check_fidelity_config(cfg)
    with pytest.raises(ConfigError, match=r"partial must be in \[0, 1\]"):
        check_fidelity_config(dataclasses.replace(cfg, partial=2.0))


@pytest.fixture
def captured(monkeypatch):
    """Replaces the run: the options ``codistill fidelity`` would run with are captured."""
    from codistill.fidelity import runner

    seen = []

    def fake(opts):
        seen.append(opts)
        raise runner.FidelityError("captured")

    monkeypatch.setattr(runner, "run_fidelity", fake)
    return seen


def test_cli_flags_win_over_overrides_and_yaml(tmp_path, captured):
    yaml_file = tmp_path / "fid.yaml"
    yaml_file.write_text(
        "teacher: t\nstudent: s\ntask: assertion\ndata: d.jsonl\nout: o\n"
        "variants: 3\nseed: 7\nattack_budget: 5\nfail_under:\n  agreement: 0.5\n"
    )
    argv = ["fidelity", "--config", str(yaml_file), "--variants", "2", "--bootstrap", "10"]
    argv += ["--fail-under", "student_consistency=0.1", "variants=9", "attack_budget=6"]
    assert main(argv) == 2  # the fake run's error
    opts = captured[0]
    assert (opts.variants, opts.seed, opts.attack_budget, opts.n_resamples) == (2, 7, 6, 10)
    assert opts.fail_under == {"agreement": 0.5, "student_consistency": 0.1}
    assert opts.max_records == 50 and opts.relations is None  # defaults, not flag defaults


def test_cli_keeps_its_flags(tmp_path, captured):
    argv = ["fidelity", "--teacher", "t", "--student", "s", "--task", "codegen", "--data", "d"]
    argv += ["--out", str(tmp_path), "--relations", "dead_code,loop_exchange", "--attacks"]
    argv += ["none", "--partial", "1", "--max-records", "3", "--fail-over", "all.jsd=0.2"]
    assert main(argv) == 2
    opts = captured[0]
    assert opts.relations == ["dead_code", "loop_exchange"] and opts.attacks == []
    assert opts.partial == 1.0 and opts.max_records == 3 and opts.fail_over == {"all.jsd": 0.2}


def test_cli_config_errors_are_one_line_exit_2(tmp_path, captured, capsys):
    argv = ["fidelity", "--teacher", "t", "--student", "s", "--task", "assertion", "--data"]
    argv += ["d", "--out", str(tmp_path), "--partial", "1.5"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.strip() == "codistill fidelity: error: partial must be in [0, 1], got 1.5"
    assert not captured  # refused before the run


def test_help_config_lists_every_key(capsys):
    assert main(["fidelity", "--help-config"]) == 0
    listed = capsys.readouterr().out
    for f in dataclasses.fields(FidelityConfig):
        assert f"  {f.name} = " in listed
