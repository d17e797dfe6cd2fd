"""Small building blocks shared by llcv architectures.

Everything here is made of standard torch modules (``nn.Conv2d``, activations, ``nn.Sequential``)
so that structured pruners can trace channel dependencies, and every layer takes
``device``/``dtype`` so that models can be built on the meta device for memory estimation.
"""
from __future__ import annotations

from typing import Callable, Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import ArgumentError
from llcv.utils import check_int, check_number


_ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU,
    "leaky_relu": lambda: nn.LeakyReLU(0.2),
    "gelu": nn.GELU,
    "silu": nn.SiLU,
}
ACTIVATIONS: tuple[str, ...] = tuple(_ACTIVATIONS)


def check_activation(name: str, arg: str = "act") -> None:
    """Fail naming ``arg`` and the allowed names when ``name`` is not a known activation."""
    if name not in _ACTIVATIONS:
        raise ArgumentError(
            f"{arg}: unknown activation {name!r}; allowed: {', '.join(ACTIVATIONS)}")


def make_activation(name: str) -> nn.Module:
    """A fresh (never in-place) activation module; ``leaky_relu`` uses slope 0.2."""
    check_activation(name)
    return _ACTIVATIONS[name]()


def conv3x3(in_ch: int, out_ch: int, device=None, dtype=None) -> nn.Conv2d:
    """A 3x3 'same' convolution with bias."""
    return nn.Conv2d(in_ch, out_ch, 3, padding=1, device=device, dtype=dtype)


def conv_act_stack(in_ch: int, out_ch: int, num: int, act: str,
                   device=None, dtype=None) -> nn.Sequential:
    """``num`` x (conv3x3 + activation); the first conv maps ``in_ch`` to ``out_ch``."""
    layers: list[nn.Module] = []
    for i in range(num):
        layers += [conv3x3(in_ch if i == 0 else out_ch, out_ch, device, dtype),
                   make_activation(act)]
    return nn.Sequential(*layers)


PADDING_MODES: tuple[str, ...] = ("replicate", "zeros", "reflect")


def check_padding_mode(mode: str, arg: str = "padding_mode") -> str:
    """Return ``mode`` if it is one of :data:`PADDING_MODES`; else fail naming ``arg``."""
    if mode not in PADDING_MODES:
        raise ArgumentError(f"{arg}: unknown padding mode {mode!r}; allowed: "
                            f"{', '.join(PADDING_MODES)}")
    return mode


def pad_to_multiple(x: torch.Tensor, multiple: int, mode: str = "replicate") -> torch.Tensor:
    """Pad the bottom/right of an NCHW tensor so H and W divide ``multiple``.

    ``replicate`` repeats the edge pixel (works at any size, even 1x1); ``zeros`` pads with 0
    (NAFNet's reference code); ``reflect`` mirrors without repeating the edge (SwinIR's and
    Real-ESRGAN's), mirrored back and forth when the pad is longer than the side, and
    replicated along a side of one pixel, where there is nothing to mirror.
    """
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    if mode == "zeros":
        return F.pad(x, (0, pad_w, 0, pad_h))
    if mode == "reflect":
        return _reflect_pad(x, pad_h, pad_w)
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")


def _reflect_pad(x: torch.Tensor, pad_h: int, pad_w: int) -> torch.Tensor:
    """Bottom/right reflection of any length: repeated reflections of at most side - 1."""
    while pad_h or pad_w:
        step_h, step_w = min(pad_h, x.shape[-2] - 1), min(pad_w, x.shape[-1] - 1)
        if step_h == 0 and step_w == 0:  # the sides left to pad are one pixel long
            return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        x = F.pad(x, (0, step_w, 0, step_h), mode="reflect")
        pad_h, pad_w = pad_h - step_h, pad_w - step_w
    return x


# ------------------------------------------------------------------ super-resolution pieces
def check_upscale(upscale: int, allowed: tuple[int, ...] | None = None,
                  arg: str = "upscale") -> int:
    """Return ``upscale`` if it is an integer >= 1 (in ``allowed`` when given)."""
    check_int(arg, upscale, 1)
    if allowed is not None and upscale not in allowed:
        raise ArgumentError(f"{arg}: expected one of {', '.join(map(str, allowed))}, "
                            f"got {upscale!r}")
    return upscale


def pixel_shuffle_factors(upscale: int, arg: str = "upscale") -> list[int]:
    """The PixelShuffle steps of BasicSR's ``Upsample``: 2 per octave of a power of 2, or one 3."""
    check_int(arg, upscale, 1)
    if upscale & (upscale - 1) == 0:
        return [2] * (upscale.bit_length() - 1)
    if upscale == 3:
        return [3]
    raise ArgumentError(f"{arg}: expected a power of 2 or 3, got {upscale!r}")


class Upsample(nn.Sequential):
    """BasicSR's sub-pixel upsampler: per factor f, conv3x3 to ``f^2 * num_feat``, PixelShuffle(f).

    Its layers are numbered as in BasicSR checkpoints (``upsample.0``, ``upsample.2`` for x4).
    """

    def __init__(self, upscale: int, num_feat: int, device=None, dtype=None) -> None:
        layers: list[nn.Module] = []
        for factor in pixel_shuffle_factors(upscale):
            layers += [nn.Conv2d(num_feat, factor * factor * num_feat, 3, padding=1,
                                 device=device, dtype=dtype), nn.PixelShuffle(factor)]
        super().__init__(*layers)


class ResidualBlockNoBN(nn.Module):
    """conv3x3 -> ReLU -> conv3x3, scaled by ``res_scale`` and added to the input (EDSR's block)."""

    def __init__(self, num_feat: int = 64, res_scale: float = 1.0, device=None,
                 dtype=None) -> None:
        super().__init__()
        self.res_scale = res_scale
        self.conv1 = conv3x3(num_feat, num_feat, device, dtype)
        self.conv2 = conv3x3(num_feat, num_feat, device, dtype)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(self.relu(self.conv1(x))) * self.res_scale


@torch.no_grad()
def scaled_kaiming_init(modules: Iterable[nn.Module], scale: float) -> None:
    """BasicSR's ``default_init_weights``: Kaiming-normal conv/linear weights times ``scale``,
    zero biases; small residual branches keep deep SR networks stable at the start."""
    for module in modules:
        for m in module.modules():
            if isinstance(m, (nn.Conv2d, nn.Linear)):
                nn.init.kaiming_normal_(m.weight)
                m.weight.mul_(scale)
                if m.bias is not None:
                    m.bias.zero_()


def mean_buffer(module: nn.Module, mean: Sequence[float], channels: int, arg: str = "rgb_mean",
                device=None, dtype=None) -> None:
    """Register ``mean`` (one value per channel) as the non-saved buffer ``module.mean``.

    BasicSR keeps the data mean out of its checkpoints, so it is not part of the state_dict.
    """
    if isinstance(mean, (str, bytes)) or not isinstance(mean, Sequence) \
            or len(mean) != channels:
        raise ArgumentError(f"{arg}: expected {channels} numbers (one per input channel), "
                            f"got {mean!r}")
    values = [check_number(arg, v) for v in mean]
    module.register_buffer("mean", torch.tensor(values, device=device, dtype=dtype)
                           .view(1, channels, 1, 1), persistent=False)
