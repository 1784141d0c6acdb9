"""Teacher top-k cache on the tiny teacher: values, keys, resume, refusal, verification."""

from __future__ import annotations

import os
import shutil

import numpy as np
import pytest
import torch

from codistill.cli.main import main
from codistill.data.batches import tokenize_records
from codistill.data.jsonl import read_records
from codistill.models.loading import load_model, load_tokenizer
from codistill.models.tiny import make_tiny_causal_lm
from codistill.models.vocab import TokenMap
from codistill.teacher.cache import (
    build_cache,
    cache_header,
    example_key,
    list_shards,
    open_cache,
)
from codistill.teacher.cache_format import CacheMismatch, ShardReader

K = 8
TOKENS = {"max_source_tokens": 48, "max_target_tokens": 16}


@pytest.fixture(scope="module")
def cached(tiny_setup, tmp_path_factory):
    out = tmp_path_factory.mktemp("cache") / "cache"
    records = read_records(tiny_setup["train"])
    stats = build_cache(
        tiny_setup["teacher"], records, out, k=K, batch_size=5, shard_size=10, **TOKENS
    )
    return out, records, stats


def _examples(setup, records, token_map=None):
    examples, _ = tokenize_records(
        records, load_tokenizer(setup["teacher"]), token_map=token_map, **TOKENS
    )
    return examples


def test_cache_holds_every_example_in_shards_of_the_requested_size(cached):
    out, records, stats = cached
    assert stats.written == len(records) == 24 and stats.skipped_cached == 0
    assert [p.name for p in list_shards(out)] == [
        "shard-00000.cdt",
        "shard-00001.cdt",
        "shard-00002.cdt",
    ]
    assert len(open_cache(out)) == 24


def test_stored_topk_matches_the_teachers_own_logits(tiny_setup, cached):
    out, records, _ = cached
    model = load_model(tiny_setup["teacher"])
    cache = open_cache(out)
    step = cache.header.logprob_step
    for ex in _examples(tiny_setup, records)[:6]:
        seq = torch.tensor([ex.prompt_ids + ex.target_ids])
        with torch.no_grad():
            logits = model(seq).logits[0].float()
        # logits at position t predict token t + 1: the rows just before each target token
        start = len(ex.prompt_ids) - 1
        logp = torch.log_softmax(logits[start : start + len(ex.target_ids)], -1).numpy()
        ids, lp, tail = cache.get(example_key(ex.prompt_ids, ex.target_ids))
        assert ids.shape == lp.shape == (len(ex.target_ids), K)
        np.testing.assert_array_equal(ids[:, 0], logp.argmax(-1))
        exact = np.take_along_axis(logp, ids, axis=1)
        # cache_format's bounds: every value within one step, the top-1 within half of one.
        assert np.abs(lp - exact).max() <= step + 1e-4
        assert np.abs(lp[:, 0] - exact[:, 0]).max() <= step / 2 + 1e-4
        outside = 1 - np.exp(exact).sum(-1)
        np.testing.assert_allclose(tail, outside, rtol=2e-3, atol=1e-6)


def test_trainer_side_keys_find_every_example(tiny_setup, cached):
    out, records, _ = cached
    token_map = TokenMap.load(tiny_setup["student"])
    cache = open_cache(out)
    for ex in _examples(tiny_setup, records, token_map):
        key = example_key(ex.teacher_prompt_ids, ex.teacher_target_ids)
        assert cache.get(key)[0].shape[0] == len(ex.target_ids)


def test_changed_example_has_another_key_and_misses(tiny_setup, cached):
    out, records, _ = cached
    ex = _examples(tiny_setup, records)[0]
    with pytest.raises(KeyError, match="content"):
        open_cache(out).get(example_key(ex.prompt_ids, ex.target_ids[:-2] + ex.target_ids[-1:]))


def test_resume_after_losing_the_last_shard_writes_only_the_missing_examples(
    tiny_setup, cached, tmp_path
):
    out, records, _ = cached
    copy = tmp_path / "cache"
    shutil.copytree(out, copy)
    lost = len(ShardReader(list_shards(copy)[-1]))
    list_shards(copy)[-1].unlink()
    stats = build_cache(
        tiny_setup["teacher"], records, copy, k=K, batch_size=5, shard_size=10, **TOKENS
    )
    assert stats.written == lost == 4
    assert stats.skipped_cached == len(records) - lost
    assert stats.new_shards == ["shard-00002.cdt"]
    assert len(open_cache(copy)) == len(records)
    again = build_cache(tiny_setup["teacher"], records, copy, k=K, shard_size=10, **TOKENS)
    assert again.written == 0 and again.new_shards == []


def test_another_teacher_is_refused_naming_teacher_hash(tiny_setup, cached, tmp_path):
    out, records, _ = cached
    other = make_tiny_causal_lm(tmp_path / "teacher", num_layers=4, seed=7)
    moved = tmp_path / "cache"
    shutil.copytree(out, moved)
    vocab = load_model(other).get_output_embeddings().weight.shape[0]
    expected = cache_header(other, K, vocab)
    with pytest.raises(CacheMismatch) as err:
        open_cache(moved, expected)
    assert "teacher_hash" in err.value.fields
    with pytest.raises(CacheMismatch, match="teacher_hash"):
        build_cache(other, records[:2], moved, k=K, **TOKENS)


def test_verify_detects_a_corrupted_shard(cached, tmp_path, capsys):
    out, _, _ = cached
    copy = tmp_path / "cache"
    shutil.copytree(out, copy)
    assert main(["teacher", "verify", str(copy)]) == 0
    shard = list_shards(copy)[1]
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0xFF
    shard.write_bytes(bytes(data))
    capsys.readouterr()
    assert main(["teacher", "verify", str(copy)]) == 1
    assert "BAD shard-00001.cdt" in capsys.readouterr().out


def test_cli_cache_writes_shards_and_resumes(tiny_setup, tmp_path, capsys):
    out = tmp_path / "cache"
    argv = [
        "teacher",
        "cache",
        "--teacher",
        str(tiny_setup["teacher"]),
        "--data",
        str(tiny_setup["valid"]),
        "--out",
        str(out),
        "--top-k",
        "4",
    ]
    assert main(argv) == 0
    assert "6 cached now" in capsys.readouterr().out
    assert main(argv) == 0
    assert "0 cached now" in capsys.readouterr().out and len(list_shards(out)) == 1


def test_ranks_split_the_work_and_together_equal_one_process(tiny_setup, cached, tmp_path):
    out, records, _ = cached
    split = tmp_path / "split"
    stats = [
        build_cache(
            tiny_setup["teacher"],
            records,
            split,
            k=K,
            shard_size=10,
            rank=r,
            world_size=2,
            **TOKENS,
        )
        for r in (0, 1)
    ]
    assert sum(s.written for s in stats) == len(records) and all(s.written for s in stats)
    names = [p.name for p in list_shards(split)]
    assert any(n.endswith("-r00.cdt") for n in names) and any(n.endswith("-r01.cdt") for n in names)
    whole, parts = open_cache(out), open_cache(split)
    assert sorted(whole.keys()) == sorted(parts.keys())
    for key in whole.keys():
        for a, b in zip(whole.get(key), parts.get(key), strict=True):
            np.testing.assert_array_equal(a, b)
    # A rerun with one process finds everything, whichever rank wrote it.
    assert build_cache(tiny_setup["teacher"], records, split, k=K, **TOKENS).written == 0


def test_verify_refuses_a_directory_mixing_two_teachers(tiny_setup, cached, tmp_path, capsys):
    out, records, _ = cached
    mixed = tmp_path / "mixed"
    shutil.copytree(out, mixed)
    other = make_tiny_causal_lm(tmp_path / "teacher", num_layers=4, seed=7)
    build_cache(other, records[:3], tmp_path / "other", k=K, **TOKENS)
    shutil.copy(list_shards(tmp_path / "other")[0], mixed / "shard-00009.cdt")
    assert main(["teacher", "verify", str(mixed)]) == 1
    assert "teacher_hash" in capsys.readouterr().out


def test_dense_baseline_cache_holds_whole_rows(tiny_setup, tmp_path):
    records = read_records(tiny_setup["valid"])[:3]
    out = tmp_path / "dense"
    build_cache(tiny_setup["teacher"], records, out, fmt="dense8", **TOKENS)
    cache = open_cache(out)
    assert cache.header.dense and cache.header.compression == "lz4"
    model = load_model(tiny_setup["teacher"])
    ex = _examples(tiny_setup, records)[0]
    with torch.no_grad():
        logits = model(torch.tensor([ex.prompt_ids + ex.target_ids])).logits[0].float()
    start = len(ex.prompt_ids) - 1
    logp = torch.log_softmax(logits[start : start + len(ex.target_ids)], -1).numpy()
    _, lp, _ = cache.get(example_key(ex.prompt_ids, ex.target_ids))
    span = logp.max(-1, keepdims=True) - logp.min(-1, keepdims=True)
    assert (np.abs(lp - logp) <= span / 510 + 1e-5).all()


def test_two_launched_processes_write_their_own_shards(tiny_setup, tmp_path):
    import subprocess
    import sys

    out = tmp_path / "cache"
    cmd = [
        sys.executable,
        "-m",
        "accelerate.commands.launch",
        "--multi_gpu",  # accelerate's torchrun launcher; with no GPU codistill uses gloo
        "--num_processes",
        "2",
        "--num_machines",
        "1",
        "--mixed_precision",
        "no",
        "--dynamo_backend",
        "no",
        "-m",
        "codistill.cli.main",
        "teacher",
        "cache",
        "--teacher",
        str(tiny_setup["teacher"]),
        "--data",
        str(tiny_setup["train"]),
        "--out",
        str(out),
        "--top-k",
        str(K),
        "--max-source-tokens",
        "48",
        "--max-target-tokens",
        "16",
    ]
    # No GPU for the two processes: on a one-GPU machine they would share it and NCCL refuses.
    env = {**os.environ, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "rank 0/2" in done.stdout and "rank 1/2" in done.stdout
    assert {p.name[-7:] for p in list_shards(out)} == {"r00.cdt", "r01.cdt"}
    assert len(open_cache(out)) == len(read_records(tiny_setup["train"]))
    assert main(["teacher", "verify", str(out)]) == 0


def test_kept_mass_cut_stores_fewer_tokens_and_the_exact_rest_as_tail(tiny_setup, tmp_path):
    records = read_records(tiny_setup["valid"])
    out = tmp_path / "cache"
    # The tiny random teacher is nearly uniform (top-8 ~ 0.022): 0.018 cuts rows at 5-8 tokens.
    build_cache(tiny_setup["teacher"], records, out, k=K, min_kept_mass=0.018, **TOKENS)
    cache = open_cache(out)
    assert cache.header.min_kept_mass == 0.018 and cache.header.schema_version == 3
    model = load_model(tiny_setup["teacher"])
    counts = []
    for ex in _examples(tiny_setup, records)[:3]:
        with torch.no_grad():
            logits = model(torch.tensor([ex.prompt_ids + ex.target_ids])).logits[0].float()
        start = len(ex.prompt_ids) - 1
        logp = torch.log_softmax(logits[start : start + len(ex.target_ids)], -1).double().numpy()
        ids, lp, tail = cache.get(example_key(ex.prompt_ids, ex.target_ids))
        kept = ids >= 0
        counts += kept.sum(1).tolist()
        for row, keep, want_row, t in zip(ids, kept, logp, tail, strict=True):
            p = np.exp(np.sort(want_row)[::-1])
            want = next((c for c in range(1, K + 1) if p[:c].sum() >= 0.018), K)
            assert keep.sum() == want
            assert t == pytest.approx(1 - np.exp(want_row[row[keep]]).sum(), rel=2e-3)
    assert min(counts) < K  # a random tiny teacher is flat, but not that flat everywhere


def test_int8_backend_is_close_to_float32_and_is_another_teacher(tiny_setup, cached, tmp_path):
    out, records, _ = cached
    int8 = tmp_path / "int8"
    build_cache(
        tiny_setup["teacher"], records, int8, k=K, backend="torch-int8", shard_size=10, **TOKENS
    )
    a, b = open_cache(out), open_cache(int8)
    assert b.header.backend == "torch-int8" and b.header.teacher_hash == a.header.teacher_hash
    agree = [(a.get(key)[0][:, 0] == b.get(key)[0][:, 0]).mean() for key in a.keys() if key in b]
    # A random tiny teacher is nearly uniform, so int8 rounding flips some near-ties.
    assert len(agree) == len(records) and np.mean(agree) > 0.8
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    with pytest.raises(CacheMismatch, match="backend: cache has 'torch', expected 'torch-int8'"):
        build_cache(tiny_setup["teacher"], records[:2], moved, k=K, backend="torch-int8", **TOKENS)


def test_bf16_backend_rounds_float32_slightly_and_is_another_teacher(tiny_setup, cached, tmp_path):
    out, records, _ = cached
    bf16 = tmp_path / "bf16"
    build_cache(tiny_setup["teacher"], records, bf16, k=K, backend="torch-bf16", **TOKENS)
    a, b = open_cache(out), open_cache(bf16)
    assert b.header.backend == "torch-bf16" and b.header.teacher_hash == a.header.teacher_hash
    assert set(a.keys()) == set(b.keys())
    diffs = []
    for key in a.keys():
        (ids_a, lp_a, _), (ids_b, lp_b, _) = a.get(key), b.get(key)
        top_a, top_b = ids_a[:, 0], ids_b[:, 0]
        same = top_a == top_b
        diffs.append(np.abs(lp_a[same, 0] - lp_b[same, 0]))
    diffs = np.concatenate(diffs)
    # bfloat16 rounding moves the top log-prob a little, but it does move it.
    assert 0 < diffs.max() < 0.25 and diffs.mean() < 0.05
    with pytest.raises(CacheMismatch, match="backend: cache has 'torch-bf16', expected 'torch'"):
        build_cache(tiny_setup["teacher"], records[:2], bf16, k=K, **TOKENS)


def test_unknown_backends_are_refused_in_one_line(tiny_setup, tmp_path, capsys):
    with pytest.raises(
        ValueError, match="backend must be torch, torch-bf16, torch-int8 or llamacpp"
    ):
        build_cache(tiny_setup["teacher"], [], tmp_path / "c", backend="onnx")
    argv = ["teacher", "cache", "--teacher", str(tiny_setup["teacher"]), "--data"]
    argv += [str(tiny_setup["valid"]), "--out", str(tmp_path / "c"), "--backend", "llamacpp"]
    assert main(argv) == 2
    assert "llamacpp:FILE.gguf" in capsys.readouterr().err
    assert main([*argv[:-2], "--kept-mass", "1.5"]) == 2
    assert "--kept-mass must be in (0, 1]" in capsys.readouterr().err
