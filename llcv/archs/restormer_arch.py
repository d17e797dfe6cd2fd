"""Restormer (Zamir et al., "Restormer: Efficient Transformer for High-Resolution Image
Restoration", CVPR 2022).

A 4-level UNet of transformer blocks. Attention is MDTA: queries, keys and values from a 1x1 conv
then a 3x3 depthwise conv, L2-normalised along the pixels, attending across channels (a C x C map
per head, so cost is linear in the number of pixels) with a learned temperature per head. The
feed-forward is GDFN: 1x1 expand, 3x3 depthwise, GELU-gated halves, 1x1 back. Levels are joined by
PixelUnshuffle/PixelShuffle; decoder skips are concatenated (then reduced by 1x1 convs except at
the top level, which stays at 2*dim and feeds the refinement blocks).
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
from llcv.utils import check_int_list, is_int

LAYER_NORM_TYPES: tuple[str, ...] = ("WithBias", "BiasFree")


class _ChannelLayerNorm(nn.Module):
    """LayerNorm over the channels of each pixel; ``with_bias=False`` scales without centering."""

    def __init__(self, dim: int, with_bias: bool, eps: float = 1e-5, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(dim, device=device, dtype=dtype))
        self.bias = (nn.Parameter(torch.zeros(dim, device=device, dtype=dtype))
                     if with_bias else None)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x.permute(0, 2, 3, 1)
        if self.bias is not None:
            x = F.layer_norm(x, x.shape[-1:], self.weight, self.bias, self.eps)
        else:
            x = x * torch.rsqrt(x.var(dim=-1, keepdim=True, unbiased=False) + self.eps)
            x = x * self.weight
        return x.permute(0, 3, 1, 2)


class LayerNorm(nn.Module):
    """Restormer's channel LayerNorm of the chosen type (kept under ``body`` as in its weights)."""

    def __init__(self, dim: int, layer_norm_type: str, device=None, dtype=None) -> None:
        super().__init__()
        self.body = _ChannelLayerNorm(dim, layer_norm_type == "WithBias", device=device,
                                      dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Attention(nn.Module):
    """Multi-Dconv head transposed attention (MDTA): attention between channels, per head."""

    def __init__(self, dim: int, num_heads: int, bias: bool, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        # The number of heads is read from ``temperature`` (one per head), never cached, so a
        # pruned network (fewer heads or head dims) runs as its tensors say.
        self.temperature = nn.Parameter(torch.ones(num_heads, 1, 1, **kw))
        self.qkv = nn.Conv2d(dim, dim * 3, 1, bias=bias, **kw)
        self.qkv_dwconv = nn.Conv2d(dim * 3, dim * 3, 3, padding=1, groups=dim * 3, bias=bias,
                                    **kw)
        self.project_out = nn.Conv2d(dim, dim, 1, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, _, h, w = x.shape
        heads = self.temperature.shape[0]
        q, k, v = (t.reshape(b, heads, -1, h * w)
                   for t in self.qkv_dwconv(self.qkv(x)).chunk(3, dim=1))
        q, k = F.normalize(q, dim=-1), F.normalize(k, dim=-1)
        attn = (q @ k.transpose(-2, -1) * self.temperature).softmax(dim=-1)
        return self.project_out((attn @ v).reshape(b, -1, h, w))


class FeedForward(nn.Module):
    """Gated-Dconv feed-forward network (GDFN)."""

    def __init__(self, dim: int, ffn_expansion_factor: float, bias: bool, device=None,
                 dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        hidden = int(dim * ffn_expansion_factor)
        self.project_in = nn.Conv2d(dim, hidden * 2, 1, bias=bias, **kw)
        self.dwconv = nn.Conv2d(hidden * 2, hidden * 2, 3, padding=1, groups=hidden * 2,
                                bias=bias, **kw)
        self.project_out = nn.Conv2d(hidden, dim, 1, bias=bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x1, x2 = self.dwconv(self.project_in(x)).chunk(2, dim=1)
        return self.project_out(F.gelu(x1) * x2)


class TransformerBlock(nn.Module):
    """Pre-norm residual MDTA followed by pre-norm residual GDFN."""

    def __init__(self, dim: int, num_heads: int, ffn_expansion_factor: float, bias: bool,
                 layer_norm_type: str, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.norm1 = LayerNorm(dim, layer_norm_type, **kw)
        self.attn = Attention(dim, num_heads, bias, **kw)
        self.norm2 = LayerNorm(dim, layer_norm_type, **kw)
        self.ffn = FeedForward(dim, ffn_expansion_factor, bias, **kw)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.norm1(x))
        return x + self.ffn(self.norm2(x))


class OverlapPatchEmbed(nn.Module):
    """A 3x3 conv embedding the image into ``embed_dim`` channels."""

    def __init__(self, in_c: int, embed_dim: int, bias: bool, device=None, dtype=None) -> None:
        super().__init__()
        self.proj = nn.Conv2d(in_c, embed_dim, 3, padding=1, bias=bias, device=device,
                              dtype=dtype)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.proj(x)


class Downsample(nn.Module):
    """Halve the resolution and double the channels: 3x3 conv to ``n/2``, then PixelUnshuffle."""

    def __init__(self, n_feat: int, device=None, dtype=None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat // 2, 3, padding=1, bias=False, device=device, dtype=dtype),
            nn.PixelUnshuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


class Upsample(nn.Module):
    """Double the resolution and halve the channels: 3x3 conv to ``2n``, then PixelShuffle."""

    def __init__(self, n_feat: int, device=None, dtype=None) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(n_feat, n_feat * 2, 3, padding=1, bias=False, device=device, dtype=dtype),
            nn.PixelShuffle(2))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)


def _check_args(dim: int, num_blocks: Sequence[int], heads: Sequence[int],
                layer_norm_type: str) -> None:
    """Validate Restormer's options with messages starting with the option name."""
    if not is_int(dim) or dim < 2 or dim % 2:
        raise ArgumentError(f"dim: expected a positive even integer (each downsampling "
                                f"conv halves it before PixelUnshuffle), got {dim!r}")
    for name, values in (("num_blocks", num_blocks), ("heads", heads)):
        check_int_list(name, values, 1, length=4)
    for level, h in enumerate(heads):
        if (dim * 2 ** level) % h:
            raise ArgumentError(f"heads: level {level} has {dim * 2 ** level} channels "
                                    f"(dim * 2^{level}), not divisible by {h} heads")
    if (2 * dim) % heads[0]:
        raise ArgumentError(f"heads: the top decoder level has {2 * dim} channels, "
                                f"not divisible by heads[0]={heads[0]}")
    if layer_norm_type not in LAYER_NORM_TYPES:
        raise ArgumentError(f"LayerNorm_type: unknown value {layer_norm_type!r}; allowed: "
                                f"{', '.join(LAYER_NORM_TYPES)}")


def _blocks(n: int, dim: int, heads: int, cfg: dict) -> nn.Sequential:
    """``n`` transformer blocks at ``dim`` channels; ``cfg`` holds the shared block options."""
    return nn.Sequential(*(TransformerBlock(dim, heads, **cfg) for _ in range(n)))


@ARCHS.register_module()
class Restormer(nn.Module):
    """Restormer image restoration transformer; any input size (padded to 8, cropped back).

    Defaults are the published configuration (26,126,644 parameters). ``dual_pixel_task`` is the
    dual-pixel defocus-deblurring variant (set ``inp_channels: 6``): a 1x1 skip
    from the patch embedding to the refinement output, and no global residual.
    """

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "inp_channels", "width_options": ["dim"]}

    def __init__(self, inp_channels: int = 3, out_channels: int = 3, dim: int = 48,
                 num_blocks: Sequence[int] = (4, 6, 6, 8), num_refinement_blocks: int = 4,
                 heads: Sequence[int] = (1, 2, 4, 8), ffn_expansion_factor: float = 2.66,
                 bias: bool = False, LayerNorm_type: str = "WithBias",  # noqa: N803 (option name)
                 dual_pixel_task: bool = False, padding_mode: str = "replicate", device=None,
                 dtype=None) -> None:
        super().__init__()
        _check_args(dim, num_blocks, heads, LayerNorm_type)
        #: How H, W are padded to ``size_multiple``: ``reflect`` is the reference test code's.
        self.padding_mode = check_padding_mode(padding_mode)
        if not dual_pixel_task and out_channels != inp_channels:
            raise ArgumentError(f"out_channels: must equal inp_channels ({inp_channels}) "
                                    f"because the output is input + residual; got {out_channels!r}")
        kw = {"device": device, "dtype": dtype}
        cfg = {"ffn_expansion_factor": ffn_expansion_factor, "bias": bias,
               "layer_norm_type": LayerNorm_type, **kw}
        #: H and W are padded to a multiple of this; tiled inference should use tile sizes of it.
        self.size_multiple: int = 8
        self.dual_pixel_task = dual_pixel_task
        self.patch_embed = OverlapPatchEmbed(inp_channels, dim, bias, **kw)
        self.encoder_level1 = _blocks(num_blocks[0], dim, heads[0], cfg)
        self.down1_2 = Downsample(dim, **kw)
        self.encoder_level2 = _blocks(num_blocks[1], dim * 2, heads[1], cfg)
        self.down2_3 = Downsample(dim * 2, **kw)
        self.encoder_level3 = _blocks(num_blocks[2], dim * 4, heads[2], cfg)
        self.down3_4 = Downsample(dim * 4, **kw)
        self.latent = _blocks(num_blocks[3], dim * 8, heads[3], cfg)
        self.up4_3 = Upsample(dim * 8, **kw)
        self.reduce_chan_level3 = nn.Conv2d(dim * 8, dim * 4, 1, bias=bias, **kw)
        self.decoder_level3 = _blocks(num_blocks[2], dim * 4, heads[2], cfg)
        self.up3_2 = Upsample(dim * 4, **kw)
        self.reduce_chan_level2 = nn.Conv2d(dim * 4, dim * 2, 1, bias=bias, **kw)
        self.decoder_level2 = _blocks(num_blocks[1], dim * 2, heads[1], cfg)
        self.up2_1 = Upsample(dim * 2, **kw)
        self.decoder_level1 = _blocks(num_blocks[0], dim * 2, heads[0], cfg)
        self.refinement = _blocks(num_refinement_blocks, dim * 2, heads[0], cfg)
        if dual_pixel_task:
            self.skip_conv = nn.Conv2d(dim, dim * 2, 1, bias=bias, **kw)
        self.output = nn.Conv2d(dim * 2, out_channels, 3, padding=1, bias=bias, **kw)

    def body(self, inp: torch.Tensor) -> torch.Tensor:
        """The network output (before the global residual) for H, W multiples of 8."""
        embedded = self.patch_embed(inp)
        enc1 = self.encoder_level1(embedded)
        enc2 = self.encoder_level2(self.down1_2(enc1))
        enc3 = self.encoder_level3(self.down2_3(enc2))
        x = self.latent(self.down3_4(enc3))
        x = self.decoder_level3(self.reduce_chan_level3(torch.cat([self.up4_3(x), enc3], 1)))
        x = self.decoder_level2(self.reduce_chan_level2(torch.cat([self.up3_2(x), enc2], 1)))
        x = self.refinement(self.decoder_level1(torch.cat([self.up2_1(x), enc1], 1)))
        if self.dual_pixel_task:
            x = x + self.skip_conv(embedded)
        return self.output(x)

    def forward(self, inp: torch.Tensor) -> torch.Tensor:
        """Restore an NCHW image batch of any spatial size."""
        h, w = inp.shape[-2:]
        out = self.body(pad_to_multiple(inp, self.size_multiple, self.padding_mode))[..., :h, :w]
        return out if self.dual_pixel_task else out + inp
