"""Pixel losses (L1, MSE, Charbonnier) and the PSNR loss used by NAFNet-style training.

Every loss is ``Loss(loss_weight=1.0, reduction="mean", ...)`` and is called as
``loss(pred, target, weight=None)``. ``weight`` is an optional element-wise weight broadcastable
to ``pred``; with it, ``mean`` is the weighted mean ``sum(w * l) / sum(w)`` (``w`` broadcast to
the loss's shape), so a 0/1 mask averages over the masked-in elements only.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from llcv.errors import ArgumentError
from llcv.metrics.torch_ops import rgb_to_y
from llcv.registry import LOSSES

REDUCTIONS: tuple[str, ...] = ("none", "mean", "sum")


def check_reduction(reduction: str) -> None:
    """Fail naming ``reduction`` and the allowed values when it is not one of them."""
    if reduction not in REDUCTIONS:
        raise ArgumentError(
            f"reduction: unknown value {reduction!r}; allowed: {', '.join(REDUCTIONS)}")


def _broadcasts_to(shape: torch.Size, target: torch.Size) -> bool:
    """Whether a tensor of ``shape`` can be expanded to ``target``."""
    if len(shape) > len(target):
        return False
    return all(s in (1, t) for s, t in zip(reversed(shape), reversed(target)))


def check_shapes(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None) -> None:
    """Fail clearly when ``target`` differs from ``pred`` or ``weight`` does not broadcast to it."""
    if pred.shape != target.shape:
        raise ValueError(f"target: shape {tuple(target.shape)} differs from pred's "
                         f"{tuple(pred.shape)}")
    if weight is not None and not _broadcasts_to(weight.shape, pred.shape):
        raise ValueError(f"weight: shape {tuple(weight.shape)} does not broadcast to pred's "
                         f"{tuple(pred.shape)}")


def reduce_loss(loss: torch.Tensor, reduction: str,
                weight: torch.Tensor | None = None) -> torch.Tensor:
    """Weight an element-wise ``loss`` and reduce it; a weighted ``mean`` divides by sum(weight)."""
    if weight is not None:
        weight = weight.to(loss.dtype).expand_as(loss)
        loss = loss * weight
    if reduction == "none":
        return loss
    if reduction == "sum":
        return loss.sum()
    if weight is None:
        return loss.mean()
    return loss.sum() / weight.sum().clamp_min(torch.finfo(loss.dtype).tiny)


class PixelLoss(nn.Module):
    """Base of element-wise losses: subclasses define ``elementwise(pred, target)``."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean") -> None:
        super().__init__()
        check_reduction(reduction)
        self.loss_weight = loss_weight
        self.reduction = reduction

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The unreduced, unweighted loss, same shape as ``pred``."""
        raise NotImplementedError

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """``loss_weight`` x the reduced (optionally weighted) element-wise loss."""
        check_shapes(pred, target, weight)
        return self.loss_weight * reduce_loss(self.elementwise(pred, target), self.reduction,
                                              weight)


@LOSSES.register_module()
class L1Loss(PixelLoss):
    """Mean absolute error."""

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).abs()


@LOSSES.register_module()
class MSELoss(PixelLoss):
    """Mean squared error."""

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return (pred - target).square()


@LOSSES.register_module()
class CharbonnierLoss(PixelLoss):
    """Smooth L1 variant ``sqrt((pred - target)^2 + eps)``, differentiable at zero."""

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean",
                 eps: float = 1e-12) -> None:
        super().__init__(loss_weight, reduction)
        if eps < 0:
            raise ArgumentError(f"eps: must be >= 0, got {eps!r}")
        self.eps = eps

    def elementwise(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return torch.sqrt((pred - target).square() + self.eps)


def _per_image_mean(values: torch.Tensor, weight: torch.Tensor | None) -> torch.Tensor:
    """Mean over all but the batch dimension, weighted by ``weight`` when given."""
    if weight is None:
        return values.flatten(1).mean(dim=1)
    weight = weight.to(values.dtype).expand_as(values).flatten(1)
    total = weight.sum(dim=1).clamp_min(torch.finfo(values.dtype).tiny)
    return (values.flatten(1) * weight).sum(dim=1) / total


@LOSSES.register_module()
class PSNRLoss(nn.Module):
    """Negative PSNR in dB, per image: ``10/ln(10) * ln(MSE + 1e-8)``, reduced over the batch.

    For images in [0, 1] it equals ``-PSNR`` (up to the 1e-8), so minimising it maximises PSNR.
    ``toY`` compares BT.601 luma instead of RGB; with ``weight``, MSE is a per-image weighted mean.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean",
                 toY: bool = False) -> None:  # camelCase kept from NAFNet option files
        super().__init__()
        check_reduction(reduction)
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.toY = toY
        self.scale = 10.0 / math.log(10.0)

    def forward(self, pred: torch.Tensor, target: torch.Tensor,
                weight: torch.Tensor | None = None) -> torch.Tensor:
        """``loss_weight`` x the batch-reduced negative PSNR; ``none`` gives one value per image."""
        check_shapes(pred, target, None)
        if self.toY:
            if pred.dim() != 4 or pred.shape[1] != 3:
                raise ValueError(f"pred: toY needs an RGB batch of shape (N, 3, H, W), "
                                 f"got {tuple(pred.shape)}")
            pred, target = rgb_to_y(pred), rgb_to_y(target)
        check_shapes(pred, target, weight)
        mse = _per_image_mean((pred - target).square(), weight)
        per_image = self.loss_weight * self.scale * torch.log(mse + 1e-8)
        return reduce_loss(per_image, self.reduction)

