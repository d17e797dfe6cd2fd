"""DnCNN (Zhang et al., "Beyond a Gaussian Denoiser: Residual Learning of Deep CNN for Image
Denoising", TIP 2017).

``depth`` 3x3 conv layers at ``features`` channels and full resolution: conv + ReLU, then
``depth - 2`` x (conv + BN + ReLU), then a conv back to the image channels. With residual learning
the network predicts the noise and the output is ``input - noise``. The paper's models: DnCNN-S
(grayscale, known noise level) depth 17, DnCNN-B / CDnCNN-B (blind) depth 20, all 64 features.
Convs followed by BN carry no bias (BN's shift replaces it).
"""
from __future__ import annotations

import torch
from torch import nn

from llcv.registry import ARCHS
from llcv.utils import check_int


def _check_args(in_ch: int, depth: int, features: int) -> None:
    """Validate DnCNN's options with messages starting with the option name."""
    for name, value, low in (("in_ch", in_ch, 1), ("depth", depth, 2), ("features", features, 1)):
        check_int(name, value, low)


@ARCHS.register_module()
class DnCNN(nn.Module):
    """Plain full-resolution conv denoiser; ``residual`` makes it predict the noise to subtract."""

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "in_ch", "width_options": ["features"]}

    def __init__(self, in_ch: int = 1, depth: int = 17, features: int = 64, use_bn: bool = True,
                 residual: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        _check_args(in_ch, depth, features)
        kw = {"device": device, "dtype": dtype}
        #: No downsampling: any H and W work as they are.
        self.size_multiple: int = 1
        self.residual = residual
        layers: list[nn.Module] = [nn.Conv2d(in_ch, features, 3, padding=1, **kw), nn.ReLU()]
        for _ in range(depth - 2):
            layers.append(nn.Conv2d(features, features, 3, padding=1, bias=not use_bn, **kw))
            if use_bn:
                layers.append(nn.BatchNorm2d(features, **kw))
            layers.append(nn.ReLU())
        layers.append(nn.Conv2d(features, in_ch, 3, padding=1, **kw))
        self.body = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Denoise an NCHW batch of any spatial size."""
        out = self.body(x)
        return x - out if self.residual else out
