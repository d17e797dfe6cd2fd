"""EDSR (Lim et al., "Enhanced Deep Residual Networks for Single Image Super-Resolution",
CVPRW 2017).

conv3x3 -> ``num_block`` residual blocks without BN (conv, ReLU, conv, scaled by ``res_scale``)
-> conv3x3 plus a long skip -> sub-pixel upsampler -> conv3x3. The input is centred by
``rgb_mean`` and multiplied by ``img_range`` first, and the output mapped back. Published models:
EDSR-baseline (64 features, 16 blocks) and EDSR (256 features, 32 blocks, ``res_scale`` 0.1).
Options and state_dict keys follow BasicSR (``conv_first``, ``body.<i>.conv1``, ``upsample``,
``conv_last``), whose converted official weights then load as they are.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llcv.archs.layers import ResidualBlockNoBN, Upsample, conv3x3, mean_buffer
from llcv.errors import ArgumentError
from llcv.registry import ARCHS
from llcv.utils import check_int, check_number


def check_channels(num_in_ch: int, num_out_ch: int) -> None:
    """Input and output channels must be equal: the data mean is subtracted and added back."""
    check_int("num_in_ch", num_in_ch)
    check_int("num_out_ch", num_out_ch)
    if num_out_ch != num_in_ch:
        raise ArgumentError(f"num_out_ch: must equal num_in_ch ({num_in_ch}) because the mean "
                            f"subtracted from the input is added back; got {num_out_ch!r}")


@ARCHS.register_module()
class EDSR(nn.Module):
    """EDSR super-resolution network; output is ``upscale`` times the input size (any size)."""

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "num_in_ch", "width_options": ["num_feat"]}

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_block: int = 16, upscale: int = 4, res_scale: float = 1.0,
                 img_range: float = 255.0,
                 rgb_mean: Sequence[float] = (0.4488, 0.4371, 0.4040),
                 device=None, dtype=None) -> None:
        super().__init__()
        check_channels(num_in_ch, num_out_ch)
        check_int("num_feat", num_feat)
        check_int("num_block", num_block, 0)
        check_number("res_scale", res_scale)
        self.img_range = check_number("img_range", img_range)
        kw = {"device": device, "dtype": dtype}
        #: No downsampling: any H and W work as they are.
        self.size_multiple: int = 1
        self.upscale = upscale
        mean_buffer(self, rgb_mean, num_in_ch, **kw)
        self.conv_first = conv3x3(num_in_ch, num_feat, **kw)
        self.body = nn.Sequential(*(ResidualBlockNoBN(num_feat, res_scale, **kw)
                                    for _ in range(num_block)))
        self.conv_after_body = conv3x3(num_feat, num_feat, **kw)
        self.upsample = Upsample(upscale, num_feat, **kw)
        self.conv_last = conv3x3(num_feat, num_out_ch, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale an NCHW batch in [0, 1] (or the range the weights were trained on)."""
        mean = self.mean.to(x.dtype)
        x = self.conv_first((x - mean) * self.img_range)
        x = x + self.conv_after_body(self.body(x))
        return self.conv_last(self.upsample(x)) / self.img_range + mean
