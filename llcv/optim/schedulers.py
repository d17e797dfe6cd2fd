"""Closed-form learning-rate schedules for ``train.scheduler``.

A schedule gives the LR as a pure function of the iteration, so resuming (or rebuilding the
optimizer after pruning) needs only the iteration number, never a scheduler's hidden state.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import torch

from llcv.errors import ArgumentError
from llcv.registry import SCHEDULERS, build
from llcv.utils import check_int, check_number


def _iterations(name: str, values: Sequence[Any]) -> list[int]:
    """A list of iteration counts; integral floats (``!!float 2e5``) are accepted."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values:
        raise ArgumentError(f"{name}: expected a non-empty list of iterations, got {values!r}")
    out = []
    for v in values:
        if isinstance(v, float) and v.is_integer():
            v = int(v)
        out.append(check_int(name, v, 0))
    return out


def _same_length(name: str, values: Sequence[Any], like: Sequence[Any], like_name: str) -> list:
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) \
            or len(values) != len(like):
        raise ArgumentError(f"{name}: needs one entry per {like_name} entry ({len(like)}), "
                            f"got {values!r}")
    return [check_number(name, v, 0.0) for v in values]


@SCHEDULERS.register_module()
class MultiStepLR:
    """``base_lr * gamma ** (number of milestones <= step)``."""

    def __init__(self, total_iter: int, milestones: Sequence[int], gamma: float = 0.5) -> None:
        self.milestones, self.gamma = sorted(_iterations("milestones", milestones)), gamma

    def lr(self, base_lr: float, step: int) -> float:
        return base_lr * self.gamma ** sum(1 for m in self.milestones if step >= m)


@SCHEDULERS.register_module()
class MultiStepRestartLR:
    """BasicSR's multi-step decay with restarts: at a restart the LR jumps back to
    ``base_lr * restart_weight`` and only milestones after it count."""

    def __init__(self, total_iter: int, milestones: Sequence[int], gamma: float = 0.1,
                 restarts: Sequence[int] = (0,), restart_weights: Sequence[float] = (1,)) -> None:
        self.milestones = sorted(_iterations("milestones", milestones))
        self.restarts = _iterations("restarts", restarts)
        self.weights = _same_length("restart_weights", restart_weights, self.restarts, "restarts")
        self.gamma = gamma

    def lr(self, base_lr: float, step: int) -> float:
        passed = [(r, w) for r, w in zip(self.restarts, self.weights) if r <= step]
        if not passed:
            return base_lr * self.gamma ** sum(1 for m in self.milestones if m <= step)
        start, weight = max(passed, key=lambda rw: rw[0])
        return base_lr * weight * self.gamma ** sum(1 for m in self.milestones
                                                    if start < m <= step)


@SCHEDULERS.register_module()
class CosineAnnealingLR:
    """Half-cosine from the base LR at iteration 0 down to ``eta_min`` at ``T_max``."""

    def __init__(self, total_iter: int, T_max: int | None = None, eta_min: float = 0.0) -> None:
        if isinstance(T_max, float) and T_max.is_integer():
            T_max = int(T_max)  # BasicSR files write it as !!float
        self.T_max = total_iter if T_max is None else check_int("T_max", T_max, 1)
        self.eta_min = check_number("eta_min", eta_min, 0.0)

    def lr(self, base_lr: float, step: int) -> float:
        progress = min(step, self.T_max) / self.T_max
        return self.eta_min + (base_lr - self.eta_min) * 0.5 * (1.0 + math.cos(math.pi * progress))


# NAFNet's name for the per-iteration cosine schedule above.
SCHEDULERS.register_module(name="TrueCosineAnnealingLR", module=CosineAnnealingLR)


@SCHEDULERS.register_module()
class CosineAnnealingRestartCyclicLR:
    """Restormer's cosine cycles: cycle ``i`` lasts ``periods[i]`` iterations and anneals from
    ``restart_weights[i] * base_lr`` (in the cosine's amplitude) down to ``eta_mins[i]``."""

    def __init__(self, total_iter: int, periods: Sequence[int],
                 restart_weights: Sequence[float] = (1,), eta_mins: Sequence[float] = (0,)) -> None:
        self.periods = _iterations("periods", periods)
        self.weights = _same_length("restart_weights", restart_weights, self.periods, "periods")
        self.eta_mins = _same_length("eta_mins", eta_mins, self.periods, "periods")
        self.ends = [sum(self.periods[:i + 1]) for i in range(len(self.periods))]

    def lr(self, base_lr: float, step: int) -> float:
        i = next((k for k, end in enumerate(self.ends) if step <= end), len(self.ends) - 1)
        start = self.ends[i - 1] if i else 0
        eta_min = self.eta_mins[i]
        progress = (step - start) / self.periods[i]
        return eta_min + self.weights[i] * 0.5 * (base_lr - eta_min) * (1 + math.cos(math.pi * progress))


@SCHEDULERS.register_module()
class CosineAnnealingRestartLR(CosineAnnealingRestartCyclicLR):
    """BasicSR's cosine annealing with restarts: the cyclic schedule with one ``eta_min``."""

    def __init__(self, total_iter: int, periods: Sequence[int],
                 restart_weights: Sequence[float] = (1,), eta_min: float = 0.0) -> None:
        super().__init__(total_iter, periods, restart_weights, [eta_min] * len(periods))


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
