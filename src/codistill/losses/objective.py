"""Training objectives as weighted lists of registered loss terms.

A term is a pure loss function bound to the configuration. Token-level terms return the *sum*
of their per-token losses over a chunk of target positions; the trainer divides by the number of
target tokens of the whole optimizer step, so one batch of 8 and four accumulated batches of 2
give the same loss and gradients. Sequence-level terms (the semantic term) are divided by the
number of sequences of the step instead.

Users add a term with :func:`register_term`; objectives name terms in the config::

    loss: {focal: 0.3, jsd: [0.6, 0.3], semantic: [0.1, 0.3]}
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from codistill.losses import divergences, focal, sparse
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
        sparse: the cached teacher's top-k targets for the same ``n`` positions, used by the
            teacher terms instead of ``teacher_logits`` when distilling from a teacher cache.
    """

    student_logits: torch.Tensor
    teacher_logits: torch.Tensor | None
    labels: torch.Tensor
    mask: torch.Tensor
    token_weights: torch.Tensor | None
    sparse: SparseTargets | None = None


TokenTerm = Callable[[TokenLossInputs, Any], torch.Tensor]


@dataclass(frozen=True)
class TermSpec:
    fn: TokenTerm | None  # None for sequence-level terms computed by the trainer itself
    needs_teacher: bool
    unit: str  # "tokens" or "sequences"


TERMS: dict[str, TermSpec] = {}


def register_term(name: str, *, needs_teacher: bool, unit: str = "tokens"):
    """Register a token-level loss term under ``name`` (decorator)."""
    if unit not in ("tokens", "sequences"):
        raise ValueError(f"unit must be 'tokens' or 'sequences', got {unit!r}")

    def wrap(fn: TokenTerm | None) -> TokenTerm | None:
        TERMS[name] = TermSpec(fn, needs_teacher, unit)
        return fn

    return wrap


@register_term("ce", needs_teacher=False)
def _ce(x: TokenLossInputs, cfg: Any) -> torch.Tensor:
    return divergences.cross_entropy(x.student_logits, x.labels, x.mask, reduction="sum")


@register_term("kl", needs_teacher=True)
def _kl(x: TokenLossInputs, cfg: Any) -> torch.Tensor:
    if x.teacher_logits is None:
        return sparse.sparse_forward_kl(
            x.student_logits[0], x.sparse, temperature=cfg.temperature, reduction="sum"
        )
    return divergences.forward_kl(
        x.student_logits, x.teacher_logits, x.mask, temperature=cfg.temperature, reduction="sum"
    )


@register_term("reverse_kl", needs_teacher=True)
def _reverse_kl(x: TokenLossInputs, cfg: Any) -> torch.Tensor:
    if x.teacher_logits is None:
        return sparse.sparse_reverse_kl(
            x.student_logits[0], x.sparse, temperature=cfg.temperature, reduction="sum"
        )
    return divergences.reverse_kl(
        x.student_logits, x.teacher_logits, x.mask, temperature=cfg.temperature, reduction="sum"
    )


@register_term("jsd", needs_teacher=True)
def _jsd(x: TokenLossInputs, cfg: Any) -> torch.Tensor:
    if x.teacher_logits is None:
        return sparse.sparse_jsd(
            x.student_logits[0], x.sparse, beta=0.5, temperature=cfg.temperature, reduction="sum"
        )
    return divergences.jsd(
        x.student_logits, x.teacher_logits, x.mask, temperature=cfg.temperature, reduction="sum"
    )


@register_term("gjsd", needs_teacher=True)
def _gjsd(x: TokenLossInputs, cfg: Any) -> torch.Tensor:
    if x.teacher_logits is None:
        return sparse.sparse_jsd(
            x.student_logits[0],
            x.sparse,
            beta=cfg.jsd_beta,
            temperature=cfg.temperature,
            reduction="sum",
        )
    return divergences.generalized_jsd(
        x.student_logits,
        x.teacher_logits,
        x.mask,
        beta=cfg.jsd_beta,
        temperature=cfg.temperature,
        reduction="sum",
    )


@register_term("focal", needs_teacher=False)
def _focal(x: TokenLossInputs, cfg: Any) -> torch.Tensor:
    return focal.focal_loss(
        x.student_logits,
        x.labels,
        x.mask,
        alpha=cfg.focal_alpha,
        gamma=cfg.focal_gamma,
        token_weights=x.token_weights,
        reduction="sum",
    )


# Minimum-risk semantic term: needs sampling from the student, so the trainer computes it.
register_term("semantic", needs_teacher=False, unit="sequences")(None)


# Named objectives. alpha_temperature is the alpha-T paper's alpha*T^2*KL + (1-alpha)*CE (the
# T^2 lives inside the KL term); it is also the Trident paper's "CE + KL" baseline. trident is
# that paper's dynamic schedule (Sec. 3.2: focal 0.3; JSD 0.6 -> 0.3; semantic 0.1 -> 0.3).
def _named(name: str, cfg: Any) -> dict[str, Any] | None:
    if name == "alpha_temperature":
        return {"kl": cfg.alpha, "ce": 1.0 - cfg.alpha}
    if name == "trident":
        return {"focal": 0.3, "jsd": [0.6, 0.3], "semantic": [0.1, 0.3]}
    if name == "ce":
        return {"ce": 1.0}
    return None


NAMED_OBJECTIVES = ("alpha_temperature", "trident", "ce")


@dataclass(frozen=True)
class Objective:
    terms: dict[str, WeightSchedule]

    @property
    def needs_teacher(self) -> bool:
        return any(TERMS[n].needs_teacher and self._active(n) for n in self.terms)

    @property
    def token_terms(self) -> list[str]:
        return [n for n in self.terms if TERMS[n].unit == "tokens"]

    @property
    def has_semantic(self) -> bool:
        return "semantic" in self.terms and self._active("semantic")

    def _active(self, name: str) -> bool:
        s = self.terms[name]
        return s.start > 0 or (s.end is not None and s.end > 0)

    def weights(self, epoch: int, total_epochs: int) -> dict[str, float]:
        return {n: s.value(epoch, total_epochs) for n, s in self.terms.items()}


def parse_objective(cfg: Any) -> Objective:
    """Turn ``cfg.loss`` (a name or a mapping) into an :class:`Objective`, validating it."""
    spec = cfg.loss
    if isinstance(spec, str):
        mapping = _named(spec, cfg)
        if mapping is None:
            raise ValueError(
                f"loss must be one of {list(NAMED_OBJECTIVES)} or a mapping "
                f"term -> weight, got {spec!r}"
            )
    elif isinstance(spec, dict) and spec:
        mapping = spec
    else:
        raise ValueError(f"loss must be a name or a non-empty mapping, got {spec!r}")
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
        raise ValueError(f"loss: every term has weight 0 in {spec!r}")
    return Objective(active)
