"""Small helpers every layer of llcv uses: argument checks, byte units, BT.601 colour weights,
module modes and device.

This module sits at the bottom of the import layers (it imports only ``llcv.errors``), so
components, memory tools and the engine can all share one copy of each helper.
"""
from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import numpy as np
import torch
from torch import nn

from llcv.errors import ArgumentError

MB = 1024.0 ** 2  # bytes in a MiB
BT601_Y_RGB = (65.481, 128.553, 24.966)  # MATLAB rgb2ycbcr: Y = 16 + BT601_Y_RGB . (R, G, B)
BT601_LUMA_RGB = (0.299, 0.587, 0.114)  # luma weights of R, G, B (summing to 1)


def bt601_y(unit_bgr: np.ndarray) -> np.ndarray:
    """BasicSR's Y (HxW, float32 in [16/255, 235/255]) of a BGR image in [0, 1]: summed in float64
    in B, G, R order, divided by 255, stored as float32 (the metrics' reference protocol)."""
    return ((np.dot(unit_bgr, np.array(BT601_Y_RGB[::-1])) + 16.0) / 255.0).astype(np.float32)


def luma(x: torch.Tensor) -> torch.Tensor:
    """BT.601 luma (N1HW) of an NCHW RGB batch; a 1-channel batch is returned as it is."""
    if x.shape[1] == 1:
        return x
    weights = torch.tensor(BT601_LUMA_RGB, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
    return (x[:, :3] * weights).sum(dim=1, keepdim=True)


def is_int(value: Any) -> bool:
    """True for an ``int`` that is not a ``bool`` (YAML ``true`` must not pass as 1)."""
    return isinstance(value, int) and not isinstance(value, bool)


def check_int(name: str, value: Any, low: int = 1, error: type = ArgumentError) -> int:
    """Return ``value`` if it is an integer ``>= low``; else raise ``error`` naming ``name``."""
    if not is_int(value) or value < low:
        raise error(f"{name}: expected an integer >= {low}, got {value!r}")
    return value


def check_int_list(name: str, values: Any, low: int = 1, length: int | None = None,
                   error: type = ArgumentError) -> list[int]:
    """Return ``values`` as a list if every entry is an integer ``>= low`` (and, when given,
    there are ``length`` of them); else raise ``error`` naming ``name``."""
    if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or not values \
            or (length is not None and len(values) != length):
        count = f"{length} " if length is not None else "a non-empty list of "
        raise error(f"{name}: expected {count}integers >= {low}, got {values!r}")
    for v in values:
        if not is_int(v) or v < low:
            raise error(f"{name}: every entry must be an integer >= {low}, got {v!r} "
                        f"in {list(values)!r}")
    return list(values)


def check_number(name: str, value: Any, low: float | None = None,
                 error: type = ArgumentError) -> float:
    """Return ``value`` as a float if it is a real number (``>= low`` when given)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or \
            (low is not None and value < low):
        bound = f" >= {low}" if low is not None else ""
        raise error(f"{name}: expected a number{bound}, got {value!r}")
    return float(value)


@contextlib.contextmanager
def module_modes(model: nn.Module, training: bool) -> Iterator[nn.Module]:
    """Put every module of ``model`` in train (or eval) mode; restore each one's own mode after."""
    modes = {m: m.training for m in model.modules()}
    model.train(training)
    try:
        yield model
    finally:
        for m, was in modes.items():
            m.training = was


def module_device(model: nn.Module, default: str = "cpu") -> torch.device:
    """Device of the first parameter or buffer of ``model`` (``default`` when it has none)."""
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device(default)
