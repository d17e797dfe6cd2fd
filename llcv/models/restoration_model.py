"""The plain restoration step: forward, the weighted sum of the configured losses, backward, step.

Registered under BasicSR's, NAFNet's and Restormer's ``model_type`` names for image restoration
and super-resolution, which all train this way (BasicSR's SwinIRModel only adds test-time padding,
which llcv's SwinIR does itself).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn

from llcv.data.mixing import MixingAugment
from llcv.errors import LLCVError
from llcv.models.base import TrainStep
from llcv.models.precision import MixedPrecision
from llcv.registry import LOSSES, MODELS, build, check_kwargs
from llcv.schema import Key


@MODELS.register_module(name=["ImageRestorationModel", "SRModel", "ImageCleanModel",
                               "SwinIRModel"])
class ImageRestorationModel(TrainStep):
    """``lq -> network -> output``; every ``train.*_opt`` loss against ``gt``."""

    loss_keys = {"pixel_opt": "l_pix", "perceptual_opt": "l_percep", "ssim_opt": "l_ssim",
                 "frequency_opt": "l_freq"}
    train_keys = {"mixing_augs": Key((dict, type(None)), None)}  # Restormer's mixup

    def __init__(self, opt: Mapping[str, Any], device: torch.device) -> None:
        super().__init__(opt, device)
        train = opt["train"]
        self.losses = build_losses(train, self.loss_keys, device)
        if not self.losses:
            raise LLCVError(f"train: no loss given; add e.g. train.pixel_opt: {{type: L1Loss}} "
                            f"(loss sections: {', '.join(self.loss_keys)})")
        self.grad_clip_norm = train["grad_clip_norm"]
        self.precision = MixedPrecision(train["amp"], device)
        self.mixing = None
        if train.get("mixing_augs"):
            check_kwargs(MixingAugment, train["mixing_augs"], "train.mixing_augs")
            self.mixing = MixingAugment(**train["mixing_augs"])

    def __call__(self, state: Any, batch: Mapping[str, Any], it: int) -> dict[str, float]:
        lq = batch["lq"].to(self.device, non_blocking=True)
        gt = batch["gt"].to(self.device, non_blocking=True)
        if self.mixing is not None:
            lq, gt = self.mixing(lq, gt)
        state.optimizer.zero_grad(set_to_none=True)
        with self.precision.autocast():
            output = state.train_model(lq.contiguous(memory_format=state.memory_format))
            terms = {name: loss(output.float(), gt) for name, loss in self.losses.items()}
        values = {name: term.item() for name, term in terms.items()}
        check_finite(values, it)
        self.precision.backward(sum(terms.values()))
        self.precision.step(state.optimizer, state.model.parameters(), self.grad_clip_norm)
        return {f"train/{name}": value for name, value in values.items()}

    def state_dict(self) -> dict[str, Any]:
        return self.precision.state_dict()

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.precision.load_state_dict(state)

    def memory_loss(self) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
        losses = list(self.losses.values())
        return lambda out, gt: sum(loss(out, gt) for loss in losses)


def build_losses(train: Mapping[str, Any], keys: Mapping[str, str],
                 device: torch.device) -> dict[str, nn.Module]:
    """The loss sections of ``keys`` present in ``train``, by log name."""
    return {name: build(LOSSES, train[key], f"train.{key}").to(device)
            for key, name in keys.items() if key in train}


def check_finite(values: Mapping[str, float], it: int) -> None:
    """Stop with the term's name when a loss is NaN or infinite."""
    for name, value in values.items():
        if not np.isfinite(value):
            raise LLCVError(
                f"train: loss {name} is {value} at iter {it}; lower train.optim_g.lr, set "
                f"train.grad_clip_norm, or check the data, then continue from the last saved "
                f"state with --auto_resume --set train.optim_g.lr=<lower> (the option file's lr "
                f"wins on resume)")
