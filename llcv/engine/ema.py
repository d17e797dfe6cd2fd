"""Exponential moving average of a model's weights (validated and saved as ``params_ema``)."""
from __future__ import annotations

import copy
from typing import Any, Mapping

import torch
from torch import nn

from llcv.network import Spec, transfer


class ModelEMA:
    """Keeps ``ema = decay * ema + (1 - decay) * weights`` after every update; buffers are copied.

    Tensors are matched by ``state_dict`` name, so a pruned network and its EMA stay aligned as
    long as both get the same plan (:meth:`replace`).
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.module = copy.deepcopy(model).eval().requires_grad_(False)

    @torch.no_grad()
    def update(self, model: nn.Module) -> None:
        """Move the average towards the current weights of ``model``."""
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            if value.dtype.is_floating_point:
                value.mul_(self.decay).add_(current[name].detach(), alpha=1.0 - self.decay)
            else:
                value.copy_(current[name])

    @torch.no_grad()
    def swap(self, model: nn.Module) -> None:
        """Exchange the EMA weights with ``model``'s in place (twice restores both)."""
        current = model.state_dict()
        for name, value in self.module.state_dict().items():
            held = current[name].clone()
            current[name].copy_(value)
            value.copy_(held)

    def replace(self, plan: Mapping[str, Any], spec: Spec, device: torch.device) -> None:
        """Apply the network's pruning ``plan`` to the average (``spec``: the network after it)."""
        self.module = transfer(self.module, plan, spec, device)
