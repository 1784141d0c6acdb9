"""Per-epoch weights of loss components: static, or linear as in Trident's dynamic scheduling.

A weight is written in a config as a number (static), a pair ``[start, end]`` or a mapping
``{start: ..., end: ...}`` (linear from ``start`` at the first epoch to ``end`` at the last).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass


def _check_weight(name: str, value: object) -> float:
    """The weight as a float, or ValueError naming ``name`` if it is not a finite number >= 0."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError(f"{name} must be a number >= 0, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class WeightSchedule:
    """The weight of one loss component over training.

    Attributes:
        start: weight at epoch 0 (and throughout when ``end`` is None).
        end: weight of the last epoch under the linear schedule, or None for a static weight.
    """

    start: float
    end: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "start", _check_weight("start", self.start))
        if self.end is not None:
            object.__setattr__(self, "end", _check_weight("end", self.end))

    @property
    def is_static(self) -> bool:
        """True when the weight does not change over training."""
        return self.end is None

    def value(self, epoch: int, total_epochs: int) -> float:
        """The weight during ``epoch``.

        Trident (section 3.2) writes w(t) = w_start + t / T · (w_end − w_start) and says the
        JSD weight "decreases from 0.6 to 0.3". With t the 0-based epoch that formula never
        reaches w_end (its last epoch gets w_start + (T − 1)/T · (w_end − w_start): 0.3375 for
        8 epochs), so we read the text as the intent: the first epoch gets w_start and the
        last gets w_end, w(t) = w_start + t / (T − 1) · (w_end − w_start) (0.6 → 0.3 over 3
        epochs gives 0.6, 0.45, 0.3). A one-epoch run uses w_start.

        Args:
            epoch: 0-based index of the current epoch, in [0, total_epochs).
            total_epochs: number of training epochs, >= 1.

        Returns:
            The weight, >= 0.
        """
        if isinstance(total_epochs, bool) or not isinstance(total_epochs, int) or total_epochs < 1:
            raise ValueError(f"total_epochs must be an integer >= 1, got {total_epochs!r}")
        if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < total_epochs:
            raise ValueError(
                f"epoch must be an integer in [0, {total_epochs}) for total_epochs="
                f"{total_epochs}, got {epoch!r}"
            )
        if self.end is None:
            return self.start
        if total_epochs == 1:
            return self.start
        return self.start + epoch / (total_epochs - 1) * (self.end - self.start)

    def to_spec(self) -> float | list[float]:
        """The config form that ``parse_weight`` reads back: a number or ``[start, end]``."""
        return self.start if self.end is None else [self.start, self.end]


def parse_weight(spec: object) -> WeightSchedule:
    """Reads a weight from its config form.

    Args:
        spec: a number >= 0 (static), a 2-element list/tuple ``[start, end]`` (linear), a
            mapping with key ``start`` and optional ``end``, or a ``WeightSchedule``.

    Returns:
        The schedule.

    Raises:
        ValueError: for any other form or a negative / non-finite weight; the message
            includes the offending value.
    """
    if isinstance(spec, WeightSchedule):
        return spec
    if isinstance(spec, int | float) and not isinstance(spec, bool):
        return WeightSchedule(_check_weight("weight", spec))
    if isinstance(spec, list | tuple):
        if len(spec) != 2:
            raise ValueError(
                f"a weight given as a list must be [start, end], got {len(spec)} items: {spec!r}"
            )
        return WeightSchedule(
            _check_weight(f"weight start in {spec!r}", spec[0]),
            _check_weight(f"weight end in {spec!r}", spec[1]),
        )
    if isinstance(spec, Mapping):
        unknown = sorted(str(k) for k in spec if k not in ("start", "end"))
        if unknown or "start" not in spec:
            raise ValueError(
                "a weight given as a mapping must have key 'start' and optional 'end', "
                f"got {dict(spec)!r}"
            )
        end = spec.get("end")
        return WeightSchedule(
            _check_weight(f"weight start in {dict(spec)!r}", spec["start"]),
            None if end is None else _check_weight(f"weight end in {dict(spec)!r}", end),
        )
    raise ValueError(
        "a weight must be a number, [start, end] or {start: ..., end: ...}, "
        f"got {type(spec).__name__} {spec!r}"
    )
