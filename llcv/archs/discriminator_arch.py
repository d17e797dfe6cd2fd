"""Discriminators for adversarial training (``network_d``), with BasicSR's options and keys.

- ``VGGStyleDiscriminator`` (SRGAN/ESRGAN): five (six for 256 inputs) stages of a 3x3 conv and a
  4x4 stride-2 conv with BatchNorm and LeakyReLU(0.2), then two linear layers to one logit per
  image; it takes exactly ``input_size`` x ``input_size`` crops (128 or 256).
- ``UNetDiscriminatorSN`` (Real-ESRGAN): a U-Net of spectrally normalised convs giving one logit
  per pixel (three stride-2 downsamplings, bilinear upsampling with optional additive skips);
  H and W must be multiples of 8.

Option names and ``state_dict`` keys follow BasicSR's ``discriminator_arch.py`` (spectral norm
as ``torch.nn.utils.spectral_norm``: ``weight_orig``, ``weight_u``, ``weight_v``), so released
discriminator weights load. A discriminator maps an image to logits, not to an image: it
declares ``role = "discriminator"`` and no pruning (``network_d`` is never pruned).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import ArgumentError, LLCVError
from llcv.registry import ARCHS
from llcv.utils import check_int

VGG_INPUT_SIZES = (128, 256)
SLOPE = 0.2  # LeakyReLU negative slope of both discriminators


def _check_feat(num_in_ch: int, num_feat: int) -> None:
    """Channel arguments are positive integers."""
    check_int("num_in_ch", num_in_ch)
    check_int("num_feat", num_feat)


@ARCHS.register_module()
class VGGStyleDiscriminator(nn.Module):
    """VGG-style discriminator of SRGAN/ESRGAN: one logit per ``input_size``-square image."""

    role = "discriminator"

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, input_size: int = 128,
                 device=None, dtype=None) -> None:
        super().__init__()
        _check_feat(num_in_ch, num_feat)
        if input_size not in VGG_INPUT_SIZES:
            raise ArgumentError(f"input_size: must be 128 or 256 (the crop the discriminator "
                                f"sees, e.g. datasets.train.gt_size), got {input_size!r}")
        self.input_size = input_size
        kw = {"device": device, "dtype": dtype}
        widths = [num_feat, num_feat * 2, num_feat * 4, num_feat * 8, num_feat * 8]
        if input_size == 256:
            widths.append(num_feat * 8)
        self.conv0_0 = nn.Conv2d(num_in_ch, num_feat, 3, 1, 1, bias=True, **kw)
        self.conv0_1 = nn.Conv2d(num_feat, num_feat, 4, 2, 1, bias=False, **kw)
        self.bn0_1 = nn.BatchNorm2d(num_feat, affine=True, **kw)
        for i in range(1, len(widths)):
            self.add_module(f"conv{i}_0", nn.Conv2d(widths[i - 1], widths[i], 3, 1, 1,
                                                    bias=False, **kw))
            self.add_module(f"bn{i}_0", nn.BatchNorm2d(widths[i], affine=True, **kw))
            self.add_module(f"conv{i}_1", nn.Conv2d(widths[i], widths[i], 4, 2, 1, bias=False,
                                                    **kw))
            self.add_module(f"bn{i}_1", nn.BatchNorm2d(widths[i], affine=True, **kw))
        self.stages = len(widths)
        self.linear1 = nn.Linear(num_feat * 8 * 4 * 4, 100, **kw)
        self.linear2 = nn.Linear(100, 1, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1) of an (N, C, input_size, input_size) batch."""
        if tuple(x.shape[-2:]) != (self.input_size, self.input_size):
            raise LLCVError(f"network_d: VGGStyleDiscriminator takes {self.input_size}x"
                            f"{self.input_size} images, got {tuple(x.shape[-2:])}; set "
                            f"network_d.input_size to the training crop (gt_size)")
        feat = F.leaky_relu(self.conv0_0(x), SLOPE)
        feat = F.leaky_relu(self.bn0_1(self.conv0_1(feat)), SLOPE)
        for i in range(1, self.stages):
            feat = F.leaky_relu(getattr(self, f"bn{i}_0")(getattr(self, f"conv{i}_0")(feat)), SLOPE)
            feat = F.leaky_relu(getattr(self, f"bn{i}_1")(getattr(self, f"conv{i}_1")(feat)), SLOPE)
        feat = F.leaky_relu(self.linear1(feat.flatten(1)), SLOPE)
        return self.linear2(feat)


@ARCHS.register_module()
class UNetDiscriminatorSN(nn.Module):
    """Real-ESRGAN's U-Net discriminator with spectral norm: one logit per pixel."""

    role = "discriminator"
    #: H and W must be multiples of this (three stride-2 convs, then upsampling back).
    size_multiple = 8

    def __init__(self, num_in_ch: int = 3, num_feat: int = 64, skip_connection: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        _check_feat(num_in_ch, num_feat)
        if not isinstance(skip_connection, bool):
            raise ArgumentError(f"skip_connection: expected true or false, got "
                                f"{skip_connection!r}")
        self.skip_connection = skip_connection
        kw = {"device": device, "dtype": dtype}

        def sn_conv(cin: int, cout: int, kernel: int, stride: int) -> nn.Module:
            conv = nn.Conv2d(cin, cout, kernel, stride, 1, bias=False, **kw)
            return nn.utils.spectral_norm(conv)

        f = num_feat
        self.conv0 = nn.Conv2d(num_in_ch, f, 3, 1, 1, **kw)
        self.conv1 = sn_conv(f, f * 2, 4, 2)
        self.conv2 = sn_conv(f * 2, f * 4, 4, 2)
        self.conv3 = sn_conv(f * 4, f * 8, 4, 2)
        self.conv4 = sn_conv(f * 8, f * 4, 3, 1)
        self.conv5 = sn_conv(f * 4, f * 2, 3, 1)
        self.conv6 = sn_conv(f * 2, f, 3, 1)
        self.conv7 = sn_conv(f, f, 3, 1)
        self.conv8 = sn_conv(f, f, 3, 1)
        self.conv9 = nn.Conv2d(f, 1, 3, 1, 1, **kw)

    def _up(self, x: torch.Tensor, conv: nn.Module, skip: torch.Tensor) -> torch.Tensor:
        """Bilinear x2, conv + LeakyReLU, plus the encoder feature when skips are on."""
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        x = F.leaky_relu(conv(x), SLOPE)
        return x + skip if self.skip_connection else x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits (N, 1, H, W) of an (N, C, H, W) batch, H and W multiples of 8."""
        if x.shape[-2] % self.size_multiple or x.shape[-1] % self.size_multiple:
            raise LLCVError(f"network_d: UNetDiscriminatorSN takes H and W that are multiples "
                            f"of {self.size_multiple}, got {tuple(x.shape[-2:])}; use a "
                            f"training crop (gt_size) that is")
        x0 = F.leaky_relu(self.conv0(x), SLOPE)
        x1 = F.leaky_relu(self.conv1(x0), SLOPE)
        x2 = F.leaky_relu(self.conv2(x1), SLOPE)
        x3 = F.leaky_relu(self.conv3(x2), SLOPE)
        x4 = self._up(x3, self.conv4, x2)
        x5 = self._up(x4, self.conv5, x1)
        x6 = self._up(x5, self.conv6, x0)
        out = F.leaky_relu(self.conv7(x6), SLOPE)
        out = F.leaky_relu(self.conv8(out), SLOPE)
        return self.conv9(out)
