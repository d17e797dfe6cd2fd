"""SSIM loss: ``1 - SSIM`` per image, with the same SSIM as llcv's metrics (Gaussian window)."""
from __future__ import annotations

import torch
from torch import nn

from llcv.errors import ArgumentError
from llcv.losses.basic_loss import check_reduction, check_shapes, reduce_loss
from llcv.metrics.torch_ops import gaussian_kernel_1d, ssim_per_image
from llcv.registry import LOSSES
from llcv.utils import check_int


@LOSSES.register_module()
class SSIMLoss(nn.Module):
    """``loss_weight`` x (1 - SSIM) of each image pair, reduced over the batch.

    SSIM is Wang et al.'s with C1 = (0.01 L)^2, C2 = (0.03 L)^2, L = ``data_range``, a
    ``window_size`` x ``window_size`` Gaussian window (``sigma``), on the valid region, averaged
    over channels: the differentiable form of the SSIM metric. ``reduction: none`` gives (N,).
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean", data_range: float = 1.0,
                 window_size: int = 11, sigma: float = 1.5) -> None:
        super().__init__()
        check_reduction(reduction)
        check_int("window_size", window_size)
        for name, value in (("data_range", data_range), ("sigma", sigma)):
            if not value > 0:
                raise ArgumentError(f"{name}: must be > 0, got {value!r}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.data_range = data_range
        self.window_size = window_size
        self.sigma = sigma

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_shapes(pred, target, None)
        if min(pred.shape[-2:]) < self.window_size:
            raise ValueError(f"pred: SSIMLoss needs images of at least {self.window_size}x"
                             f"{self.window_size} (window_size), got {tuple(pred.shape[-2:])}")
        kernel = gaussian_kernel_1d(self.window_size, self.sigma, dtype=pred.dtype,
                                    device=pred.device)
        ssim = ssim_per_image(pred, target.to(pred.dtype), self.data_range, kernel)
        return self.loss_weight * reduce_loss(1.0 - ssim, self.reduction)
