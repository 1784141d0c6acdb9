"""Tests for the teacher top-k cache shard format."""

from __future__ import annotations

import numpy as np
import pytest

from codistill.teacher.cache_format import (
    CacheHeader,
    CacheMismatch,
    ShardReader,
    ShardWriter,
    TruncatedShard,
    check_compatible,
    content_key,
    encode_dense_record,
    id_table,
    verify_shard,
)

VOCAB = 262_144


def synthetic_logprobs(n: int, rng: np.random.Generator, vocab: int = VOCAB) -> np.ndarray:
    """Peaked ``[n, vocab]`` teacher log-probs: a Zipf prior over frequency-ordered ids, Gumbel
    noise, and four context tokens boosted by 6-16 nats (top-1 prob ~0.6 on average)."""
    prior = -1.1 * np.log(np.arange(vocab) + 20.0)
    rows = []
    for _ in range(n):
        z = prior + rng.gumbel(size=vocab)
        hot = rng.integers(0, 4000 if rng.random() < 0.7 else vocab, size=4)
        z[hot] += rng.uniform(6, 16, size=4)
        z -= z.max()
        rows.append(z - np.log(np.exp(z).sum()))
    return np.stack(rows).astype(np.float32)


def topk(lp: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    idx = np.argpartition(-lp, k, axis=1)[:, :k]
    vals = np.take_along_axis(lp, idx, 1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(idx, order, 1), np.take_along_axis(vals, order, 1)


def make_header(**overrides) -> CacheHeader:
    base = dict(
        teacher_path="teachers/t",
        teacher_hash="w123",
        tokenizer_hash="tok9",
        vocab_size=VOCAB,
        k=64,
    )
    return CacheHeader(**{**base, **overrides})


@pytest.fixture(scope="module")
def rows() -> tuple[np.ndarray, np.ndarray]:
    return topk(synthetic_logprobs(128, np.random.default_rng(0)), 64)


@pytest.fixture
def shard(tmp_path, rows):
    ids, lp = rows
    path = tmp_path / "shard-00000.cdtc"
    with ShardWriter(path, make_header()) as w:
        for i in range(2):
            w.add(
                content_key("prompt", str(i)), ids[64 * i : 64 * (i + 1)], lp[64 * i : 64 * (i + 1)]
            )
    return path


def test_round_trip_keeps_ids_exact_and_logprobs_within_one_step(shard, rows):
    ids, lp = rows
    reader = ShardReader(shard, expected=make_header())
    got_ids, got_lp, tail = reader.get(content_key("prompt", "1"))
    assert np.array_equal(got_ids, ids[64:])
    step = reader.header.logprob_step
    # Module doc: each value within one step, the top-1 within half a step.
    assert np.abs(got_lp - lp[64:]).max() <= step + 1e-5
    assert np.abs(got_lp[:, 0] - lp[64:, 0]).max() <= step / 2 + 1e-5
    exact_tail = -np.expm1(np.logaddexp.reduce(lp[64:].astype(np.float64), axis=1))
    assert np.allclose(tail, exact_tail, rtol=5e-3)
    assert len(reader) == 2


def test_quantization_meets_kl_and_max_error_budget(shard, rows):
    ids, lp = rows
    got = np.concatenate(
        [ShardReader(shard).get(content_key("prompt", str(i)))[1] for i in range(2)]
    )

    def norm(x):
        x = x.astype(np.float64)
        return x - np.logaddexp.reduce(x, axis=1, keepdims=True)

    a, b = norm(lp), norm(got)
    assert (np.exp(a) * (a - b)).sum(axis=1).max() <= 1e-3
    assert np.abs(got - lp).max() <= 0.02


def test_header_json_round_trip():
    h = make_header(temperature=2.0)
    assert CacheHeader.from_json(h.to_json()) == h


def test_mismatched_teacher_and_tokenizer_are_refused_naming_fields(shard):
    other = make_header(teacher_hash="w999", tokenizer_hash="tokX")
    with pytest.raises(CacheMismatch, match="teacher_hash.*tokenizer_hash") as info:
        ShardReader(shard, expected=other)
    assert info.value.fields == ["teacher_hash", "tokenizer_hash"]
    check_compatible(make_header(), make_header())


def test_changed_example_is_not_found(shard):
    with pytest.raises(KeyError, match="content changed"):
        ShardReader(shard).get(content_key("prompt edited", "1"))


def test_content_key_separates_parts():
    assert content_key("ab", "c") != content_key("a", "bc")


def test_truncated_shard_is_refused(shard, tmp_path):
    cut = tmp_path / "cut.cdtc"
    cut.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(TruncatedShard):
        ShardReader(cut)
    assert not verify_shard(cut).ok


def test_failed_write_leaves_no_shard(tmp_path, rows):
    path = tmp_path / "s.cdtc"
    with pytest.raises(RuntimeError), ShardWriter(path, make_header()) as w:
        w.add(content_key("a"), rows[0][:4], rows[1][:4])
        raise RuntimeError
    assert list(tmp_path.iterdir()) == []


def test_verify_detects_flipped_byte(shard):
    report = verify_shard(shard)
    assert report.ok and report.n_entries == 2 and report.n_positions == 128
    data = bytearray(shard.read_bytes())
    data[len(data) // 2] ^= 0x01
    shard.write_bytes(bytes(data))
    bad = verify_shard(shard)
    assert not bad.ok and "checksum" in bad.errors[0]


def test_rejects_unranked_logprobs(tmp_path, rows):
    with (
        ShardWriter(tmp_path / "s.cdtc", make_header()) as w,
        pytest.raises(ValueError, match="rank"),
    ):
        w.add(content_key("a"), rows[0][:4], rows[1][:4, ::-1])


def test_keys_must_be_content_hashes(tmp_path, rows):
    with pytest.raises(ValueError, match="sha256"):
        ShardWriter(tmp_path / "s.cdtc", make_header()).add("a", rows[0][:4], rows[1][:4])


def test_id_table_orders_by_frequency_then_id():
    table = id_table([np.array([[5, 9, 7], [9, 5, 3]]), np.array([[9, 1, 2]])])
    assert table.tolist() == [9, 5, 1, 2, 3, 7]


def test_shard_bytes_per_token_at_k64(shard):
    # Whole shard included (header, id table, keys, index). The synthetic top-k ids are more
    # spread than a real teacher's (Gemma 3 270M over code: ~142 B/token at a fixed k=64, see
    # benchmarks/cache_size.py), so the bound here is looser.
    assert shard.stat().st_size / 128 < 175


def test_corrupt_id_table_is_detected(shard):
    data = bytearray(shard.read_bytes())
    head_len = int.from_bytes(data[8:12], "little")
    data[16 + head_len + 8 + 3] ^= 0xFF
    shard.write_bytes(bytes(data))
    report = verify_shard(shard)
    assert not report.ok and "table" in report.errors[0]


def test_dense_baseline_round_trip_and_size(tmp_path):
    lp = synthetic_logprobs(3, np.random.default_rng(1))
    header = make_header(quantization="dense-u8", k=VOCAB, compression="lz4")
    path = tmp_path / "dense.cdtc"
    with ShardWriter(path, header) as w:
        w.add(content_key("d"), None, lp)
    ids, got, tail = ShardReader(path).get(content_key("d"))
    assert ids.shape == lp.shape and (ids[1] == np.arange(VOCAB)).all() and not tail.any()
    span = lp.max(axis=1) - lp.min(axis=1)
    assert (np.abs(got - lp).max(axis=1) <= span / 255 / 2 + 1e-4).all()
    # The papers' format: one byte per vocabulary entry, which LZ4 barely shrinks.
    assert len(encode_dense_record(header, lp[:1])) > 0.5 * VOCAB
    with pytest.raises(ValueError, match="k must be"):
        make_header(quantization="dense-u8", k=64)


def _full_rows(n: int, seed: int, vocab: int = 500) -> np.ndarray:
    """``[n, vocab]`` log-probs from near-certain to flat, so cuts fall everywhere."""
    rng = np.random.default_rng(seed)
    z = rng.normal(0, 1, size=(n, vocab)) * rng.uniform(0.5, 3, size=(n, 1))
    z[np.arange(n), rng.integers(0, vocab, n)] += rng.uniform(0, 14, n)
    return (z - np.logaddexp.reduce(z, axis=1, keepdims=True)).astype(np.float32)


def _topk_with_tail(full: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    ids, lp = topk(full, k)
    rest = full.astype(np.float64).copy()
    np.put_along_axis(rest, ids, -np.inf, 1)
    return ids, lp, np.logaddexp.reduce(rest, axis=1)


def test_adaptive_cut_keeps_the_fewest_tokens_holding_the_mass(tmp_path):
    full = _full_rows(40, 3)
    ids, lp, tail = _topk_with_tail(full, 32)
    header = make_header(vocab_size=500, k=32, min_kept_mass=0.99)
    path = tmp_path / "s.cdt"
    with ShardWriter(path, header) as w:
        w.add(content_key("a"), ids, lp, tail)
    got_ids, got_lp, got_tail = ShardReader(path).get(content_key("a"))
    p = np.exp(lp.astype(np.float64))
    for i in range(len(p)):
        # Brute force: the first count whose prefix reaches 0.99, else all 32.
        want = next((c for c in range(1, 33) if p[i, :c].sum() >= 0.99), 32)
        kept = got_ids[i] >= 0
        assert kept.sum() == want and kept[:want].all()
        assert (got_ids[i, :want] == ids[i, :want]).all()
        assert np.isneginf(got_lp[i, ~kept]).all() and (got_ids[i, ~kept] == -1).all()
        exact_tail = np.exp(tail[i]) + p[i, want:].sum()
        assert got_tail[i] == pytest.approx(exact_tail, rel=2e-3, abs=1e-12)
    assert 1 < (got_ids >= 0).sum(1).mean() < 32  # the cut did something, both ways


def test_decoded_rows_and_stored_tail_sum_to_one(tmp_path):
    # What the trainer does: derive the tail as 1 - sum(exp(logp)); it must be the stored one,
    # even where the top-1 is so close to 1 that its quantized log-prob rounds to 0.
    full = _full_rows(40, 4)
    ids, lp, tail = _topk_with_tail(full, 16)
    assert (lp[:, 0] > -header_step() / 2).any()  # such rows exist in the sample
    path = tmp_path / "s.cdt"
    with ShardWriter(path, make_header(vocab_size=500, k=16, min_kept_mass=0.999)) as w:
        w.add(content_key("a"), ids, lp, tail)
    _, got_lp, got_tail = ShardReader(path).get(content_key("a"))
    derived = -np.expm1(np.logaddexp.reduce(got_lp.astype(np.float64), axis=1))
    np.testing.assert_allclose(derived, got_tail, rtol=1e-3, atol=2e-7)
    exact = np.exp(tail) + np.where(got_lp > -np.inf, 0, np.exp(lp.astype(np.float64))).sum(1)
    np.testing.assert_allclose(derived, exact, rtol=3e-3, atol=2e-7)


def header_step() -> float:
    return make_header().logprob_step


def test_tail_code_keeps_precision_on_both_sides():
    from codistill.teacher.cache_format import _log_kept_and_tail, _tail_code

    tails = np.array([0.0, 1e-30, 1e-9, 0.01, 0.3, 0.5, 0.7, 0.999, 1 - 1e-7])
    with np.errstate(divide="ignore"):
        log_kept, log_tail = _log_kept_and_tail(_tail_code(np.log(tails)))
    got_tail, got_kept = np.exp(log_tail), np.exp(log_kept)
    # The smaller side keeps fp16's relative precision (2^-11 of its log, ~1% at 1e-30).
    np.testing.assert_allclose(got_tail[:5], tails[:5], rtol=0.04)
    np.testing.assert_allclose(got_kept[5:], 1 - tails[5:], rtol=1e-2)
    assert got_tail[0] == 0 and log_kept[0] == 0


def test_rows_with_minus_inf_entries_and_single_kept_tokens_round_trip(tmp_path):
    ids = np.array([[3, 1, 2, 0], [5, 6, 7, 8]])
    lp = np.array([[-1e-9, -25.0, -np.inf, -np.inf], [-0.1, -3.0, -4.0, -5.0]], np.float32)
    path = tmp_path / "s.cdt"
    with ShardWriter(path, make_header(vocab_size=10, k=4, min_kept_mass=0.95)) as w:
        w.add(content_key("a"), ids, lp)
    got_ids, got_lp, tail = ShardReader(path).get(content_key("a"))
    assert got_ids.tolist() == [[3, -1, -1, -1], [5, 6, -1, -1]]
    assert got_lp[0, 0] == pytest.approx(0, abs=1e-8)
    assert abs(got_lp[1, 1] - (-3.0)) <= header_step()
    p = np.exp(lp[1].astype(np.float64))
    assert tail[1] == pytest.approx(1 - p[:2].sum(), rel=2e-3)


def test_cut_and_backend_are_part_of_the_identity(tmp_path, rows):
    path = tmp_path / "s.cdt"
    with ShardWriter(path, make_header(min_kept_mass=0.99)) as w:
        w.add(content_key("a"), rows[0][:4], rows[1][:4])
    with pytest.raises(CacheMismatch) as err:
        ShardReader(path, expected=make_header(backend="torch-int8"))
    assert err.value.fields == ["min_kept_mass", "backend"]


def test_adaptive_cache_is_smaller_where_the_teacher_is_sure(tmp_path):
    full = _full_rows(200, 5, vocab=4000)
    full[:120, 0] += 25  # 60% near-certain rows, as code often is
    full -= np.logaddexp.reduce(full.astype(np.float64), axis=1, keepdims=True).astype(np.float32)
    ids, lp, tail = _topk_with_tail(full, 64)
    sizes = {}
    for mass in (None, 0.999):
        path = tmp_path / f"{mass}.cdt"
        with ShardWriter(path, make_header(vocab_size=4000, min_kept_mass=mass)) as w:
            w.add(content_key("a"), ids, lp, tail)
        sizes[mass] = path.stat().st_size
    assert sizes[0.999] < 0.8 * sizes[None]


def test_schema2_shards_still_open_and_decode_as_they_did():
    # Written by codistill's schema-2 writer before schema 3 (tests/teacher/data/).
    from pathlib import Path

    data = Path(__file__).parent / "data"
    golden = np.load(data / "v2-decoded.npz")
    reader = ShardReader(data / "v2-topk.cdt")
    assert reader.header.schema_version == 2 and reader.header.backend == "torch"
    assert reader.header.min_kept_mass is None and reader.header.logprob_step == 1 / 32
    for i in range(3):
        ids, lp, tail = reader.get(content_key("v2", str(i)))
        np.testing.assert_array_equal(ids, golden[f"ids{i}"])
        np.testing.assert_array_equal(lp, golden[f"lp{i}"])
        np.testing.assert_array_equal(tail, golden[f"tail{i}"])
    dense = ShardReader(data / "v2-dense.cdt").get(content_key("v2", "dense"))[1]
    np.testing.assert_array_equal(dense, golden["dense_lp"])
    assert verify_shard(data / "v2-topk.cdt").ok and verify_shard(data / "v2-dense.cdt").ok
    # A schema-3 reader expecting today's header names the version that differs.
    with pytest.raises(CacheMismatch, match="schema_version: cache has 2, expected 3"):
        ShardReader(data / "v2-topk.cdt", expected=make_header(vocab_size=1000, k=8))


def test_schema2_is_read_but_never_written(tmp_path):
    with pytest.raises(ValueError, match="only schema 3"):
        ShardWriter(tmp_path / "s.cdt", make_header(schema_version=2, logprob_step=1 / 32))
    with pytest.raises(ValueError, match="min_kept_mass needs a schema-3"):
        make_header(schema_version=2, min_kept_mass=0.9)
    assert "backend" not in make_header(schema_version=2).to_json()


def test_a_record_with_a_wrong_count_is_corrupt():
    from codistill.teacher.cache_format import CorruptShard, decode_record, encode_record

    header = make_header(vocab_size=50, k=4)
    ids = np.array([[1, 2, 3, 4]])
    lp = np.log(np.array([[0.5, 0.2, 0.1, 0.05]], np.float32))
    table = id_table([ids])
    raw = bytearray(lzma_raw(encode_record(header, ids, lp, table=table)))
    raw[8] = 1  # claims 2 kept entries where 4 were written
    with pytest.raises(CorruptShard, match="kept entries"):
        decode_record(header, lzma_packed(bytes(raw)), table)


def lzma_raw(payload: bytes) -> bytes:
    from codistill.teacher.cache_format import _decompress

    return _decompress(payload, "lzma")


def lzma_packed(raw: bytes) -> bytes:
    from codistill.teacher.cache_format import _compress

    return _compress(raw, "lzma")
