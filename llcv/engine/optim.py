"""Optimizers and closed-form learning-rate schedules.

A schedule gives the LR factor as a pure function of the iteration, so resuming (or rebuilding
the optimizer after pruning) only needs the iteration number, never a scheduler's hidden state.
"""
from __future__ import annotations

import difflib
import math
from typing import Any, Callable, Iterable, Mapping, Sequence

import torch

from llcv.errors import OptionError

OPTIMIZERS: dict[str, Callable[..., torch.optim.Optimizer]] = {
    "Adam": torch.optim.Adam,
    "AdamW": torch.optim.AdamW,
    "SGD": torch.optim.SGD,
}


class MultiStepLR:
    """``base_lr * gamma ** (number of milestones <= step)``."""

    def __init__(self, total_iter: int, milestones: Sequence[int], gamma: float = 0.5) -> None:
        self.milestones, self.gamma = sorted(milestones), gamma

    def lr(self, base_lr: float, step: int) -> float:
        return base_lr * self.gamma ** sum(1 for m in self.milestones if step >= m)


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

    def __init__(self, total_iter: int) -> None:
        del total_iter

    def lr(self, base_lr: float, step: int) -> float:
        return base_lr


SCHEDULES: dict[str, type] = {"MultiStepLR": MultiStepLR, "CosineAnnealingLR": CosineAnnealingLR}


def lookup(table: Mapping[str, Any], name: Any, key: str, kind: str) -> Any:
    """Find ``name`` in ``table``; an unknown name fails with close matches."""
    if name not in table:
        close = difflib.get_close_matches(str(name), list(table), n=2)
        hint = f"did you mean {', '.join(close)}? " if close else ""
        raise OptionError(f"{key}: unknown {kind} '{name}'; {hint}available: {', '.join(table)}")
    return table[name]


def build_optimizer(params: Iterable[torch.nn.Parameter], cfg: Mapping[str, Any],
                    key: str = "train.optim_g") -> torch.optim.Optimizer:
    """Build the optimizer named by ``cfg['type']`` over the parameters that require grad."""
    cls = lookup(OPTIMIZERS, cfg["type"], f"{key}.type", "optimizer")
    kwargs = {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "type"}
    return cls([p for p in params if p.requires_grad], **kwargs)


class LRSchedule:
    """Sets each param group's LR to ``base_lr * warmup(it) * schedule(it)`` before step ``it``.

    Warm-up (as in BasicSR) scales linearly from 0 over ``warmup_iter`` iterations on top of the
    main schedule, which itself counts from iteration 0.
    """

    def __init__(self, cfg: Mapping[str, Any] | None, total_iter: int, warmup_iter: int = -1,
                 key: str = "train.scheduler") -> None:
        if cfg is None:
            self.schedule = ConstantLR(total_iter)
        else:
            cls = lookup(SCHEDULES, cfg["type"], f"{key}.type", "scheduler")
            self.schedule = cls(total_iter, **{k: v for k, v in cfg.items() if k != "type"})
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
