"""A plain Conv-activation UNet with a global residual: the base model that llcv prunes.

Layout for ``widths=(w0, ..., wn)`` and ``blocks=(b0, ..., bn)``:
encoder stage i = ``b_i`` x (conv3x3 + act) at ``w_i``, then a 2x2 stride-2 conv ``w_i -> w_{i+1}``
(no activation; a 2x2 kernel halves even sizes exactly and touches every pixel once); the last stage
is the bottleneck; decoder stage i = ConvTranspose2d(k=2, s=2) ``w_{i+1} -> w_i``, ``torch.cat``
with the encoder skip, then ``b_i`` x (conv3x3 + act), the first mapping ``2 w_i -> w_i``; a final
conv3x3 maps ``w0`` back to the image channels and is added to the input.

Only standard modules and ``torch.cat`` are used, and forward reads no cached channel counts, so
``llcv.pruners`` traces and prunes it (the final conv, tied to the input by the residual, keeps its
width). ``skip_compactors=True`` adds MOSP's compactors: an identity-initialised 1x1 conv on each
long skip, so the skip keeps only the channels its compactor keeps (the memory-aware pruner
prunes them apart from the encoder's) while the full encoder feature is freed after downsampling.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import nn

from llcv.archs.layers import (check_activation, check_padding_mode, conv3x3, conv_act_stack,
                               pad_to_multiple)
from llcv.errors import ArgumentError
from llcv.registry import ARCHS
from llcv.utils import check_int, check_int_list


def _check_args(in_ch: int, out_ch: int | None, widths: Sequence[int], blocks: Sequence[int],
                act: str) -> None:
    """Validate the UNet constructor arguments with messages starting with the argument name."""
    check_int("in_ch", in_ch)
    if out_ch is not None and out_ch != in_ch:
        raise ArgumentError(f"out_ch: must equal in_ch ({in_ch}) because the output is "
                                f"input + residual; got {out_ch!r} (leave it unset)")
    check_int_list("widths", widths)
    check_int_list("blocks", blocks)
    if len(widths) != len(blocks):
        raise ArgumentError(f"blocks: needs one entry per stage, i.e. {len(widths)} like "
                                f"widths={list(widths)}; got {list(blocks)}")
    check_activation(act)


def _identity_conv1x1(channels: int, device=None, dtype=None) -> nn.Conv2d:
    """A 1x1 conv initialised to the identity (a compactor: it changes nothing until pruned)."""
    conv = nn.Conv2d(channels, channels, 1, device=device, dtype=dtype)
    nn.init.dirac_(conv.weight)
    nn.init.zeros_(conv.bias)
    return conv


@ARCHS.register_module()
class UNet(nn.Module):
    """Plain Conv-activation UNet predicting a residual; takes any input size (pads, then crops)."""

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "in_ch", "width_options": ["widths"],
               "compactors": "skip_compactors"}

    def __init__(self, in_ch: int = 3, out_ch: int | None = None,
                 widths: Sequence[int] = (32, 64, 128, 256), blocks: Sequence[int] = (2, 2, 2, 2),
                 act: str = "relu", padding_mode: str = "replicate",
                 skip_compactors: bool = False, device=None, dtype=None) -> None:
        super().__init__()
        _check_args(in_ch, out_ch, widths, blocks, act)
        if not isinstance(skip_compactors, bool):
            raise ArgumentError(f"skip_compactors: expected true or false, got {skip_compactors!r}")
        #: How H, W are padded to ``size_multiple`` (``replicate``, ``zeros``, ``reflect``).
        self.padding_mode = check_padding_mode(padding_mode)
        kw = {"device": device, "dtype": dtype}
        depth = len(widths)
        #: H and W are padded to a multiple of this; tiled inference should use tile sizes of it.
        self.size_multiple: int = 2 ** (depth - 1)
        self.encoders = nn.ModuleList(
            conv_act_stack(in_ch if i == 0 else widths[i], widths[i], blocks[i], act, **kw)
            for i in range(depth - 1))
        self.downs = nn.ModuleList(
            nn.Conv2d(widths[i], widths[i + 1], 2, stride=2, **kw) for i in range(depth - 1))
        self.bottleneck = conv_act_stack(in_ch if depth == 1 else widths[-1], widths[-1],
                                         blocks[-1], act, **kw)
        self.ups = nn.ModuleList(
            nn.ConvTranspose2d(widths[i + 1], widths[i], 2, stride=2, **kw)
            for i in range(depth - 1))
        self.decoders = nn.ModuleList(
            conv_act_stack(2 * widths[i], widths[i], blocks[i], act, **kw)
            for i in range(depth - 1))
        self.tail = conv3x3(widths[0], in_ch, **kw)
        self.compactors = nn.ModuleList(_identity_conv1x1(widths[i], **kw)
                                        for i in range(depth - 1)) if skip_compactors else None

    def body(self, x: torch.Tensor) -> torch.Tensor:
        """The residual for an input whose H and W are multiples of ``size_multiple``."""
        skips = []
        for encoder, down in zip(self.encoders, self.downs):
            x = encoder(x)
            skips.append(x if self.compactors is None else self.compactors[len(skips)](x))
            x = down(x)
        x = self.bottleneck(x)
        for up, decoder, skip in zip(reversed(self.ups), reversed(self.decoders), reversed(skips)):
            x = decoder(torch.cat([up(x), skip], dim=1))
        return self.tail(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Restore an NCHW image batch of any spatial size."""
        h, w = x.shape[-2:]
        residual = self.body(pad_to_multiple(x, self.size_multiple, self.padding_mode))
        return x + residual[..., :h, :w]
