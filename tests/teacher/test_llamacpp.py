"""The llama.cpp backend of the teacher cache, on a tiny F32 GGUF written in the test."""

from __future__ import annotations

import importlib.util
import json
import shutil

import numpy as np
import pytest
import torch

from codistill.cli.main import main
from codistill.data.batches import tokenize_records
from codistill.data.jsonl import read_records
from codistill.models.loading import load_model, load_tokenizer
from codistill.teacher.cache import build_cache, example_key, list_shards, open_cache
from codistill.teacher.cache_format import CacheMismatch
from codistill.teacher.llamacpp import LlamaCppTeacher
from tests.gguf_fixtures import make_tiny_llama_with_bytelevel_tokenizer, write_llama_gguf

pytestmark = pytest.mark.skipif(
    importlib.util.find_spec("llama_cpp") is None, reason="llama-cpp-python not installed"
)
TOKENS = {"max_source_tokens": 48, "max_target_tokens": 16}


@pytest.fixture(scope="module")
def tiny_gguf(tmp_path_factory, tiny_setup):
    root = tmp_path_factory.mktemp("llamacpp")
    hf = make_tiny_llama_with_bytelevel_tokenizer(root / "hf")
    gguf = write_llama_gguf(hf, root / "tiny.gguf")
    records = read_records(tiny_setup["train"])[:8]
    return {"hf": hf, "gguf": gguf, "records": records, "root": root}


def _examples(setup):
    examples, _ = tokenize_records(setup["records"], load_tokenizer(setup["hf"]), **TOKENS)
    return examples


def test_llamacpp_rows_are_the_torch_models_log_probs(tiny_gguf):
    model = load_model(tiny_gguf["hf"])
    examples = _examples(tiny_gguf)[:3]
    with LlamaCppTeacher(tiny_gguf["gguf"], n_ctx=96, n_threads=1) as teacher:
        rows = list(teacher.logprob_rows(examples))
    for ex, got in zip(examples, rows, strict=True):
        with torch.no_grad():
            logits = model(torch.tensor([ex.prompt_ids + ex.target_ids])).logits[0].float()
        logp = torch.log_softmax(logits, -1).numpy()
        start, n = len(ex.prompt_ids) - 1, len(ex.target_ids)
        assert got.shape == (n, logp.shape[1])
        # F32 weights, different kernels: a few 0.01 nats apart (the tiny model's wide weights
        # amplify rounding); rows one position off are whole nats apart.
        err = np.abs(got - logp[start : start + n]).max()
        assert err < 0.05
        assert np.abs(got - logp[start + 1 : start + 1 + n]).max() > 20 * err


def test_llamacpp_cache_matches_the_torch_cache_key_for_key(tiny_gguf, tmp_path):
    kw = {"k": 8, **TOKENS}
    torch_stats = build_cache(tiny_gguf["hf"], tiny_gguf["records"], tmp_path / "t", **kw)
    backend = f"llamacpp:{tiny_gguf['gguf']}"
    stats = build_cache(
        tiny_gguf["hf"], tiny_gguf["records"], tmp_path / "l", backend=backend, **kw
    )
    assert stats.written == torch_stats.written == 8 and stats.teacher_seconds > 0
    a, b = open_cache(tmp_path / "t"), open_cache(tmp_path / "l")
    assert b.header.backend == "llamacpp" and sorted(a.keys()) == sorted(b.keys())
    for ex in _examples(tiny_gguf):
        key = example_key(ex.prompt_ids, ex.target_ids)
        (ids_a, lp_a, _), (ids_b, lp_b, _) = a.get(key), b.get(key)
        np.testing.assert_array_equal(ids_a[:, 0], ids_b[:, 0])
        # Both within one step of the exact values (the module doc's bound), plus float noise.
        assert np.abs(lp_a[:, 0] - lp_b[:, 0]).max() <= 2 * a.header.logprob_step


def test_cache_from_another_backend_is_refused_naming_backend(tiny_gguf, tmp_path):
    out = tmp_path / "cache"
    build_cache(tiny_gguf["hf"], tiny_gguf["records"][:2], out, k=4, **TOKENS)
    with pytest.raises(CacheMismatch) as err:
        build_cache(
            tiny_gguf["hf"],
            tiny_gguf["records"][:2],
            out,
            k=4,
            backend=f"llamacpp:{tiny_gguf['gguf']}",
            **TOKENS,
        )
    assert "backend" in err.value.fields and "teacher_hash" in err.value.fields
    assert len(list_shards(out)) == 1


def test_gguf_of_another_vocabulary_is_refused_and_closed(
    tiny_gguf, tiny_setup, tmp_path, monkeypatch
):
    closed = []
    close = LlamaCppTeacher.close
    monkeypatch.setattr(LlamaCppTeacher, "close", lambda self: closed.append(self) or close(self))
    # The tiny teacher of the other tests has another tokenizer and vocabulary size.
    with pytest.raises(ValueError, match="vocabulary sizes differ"):
        build_cache(
            tiny_setup["teacher"],
            tiny_gguf["records"][:2],
            tmp_path / "c",
            k=4,
            backend=f"llamacpp:{tiny_gguf['gguf']}",
            **TOKENS,
        )
    assert len(closed) == 1  # the refused model does not stay loaded


def test_gguf_with_other_token_texts_is_refused(tiny_gguf, tmp_path):
    other = tmp_path / "hf"
    shutil.copytree(tiny_gguf["hf"], other)
    spec = json.loads((other / "tokenizer.json").read_text())
    vocab = spec["model"]["vocab"]
    # Same size, two ordinary tokens swapped: ids no longer name the same text.
    a, b = sorted(vocab, key=vocab.get)[200:202]
    vocab[a], vocab[b] = vocab[b], vocab[a]
    (other / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ValueError, match="sampled tokens differ"):
        build_cache(
            other,
            tiny_gguf["records"][:2],
            tmp_path / "c",
            k=4,
            backend=f"llamacpp:{tiny_gguf['gguf']}",
            **TOKENS,
        )


def test_cli_llamacpp_backend_and_its_errors(tiny_gguf, tiny_setup, tmp_path, capsys):
    base = ["teacher", "cache", "--teacher", str(tiny_gguf["hf"]), "--data"]
    base += [str(tiny_setup["valid"]), "--top-k", "4"]
    out = tmp_path / "cache"
    assert main([*base, "--out", str(out), "--backend", f"llamacpp:{tiny_gguf['gguf']}"]) == 0
    assert "6 cached now" in capsys.readouterr().out
    assert open_cache(out).header.backend == "llamacpp"
    assert main([*base, "--out", str(out)]) == 2
    assert "backend: cache has 'llamacpp', expected 'torch'" in capsys.readouterr().err
    assert main([*base, "--out", str(tmp_path / "x"), "--backend", "llamacpp:nope.gguf"]) == 2
    assert "nope.gguf: no such GGUF file" in capsys.readouterr().err


def test_a_shared_prompt_prefix_is_decoded_once_and_gives_the_same_rows(tiny_gguf):
    from dataclasses import replace

    first = _examples(tiny_gguf)[0]
    prompt = first.prompt_ids
    # The same prompt with another target, then a longer prompt that starts the same way, then
    # an unrelated one: as consecutive assertions of one test method, and the next method.
    examples = [
        first,
        replace(first, target_ids=first.target_ids[::-1]),
        replace(first, prompt_ids=prompt + first.target_ids[:2]),
        _examples(tiny_gguf)[3],
    ]
    # One example per decode: the kept prefix is the only difference from a fresh decode.
    with LlamaCppTeacher(tiny_gguf["gguf"], n_ctx=96, n_threads=1, n_seq=1) as teacher:
        reused = list(teacher.logprob_rows(examples))
        assert teacher.reused_tokens >= 2 * (len(prompt) - 1)
        fresh = []
        for ex in examples:
            teacher._forget()
            fresh += list(teacher.logprob_rows([ex]))
    for got, want in zip(reused, fresh, strict=True):
        assert got.shape == want.shape
        assert np.abs(got - want).max() < 1e-3


def _torch_rows(model, ex) -> np.ndarray:
    with torch.no_grad():
        logits = model(torch.tensor([ex.prompt_ids + ex.target_ids])).logits[0].float()
    start = len(ex.prompt_ids) - 1
    return torch.log_softmax(logits, -1).numpy()[start : start + len(ex.target_ids) + 1]


@pytest.mark.parametrize("n_seq", [2, 4])
def test_examples_decoded_together_share_prefixes_and_give_each_its_own_rows(tiny_gguf, n_seq):
    """Several examples per decode, as sequences of one batch: a prefix shared with the
    example before is decoded once (within the batch and across batches), and each example
    still gets the torch model's rows for its own tokens, not a neighbour's."""
    from dataclasses import replace

    model = load_model(tiny_gguf["hf"])
    ex = _examples(tiny_gguf)
    first = ex[0]
    examples = [
        first,
        replace(first, target_ids=first.target_ids[::-1]),
        replace(first, prompt_ids=first.prompt_ids + first.target_ids[:2]),
        ex[3],
        replace(ex[3], target_ids=ex[3].target_ids[:3]),
        ex[5],
        replace(ex[5], target_ids=[]),
    ]
    with LlamaCppTeacher(tiny_gguf["gguf"], n_ctx=96, n_threads=1, n_seq=n_seq) as teacher:
        rows = list(teacher.logprob_rows(examples))
        reused, decoded = teacher.reused_tokens, teacher.decoded_tokens
    with LlamaCppTeacher(tiny_gguf["gguf"], n_ctx=96, n_threads=1, reuse_prefix=False) as whole:
        list(whole.logprob_rows(examples))
        assert whole.reused_tokens == 0
    assert reused + decoded == whole.decoded_tokens
    # Examples 1, 2 and 4 repeat at least the prompt of the one before (less its last token).
    assert reused >= 2 * (len(first.prompt_ids) - 1) + len(ex[3].prompt_ids) - 1
    assert len(rows) == len(examples) and rows[-1].shape == (0, rows[0].shape[1])
    for e, got in zip(examples[:-1], rows[:-1], strict=True):
        want = _torch_rows(model, e)
        assert got.shape == (len(e.target_ids), want.shape[1])
        # Kernel rounding of the tiny model (see the first test); a neighbour's or a shifted
        # row is whole nats away.
        err = np.abs(got - want[:-1]).max()
        assert err < 0.05
        assert np.abs(got - want[1:]).max() > 20 * err


def test_a_context_that_lost_its_first_positions_is_not_reused(tiny_gguf):
    """A sliding-window cache may drop a sequence's early cells and still let its tail be cut:
    the prefix is then decoded again, not read from cells that are gone."""
    from dataclasses import replace

    first = _examples(tiny_gguf)[0]
    examples = [first, replace(first, target_ids=first.target_ids[::-1])]

    class Purged:  # llama.cpp's functions, but every sequence starts past position 0
        def __init__(self, lib):
            self._lib = lib

        def __getattr__(self, name):
            return getattr(self._lib, name)

        def llama_memory_seq_pos_min(self, mem, seq):
            return 3

    with LlamaCppTeacher(tiny_gguf["gguf"], n_ctx=96, n_threads=1, n_seq=1) as teacher:
        teacher._lib = Purged(teacher._lib)
        rows = list(teacher.logprob_rows(examples))
        assert teacher.reused_tokens == 0
    with LlamaCppTeacher(tiny_gguf["gguf"], n_ctx=96, n_threads=1, n_seq=1) as teacher:
        assert np.abs(list(teacher.logprob_rows(examples[1:]))[0] - rows[1]).max() < 1e-3
