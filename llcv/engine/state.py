"""Everything that trains, in one object: the network and its spec, the train-time wrapper (DDP),
the optimizer, the LR schedule and the training step.

The training step and hooks get this object instead of reaching into the runner. Replacing the
network by a pruned one (:meth:`TrainState.replace`) rebuilds the wrapper and the optimizer
around the new parameters, carrying the optimizer state of kept channels over by name.
"""
from __future__ import annotations

import logging
from typing import Any, Mapping, Optional

import torch
from torch import nn

from llcv.models.base import TrainStep
from llcv.models.distributed import ddp_wrap
from llcv.network import Plan, Spec, transfer
from llcv.optim.optimizers import build_optimizer, rebuild_optimizer
from llcv.optim.schedulers import LRSchedule


def compiled(module: nn.Module, cfg: Optional[Mapping[str, Any]]) -> nn.Module:
    """``torch.compile(module, **cfg)`` (``cfg`` None: ``module`` itself); where this PyTorch
    cannot compile, the message says so and training goes on uncompiled."""
    if cfg is None:
        return module
    if not torch._dynamo.is_dynamo_supported():
        logging.getLogger("llcv").warning(
            "train.compile: torch.compile is not supported by this Python/PyTorch; training "
            "without it")
        return module
    return torch.compile(module, **cfg)


class TrainState:
    """The network being trained with what updates it; ``state_dict`` holds all of it."""

    def __init__(self, model: nn.Module, spec: Spec, optim_cfg: Mapping[str, Any],
                 lr_schedule: LRSchedule, step: TrainStep, device: torch.device,
                 channels_last: bool = False,
                 compile_cfg: Optional[Mapping[str, Any]] = None) -> None:
        self.spec, self.lr_schedule, self.step, self.device = spec, lr_schedule, step, device
        #: Layout the step gives its inputs (and the network's weights have).
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.compile_cfg = compile_cfg
        self.model = model.to(memory_format=self.memory_format)
        self.optimizer = build_optimizer(model.parameters(), optim_cfg)
        self.train_model = self._wrap(self.model)

    def optimizers(self) -> list[torch.optim.Optimizer]:
        """The network's optimizer first, then the step's own (e.g. a discriminator's)."""
        return [self.optimizer, *self.step.optimizers().values()]

    def apply_lr(self, it: int) -> list[float]:
        """Set every optimizer's LRs for iteration ``it``; returns the network's."""
        lrs = [self.lr_schedule.apply(opt, it) for opt in self.optimizers()]
        return lrs[0]

    def resident(self) -> list[Any]:
        """What the training process keeps on the device besides one step's tensors."""
        return [self.model, *self.optimizers(), *self.step.held()]

    def replace(self, plan: Plan, spec: Spec) -> None:
        """Swap in the network ``spec`` describes, built from the current one sliced by ``plan``:
        new wrapper, optimizer state carried over by parameter name; the old objects are
        dropped (nothing here keeps a reference to them)."""
        old_model, old_optimizer = self.model, self.optimizer
        self.train_model = None  # release the old DDP wrapper before building the new one
        self.model = transfer(old_model, plan, spec, self.device).to(
            memory_format=self.memory_format)
        self.optimizer = rebuild_optimizer(old_optimizer, old_model, self.model, plan)
        self.spec = spec
        self.train_model = self._wrap(self.model)
        self.step.after_model_replaced(self, plan)

    def _wrap(self, model: nn.Module) -> nn.Module:
        """The module the step calls: DDP wrapper (with peers), compiled when asked."""
        return compiled(ddp_wrap(model, self.device), self.compile_cfg)

    def state_dict(self) -> dict[str, Any]:
        return {"params": self.model.state_dict(), "network": self.spec,
                "optimizer": self.optimizer.state_dict(), "step": self.step.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore weights, optimizer and step state (the network must already fit them)."""
        self.model.load_state_dict(state["params"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.step.load_state_dict(state.get("step", {}))
