"""RRDBNet, the generator of ESRGAN (Wang et al., ECCVW 2018) and Real-ESRGAN (ICCVW 2021).

conv -> ``num_block`` residual-in-residual dense blocks (each three dense blocks of five convs,
every conv seeing all earlier features, LeakyReLU(0.2); each dense block and each RRDB adds its
output scaled by 0.2 to its input) -> conv plus a long skip -> two (nearest x2, conv, LeakyReLU)
steps -> conv, LeakyReLU -> conv. The body always upsamples x4: ``scale`` 2 and 1 first fold
the input with PixelUnshuffle (by 2 and 4), so H and W are padded to a multiple of that
(``reflect`` by default, as Real-ESRGAN's inference does) and the output cropped back.
Options and state_dict keys follow BasicSR (``body.<i>.rdb1.conv1``, ``conv_body``, ``conv_up1``),
so ESRGAN and Real-ESRGAN weights load.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.layers import (check_padding_mode, check_upscale, conv3x3, pad_to_multiple,
                               scaled_kaiming_init)
from llcv.registry import ARCHS
from llcv.utils import check_int


class ResidualDenseBlock(nn.Module):
    """Five densely connected convs (each fed all earlier outputs); output * 0.2 + input."""

    def __init__(self, num_feat: int = 64, num_grow_ch: int = 32, device=None,
                 dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.conv1 = conv3x3(num_feat, num_grow_ch, **kw)
        self.conv2 = conv3x3(num_feat + num_grow_ch, num_grow_ch, **kw)
        self.conv3 = conv3x3(num_feat + 2 * num_grow_ch, num_grow_ch, **kw)
        self.conv4 = conv3x3(num_feat + 3 * num_grow_ch, num_grow_ch, **kw)
        self.conv5 = conv3x3(num_feat + 4 * num_grow_ch, num_feat, **kw)
        self.lrelu = nn.LeakyReLU(0.2)
        scaled_kaiming_init([self.conv1, self.conv2, self.conv3, self.conv4, self.conv5], 0.1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        features = [x]
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4):
            features.append(self.lrelu(conv(torch.cat(features, 1))))
        return x + self.conv5(torch.cat(features, 1)) * 0.2


class RRDB(nn.Module):
    """Three residual dense blocks in a row; output * 0.2 + input."""

    def __init__(self, num_feat: int, num_grow_ch: int = 32, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.rdb1 = ResidualDenseBlock(num_feat, num_grow_ch, **kw)
        self.rdb2 = ResidualDenseBlock(num_feat, num_grow_ch, **kw)
        self.rdb3 = ResidualDenseBlock(num_feat, num_grow_ch, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.rdb3(self.rdb2(self.rdb1(x))) * 0.2


@ARCHS.register_module()
class RRDBNet(nn.Module):
    """ESRGAN's generator; ``scale`` 4, 2 or 1 (the output is ``scale`` times the input)."""

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "num_in_ch",
               "width_options": ["num_feat", "num_grow_ch"]}

    def __init__(self, num_in_ch: int = 3, num_out_ch: int = 3, scale: int = 4,
                 num_feat: int = 64, num_block: int = 23, num_grow_ch: int = 32,
                 padding_mode: str = "reflect", device=None, dtype=None) -> None:
        super().__init__()
        check_int("num_in_ch", num_in_ch)
        check_int("num_out_ch", num_out_ch)
        check_upscale(scale, (1, 2, 4), arg="scale")
        check_int("num_feat", num_feat)
        check_int("num_block", num_block, 0)
        check_int("num_grow_ch", num_grow_ch)
        kw = {"device": device, "dtype": dtype}
        self.upscale = scale
        #: Folding by PixelUnshuffle needs H and W divisible by it; inputs are padded to it.
        self.size_multiple: int = 4 // scale
        self.padding_mode = check_padding_mode(padding_mode)
        self.conv_first = conv3x3(num_in_ch * self.size_multiple ** 2, num_feat, **kw)
        self.body = nn.Sequential(*(RRDB(num_feat, num_grow_ch, **kw) for _ in range(num_block)))
        self.conv_body = conv3x3(num_feat, num_feat, **kw)
        self.conv_up1 = conv3x3(num_feat, num_feat, **kw)
        self.conv_up2 = conv3x3(num_feat, num_feat, **kw)
        self.conv_hr = conv3x3(num_feat, num_feat, **kw)
        self.conv_last = conv3x3(num_feat, num_out_ch, **kw)
        self.lrelu = nn.LeakyReLU(0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale an NCHW batch of any spatial size."""
        h, w = x.shape[-2:]
        feat = pad_to_multiple(x, self.size_multiple, self.padding_mode)
        if self.size_multiple > 1:
            feat = F.pixel_unshuffle(feat, self.size_multiple)
        feat = self.conv_first(feat)
        feat = feat + self.conv_body(self.body(feat))
        for conv in (self.conv_up1, self.conv_up2):
            feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        out = self.conv_last(self.lrelu(self.conv_hr(feat)))
        return out[..., :h * self.upscale, :w * self.upscale]
