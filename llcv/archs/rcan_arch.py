"""RCAN (Zhang et al., "Image Super-Resolution Using Very Deep Residual Channel Attention
Networks", ECCV 2018).

Residual in residual: ``num_group`` residual groups, each ``num_block`` residual channel-attention
blocks (conv, ReLU, conv, then channel attention: global average pool, 1x1 squeeze by
``squeeze_factor``, ReLU, 1x1 excite, sigmoid, multiply) and a conv, with a skip around every
block, every group and the whole body; then the sub-pixel upsampler of EDSR. The published model
has 10 groups of 20 blocks at 64 features. Options and state_dict keys follow BasicSR
(``body.<g>.residual_group.<b>.rcab.<i>``, ``body.<g>.conv``), so its converted weights load.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llcv.archs.edsr_arch import check_channels
from llcv.archs.layers import Upsample, conv3x3, mean_buffer
from llcv.registry import ARCHS
from llcv.utils import check_int, check_number


class ChannelAttention(nn.Module):
    """Squeeze-and-excitation: rescale each channel by a gate computed from its global mean."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        squeezed = max(1, num_feat // squeeze_factor)
        self.attention = nn.Sequential(
            nn.AdaptiveAvgPool2d(1), nn.Conv2d(num_feat, squeezed, 1, **kw), nn.ReLU(),
            nn.Conv2d(squeezed, num_feat, 1, **kw), nn.Sigmoid())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.attention(x)


class RCAB(nn.Module):
    """Residual channel-attention block: conv, ReLU, conv, channel attention, scaled skip."""

    def __init__(self, num_feat: int, squeeze_factor: int = 16, res_scale: float = 1.0,
                 device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.res_scale = res_scale
        self.rcab = nn.Sequential(conv3x3(num_feat, num_feat, **kw), nn.ReLU(),
                                  conv3x3(num_feat, num_feat, **kw),
                                  ChannelAttention(num_feat, squeeze_factor, **kw))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.rcab(x) * self.res_scale


class ResidualGroup(nn.Module):
    """``num_block`` RCABs and a conv, with a skip around them."""

    def __init__(self, num_feat: int, num_block: int, squeeze_factor: int = 16,
                 res_scale: float = 1.0, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.residual_group = nn.Sequential(*(RCAB(num_feat, squeeze_factor, res_scale, **kw)
                                              for _ in range(num_block)))
        self.conv = conv3x3(num_feat, num_feat, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv(self.residual_group(x))


@ARCHS.register_module()
class RCAN(nn.Module):
    """RCAN super-resolution network; output is ``upscale`` times the input size (any size).

    Defaults are BasicSR's; the published RCAN sets ``num_block: 20``.
    """

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "num_in_ch", "width_options": ["num_feat"]}

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_group: int = 10, num_block: int = 16, squeeze_factor: int = 16,
                 upscale: int = 4, res_scale: float = 1.0, img_range: float = 255.0,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040),
                 device=None, dtype=None) -> None:
        super().__init__()
        check_channels(num_in_ch, num_out_ch)
        check_int("num_feat", num_feat)
        check_int("num_group", num_group, 0)
        check_int("num_block", num_block, 0)
        check_int("squeeze_factor", squeeze_factor)
        check_number("res_scale", res_scale)
        self.img_range = check_number("img_range", img_range)
        kw = {"device": device, "dtype": dtype}
        #: No downsampling: any H and W work as they are.
        self.size_multiple: int = 1
        self.upscale = upscale
        mean_buffer(self, rgb_mean, num_in_ch, **kw)
        self.conv_first = conv3x3(num_in_ch, num_feat, **kw)
        self.body = nn.Sequential(*(
            ResidualGroup(num_feat, num_block, squeeze_factor, res_scale, **kw)
            for _ in range(num_group)))
        self.conv_after_body = conv3x3(num_feat, num_feat, **kw)
        self.upsample = Upsample(upscale, num_feat, **kw)
        self.conv_last = conv3x3(num_feat, num_out_ch, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale an NCHW batch in [0, 1] (or the range the weights were trained on)."""
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * self.img_range)
        x = x + self.conv_after_body(self.body(x))
        return self.conv_last(self.upsample(x)) / self.img_range + mean
