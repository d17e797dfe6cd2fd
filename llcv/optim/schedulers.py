"""Closed-form learning-rate schedules for ``train.scheduler``.

A schedule gives the LR as a pure function of the iteration, so resuming (or rebuilding the
optimizer after pruning) needs only the iteration number, never a scheduler's hidden state.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from llcv.registry import SCHEDULERS, build


@SCHEDULERS.register_module()
class MultiStepLR:
    """``base_lr * gamma ** (number of milestones <= step)``."""

    def __init__(self, total_iter: int, milestones: Sequence[int], gamma: float = 0.5) -> None:
        self.milestones, self.gamma = sorted(milestones), gamma

    def lr(self, base_lr: float, step: int) -> float:
        return base_lr * self.gamma ** sum(1 for m in self.milestones if step >= m)


@SCHEDULERS.register_module()
class CosineAnnealingLR:
    """Half-cosine from the base LR at iteration 0 down to ``eta_min`` at ``T_max``."""

    def __init__(self, total_iter: int, T_max: int | None = None, eta_min: float = 0.0) -> None:
        self.T_max = T_max or total_iter
        self.eta_min = eta_min

    def lr(self, base_lr: float, step: int) -> float:
        progress = min(step, self.T_max) / self.T_max
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


class ConstantLR:
    """The base LR throughout (used when no scheduler is given)."""

    def lr(self, base_lr: float, step: int) -> float:
        return base_lr


class LRSchedule:
    """Sets each param group's LR to ``base_lr * warmup(it) * schedule(it)`` before step ``it``.

    Warm-up (as in BasicSR) scales linearly from 0 over ``warmup_iter`` iterations on top of the
    main schedule, which itself counts from iteration 0.
    """

    def __init__(self, cfg: Mapping[str, Any] | None, total_iter: int, warmup_iter: int = -1,
                 key: str = "train.scheduler") -> None:
        self.schedule = ConstantLR() if cfg is None else \
            build(SCHEDULERS, cfg, key, total_iter=total_iter)
        self.warmup_iter = warmup_iter

    def lr_at(self, base_lr: float, it: int) -> float:
        """Learning rate used for the update of iteration ``it`` (1-based)."""
        # The first update uses the schedule's value at step 0, as torch's schedulers do.
        lr = self.schedule.lr(base_lr, it - 1)
        if self.warmup_iter > 0 and it <= self.warmup_iter:
            lr *= it / self.warmup_iter
        return lr

    def apply(self, optimizer: torch.optim.Optimizer, it: int) -> list[float]:
        """Set the LRs of ``optimizer`` for iteration ``it`` and return them."""
        lrs = []
        for group in optimizer.param_groups:
            group.setdefault("initial_lr", group["lr"])
            group["lr"] = self.lr_at(group["initial_lr"], it)
            lrs.append(group["lr"])
        return lrs
