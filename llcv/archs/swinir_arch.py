"""SwinIR (Liang et al., "SwinIR: Image Restoration Using Swin Transformer", ICCVW 2021).

conv3x3 -> residual Swin transformer blocks (RSTB: ``depths[i]`` Swin layers, a conv, a skip)
-> LayerNorm -> conv plus a long skip -> reconstruction: ``pixelshuffle`` (classical SR: conv to
64 features, sub-pixel upsampler, conv), ``pixelshuffledirect`` (lightweight SR: one conv and
PixelShuffle), ``nearest+conv`` (real-world SR) or ``''`` (denoising / JPEG: a conv added to the
input). A Swin layer is window self-attention (``window_size`` squared pixels per window, a
learned relative-position bias per head) and an MLP, pre-norm and residual; every second layer
shifts the windows by half a window (cyclic roll) and masks attention between pixels that the
roll brought together from opposite borders.

Any input size works: H and W are padded to a multiple of ``window_size`` (``reflect``, as the
reference does), non-square sizes included; the shift mask is stored for ``img_size`` (it is in
published checkpoints) and computed once per forward for any other size.
Options and state_dict keys follow the reference code (also BasicSR's copy), so its weights load.
"""
from __future__ import annotations

from typing import Optional, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llcv.archs.layers import Upsample, check_padding_mode, check_upscale, conv3x3, \
    pad_to_multiple
from llcv.errors import ArgumentError
from llcv.registry import ARCHS
from llcv.utils import check_int, check_int_list, check_number

UPSAMPLERS: tuple[str, ...] = ("pixelshuffle", "pixelshuffledirect", "nearest+conv", "")
RESI_CONNECTIONS: tuple[str, ...] = ("1conv", "3conv")
MASKED = -100.0  # the reference's additive mask: exp(-100) is 0 in float32 after softmax


def window_partition(x: torch.Tensor, ws: int) -> torch.Tensor:
    """(B, H, W, C) -> (B * windows, ws * ws, C), windows in row-major order per image."""
    b, h, w, c = x.shape
    x = x.view(b, h // ws, ws, w // ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, ws * ws, c)


def window_reverse(windows: torch.Tensor, ws: int, h: int, w: int) -> torch.Tensor:
    """Inverse of :func:`window_partition`: (B * windows, ws * ws, C) -> (B, H, W, C)."""
    c = windows.shape[-1]
    x = windows.view(-1, h // ws, w // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5)
    return x.reshape(-1, h, w, c)


def shifted_window_mask(h: int, w: int, ws: int, shift: int, device=None,
                        dtype=None) -> torch.Tensor:
    """(windows, ws^2, ws^2) additive mask for windows shifted by ``shift`` on an H x W map.

    After the cyclic roll the last ``shift`` rows/columns come from the opposite border; pixels
    of one window may attend to each other only if they lie in the same band (0, or MASKED).
    """
    def bands(n: int) -> torch.Tensor:
        label = torch.zeros(n, device=device)
        label[n - ws:n - shift] = 1
        label[n - shift:] = 2
        return label

    region = (bands(h)[:, None] * 3 + bands(w)[None, :]).view(1, h, w, 1)
    windows = window_partition(region, ws).squeeze(-1)
    differ = windows[:, None, :] != windows[:, :, None]
    return torch.zeros(differ.shape, device=device, dtype=dtype).masked_fill(differ, MASKED)


def relative_position_index(ws: int, device=None) -> torch.Tensor:
    """(ws^2, ws^2) index into the bias table for the (dy, dx) offset of every pixel pair."""
    coords = torch.stack(torch.meshgrid(torch.arange(ws, device=device),
                                        torch.arange(ws, device=device), indexing="ij"))
    coords = coords.flatten(1)
    offset = (coords[:, :, None] - coords[:, None, :]).permute(1, 2, 0) + (ws - 1)
    return offset[..., 0] * (2 * ws - 1) + offset[..., 1]


class DropPath(nn.Module):
    """Stochastic depth: in training, zero a sample's residual branch with probability ``p``."""

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(1.0 - self.p)
        return x * keep / (1.0 - self.p)


class Mlp(nn.Module):
    """Linear -> GELU -> Linear with dropout after each (the transformer feed-forward)."""

    def __init__(self, dim: int, hidden: int, drop: float = 0.0, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden, device=device, dtype=dtype)
        self.act = nn.GELU()
        self.fc2 = nn.Linear(hidden, dim, device=device, dtype=dtype)
        self.drop = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.fc2(self.drop(self.act(self.fc1(x)))))


class WindowAttention(nn.Module):
    """Multi-head self-attention inside each window, with a learned relative-position bias."""

    def __init__(self, dim: int, window_size: int, num_heads: int, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, attn_drop: float = 0.0,
                 proj_drop: float = 0.0, device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.scale = qk_scale or (dim // num_heads) ** -0.5
        self.relative_position_bias_table = nn.Parameter(
            torch.zeros((2 * window_size - 1) ** 2, num_heads, **kw))
        self.register_buffer("relative_position_index",
                             relative_position_index(window_size, device))
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias, **kw)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim, **kw)
        self.proj_drop = nn.Dropout(proj_drop)
        nn.init.trunc_normal_(self.relative_position_bias_table, std=0.02)

    def forward(self, x: torch.Tensor, mask: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``x``: (B * windows, N, C); ``mask``: (windows, N, N) additive, or None."""
        batch, n, _ = x.shape
        heads = self.relative_position_bias_table.shape[1]
        q, k, v = self.qkv(x).reshape(batch, n, 3, heads, -1).permute(2, 0, 3, 1, 4).unbind(0)
        attn = (q * self.scale) @ k.transpose(-2, -1)
        bias = self.relative_position_bias_table[self.relative_position_index.view(-1)]
        attn = attn + bias.view(n, n, heads).permute(2, 0, 1).unsqueeze(0)
        if mask is not None:
            windows = mask.shape[0]
            attn = (attn.view(-1, windows, heads, n, n) + mask[None, :, None]).view(-1, heads, n, n)
        attn = self.attn_drop(attn.softmax(dim=-1))
        return self.proj_drop(self.proj((attn @ v).transpose(1, 2).reshape(batch, n, -1)))


class SwinTransformerBlock(nn.Module):
    """(Shifted) window attention and an MLP, each pre-LayerNorm and residual, on tokens."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], num_heads: int,
                 window_size: int, shift_size: int, mlp_ratio: float, qkv_bias: bool,
                 qk_scale: Optional[float], drop: float, attn_drop: float, drop_path: float,
                 device=None, dtype=None) -> None:
        super().__init__()
        kw = {"device": device, "dtype": dtype}
        self.input_resolution = input_resolution
        if min(input_resolution) <= window_size:  # one window covers the image: no shift
            shift_size, window_size = 0, min(input_resolution)
        self.window_size, self.shift_size = window_size, shift_size
        self.norm1 = nn.LayerNorm(dim, **kw)
        self.attn = WindowAttention(dim, window_size, num_heads, qkv_bias, qk_scale, attn_drop,
                                    drop, **kw)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, **kw)
        self.mlp = Mlp(dim, int(dim * mlp_ratio), drop, **kw)
        mask = shifted_window_mask(*input_resolution, window_size, shift_size, device) \
            if shift_size > 0 else None
        self.register_buffer("attn_mask", mask)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int],
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        """``mask``: the shift mask for ``x_size`` when it is not ``input_resolution``."""
        h, w = x_size
        ws, shift = self.window_size, self.shift_size
        b, _, c = x.shape
        y = self.norm1(x).view(b, h, w, c)
        if shift:
            y = torch.roll(y, (-shift, -shift), (1, 2))
            mask = self.attn_mask if tuple(x_size) == tuple(self.input_resolution) else mask
        y = window_reverse(self.attn(window_partition(y, ws), mask if shift else None), ws, h, w)
        if shift:
            y = torch.roll(y, (shift, shift), (1, 2))
        x = x + self.drop_path(y.reshape(b, h * w, c))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def to_tokens(x: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) -> (B, H * W, C)."""
    return x.flatten(2).transpose(1, 2)


def to_image(x: torch.Tensor, x_size: tuple[int, int]) -> torch.Tensor:
    """(B, H * W, C) -> (B, C, H, W)."""
    return x.transpose(1, 2).reshape(x.shape[0], x.shape[2], *x_size)


class BasicLayer(nn.Module):
    """``depth`` Swin blocks at one resolution, every second one shifted by half a window."""

    def __init__(self, dim: int, input_resolution: tuple[int, int], depth: int, num_heads: int,
                 window_size: int, drop_path: Sequence[float], device=None, dtype=None,
                 **block) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(
            SwinTransformerBlock(dim, input_resolution, num_heads, window_size,
                                 0 if i % 2 == 0 else window_size // 2, drop_path=drop_path[i],
                                 device=device, dtype=dtype, **block)
            for i in range(depth))

    def forward(self, x: torch.Tensor, x_size: tuple[int, int],
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        for block in self.blocks:
            x = block(x, x_size, mask)
        return x


def _resi_conv(dim: int, kind: str, device=None, dtype=None) -> nn.Module:
    """The conv closing each RSTB (and the body): one 3x3, or SwinIR-L's 3x3-1x1-3x3 bottleneck."""
    kw = {"device": device, "dtype": dtype}
    if kind == "1conv":
        return conv3x3(dim, dim, **kw)
    return nn.Sequential(conv3x3(dim, dim // 4, **kw), nn.LeakyReLU(0.2),
                         nn.Conv2d(dim // 4, dim // 4, 1, **kw), nn.LeakyReLU(0.2),
                         conv3x3(dim // 4, dim, **kw))


class RSTB(nn.Module):
    """Residual Swin transformer block: a BasicLayer and a conv, with a skip around both."""

    def __init__(self, dim: int, resi_connection: str, device=None, dtype=None,
                 **layer) -> None:
        super().__init__()
        self.residual_group = BasicLayer(dim, device=device, dtype=dtype, **layer)
        self.conv = _resi_conv(dim, resi_connection, device, dtype)

    def forward(self, x: torch.Tensor, x_size: tuple[int, int],
                mask: Optional[torch.Tensor]) -> torch.Tensor:
        y = to_image(self.residual_group(x, x_size, mask), x_size)
        return x + to_tokens(self.conv(y))


class PatchEmbed(nn.Module):
    """Pixels to tokens (patch size 1), then LayerNorm when ``norm`` is set."""

    def __init__(self, dim: int, norm: bool, device=None, dtype=None) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, device=device, dtype=dtype) if norm else nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(to_tokens(x))


def _resolution(img_size: int | Sequence[int]) -> tuple[int, int]:
    """``img_size`` as (H, W): one side for a square, or ``[H, W]``."""
    if isinstance(img_size, Sequence) and not isinstance(img_size, (str, bytes)):
        h, w = check_int_list("img_size", img_size, 1, length=2)
        return h, w
    return check_int("img_size", img_size), img_size


def _check_args(in_chans: int, embed_dim: int, depths: Sequence[int],
                num_heads: Sequence[int], window_size: int, upscale: int,
                upsampler: str, resi_connection: str) -> None:
    """Validate SwinIR's structural options with messages starting with the option name."""
    check_int("in_chans", in_chans)
    check_int("embed_dim", embed_dim)
    check_int("window_size", window_size)
    check_int_list("depths", depths, 0)
    check_int_list("num_heads", num_heads, 1, length=len(depths))
    for heads in num_heads:
        if embed_dim % heads:
            raise ArgumentError(f"num_heads: every entry must divide embed_dim ({embed_dim}), "
                                f"got {heads} in {list(num_heads)}")
    if upsampler not in UPSAMPLERS:
        raise ArgumentError(f"upsampler: expected one of {UPSAMPLERS}, got {upsampler!r}")
    if resi_connection not in RESI_CONNECTIONS:
        raise ArgumentError(f"resi_connection: expected one of {RESI_CONNECTIONS}, "
                            f"got {resi_connection!r}")
    check_upscale(upscale, {"": (1,), "nearest+conv": (2, 4)}.get(upsampler))


@ARCHS.register_module()
class SwinIR(nn.Module):
    """SwinIR for SR (``upscale`` 2/3/4/8), denoising and JPEG (``upsampler: ''``); any size.

    Defaults are the reference's; the classical SR x2 model sets ``img_size: 64``,
    ``window_size: 8``, ``depths``/``num_heads`` six 6s, ``embed_dim: 180``, ``mlp_ratio: 2``,
    ``upsampler: pixelshuffle``.
    """

    #: How llcv.pruners prunes it (see llcv/pruners/arch_config.py).
    pruning = {"image_channels": "in_chans", "width_options": ["embed_dim"]}

    def __init__(self, img_size: int | Sequence[int] = 64, in_chans: int = 3, embed_dim: int = 96,
                 depths: Sequence[int] = (6, 6, 6, 6), num_heads: Sequence[int] = (6, 6, 6, 6),
                 window_size: int = 7, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 qk_scale: Optional[float] = None, drop_rate: float = 0.0,
                 attn_drop_rate: float = 0.0, drop_path_rate: float = 0.1,
                 patch_norm: bool = True, upscale: int = 2, img_range: float = 1.0,
                 upsampler: str = "", resi_connection: str = "1conv",
                 padding_mode: str = "reflect", device=None, dtype=None) -> None:
        super().__init__()
        _check_args(in_chans, embed_dim, depths, num_heads, window_size, upscale,
                    upsampler, resi_connection)
        kw = {"device": device, "dtype": dtype}
        self.img_range = check_number("img_range", img_range)
        self.padding_mode = check_padding_mode(padding_mode)
        #: H and W are padded to a multiple of this; tiled inference should use tile sizes of it.
        self.size_multiple: int = window_size
        self.window_size, self.upscale, self.upsampler = window_size, upscale, upsampler
        #: The size the stored shift masks are for (``img_size``, the training crop).
        self.patches_resolution = _resolution(img_size)
        mean = (0.4488, 0.4371, 0.4040) if in_chans == 3 else (0.0,) * in_chans
        self.register_buffer("mean", torch.tensor(mean, **kw).view(1, in_chans, 1, 1),
                             persistent=False)
        self.conv_first = conv3x3(in_chans, embed_dim, **kw)
        self.patch_embed = PatchEmbed(embed_dim, patch_norm, **kw)
        self.pos_drop = nn.Dropout(drop_rate)
        rates = torch.linspace(0, check_number("drop_path_rate", drop_path_rate, 0),
                               sum(depths)).tolist()
        block = {"mlp_ratio": check_number("mlp_ratio", mlp_ratio, 0), "qkv_bias": qkv_bias,
                 "qk_scale": qk_scale, "drop": check_number("drop_rate", drop_rate, 0),
                 "attn_drop": check_number("attn_drop_rate", attn_drop_rate, 0)}
        self.layers = nn.ModuleList(
            RSTB(embed_dim, resi_connection, input_resolution=self.patches_resolution,
                 depth=depth, num_heads=heads, window_size=window_size,
                 drop_path=rates[sum(depths[:i]):sum(depths[:i + 1])], **kw, **block)
            for i, (depth, heads) in enumerate(zip(depths, num_heads)))
        self.norm = nn.LayerNorm(embed_dim, **kw)
        self.conv_after_body = _resi_conv(embed_dim, resi_connection, **kw)
        self._build_reconstruction(embed_dim, in_chans, upscale, upsampler, kw)
        self.apply(_init_linear_and_norm)

    def _build_reconstruction(self, dim: int, out_ch: int, upscale: int, upsampler: str,
                              kw: dict) -> None:
        """The layers after the body, named as in the reference for each ``upsampler``."""
        num_feat = 64
        if upsampler in ("pixelshuffle", "nearest+conv"):
            self.conv_before_upsample = nn.Sequential(conv3x3(dim, num_feat, **kw),
                                                      nn.LeakyReLU())
        if upsampler == "pixelshuffle":
            self.upsample = Upsample(upscale, num_feat, **kw)
            self.conv_last = conv3x3(num_feat, out_ch, **kw)
        elif upsampler == "pixelshuffledirect":
            self.upsample = nn.Sequential(conv3x3(dim, upscale * upscale * out_ch, **kw),
                                          nn.PixelShuffle(upscale))
        elif upsampler == "nearest+conv":
            self.conv_up1 = conv3x3(num_feat, num_feat, **kw)
            if upscale == 4:
                self.conv_up2 = conv3x3(num_feat, num_feat, **kw)
            self.conv_hr = conv3x3(num_feat, num_feat, **kw)
            self.conv_last = conv3x3(num_feat, out_ch, **kw)
            self.lrelu = nn.LeakyReLU(0.2)
        else:
            self.conv_last = conv3x3(dim, out_ch, **kw)

    def _shift_mask(self, x: torch.Tensor) -> Optional[torch.Tensor]:
        """The shift mask for ``x``'s size, when it differs from the one stored for img_size."""
        h, w = x.shape[-2:]
        if (h, w) == self.patches_resolution or min(self.patches_resolution) <= self.window_size:
            return None
        return shifted_window_mask(h, w, self.window_size, self.window_size // 2, x.device,
                                   x.dtype)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """The transformer body on a feature map whose H, W are multiples of window_size."""
        x_size = (x.shape[-2], x.shape[-1])
        mask = self._shift_mask(x)
        tokens = self.pos_drop(self.patch_embed(x))
        for layer in self.layers:
            tokens = layer(tokens, x_size, mask)
        return to_image(self.norm(tokens), x_size)

    def _reconstruct(self, feat: torch.Tensor) -> torch.Tensor:
        """Body features to the (upscaled) image, per ``upsampler``."""
        if self.upsampler == "pixelshuffle":
            return self.conv_last(self.upsample(self.conv_before_upsample(feat)))
        if self.upsampler == "pixelshuffledirect":
            return self.upsample(feat)
        feat = self.conv_before_upsample(feat)
        for conv in (self.conv_up1, getattr(self, "conv_up2", None)):
            if conv is not None:
                feat = self.lrelu(conv(F.interpolate(feat, scale_factor=2, mode="nearest")))
        return self.conv_last(self.lrelu(self.conv_hr(feat)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Upscale (or restore, with ``upsampler: ''``) an NCHW batch of any spatial size."""
        h, w = x.shape[-2:]
        mean = self.mean.to(x.dtype)
        x = (pad_to_multiple(x, self.window_size, self.padding_mode) - mean) * self.img_range
        feat = self.conv_first(x)
        feat = feat + self.conv_after_body(self.forward_features(feat))
        out = x + self.conv_last(feat) if self.upsampler == "" else self._reconstruct(feat)
        return (out / self.img_range + mean)[..., :h * self.upscale, :w * self.upscale]


@torch.no_grad()
def _init_linear_and_norm(m: nn.Module) -> None:
    """The reference initialisation: truncated-normal(0.02) linear weights, zero biases."""
    if isinstance(m, nn.Linear):
        nn.init.trunc_normal_(m.weight, std=0.02)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, nn.LayerNorm):
        nn.init.ones_(m.weight)
        nn.init.zeros_(m.bias)
