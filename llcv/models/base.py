"""The training-step contract: what one iteration does, chosen by ``model_type``.

A step is built once per run from the options and the device; each iteration the runner calls
it with the :class:`~llcv.engine.state.TrainState` (the network, its train-time wrapper and its
optimizer) and the batch, after setting the learning rates. Everything a step owns beyond that
(losses, extra networks such as a discriminator, their optimizers) takes part in checkpoints
through ``state_dict``/``load_state_dict`` and in model replacement through
``after_model_replaced``, so new training schemes plug in without editing the runner.
"""
from __future__ import annotations

from typing import Any, Callable, ClassVar, Mapping

import torch


class TrainStep:
    """Base class. Subclasses set ``loss_keys`` and implement ``__call__``."""

    #: option keys under ``train`` holding loss sections -> name of the term in logs
    loss_keys: ClassVar[Mapping[str, str]] = {}
    #: extra option keys under ``train`` this step reads: key -> ``llcv.schema`` spec
    train_keys: ClassVar[Mapping[str, Any]] = {}
    #: extra top-level option keys (e.g. ``network_d``): key -> ``llcv.schema`` spec
    top_keys: ClassVar[Mapping[str, Any]] = {}

    def __init__(self, opt: Mapping[str, Any], device: torch.device) -> None:
        self.device = device

    def __call__(self, state: Any, batch: Mapping[str, Any], it: int) -> dict[str, float]:
        """One iteration on ``batch``; returns the logged terms as ``train/<name>`` floats."""
        raise NotImplementedError

    def memory_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        """The loss the memory estimate runs on the network output and the target."""
        raise NotImplementedError

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        """Optimizers the step owns besides the network's (their LRs follow the schedule)."""
        return {}

    def held(self) -> list[Any]:
        """Modules and optimizers the step keeps on the device (for the memory figures)."""
        return []

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None: ...

    def after_model_replaced(self, state: Any, plan: Mapping[str, Any]) -> None:
        """The network was replaced by a pruned one (``plan``); refresh what depends on it."""
