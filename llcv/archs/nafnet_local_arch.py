"""NAFNetLocal: NAFNet with test-time local statistics (Chu et al., "Improving Image Restoration
by Revisiting Global Information Aggregation", ECCV 2022 — TLC), as in NAFNet's GoPro/REDS files.

NAFNet's channel attention pools each feature map globally. Trained on crops of ``train_size``,
it sees statistics of a crop, not of a whole 720p frame; TLC replaces the global pooling by an
average over a local window 1.5 times the training crop (at each level's resolution), so at
test time every pixel's statistics come from a crop-sized neighbourhood. At or below 1.5 times
the training size the window covers the map and the result equals NAFNet's. Same weights and
state_dict keys as NAFNet.
"""
from __future__ import annotations

from typing import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.nafnet_arch import NAFNet
from llcv.registry import ARCHS
from llcv.utils import check_int_list


class LocalAvgPool2d(nn.Module):
    """Mean over a ``kernel_size`` window around each pixel (edge-replicated to the input size);
    the global mean when the window covers the whole map."""

    def __init__(self, kernel_size: tuple[int, int]) -> None:
        super().__init__()
        self.kernel_size = kernel_size

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        if self.kernel_size[0] >= h and self.kernel_size[1] >= w:
            return F.adaptive_avg_pool2d(x, 1)
        k1, k2 = min(h, self.kernel_size[0]), min(w, self.kernel_size[1])
        # Window sums from an integral image (zero row/column in front): O(1) per pixel.
        s = F.pad(x.cumsum(dim=-1).cumsum(dim=-2), (1, 0, 1, 0))
        out = (s[..., k1:, k2:] + s[..., :-k1, :-k2] - s[..., :-k1, k2:] - s[..., k1:, :-k2])
        out = out / (k1 * k2)
        dh, dw = h - out.shape[-2], w - out.shape[-1]
        return F.pad(out, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")


@ARCHS.register_module()
class NAFNetLocal(NAFNet):
    """NAFNet whose channel attention averages over windows of 1.5 x ``train_size``.

    ``train_size`` is ``[N, C, H, W]`` of the training crops (NAFNet's option; N and C unused).
    Padding defaults to ``zeros``, as NAFNet's reference code pads.
    """

    def __init__(self, img_channel: int = 3, width: int = 32, middle_blk_num: int = 12,
                 enc_blk_nums: Sequence[int] = (2, 2, 4, 8),
                 dec_blk_nums: Sequence[int] = (2, 2, 2, 2),
                 train_size: Sequence[int] = (1, 3, 256, 256), padding_mode: str = "zeros",
                 device=None, dtype=None) -> None:
        super().__init__(img_channel, width, middle_blk_num, enc_blk_nums, dec_blk_nums,
                         padding_mode, device, dtype)
        check_int_list("train_size", train_size, 1, length=4)
        self.train_size = list(train_size)
        depth = len(self.encoders)
        levels = list(enumerate(self.encoders)) + [(depth, self.middle_blks)] + \
            [(depth - 1 - i, stage) for i, stage in enumerate(self.decoders)]
        for level, stage in levels:
            for block in stage:
                block.sca[0] = LocalAvgPool2d(self.window_at_level(level))

    def window_at_level(self, level: int) -> tuple[int, int]:
        """The pooling window at ``level`` (0 = full resolution), as NAFNet's reference derives
        it: the level's size for a training crop (padded) times 1.5 x crop / crop, rounded down."""
        m = self.size_multiple
        crop = self.train_size[2:]
        sizes = [-(-side // m) * m >> level for side in crop]
        return tuple(size * int(side * 1.5) // side for size, side in zip(sizes, crop))
