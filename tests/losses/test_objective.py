"""``losses.objective``: terms bound to their settings once, one dense-or-sparse dispatch, and
the objective's validation (ValueError; the config turns it into ConfigError)."""

from __future__ import annotations

import pytest
import torch

from codistill.losses import divergences, focal, objective, sparse
from codistill.losses.objective import TokenLossInputs, parse_objective, register_term
from codistill.losses.sparse import sparse_teacher_targets

N, VOCAB = 7, 11
SETTINGS = {"temperature": 2.0, "jsd_beta": 0.3, "focal_alpha": 0.6, "focal_gamma": 1.5}
ALL_TOKEN_TERMS = {"ce": 1.0, "kl": 1.0, "reverse_kl": 1.0, "jsd": 1.0, "gjsd": 1.0, "focal": 1.0}


def _inputs(seed: int = 0, sparse_k: int | None = None) -> TokenLossInputs:
    """One chunk; with ``sparse_k`` the teacher comes as a cached top-k instead of logits."""
    gen = torch.Generator().manual_seed(seed)
    student = torch.randn(1, N, VOCAB, generator=gen) * 2
    teacher = torch.randn(1, N, VOCAB, generator=gen) * 3
    sparse = None
    if sparse_k is not None:
        logp, ids = torch.log_softmax(teacher[0], -1).topk(sparse_k, -1)
        sparse = sparse_teacher_targets(
            ids, logp, temperature=SETTINGS["temperature"], teacher_vocab_size=VOCAB
        )
    return TokenLossInputs(
        student_logits=student,
        teacher_logits=None if sparse_k is not None else teacher,
        labels=torch.randint(0, VOCAB, (1, N), generator=gen),
        mask=torch.ones(1, N, dtype=torch.bool),
        token_weights=torch.rand(1, N, generator=gen) + 0.5,
        sparse=sparse,
    )


def _direct(x: TokenLossInputs) -> dict[str, torch.Tensor]:
    """Each term computed by calling its loss function with the settings by hand."""
    s, t, m = x.student_logits, x.teacher_logits, x.mask
    kw = {"temperature": SETTINGS["temperature"], "reduction": "sum"}
    return {
        "ce": divergences.cross_entropy(s, x.labels, m, reduction="sum"),
        "kl": divergences.forward_kl(s, t, m, **kw),
        "reverse_kl": divergences.reverse_kl(s, t, m, **kw),
        "jsd": divergences.jsd(s, t, m, **kw),
        "gjsd": divergences.generalized_jsd(s, t, m, beta=SETTINGS["jsd_beta"], **kw),
        "focal": focal.focal_loss(
            s,
            x.labels,
            m,
            alpha=SETTINGS["focal_alpha"],
            gamma=SETTINGS["focal_gamma"],
            token_weights=x.token_weights,
            reduction="sum",
        ),
    }


def test_bound_terms_are_the_loss_functions_with_the_given_settings():
    obj = parse_objective(ALL_TOKEN_TERMS, **SETTINGS)
    x = _inputs()
    want = _direct(x)
    assert obj.token_terms == list(ALL_TOKEN_TERMS) and obj.temperature == 2.0
    for name, term in obj.token_fns.items():
        torch.testing.assert_close(term(x), want[name], rtol=0, atol=0)
    # Non-default settings must have reached the terms: defaults give other values.
    defaults = parse_objective(ALL_TOKEN_TERMS)
    for name in ("kl", "reverse_kl", "jsd", "gjsd", "focal"):
        assert not torch.allclose(defaults.token_fns[name](x), want[name]), name


def test_jsd_is_the_symmetric_one_whatever_jsd_beta_is():
    x = _inputs(1)
    for beta in (0.1, 0.9):
        obj = parse_objective({"jsd": 1.0}, temperature=2.0, jsd_beta=beta)
        want = divergences.jsd(x.student_logits, x.teacher_logits, x.mask, 2.0, "sum")
        torch.testing.assert_close(obj.token_fns["jsd"](x), want, rtol=0, atol=0)


@pytest.mark.parametrize("beta", [0.0, 0.3, 0.5, 0.8, 1.0])
def test_dense_and_full_support_sparse_terms_agree_for_any_beta(beta):
    settings = {**SETTINGS, "jsd_beta": beta}
    obj = parse_objective({"kl": 1.0, "reverse_kl": 1.0, "jsd": 1.0, "gjsd": 1.0}, **settings)
    dense, cached = _inputs(2), _inputs(2, sparse_k=VOCAB)
    for name, term in obj.token_fns.items():
        student = cached.student_logits.clone().requires_grad_(True)
        got = term(TokenLossInputs(student, None, cached.labels, cached.mask, None, cached.sparse))
        (g_sparse,) = torch.autograd.grad(got, student)
        student = dense.student_logits.clone().requires_grad_(True)
        want = term(TokenLossInputs(student, dense.teacher_logits, dense.labels, dense.mask, None))
        (g_dense,) = torch.autograd.grad(want, student)
        torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5, msg=name)
        torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-5, msg=name)


def test_sparse_terms_are_the_sparse_losses_with_the_given_settings():
    obj = parse_objective({"kl": 1.0, "reverse_kl": 1.0, "jsd": 1.0, "gjsd": 1.0}, **SETTINGS)
    x = _inputs(3, sparse_k=4)
    s, t, m = x.student_logits, x.sparse, x.mask
    kw = {"temperature": SETTINGS["temperature"], "reduction": "sum"}
    want = {
        "kl": sparse.sparse_forward_kl(s, t, m, **kw),
        "reverse_kl": sparse.sparse_reverse_kl(s, t, m, **kw),
        "jsd": sparse.sparse_jsd(s, t, m, beta=0.5, **kw),
        "gjsd": sparse.sparse_jsd(s, t, m, beta=SETTINGS["jsd_beta"], **kw),
    }
    for name, term in obj.token_fns.items():
        torch.testing.assert_close(term(x), want[name], rtol=0, atol=0, msg=name)
    assert not torch.allclose(want["jsd"], want["gjsd"])


def test_a_teacher_term_without_teacher_or_cache_says_so():
    x = _inputs()
    bare = TokenLossInputs(x.student_logits, None, x.labels, x.mask, None)
    with pytest.raises(ValueError, match="needs teacher_logits or sparse"):
        parse_objective({"kl": 1.0}).token_fns["kl"](bare)


def test_a_registered_term_gets_only_the_settings_it_names(monkeypatch):
    monkeypatch.setattr(objective, "TERMS", dict(objective.TERMS))
    seen = {}

    @register_term("scaled_ce", needs_teacher=False)
    def scaled_ce(x, *, temperature):
        seen["temperature"] = temperature
        return divergences.cross_entropy(x.student_logits, x.labels, x.mask, "sum") / temperature

    obj = parse_objective({"scaled_ce": 1.0, "semantic": 0.5}, temperature=4.0)
    x = _inputs()
    got = obj.token_fns["scaled_ce"](x)
    assert seen == {"temperature": 4.0}
    assert obj.token_terms == ["scaled_ce"] and obj.has_semantic and not obj.needs_teacher
    torch.testing.assert_close(got, _direct(x)["ce"] / 4.0)


def test_register_term_refuses_unknown_settings_and_positional_extras(monkeypatch):
    monkeypatch.setattr(objective, "TERMS", dict(objective.TERMS))
    with pytest.raises(ValueError, match="unknown setting.*'beta'"):
        register_term("t1", needs_teacher=True)(lambda x, *, beta: x.student_logits.sum())
    with pytest.raises(ValueError, match=r"fn\(inputs, \*, setting"):
        register_term("t2", needs_teacher=False)(lambda x, temperature: x.student_logits.sum())
    with pytest.raises(ValueError, match="token-level term needs a function"):
        register_term("t3", needs_teacher=False)(None)
    assert not {"t1", "t2", "t3"} & set(objective.TERMS)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"temperature": 0.0}, "temperature must be > 0"),
        ({"jsd_beta": 1.5}, r"jsd_beta: beta must be in \[0, 1\], got 1.5"),
        ({"focal_alpha": -0.1}, "focal_alpha must be a finite number >= 0"),
        ({"focal_gamma": float("inf")}, "focal_gamma must be a finite number >= 0"),
        ({"focal_gamma": "2"}, "focal_gamma must be a number >= 0"),
    ],
)
def test_bad_settings_are_refused_once_naming_the_setting(kwargs, message):
    with pytest.raises(ValueError, match=message):
        parse_objective("ce", **kwargs)


def test_objective_validation_names_the_term():
    with pytest.raises(ValueError, match="unknown term 'kld'"):
        parse_objective({"kld": 1.0})
    with pytest.raises(ValueError, match="loss.jsd"):
        parse_objective({"jsd": "lots"})
    with pytest.raises(ValueError, match="every term has weight 0"):
        parse_objective({"kl": 0.0, "ce": [0, 0]})
    with pytest.raises(ValueError, match="loss must be one of"):
        parse_objective("nope")


def test_alpha_sets_the_alpha_temperature_weights_and_zero_weight_terms_are_dropped():
    obj = parse_objective("alpha_temperature", alpha=0.2)
    assert obj.weights(0, 1) == pytest.approx({"kl": 0.2, "ce": 0.8})
    ce_only = parse_objective("alpha_temperature", alpha=0.0)
    assert list(ce_only.terms) == ["ce"] and not ce_only.needs_teacher
