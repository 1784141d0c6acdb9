"""A run whose optimizer records the gradients of a step instead of applying them."""

from __future__ import annotations

import dataclasses

import torch

from codistill.training.loop import Run


class RecordingSGD(torch.optim.SGD):
    """lr=0 SGD that remembers the gradients it was asked to apply."""

    def step(self, closure=None):
        self.seen = [p.grad.clone() for g in self.param_groups for p in g["params"]]


def recording(run: Run) -> Run:
    """``run`` (from :func:`codistill.training.loop.build_run`) with an optimizer that applies
    nothing and keeps the step's gradients in ``optimizer.seen``, and a constant schedule."""
    opt = RecordingSGD(run.student.parameters(), lr=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 1.0)
    return dataclasses.replace(run, optimizer=opt, scheduler=sched)
