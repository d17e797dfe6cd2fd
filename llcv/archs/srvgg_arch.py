"""SRVGGNetCompact, Real-ESRGAN's compact network (Wang et al., ICCVW 2021, "realesr-general"
and "animevideo" models).

A plain VGG-style stack at LR resolution: conv + activation, ``num_conv`` x (conv + activation),
a conv to ``num_out_ch * upscale^2`` channels and PixelShuffle, plus the input upsampled by
nearest neighbour. No skip inside, so it runs fast and reparameterizes nothing. Options and
state_dict keys (``body.<i>``, activations counted as layers) follow Real-ESRGAN's
``srvgg_arch.py``, so its released weights load.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.layers import check_upscale, conv3x3
from llcv.errors import ArgumentError
from llcv.registry import ARCHS
from llcv.utils import check_int

ACT_TYPES: tuple[str, ...] = ("relu", "prelu", "leakyrelu")


def _activation(act_type: str, num_feat: int, device=None, dtype=None) -> nn.Module:
    """Real-ESRGAN's choices: ReLU, PReLU with one slope per channel, LeakyReLU(0.1)."""
    if act_type == "prelu":
        return nn.PReLU(num_feat, device=device, dtype=dtype)
    return nn.ReLU() if act_type == "relu" else nn.LeakyReLU(0.1)


@ARCHS.register_module()
class SRVGGNetCompact(nn.Module):
    """Compact VGG-style SR network; output is ``upscale`` times the input (any size)."""

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "num_in_ch", "width_options": ["num_feat"]}

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, num_feat: int = 64,
                 num_conv: int = 16, upscale: int = 4, act_type: str = "prelu",
                 device=None, dtype=None) -> None:
        super().__init__()
        check_int("num_in_ch", num_in_ch)
        check_int("num_out_ch", num_out_ch)
        if num_out_ch != num_in_ch:
            raise ArgumentError(f"num_out_ch: must equal num_in_ch ({num_in_ch}) because the "
                                f"upsampled input is added to the output; got {num_out_ch!r}")
        check_int("num_feat", num_feat)
        check_int("num_conv", num_conv, 0)
        check_upscale(upscale)
        if act_type not in ACT_TYPES:
            raise ArgumentError(f"act_type: unknown activation {act_type!r}; allowed: "
                                f"{', '.join(ACT_TYPES)}")
        kw = {"device": device, "dtype": dtype}
        #: No downsampling: any H and W work as they are.
        self.size_multiple: int = 1
        self.upscale = upscale
        layers: list[nn.Module] = [conv3x3(num_in_ch, num_feat, **kw),
                                   _activation(act_type, num_feat, **kw)]
        for _ in range(num_conv):
            layers += [conv3x3(num_feat, num_feat, **kw), _activation(act_type, num_feat, **kw)]
        layers.append(conv3x3(num_feat, num_out_ch * upscale * upscale, **kw))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(upscale)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale an NCHW batch of any spatial size."""
        base = F.interpolate(x, scale_factor=self.upscale, mode="nearest")
        return self.upsampler(self.body(x)) + base
