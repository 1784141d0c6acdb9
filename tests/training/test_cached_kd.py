"""Distilling from a teacher cache instead of an online teacher."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from codistill.config.fields import ConfigError
from codistill.data.jsonl import read_records
from codistill.models.loading import load_model
from codistill.models.student import derive_student
from codistill.models.vocab import TokenMap
from codistill.teacher.cache import build_cache
from codistill.training.loop import build_run, distill, optimizer_step
from tests.helpers import distill_config
from tests.training.recording import recording

LIMITS = {"max_source_tokens": 64, "max_target_tokens": 32}


@pytest.fixture(scope="module")
def full_vocab_setup(tiny_setup, tmp_path_factory):
    """A student keeping the teacher's whole vocabulary, and a cache with k = |V|."""
    root = tmp_path_factory.mktemp("cached")
    student = root / "student"
    derive_student(tiny_setup["teacher"], student, 2)
    vocab = load_model(tiny_setup["teacher"]).config.vocab_size
    cache = root / "cache"
    build_cache(tiny_setup["teacher"], read_records(tiny_setup["train"]), cache, k=vocab, **LIMITS)
    dense = root / "dense"
    build_cache(
        tiny_setup["teacher"], read_records(tiny_setup["train"]), dense, fmt="dense8", **LIMITS
    )
    return {**tiny_setup, "student": student, "cache": cache, "dense": dense}


def _grads(setup, tmp_path, cached: bool, which: str = "cache"):
    cfg = distill_config(
        setup,
        tmp_path / f"g{cached}{which}",
        loss={"kl": 0.5, "jsd": 0.5},
        temperature=2.0,
        teacher_cache=str(setup[which]) if cached else None,
        max_train_examples=8,
        **LIMITS,
    )
    run = recording(build_run(cfg, resume=False)[0])
    assert (run.teacher is None) == cached
    run.student.train()
    logged = optimizer_step(run, [list(range(8))], run.objective.weights(0, 1))
    return logged, run.optimizer.seen


def test_cache_with_the_whole_vocabulary_gives_the_online_teachers_loss_and_gradients(
    full_vocab_setup, tmp_path
):
    online, online_grads = _grads(full_vocab_setup, tmp_path, cached=False)
    cached, cached_grads = _grads(full_vocab_setup, tmp_path, cached=True)
    # Stored log-probs are quantized (step 1/32 nats), so equality is approximate.
    assert cached["kl"] == pytest.approx(online["kl"], rel=0.02, abs=1e-3)
    assert cached["jsd"] == pytest.approx(online["jsd"], rel=0.02, abs=1e-3)
    cos = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in online_grads]),
        torch.cat([g.flatten() for g in cached_grads]),
        dim=0,
    )
    assert cos > 0.99


@pytest.mark.parametrize("stop_target", ["teacher", "label"])
def test_a_cached_run_records_the_teachers_probability_of_the_ending_eos(
    full_vocab_setup, tmp_path, capsys, stop_target
):
    cfg = distill_config(
        full_vocab_setup,
        tmp_path / "run",
        loss={"kl": 1.0},
        teacher_cache=str(full_vocab_setup["cache"]),
        max_train_examples=8,
        stop_target=stop_target,
        **LIMITS,
    )
    run = build_run(cfg, resume=False)[0]
    recorded = json.loads((tmp_path / "run" / "run.json").read_text())["teacher_stop_probability"]
    teacher = load_model(full_vocab_setup["teacher"])
    want = []
    for example in run.train:  # the student keeps the teacher's vocabulary: ids are the teacher's
        assert example.target_ids[-1] == run.tokenizer.eos_token_id
        ids = torch.tensor([example.prompt_ids + example.target_ids])
        with torch.no_grad():
            logits = teacher(input_ids=ids).logits[0, -2]  # the position predicting the EOS
        want.append(float(torch.softmax(logits.float(), -1)[example.target_ids[-1]]))
    # Stored log-probs are quantized (step 1/32 nats).
    assert recorded == pytest.approx(sum(want) / len(want), rel=0.05)
    # A random tiny teacher gives the EOS ~1/|V|: the run warns unless the label is used there.
    warned = "not to stop" in capsys.readouterr().err
    assert warned == (stop_target == "teacher")


def test_dense_baseline_cache_gives_the_online_teachers_loss(full_vocab_setup, tmp_path):
    online, online_grads = _grads(full_vocab_setup, tmp_path, cached=False)
    dense, dense_grads = _grads(full_vocab_setup, tmp_path, cached=True, which="dense")
    # 8-bit min-max codes: a step of (max - min) / 255 per row, coarser than the top-k format's.
    assert dense["kl"] == pytest.approx(online["kl"], rel=0.05, abs=2e-3)
    assert dense["jsd"] == pytest.approx(online["jsd"], rel=0.05, abs=2e-3)
    cos = torch.nn.functional.cosine_similarity(
        torch.cat([g.flatten() for g in online_grads]),
        torch.cat([g.flatten() for g in dense_grads]),
        dim=0,
    )
    assert cos > 0.99


def test_dense_cache_with_a_trimmed_student_gives_the_online_teachers_finite_loss(
    tiny_setup, tmp_path
):
    # The student keeps part of the teacher's vocabulary: the teacher must be conditioned on it
    # (as the online teacher's restricted head is), or the forward KL is inf everywhere.
    dense = tmp_path / "dense"
    records = read_records(tiny_setup["train"])
    build_cache(tiny_setup["teacher"], records, dense, fmt="dense8", **LIMITS)
    setup = {**tiny_setup, "dense": dense}
    assert TokenMap.load(setup["student"]).is_identity is False
    online, _ = _grads(setup, tmp_path, cached=False)
    cached, _ = _grads(setup, tmp_path, cached=True, which="dense")
    assert torch.isfinite(torch.tensor(cached["kl"])) and torch.isfinite(
        torch.tensor(cached["jsd"])
    )
    assert cached["kl"] == pytest.approx(online["kl"], rel=0.05, abs=2e-3)
    assert cached["jsd"] == pytest.approx(online["jsd"], rel=0.05, abs=2e-3)


def test_cached_kd_run_needs_no_teacher_model(tiny_setup, tmp_path):
    cache = tmp_path / "cache"
    build_cache(tiny_setup["teacher"], read_records(tiny_setup["train"]), cache, k=8, **LIMITS)
    cfg = distill_config(
        tiny_setup, tmp_path / "run", teacher=None, teacher_cache=str(cache), max_steps=2, **LIMITS
    )
    result = distill(cfg)
    assert result.status == "finished"
    assert (result.run_dir / "final" / "config.json").exists()


def test_a_trimmed_student_reads_cached_teacher_ids_through_its_token_map(tiny_setup, tmp_path):
    cache = tmp_path / "cache"
    build_cache(tiny_setup["teacher"], read_records(tiny_setup["train"]), cache, k=8, **LIMITS)
    cfg = distill_config(
        tiny_setup, tmp_path / "run", teacher=None, teacher_cache=str(cache), **LIMITS
    )
    run, _ = build_run(cfg, resume=False)
    tmap = TokenMap.load(tiny_setup["student"])
    table = run.teacher_to_student
    assert table.shape == (tmap.teacher_vocab_size,) and not tmap.is_identity
    assert table[tmap.student_to_teacher_tensor].tolist() == list(range(tmap.student_vocab_size))
    assert int((table == -1).sum()) == tmap.teacher_vocab_size - tmap.student_vocab_size


def test_a_cache_of_a_teacher_with_another_vocabulary_is_refused(tiny_setup, tmp_path):
    cache = tmp_path / "cache"
    build_cache(tiny_setup["teacher"], read_records(tiny_setup["train"]), cache, k=8, **LIMITS)
    student = tmp_path / "student"
    shutil.copytree(tiny_setup["student"], student)
    tmap = TokenMap.load(student)
    TokenMap(tmap.student_to_teacher, tmap.teacher_vocab_size + 5, 0).save(student)
    cfg = distill_config(
        {**tiny_setup, "student": student},
        tmp_path / "run",
        teacher=None,
        teacher_cache=str(cache),
        **LIMITS,
    )
    with pytest.raises(ConfigError, match=r"cached teacher has \d+ tokens.*maps into \d+"):
        build_run(cfg, resume=False)


def test_cache_built_with_other_settings_is_refused_naming_the_fix(tiny_setup, tmp_path):
    cache = tmp_path / "cache"
    build_cache(
        tiny_setup["teacher"],
        read_records(tiny_setup["train"]),
        cache,
        k=8,
        max_source_tokens=16,
        max_target_tokens=32,
    )
    cfg = distill_config(
        tiny_setup, tmp_path / "run", teacher=None, teacher_cache=str(cache), max_steps=1, **LIMITS
    )
    with pytest.raises(ConfigError, match="no cached teacher outputs for record 1"):
        distill(cfg)


def test_a_refused_cache_is_one_line_and_exit_2_on_the_command_line(tiny_setup, tmp_path, capsys):
    from codistill.cli.main import main

    cache = tmp_path / "cache"
    records = read_records(tiny_setup["train"])
    build_cache(
        tiny_setup["teacher"], records, cache, k=8, max_source_tokens=16, max_target_tokens=32
    )
    argv = ["distill", f"student={tiny_setup['student']}", f"train_data={tiny_setup['train']}"]
    argv += [f"teacher_cache={cache}", f"output_dir={tmp_path / 'run'}", "max_steps=1"]
    argv += [f"{k}={v}" for k, v in LIMITS.items()] + ["progress=false"]
    assert main(argv) == 2
    err = capsys.readouterr().err
    errors = [line for line in err.splitlines() if line.startswith("codistill distill: error:")]
    assert len(errors) == 1 and "no cached teacher outputs for record 1" in errors[0]
    assert "Traceback" not in err


def test_a_pretrained_student_sharing_the_teachers_tokenizer_trains_from_the_cache(
    full_vocab_setup, tmp_path, monkeypatch
):
    """Qwen2.5-Coder 1.5B -> 0.5B: a student named ``embedded:NAME``, with no token map (it
    shares the teacher's tokenizer), finds its records in the cache by the teacher's ids."""
    from codistill.models import registry

    pretrained = tmp_path / "pretrained"
    shutil.copytree(full_vocab_setup["teacher"], pretrained)
    assert TokenMap.load_optional(pretrained) is None
    monkeypatch.setattr(registry, "ensure_model", lambda name, *a, **k: pretrained)
    cfg = distill_config(
        full_vocab_setup,
        tmp_path / "run",
        student="embedded:qwen2.5-coder-0.5b-instruct",
        teacher=None,
        teacher_cache=str(full_vocab_setup["cache"]),
        loss="alpha_temperature",
        max_steps=2,
        max_train_examples=8,
        **LIMITS,
    )
    result = distill(cfg)
    assert result.status == "finished"
    assert (tmp_path / "run" / "final" / "config.json").exists()


def test_a_cache_of_middle_cut_prompts_serves_middle_cut_training_only(tiny_setup, tmp_path):
    cache = tmp_path / "cache"
    cut = {"max_source_tokens": 12, "max_target_tokens": 32}
    records = read_records(tiny_setup["train"])
    build_cache(tiny_setup["teacher"], records, cache, k=8, truncation="middle", **cut)
    common = {"teacher": None, "teacher_cache": str(cache), "max_steps": 1, **cut}
    run = distill(distill_config(tiny_setup, tmp_path / "mid", truncation="middle", **common))
    assert run.run_dir.joinpath("run.json").is_file()
    with pytest.raises(ConfigError, match="no cached teacher outputs.*truncation"):
        distill(distill_config(tiny_setup, tmp_path / "left", truncation="left", **common))
