"""Frequency-domain loss: L1 between the 2-D real FFTs of prediction and target.

Used by deblurring networks (MIMO-UNet and successors, often with ``loss_weight: 0.1``) next to a
pixel loss, to penalise lost high frequencies that pixel losses average away.
"""
from __future__ import annotations

import torch
from torch import nn

from llcv.errors import ArgumentError
from llcv.losses.basic_loss import check_reduction, check_shapes, reduce_loss
from llcv.registry import LOSSES

FFT_NORMS: tuple[str, ...] = ("backward", "ortho", "forward")


@LOSSES.register_module()
class FFTLoss(nn.Module):
    """``loss_weight`` x L1 between real and imaginary parts of ``rfft2`` over H and W.

    ``norm`` is ``torch.fft``'s normalisation: ``backward`` (unscaled, the usual choice), ``ortho``
    (divides by sqrt(H*W)) or ``forward`` (by H*W). ``reduction: none`` returns the element-wise
    loss of shape (N, C, H, W // 2 + 1, 2), the last axis being (real, imaginary).
    Half-precision inputs are transformed in float32.
    """

    def __init__(self, loss_weight: float = 1.0, reduction: str = "mean",
                 norm: str = "backward") -> None:
        super().__init__()
        check_reduction(reduction)
        if norm not in FFT_NORMS:
            raise ArgumentError(f"norm: unknown FFT normalisation {norm!r}; allowed: "
                                    f"{', '.join(FFT_NORMS)}")
        self.loss_weight = loss_weight
        self.reduction = reduction
        self.norm = norm

    def spectrum(self, x: torch.Tensor) -> torch.Tensor:
        """Real and imaginary parts of the 2-D real FFT, stacked on a new last axis."""
        if x.dtype in (torch.float16, torch.bfloat16):
            x = x.float()
        return torch.view_as_real(torch.fft.rfft2(x, dim=(-2, -1), norm=self.norm))

    def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        check_shapes(pred, target, None)
        diff = (self.spectrum(pred) - self.spectrum(target)).abs()
        return self.loss_weight * reduce_loss(diff, self.reduction)
