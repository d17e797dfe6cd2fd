"""MSRResNet: SRResNet (Ledig et al., CVPR 2017) modified by Wang et al. (ESRGAN, ECCVW 2018).

conv + LeakyReLU(0.1) -> ``num_block`` residual blocks without BN -> sub-pixel upsampling
(x4: two conv + PixelShuffle(2) steps; x2/x3: one) -> conv + LeakyReLU -> conv, plus the input
upsampled bilinearly. Convs start from Kaiming-normal weights scaled by 0.1, as in BasicSR.
It is the baseline of the AIM 2020 / NTIRE 2022 efficient SR challenges (x4, 1,517,571
parameters). Options and state_dict keys follow BasicSR (``conv_first``, ``body``, ``upconv1``,
``upconv2``, ``conv_hr``, ``conv_last``).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.edsr_arch import check_channels
from llcv.archs.layers import ResidualBlockNoBN, check_upscale, conv3x3, scaled_kaiming_init
from llcv.registry import ARCHS
from llcv.utils import check_int


@ARCHS.register_module()
class MSRResNet(nn.Module):
    """MSRResNet super-resolution network (x2, x3 or x4; any input size)."""

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "num_in_ch", "width_options": ["num_feat"]}

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_block: int = 16, upscale: int = 4, device=None, dtype=None) -> None:
        super().__init__()
        check_channels(num_in_ch, num_out_ch)
        check_int("num_feat", num_feat)
        check_int("num_block", num_block, 0)
        check_upscale(upscale, (2, 3, 4))
        kw = {"device": device, "dtype": dtype}
        #: No downsampling: any H and W work as they are.
        self.size_multiple: int = 1
        self.upscale = upscale
        self.conv_first = conv3x3(num_in_ch, num_feat, **kw)
        self.body = nn.Sequential(*(ResidualBlockNoBN(num_feat, **kw) for _ in range(num_block)))
        factor = 2 if upscale == 4 else upscale
        self.upconv1 = nn.Conv2d(num_feat, num_feat * factor * factor, 3, padding=1, **kw)
        if upscale == 4:
            self.upconv2 = nn.Conv2d(num_feat, num_feat * 4, 3, padding=1, **kw)
        self.pixel_shuffle = nn.PixelShuffle(factor)
        self.conv_hr = conv3x3(num_feat, num_feat, **kw)
        self.conv_last = conv3x3(num_feat, num_out_ch, **kw)
        self.lrelu = nn.LeakyReLU(0.1)
        scaled_kaiming_init(self.children(), 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale an NCHW batch of any spatial size."""
        out = self.body(self.lrelu(self.conv_first(x)))
        out = self.lrelu(self.pixel_shuffle(self.upconv1(out)))
        if self.upscale == 4:
            out = self.lrelu(self.pixel_shuffle(self.upconv2(out)))
        out = self.conv_last(self.lrelu(self.conv_hr(out)))
        base = F.interpolate(x, scale_factor=self.upscale, mode="bilinear", align_corners=False)
        return out + base
