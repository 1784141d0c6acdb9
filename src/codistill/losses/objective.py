"""Training objectives as weighted lists of registered loss terms.

A token-level term is a pure loss function of one chunk of target positions
(:class:`TokenLossInputs`). Its keyword-only parameters name the loss settings it needs
(``temperature``, ``jsd_beta``, ``focal_alpha``, ``focal_gamma``); :func:`parse_objective`
binds them once, so the trainer calls each term as ``term(inputs)`` and no loss ever sees the
run's configuration. Token-level terms return the *sum* of their per-token losses; the trainer
divides by the number of target tokens of the whole optimizer step, so one batch of 8 and four
accumulated batches of 2 give the same loss and gradients. Sequence-level terms (the semantic
term) are divided by the number of sequences of the step instead.

Users add a term with :func:`register_term`; objectives name terms in the config::

    loss: {focal: 0.3, jsd: [0.6, 0.3], semantic: [0.1, 0.3]}
"""

from __future__ import annotations

import functools
import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from codistill.losses import divergences, focal, sparse
from codistill.losses.divergences import check_beta, check_temperature
from codistill.losses.schedules import WeightSchedule, parse_weight
from codistill.losses.sparse import SparseTargets


@dataclass(frozen=True)
class TokenLossInputs:
    """What a token-level term sees: one chunk of target positions, flattened.

    Attributes:
        student_logits: ``[1, n, vocab]`` student logits at the chunk's target positions.
        teacher_logits: ``[1, n, vocab]`` teacher logits on the student's vocabulary, or None.
        labels: ``[1, n]`` target ids.
        mask: ``[1, n]`` True where the position counts.
        token_weights: ``[1, n]`` per-token multipliers (critical tokens), or None.
        sparse: the cached teacher's top-k targets for the masked positions, used by the
            teacher terms instead of ``teacher_logits`` when distilling from a teacher cache.
    """

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    labels: torch.Tensor
    mask: torch.Tensor
    token_weights: torch.Tensor | None
    sparse: SparseTargets | None = None


# A term with its settings bound: the loss of one chunk, summed over its positions.
TokenTerm = Callable[[TokenLossInputs], torch.Tensor]

# The settings a term may ask for by naming a keyword-only parameter.
SETTINGS = ("temperature", "jsd_beta", "focal_alpha", "focal_gamma")


@dataclass(frozen=True)
class TermSpec:
    """A registered term.

    Attributes:
        fn: ``fn(inputs, **settings) -> Tensor``; None for sequence-level terms computed by
            the trainer itself.
        needs_teacher: whether the term compares with a teacher (logits or a cache).
        unit: ``"tokens"`` (divided by the step's target tokens) or ``"sequences"``.
        settings: the names of ``fn``'s keyword-only parameters, bound by ``parse_objective``.
    """

    fn: Callable[..., torch.Tensor] | None
    needs_teacher: bool
    unit: str
    settings: tuple[str, ...] = ()


TERMS: dict[str, TermSpec] = {}


def register_term(name: str, *, needs_teacher: bool, unit: str = "tokens", trainer: bool = False):
    """Register a loss term under ``name`` (decorator).

    The function takes a :class:`TokenLossInputs` and, keyword-only, any of the settings in
    :data:`SETTINGS` it needs, and returns the summed loss of the chunk. ``trainer``: the
    trainer computes the term itself (it needs more than a chunk of logits); register None.

    Raises:
        ValueError: an unknown ``unit``, a token-level term without a function (unless the
            trainer computes it), or a parameter that is not a known setting.
    """
    if unit not in ("tokens", "sequences"):
        raise ValueError(f"unit must be 'tokens' or 'sequences', got {unit!r}")

    def wrap(fn: Callable[..., torch.Tensor] | None) -> Callable[..., torch.Tensor] | None:
        if fn is None and unit == "tokens" and not trainer:
            raise ValueError(f"term {name!r}: a token-level term needs a function")
        TERMS[name] = TermSpec(fn, needs_teacher, unit, () if fn is None else _settings_of(fn))
        return fn

    return wrap


def _settings_of(fn: Callable[..., torch.Tensor]) -> tuple[str, ...]:
    """The keyword-only parameters of ``fn``, each checked to be one of :data:`SETTINGS`."""
    params = list(inspect.signature(fn).parameters.values())
    named = tuple(p.name for p in params[1:])
    if not params or any(p.kind is not p.KEYWORD_ONLY for p in params[1:]):
        raise ValueError(
            f"term {fn.__name__}: must be fn(inputs, *, setting, ...), got parameters {named}"
        )
    unknown = [n for n in named if n not in SETTINGS]
    if unknown:
        raise ValueError(
            f"term {fn.__name__}: unknown setting(s) {unknown} (known: {', '.join(SETTINGS)})"
        )
    return named


def _dense_or_sparse(
    x: TokenLossInputs,
    dense: Callable[..., torch.Tensor],
    sparse_fn: Callable[..., torch.Tensor],
    **kwargs: float,
) -> torch.Tensor:
    """Summed ``dense`` loss against the teacher's logits when the chunk has them, else
    ``sparse_fn`` against the cached top-k; both take ``(student, teacher, mask, **kwargs)``."""
    if x.teacher_logits is not None:
        return dense(x.student_logits, x.teacher_logits, x.mask, reduction="sum", **kwargs)
    if x.sparse is None:
        raise ValueError("a teacher term needs teacher_logits or sparse (cached) targets")
    return sparse_fn(x.student_logits, x.sparse, x.mask, reduction="sum", **kwargs)


@register_term("ce", needs_teacher=False)
def _ce(x: TokenLossInputs) -> torch.Tensor:
    return divergences.cross_entropy(x.student_logits, x.labels, x.mask, reduction="sum")


@register_term("kl", needs_teacher=True)
def _kl(x: TokenLossInputs, *, temperature: float) -> torch.Tensor:
    return _dense_or_sparse(
        x, divergences.forward_kl, sparse.sparse_forward_kl, temperature=temperature
    )


@register_term("reverse_kl", needs_teacher=True)
def _reverse_kl(x: TokenLossInputs, *, temperature: float) -> torch.Tensor:
    return _dense_or_sparse(
        x, divergences.reverse_kl, sparse.sparse_reverse_kl, temperature=temperature
    )


@register_term("jsd", needs_teacher=True)
def _jsd(x: TokenLossInputs, *, temperature: float) -> torch.Tensor:
    # Trident's JSD is the symmetric one by definition (β = 0.5, ``divergences.jsd``) on both
    # paths; the configured ``jsd_beta`` belongs to the generalized term ``gjsd``.
    return _dense_or_sparse(
        x, divergences.generalized_jsd, sparse.sparse_jsd, beta=0.5, temperature=temperature
    )


@register_term("gjsd", needs_teacher=True)
def _gjsd(x: TokenLossInputs, *, temperature: float, jsd_beta: float) -> torch.Tensor:
    return _dense_or_sparse(
        x, divergences.generalized_jsd, sparse.sparse_jsd, beta=jsd_beta, temperature=temperature
    )


@register_term("focal", needs_teacher=False)
def _focal(x: TokenLossInputs, *, focal_alpha: float, focal_gamma: float) -> torch.Tensor:
    return focal.focal_loss(
        x.student_logits,
        x.labels,
        x.mask,
        alpha=focal_alpha,
        gamma=focal_gamma,
        token_weights=x.token_weights,
        reduction="sum",
    )


# Minimum-risk semantic term: needs sampling from the student, so the trainer computes it.
register_term("semantic", needs_teacher=False, unit="sequences")(None)
# Layer-wise hidden-state distillation (``losses.hidden``): needs every layer's states of the
# student and the online teacher, so the trainer computes it from their forward passes.
register_term("hidden", needs_teacher=True, trainer=True)(None)


# Named objectives. alpha_temperature is the alpha-T paper's alpha*T^2*KL + (1-alpha)*CE (the
# T^2 lives inside the KL term); it is also the Trident paper's "CE + KL" baseline. trident is
# that paper's dynamic schedule (Sec. 3.2: focal 0.3; JSD 0.6 -> 0.3; semantic 0.1 -> 0.3).
def _named(name: str, alpha: float) -> dict[str, Any] | None:
    if name == "alpha_temperature":
        return {"kl": alpha, "ce": 1.0 - alpha}
    if name == "trident":
        return {"focal": 0.3, "jsd": [0.6, 0.3], "semantic": [0.1, 0.3]}
    if name == "ce":
        return {"ce": 1.0}
    return None


NAMED_OBJECTIVES = ("alpha_temperature", "trident", "ce")


@dataclass(frozen=True)
class Objective:
    """A validated objective.

    Attributes:
        terms: the weight schedule of every active term, token- and sequence-level.
        token_fns: the token-level terms, settings bound: ``token_fns[name](inputs)``.
        temperature: the temperature bound into the terms (sparse teacher targets must be
            tempered with the same one).
    """

    terms: dict[str, WeightSchedule]
    token_fns: dict[str, TokenTerm]
    temperature: float = 1.0

    @property
    def needs_teacher(self) -> bool:
        return any(TERMS[n].needs_teacher for n in self.terms)

    @property
    def token_terms(self) -> list[str]:
        return list(self.token_fns)

    @property
    def has_semantic(self) -> bool:
        return "semantic" in self.terms

    @property
    def has_hidden(self) -> bool:
        return "hidden" in self.terms

    def weights(self, epoch: int, total_epochs: int) -> dict[str, float]:
        return {n: s.value(epoch, total_epochs) for n, s in self.terms.items()}


def _check_focal(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")


def parse_objective(
    loss: str | dict,
    *,
    alpha: float = 0.5,
    temperature: float = 1.0,
    jsd_beta: float = 0.5,
    focal_alpha: float = 0.25,
    focal_gamma: float = 2.0,
) -> Objective:
    """Validate an objective and bind its terms' settings once.

    The defaults are ``DistillConfig``'s (a test keeps them equal).

    Args:
        loss: a name in :data:`NAMED_OBJECTIVES` or a non-empty mapping term -> weight, a
            weight being a number or ``[start, end]`` (see ``schedules.parse_weight``).
        alpha: the KL weight of ``alpha_temperature`` (CE gets ``1 - alpha``).
        temperature: softmax temperature T > 0 of the teacher terms.
        jsd_beta: teacher weight β in [0, 1] of ``gjsd``.
        focal_alpha: focal loss α >= 0.
        focal_gamma: focal loss γ >= 0.

    Returns:
        The objective, with the terms whose weight is 0 throughout dropped.

    Raises:
        ValueError: naming the bad term, weight or setting (the config turns it into a
            ``ConfigError``).
    """
    check_temperature(temperature)
    try:
        check_beta(jsd_beta)
    except ValueError as exc:
        raise ValueError(f"jsd_beta: {exc}") from None
    _check_focal("focal_alpha", focal_alpha)
    _check_focal("focal_gamma", focal_gamma)
    if isinstance(loss, str):
        mapping = _named(loss, alpha)
        if mapping is None:
            raise ValueError(
                f"loss must be one of {list(NAMED_OBJECTIVES)} or a mapping "
                f"term -> weight, got {loss!r}"
            )
    elif isinstance(loss, dict) and loss:
        mapping = loss
    else:
        raise ValueError(f"loss must be a name or a non-empty mapping, got {loss!r}")
    terms = {}
    for name, weight in mapping.items():
        if name not in TERMS:
            raise ValueError(f"loss: unknown term '{name}' (known: {', '.join(sorted(TERMS))})")
        try:
            terms[name] = parse_weight(weight)
        except ValueError as exc:
            raise ValueError(f"loss.{name}: {exc}") from exc
    # A term whose weight is 0 throughout is not computed at all (alpha=0 leaves the KL term at
    # weight 0: evaluating it would need a teacher that is then not loaded, and 0 * inf is NaN).
    active = {n: s for n, s in terms.items() if s.start > 0 or (s.end or 0) > 0}
    if not active:
        raise ValueError(f"loss: every term has weight 0 in {loss!r}")
    values = {
        "temperature": temperature,
        "jsd_beta": jsd_beta,
        "focal_alpha": focal_alpha,
        "focal_gamma": focal_gamma,
    }
    token_fns: dict[str, TokenTerm] = {}
    for name in active:
        spec = TERMS[name]
        if spec.fn is not None:  # None: a sequence-level term the trainer computes
            token_fns[name] = functools.partial(spec.fn, **{k: values[k] for k in spec.settings})
    return Objective(active, token_fns, float(temperature))
