"""Small building blocks shared by llcv architectures.

Everything here is made of standard torch modules (``nn.Conv2d``, activations, ``nn.Sequential``)
so that structured pruners can trace channel dependencies, and every layer takes
``device``/``dtype`` so that models can be built on the meta device for memory estimation.
"""
from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F
from torch import nn

from llcv.errors import ArgumentError


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


def pad_to_multiple(x: torch.Tensor, multiple: int) -> torch.Tensor:
    """Pad the bottom/right of an NCHW tensor (edge replication) so H and W divide ``multiple``.

    Replication works for any size, even 1x1, where reflection would fail.
    """
    pad_h = -x.shape[-2] % multiple
    pad_w = -x.shape[-1] % multiple
    if pad_h == 0 and pad_w == 0:
        return x
    return F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
