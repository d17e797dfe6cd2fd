"""NAFNet (Chen et al., "Simple Baselines for Image Restoration", ECCV 2022).

A UNet of NAFBlocks: every block is LayerNorm -> 1x1 expand -> 3x3 depthwise -> SimpleGate ->
simplified channel attention -> 1x1, plus a SimpleGate feed-forward, each branch added back with
a learned per-channel scale (initialised to zero). Downsampling is a 2x2 stride-2 conv doubling the
channels, upsampling a 1x1 conv + PixelShuffle halving them; skips are added, not concatenated.
Option and attribute names follow the published code, so its option files and state_dicts fit.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.layers import check_padding_mode, pad_to_multiple
from llcv.errors import ArgumentError
from llcv.registry import ARCHS
from llcv.utils import check_int, check_int_list


class LayerNorm2d(nn.Module):
    """LayerNorm over the channels of each pixel of an NCHW tensor, with affine weight and bias."""

    def __init__(self, channels: int, eps: float = 1e-6, device=None, dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(channels, device=device, dtype=dtype))
        self.bias = nn.Parameter(torch.zeros(channels, device=device, dtype=dtype))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.layer_norm(x.permute(0, 2, 3, 1), x.shape[1:2], self.weight, self.bias, self.eps)
        return x.permute(0, 3, 1, 2)


class SimpleGate(nn.Module):
    """Split the channels in two halves and multiply them: a nonlinearity without activation."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a, b = x.chunk(2, dim=1)
        return a * b


class NAFBlock(nn.Module):
    """Nonlinear-activation-free block: gated depthwise-conv branch and gated FFN, both residual."""

    def __init__(self, c: int, dw_expand: int = 2, ffn_expand: int = 2, drop_out_rate: float = 0.0,
                 device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        dw, ffn = c * dw_expand, c * ffn_expand
        self.conv1 = nn.Conv2d(c, dw, 1, **kw)
        self.conv2 = nn.Conv2d(dw, dw, 3, padding=1, groups=dw, **kw)
        self.conv3 = nn.Conv2d(dw // 2, c, 1, **kw)
        # Simplified channel attention: global average pool, then a 1x1 conv (no activation).
        self.sca = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Conv2d(dw // 2, dw // 2, 1, **kw))
        self.sg = SimpleGate()
        self.conv4 = nn.Conv2d(c, ffn, 1, **kw)
        self.conv5 = nn.Conv2d(ffn // 2, c, 1, **kw)
        self.norm1 = LayerNorm2d(c, **kw)
        self.norm2 = LayerNorm2d(c, **kw)
        self.dropout1 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.dropout2 = nn.Dropout(drop_out_rate) if drop_out_rate > 0 else nn.Identity()
        self.beta = nn.Parameter(torch.zeros(1, c, 1, 1, **kw))
        self.gamma = nn.Parameter(torch.zeros(1, c, 1, 1, **kw))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        x = self.sg(self.conv2(self.conv1(self.norm1(inp))))
        x = self.dropout1(self.conv3(x * self.sca(x)))
        y = inp + x * self.beta
        x = self.dropout2(self.conv5(self.sg(self.conv4(self.norm2(y)))))
        return y + x * self.gamma


def _check_block_nums(name: str, nums: Sequence[int]) -> None:
    """Fail naming ``name`` unless ``nums`` is a list of non-negative ints."""
    if isinstance(nums, (str, bytes)) or not isinstance(nums, Sequence):
        raise ArgumentError(f"{name}: expected a list of block counts, got {nums!r}")
    if nums:
        check_int_list(name, nums, 0)


def _check_args(img_channel: int, width: int, middle_blk_num: int,
                enc_blk_nums: Sequence[int], dec_blk_nums: Sequence[int]) -> None:
    """Validate NAFNet's options with messages starting with the option name."""
    for name, value, low in (("img_channel", img_channel, 1), ("width", width, 1),
                             ("middle_blk_num", middle_blk_num, 0)):
        check_int(name, value, low)
    _check_block_nums("enc_blk_nums", enc_blk_nums)
    _check_block_nums("dec_blk_nums", dec_blk_nums)
    if len(enc_blk_nums) != len(dec_blk_nums):
        raise ArgumentError(
            f"dec_blk_nums: needs one entry per encoder level, i.e. {len(enc_blk_nums)} like "
            f"enc_blk_nums={list(enc_blk_nums)}; got {list(dec_blk_nums)}")


@ARCHS.register_module()
class NAFNet(nn.Module):
    """NAFNet image restoration UNet; any input size (padded to ``size_multiple``, cropped back).

    Defaults are the published SIDD model NAFNet-width32 (29,159,715 parameters).
    """

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "img_channel", "width_options": ["width"]}

    def __init__(self, img_channel: int = 3, width: int = 32, middle_blk_num: int = 12,
                 enc_blk_nums: Sequence[int] = (2, 2, 4, 8),
                 dec_blk_nums: Sequence[int] = (2, 2, 2, 2), padding_mode: str = "replicate",
                 device=None, dtype=None) -> None:
        super().__init__()
        _check_args(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums)
        #: How H, W are padded to ``size_multiple``: ``zeros`` is the reference code's.
        self.padding_mode = check_padding_mode(padding_mode)
        kw = {"device": device, "dtype": dtype}
        #: H and W are padded to a multiple of this; tiled inference should use tile sizes of it.
        self.size_multiple: int = 2 ** len(enc_blk_nums)
        self.intro = nn.Conv2d(img_channel, width, 3, padding=1, **kw)
        self.ending = nn.Conv2d(width, img_channel, 3, padding=1, **kw)
        self.encoders, self.downs = nn.ModuleList(), nn.ModuleList()
        self.decoders, self.ups = nn.ModuleList(), nn.ModuleList()
        chan = width
        for num in enc_blk_nums:
            self.encoders.append(nn.Sequential(*(NAFBlock(chan, **kw) for _ in range(num))))
            self.downs.append(nn.Conv2d(chan, 2 * chan, 2, stride=2, **kw))
            chan *= 2
        self.middle_blks = nn.Sequential(*(NAFBlock(chan, **kw) for _ in range(middle_blk_num)))
        for num in dec_blk_nums:
            self.ups.append(nn.Sequential(nn.Conv2d(chan, 2 * chan, 1, bias=False, **kw),
                                          nn.PixelShuffle(2)))
            chan //= 2
            self.decoders.append(nn.Sequential(*(NAFBlock(chan, **kw) for _ in range(num))))

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        """Restore an NCHW image batch of any spatial size."""
        h, w = inp.shape[-2:]
        x = self.intro(pad_to_multiple(inp, self.size_multiple, self.padding_mode))
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x)
            x = down(x)
        x = self.middle_blks(x)
        for decoder, up, skip in zip(self.decoders, self.ups, reversed(skips)):
            x = decoder(up(x) + skip)
        return inp + self.ending(x)[..., :h, :w]
