"""A reparameterizable plain network (RepVGG / RepSR / ECBSR family) for restoration and SR.

Training-time ``RepBlock``: 3x3 conv + BN, 1x1 conv + BN and (when the shapes allow) an identity
BN, summed. All three are linear in eval mode, so ``reparameterize()`` folds each block into one
3x3 conv with bias: the deployed network is a VGG-style stack of 3x3 convs and activations
(+ PixelShuffle when ``upscale > 1``), with the outputs of the eval-mode training network.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.layers import check_activation, make_activation
from llcv.registry import ARCHS
from llcv.utils import check_int


def _conv_bn(in_ch: int, out_ch: int, kernel_size: int, device=None, dtype=None) -> nn.Sequential:
    """A bias-free 'same' conv followed by BN."""
    return nn.Sequential(
        nn.Conv2d(in_ch, out_ch, kernel_size, padding=kernel_size // 2, bias=False,
                  device=device, dtype=dtype),
        nn.BatchNorm2d(out_ch, device=device, dtype=dtype))


def fold_bn(kernel: torch.Tensor, bn: nn.BatchNorm2d) -> tuple[torch.Tensor, torch.Tensor]:
    """Kernel and bias of the conv equal to ``bn(conv(x, kernel))`` with BN's running stats."""
    scale = bn.weight / torch.sqrt(bn.running_var + bn.eps)
    return kernel * scale.reshape(-1, 1, 1, 1), bn.bias - bn.running_mean * scale


class RepBlock(nn.Module):
    """3x3+BN, 1x1+BN and identity-BN branches, summed; ``reparameterize()`` fuses them in place.

    The identity branch exists only when ``in_ch == out_ch``. With ``deploy=True`` the block is
    built already fused (one 3x3 conv with bias), e.g. to load a reparameterized checkpoint.
    """

    def __init__(self, in_ch: int, out_ch: int, deploy: bool = False, device=None,
                 dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.deploy = deploy
        if deploy:
            self.fused = nn.Conv2d(in_ch, out_ch, 3, padding=1, **kw)
            return
        self.branch3x3 = _conv_bn(in_ch, out_ch, 3, **kw)
        self.branch1x1 = _conv_bn(in_ch, out_ch, 1, **kw)
        self.branch_identity = nn.BatchNorm2d(in_ch, **kw) if in_ch == out_ch else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.deploy:
            return self.fused(x)
        out = self.branch3x3(x) + self.branch1x1(x)
        return out if self.branch_identity is None else out + self.branch_identity(x)

    @torch.no_grad()
    def fused_kernel_bias(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The 3x3 kernel and bias of the single conv equivalent to this block in eval mode."""
        if self.deploy:
            return self.fused.weight.detach().clone(), self.fused.bias.detach().clone()
        kernel, bias = fold_bn(self.branch3x3[0].weight, self.branch3x3[1])
        k1, b1 = fold_bn(self.branch1x1[0].weight, self.branch1x1[1])
        kernel, bias = kernel + F.pad(k1, (1, 1, 1, 1)), bias + b1
        if self.branch_identity is not None:
            eye = torch.zeros_like(kernel)  # in == out channels (read from the weights)
            channels = torch.arange(kernel.shape[0])
            eye[channels, channels, 1, 1] = 1.0
            k_id, b_id = fold_bn(eye, self.branch_identity)
            kernel, bias = kernel + k_id, bias + b_id
        return kernel, bias

    def reparameterize(self) -> None:
        """Replace the branches by one 3x3 conv with the same eval-mode output (idempotent)."""
        if self.deploy:
            return
        kernel, bias = self.fused_kernel_bias()
        self.fused = nn.Conv2d(kernel.shape[1], kernel.shape[0], 3, padding=1,
                               device=kernel.device, dtype=kernel.dtype)
        with torch.no_grad():
            self.fused.weight.copy_(kernel)
            self.fused.bias.copy_(bias)
        del self.branch3x3, self.branch1x1, self.branch_identity
        self.deploy = True


def _check_args(in_ch: int, features: int, num_blocks: int, upscale: int, act: str) -> None:
    """Validate RepPlainNet's options with messages starting with the option name."""
    for name, value, low in (("in_ch", in_ch, 1), ("features", features, 1),
                             ("num_blocks", num_blocks, 0), ("upscale", upscale, 1)):
        check_int(name, value, low)
    check_activation(act)


@ARCHS.register_module()
class RepPlainNet(nn.Module):
    """Plain stack of RepBlocks with a global residual; ``upscale > 1`` makes it an SR network.

    Layout: RepBlock ``in_ch -> features`` + act, ``num_blocks`` x (RepBlock + act), RepBlock
    ``features -> in_ch * upscale^2``, PixelShuffle, plus the (nearest-upsampled) input.
    Call ``reparameterize()`` after training (or build with ``deploy: true`` to load such weights).
    """

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "in_ch", "width_options": ["features"]}

    def __init__(self, in_ch: int = 3, features: int = 32, num_blocks: int = 8, upscale: int = 1,
                 act: str = "relu", deploy: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        _check_args(in_ch, features, num_blocks, upscale, act)
        kw = {"deploy": deploy, "device": device, "dtype": dtype}
        #: No downsampling: any H and W work as they are.
        self.size_multiple: int = 1
        self.upscale = upscale
        layers: list[nn.Module] = [RepBlock(in_ch, features, **kw), make_activation(act)]
        for _ in range(num_blocks):
            layers += [RepBlock(features, features, **kw), make_activation(act)]
        layers.append(RepBlock(features, in_ch * upscale ** 2, **kw))
        self.body = nn.Sequential(*layers)
        self.upsampler = nn.PixelShuffle(upscale) if upscale > 1 else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore (or upscale) an NCHW batch of any spatial size."""
        base = x if self.upscale == 1 else F.interpolate(x, scale_factor=self.upscale,
                                                         mode="nearest")
        return base + self.upsampler(self.body(x))

    def reparameterize(self) -> "RepPlainNet":
        """Fold every RepBlock into a single 3x3 conv, in place; returns ``self``."""
        for module in self.modules():
            if isinstance(module, RepBlock):
                module.reparameterize()
        return self

    @property
    def deployed(self) -> bool:
        """True once every block is a single 3x3 conv."""
        return all(m.deploy for m in self.modules() if isinstance(m, RepBlock))
