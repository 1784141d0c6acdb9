"""How a derived student is healed at its cuts (:mod:`codistill.training.heal`); torch-free, so the
command line can check and show the defaults without loading torch."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class HealSettings:
    """How a derived student is healed (``codistill student derive --heal-on``)."""

    tokens: int = 200_000  # training tokens, in windows of ``length``
    length: int = 256
    epochs: int = 3
    lr: float = 1e-4
    batch_size: int = 4
    held_out: float = 0.05  # fraction of the windows kept aside to report the error on
    seed: int = 0
