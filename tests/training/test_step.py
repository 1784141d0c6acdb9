"""``training.step``: target-position logits, the restricted teacher head and the chunked term sums,
checked against the models' own full forward passes and the loss functions on whole tensors."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from codistill.losses import divergences
from codistill.losses.objective import parse_objective
from codistill.models.forward import head_fn, restrict_output_vocab, target_states
from codistill.models.loading import load_model
from codistill.training.step import micro_batch_terms, token_term_sums

TEMPERATURE = 2.0


def _cfg(loss, chunk: int = 3) -> SimpleNamespace:
    return SimpleNamespace(loss=loss, temperature=TEMPERATURE, loss_chunk_tokens=chunk)


def _objective(cfg: SimpleNamespace):
    return parse_objective(cfg.loss, temperature=cfg.temperature)


def _student(tiny_setup):
    return load_model(tiny_setup["student"])


def _teacher(tiny_setup, token_map):
    teacher = load_model(tiny_setup["teacher"])
    restrict_output_vocab(teacher, token_map.student_to_teacher_tensor)
    return teacher


@pytest.mark.parametrize("cap", [None, 0.5])
def test_target_states_then_head_fn_are_the_models_own_logits_at_targets(tiny_setup, kd_batch, cap):
    batch, _ = kd_batch
    model = _student(tiny_setup)
    # A cap small enough to bite: Gemma's forward soft-caps its logits, and so must head_fn.
    model.config.final_logit_softcapping = cap
    mask = batch["target_mask"].bool()
    with torch.no_grad():
        full = model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).logits
        states = target_states(model, batch["input_ids"], batch["attention_mask"], mask)
        got = head_fn(model)(states)
    assert states.shape == (int(mask.sum()), model.config.hidden_size)
    torch.testing.assert_close(got, full[mask], rtol=1e-5, atol=1e-5)
    if cap is not None:
        assert got.abs().max().item() <= cap


def test_restrict_output_vocab_keeps_exactly_the_mapped_rows_in_order(tiny_setup):
    teacher = load_model(tiny_setup["teacher"])
    embedding = teacher.get_input_embeddings().weight.detach().clone()
    head = teacher.get_output_embeddings().weight.detach().clone()
    rows = torch.tensor([7, 2, 9, 0])  # not sorted: student id i is teacher id rows[i]
    restrict_output_vocab(teacher, rows)
    new_head = teacher.get_output_embeddings().weight
    torch.testing.assert_close(new_head, head[rows], rtol=0, atol=0)
    # The input embeddings keep the whole vocabulary (the teacher still reads its own ids) and
    # no longer share storage with the head.
    torch.testing.assert_close(teacher.get_input_embeddings().weight, embedding, rtol=0, atol=0)
    assert new_head.data_ptr() != teacher.get_input_embeddings().weight.data_ptr()
    assert teacher.config.tie_word_embeddings is False
    assert not any(p.requires_grad for p in teacher.parameters())


def test_restricted_teacher_gives_its_full_logits_at_the_students_ids(tiny_setup, kd_batch):
    batch, token_map = kd_batch
    ids, attention = batch["teacher_input_ids"], batch["attention_mask"]
    full_teacher = load_model(tiny_setup["teacher"])
    with torch.no_grad():
        full = full_teacher(input_ids=ids, attention_mask=attention).logits
        restricted = _teacher(tiny_setup, token_map)(input_ids=ids, attention_mask=attention)
    s2t = token_map.student_to_teacher_tensor
    assert restricted.logits.shape[-1] == len(s2t) < full.shape[-1]
    torch.testing.assert_close(restricted.logits, full[..., s2t], rtol=1e-5, atol=1e-5)


def _whole_tensor_terms(s_logits, t_logits, labels) -> dict[str, torch.Tensor]:
    ones = torch.ones_like(labels, dtype=torch.bool)[None]
    s, t = s_logits[None].float(), t_logits[None].float()
    kw = {"temperature": TEMPERATURE, "reduction": "sum"}
    return {
        "ce": divergences.cross_entropy(s, labels[None], ones, reduction="sum"),
        "kl": divergences.forward_kl(s, t, ones, **kw),
        "jsd": divergences.jsd(s, t, ones, **kw),
    }


@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_token_term_sums_are_the_whole_tensor_sums_for_any_chunk(chunk):
    gen = torch.Generator().manual_seed(0)
    n, hidden, vocab = 9, 6, 13
    head = torch.nn.Linear(hidden, vocab, bias=False)
    torch.nn.init.normal_(head.weight, generator=gen)
    s_states = torch.randn(n, hidden, generator=gen, requires_grad=True)
    t_logits = torch.randn(n, vocab, generator=gen) * 3
    labels = torch.randint(0, vocab, (n,), generator=gen)
    objective = parse_objective({"ce": 1.0, "kl": 1.0, "jsd": 1.0}, temperature=TEMPERATURE)

    got = token_term_sums(objective, s_states, labels, None, head, t_logits, None, chunk)
    want = _whole_tensor_terms(head(s_states), t_logits, labels)
    assert list(got) == ["ce", "kl", "jsd"]
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-6)
    # The chunks run under activation checkpointing: the gradient must not change.
    (g_chunked,) = torch.autograd.grad(sum(got.values()), s_states)
    (g_whole,) = torch.autograd.grad(sum(want.values()), s_states)
    torch.testing.assert_close(g_chunked, g_whole, rtol=1e-5, atol=1e-6)


def _ones(n: int) -> torch.Tensor:
    return torch.ones(1, n, dtype=torch.bool)


def _ce_sum(s_logits, labels) -> torch.Tensor:
    return divergences.cross_entropy(
        s_logits[None], labels[None], _ones(len(labels)), reduction="sum"
    )


@pytest.mark.parametrize("stop_ce", [True, False])
@pytest.mark.parametrize("chunk", [1, 4, 1000])
def test_token_term_sums_at_stop_positions_give_the_teacher_terms_the_labels_ce(chunk, stop_ce):
    """With ``stop_ce=False`` (an EOS the student sampled) the teacher terms skip them."""
    gen = torch.Generator().manual_seed(1)
    n, vocab = 9, 13
    s_logits = torch.randn(n, vocab, generator=gen, requires_grad=True)
    t_logits = torch.randn(n, vocab, generator=gen) * 3
    labels = torch.randint(0, vocab, (n,), generator=gen)
    stop = torch.zeros(n, dtype=torch.bool)
    stop[[2, 3, 8]] = True
    terms = {"ce": 1.0, "kl": 1.0, "reverse_kl": 1.0, "jsd": 1.0}
    objective = parse_objective(terms, temperature=TEMPERATURE)

    got = token_term_sums(
        objective, s_logits, labels, None, None, t_logits, None, chunk, stop=stop, stop_ce=stop_ce
    )
    away = _whole_tensor_terms(s_logits[~stop], t_logits[~stop], labels[~stop])
    rev = divergences.reverse_kl(
        s_logits[~stop][None], t_logits[~stop][None], _ones(6), TEMPERATURE, reduction="sum"
    )
    at_stop = _ce_sum(s_logits[stop], labels[stop]) if stop_ce else 0.0
    want = {
        "ce": _ce_sum(s_logits, labels),  # a student-only term sees every position
        "kl": away["kl"] + at_stop,
        "reverse_kl": rev + at_stop,
        "jsd": away["jsd"] + at_stop,
    }
    for name in terms:
        torch.testing.assert_close(got[name], want[name], rtol=1e-5, atol=1e-5)
    (g_got,) = torch.autograd.grad(sum(got.values()), s_logits)
    (g_want,) = torch.autograd.grad(sum(want.values()), s_logits)
    torch.testing.assert_close(g_got, g_want, rtol=1e-5, atol=1e-6)


def test_stop_positions_at_t1_are_the_kl_against_a_point_mass_on_the_label():
    gen = torch.Generator().manual_seed(2)
    n, vocab = 5, 11
    s_logits = torch.randn(n, vocab, generator=gen)
    t_logits = torch.randn(n, vocab, generator=gen)
    labels = torch.randint(0, vocab, (n,), generator=gen)
    objective = parse_objective({"kl": 1.0}, temperature=1.0)
    everywhere = torch.ones(n, dtype=torch.bool)
    got = token_term_sums(
        objective, s_logits, labels, None, None, t_logits, None, 2, stop=everywhere
    )
    point_mass = torch.full((n, vocab), -1e4).scatter(1, labels[:, None], 0.0)
    want = token_term_sums(objective, s_logits, labels, None, None, point_mass, None, 2)
    torch.testing.assert_close(got["kl"], want["kl"], rtol=1e-5, atol=1e-5)


def test_micro_batch_terms_with_a_stop_id_replace_only_the_teacher_terms_there(
    tiny_setup, kd_batch
):
    batch, token_map = kd_batch
    student, teacher = _student(tiny_setup), _teacher(tiny_setup, token_map)
    mask = batch["target_mask"].bool()
    labels = batch["labels"][mask]
    stop_id = int(labels[-1])  # a label the targets use, as the EOS ending each one is
    stop = labels == stop_id
    assert 0 < int(stop.sum()) < len(labels)
    cfg = _cfg({"ce": 1.0, "kl": 1.0}, chunk=4)
    with torch.no_grad():
        plain = micro_batch_terms(student, teacher, batch, _objective(cfg), cfg, False)
        got = micro_batch_terms(
            student, teacher, batch, _objective(cfg), cfg, False, stop_id=stop_id
        )
        s_logits = student(
            input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]
        ).logits[mask]
        t_logits = teacher(
            input_ids=batch["teacher_input_ids"], attention_mask=batch["attention_mask"]
        ).logits[mask]
    away = _whole_tensor_terms(s_logits[~stop], t_logits[~stop], labels[~stop])
    at_stop = _ce_sum(s_logits[stop], labels[stop])
    torch.testing.assert_close(got["ce"], plain["ce"])
    torch.testing.assert_close(got["kl"], away["kl"] + at_stop, rtol=1e-4, atol=1e-5)
    assert not torch.allclose(got["kl"], plain["kl"])


def test_micro_batch_terms_equal_the_losses_on_both_models_full_logits(tiny_setup, kd_batch):
    batch, token_map = kd_batch
    # The teacher reads its own token ids, not the student's mapped ones.
    assert not torch.equal(batch["teacher_input_ids"], batch["input_ids"])
    student, teacher = _student(tiny_setup), _teacher(tiny_setup, token_map)
    cfg = _cfg({"ce": 0.5, "kl": 0.5, "jsd": 1.0}, chunk=5)
    mask = batch["target_mask"].bool()
    with torch.no_grad():
        got = micro_batch_terms(student, teacher, batch, _objective(cfg), cfg, False)
        s_logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
        t_logits = teacher(
            input_ids=batch["teacher_input_ids"], attention_mask=batch["attention_mask"]
        )
    want = _whole_tensor_terms(s_logits.logits[mask], t_logits.logits[mask], batch["labels"][mask])
    assert set(got) == set(want)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=1e-4, atol=1e-5)
    assert all(v.item() > 0 for v in got.values())


class _NoForward(torch.nn.Module):
    """A teacher whose body and head both refuse to run."""

    config = SimpleNamespace(final_logit_softcapping=None)

    def forward(self, *args, **kwargs):
        raise AssertionError("the teacher ran although no term needs it")

    def get_output_embeddings(self):
        return self


def test_micro_batch_terms_skips_the_teacher_when_no_term_needs_it(tiny_setup, kd_batch):
    batch, _ = kd_batch
    student = _student(tiny_setup)
    cfg = _cfg({"ce": 1.0, "kl": 0.0})  # a zero-weight KL term is not computed
    with torch.no_grad():
        got = micro_batch_terms(student, _NoForward(), batch, _objective(cfg), cfg, False)
        logits = student(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"])
    mask = batch["target_mask"].bool()
    labels = batch["labels"][mask]
    want = divergences.cross_entropy(
        logits.logits[mask][None],
        labels[None],
        torch.ones_like(labels, dtype=torch.bool)[None],
        reduction="sum",
    )
    assert list(got) == ["ce"]
    torch.testing.assert_close(got["ce"], want, rtol=1e-5, atol=1e-5)


def test_micro_batch_terms_computes_only_the_named_terms(tiny_setup, kd_batch):
    batch, token_map = kd_batch
    student, teacher = _student(tiny_setup), _teacher(tiny_setup, token_map)
    cfg = _cfg({"ce": 1.0, "kl": 1.0})
    with torch.no_grad():
        only_kl = micro_batch_terms(
            student, teacher, batch, _objective(cfg), cfg, False, names=["kl"]
        )
        both = micro_batch_terms(student, teacher, batch, _objective(cfg), cfg, False)
    assert list(only_kl) == ["kl"] and list(both) == ["ce", "kl"]
    torch.testing.assert_close(only_kl["kl"], both["kl"])


@pytest.mark.parametrize("stop", [False, True])
def test_micro_batch_terms_from_a_complete_cache_equal_the_online_teacher(
    tiny_setup, kd_batch, stop
):
    batch, token_map = kd_batch
    student, teacher = _student(tiny_setup), _teacher(tiny_setup, token_map)
    mask = batch["target_mask"].bool()
    with torch.no_grad():
        t_logits = teacher(
            input_ids=batch["teacher_input_ids"], attention_mask=batch["attention_mask"]
        ).logits[mask]
    # A cache holding every id of the (restricted) teacher, at T = 1, in the student's ids.
    logprobs, ids = torch.log_softmax(t_logits.float(), -1).sort(-1, descending=True)
    cached = {**batch, "cache_ids": ids, "cache_logprobs": logprobs, "cache_complete": True}
    objective = parse_objective(
        {"kl": 1.0, "jsd": 1.0, "gjsd": 1.0}, temperature=TEMPERATURE, jsd_beta=0.3
    )
    # No temperature in cfg: the cache is tempered with the one bound into the objective.
    cfg = SimpleNamespace(loss_chunk_tokens=4)
    with torch.no_grad():
        # With a stop id both paths leave the teacher out at its positions the same way.
        stop_id = int(batch["labels"][mask][-1]) if stop else None
        online = micro_batch_terms(student, teacher, batch, objective, cfg, False, stop_id=stop_id)
        from_cache = micro_batch_terms(
            student, None, cached, objective, cfg, False, stop_id=stop_id
        )
    assert list(from_cache) == ["kl", "jsd", "gjsd"]
    for name in online:
        torch.testing.assert_close(from_cache[name], online[name], rtol=1e-4, atol=1e-5)
    assert not torch.allclose(online["jsd"], online["gjsd"])  # β = 0.3 reached the gjsd term
