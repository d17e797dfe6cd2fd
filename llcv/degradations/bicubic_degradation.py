"""MATLAB's bicubic ``imresize``, the resize SR benchmarks make their LR images with.

MATLAB's rule (``imresize(img, s, 'bicubic')``, BasicSR's ``matlab_functions.imresize``): Keys'
cubic kernel with a = -0.5, 4 taps wide. When shrinking (s < 1) with antialiasing (MATLAB's
default) the kernel is stretched to 4 / s taps and scaled by s, so it also low-passes. Output
pixel i (1-based) is centred on input position u = i / s + (1 - 1 / s) / 2; it takes
ceil(width) + 2 taps from floor(u - width / 2) on, weights normalised to sum 1; taps outside the
image are mirrored (half-sample symmetric: ..., 2, 1, 1, 2, ...). The output side is
ceil(s * side). Both axes are resized in turn, in float64; uint8/uint16 images are rounded and
clipped once at the end (BasicSR's convention; its author notes a very small numerical
difference to MATLAB itself, XPixelGroup/BasicSR#213).
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np
import torch

from llcv.degradations.base import Degradation, as_number, finish
from llcv.errors import ArgumentError
from llcv.registry import DEGRADATIONS

KERNEL_WIDTH = 4.0  # taps of the cubic kernel at scale 1


def cubic(x: np.ndarray) -> np.ndarray:
    """Keys' cubic convolution kernel with a = -0.5 (MATLAB's and OpenCV's bicubic)."""
    ax = np.abs(x)
    ax2, ax3 = ax * ax, ax * ax * ax
    near = (1.5 * ax3 - 2.5 * ax2 + 1.0) * (ax <= 1)
    far = (-0.5 * ax3 + 2.5 * ax2 - 4.0 * ax + 2.0) * ((ax > 1) & (ax <= 2))
    return near + far


def output_length(in_len: int, scale: float) -> int:
    """MATLAB's output side for ``scale``: ceil(scale * in_len)."""
    return int(math.ceil(in_len * scale))


def resize_matrix(in_len: int, out_len: int, scale: float,
                  antialias: bool = True) -> np.ndarray:
    """(out_len, in_len) float64 matrix M with ``resized = M @ signal`` along one axis."""
    width = KERNEL_WIDTH / scale if scale < 1 and antialias else KERNEL_WIDTH
    kernel_scale = scale if scale < 1 and antialias else 1.0
    u = np.arange(1, out_len + 1, dtype=np.float64) / scale + 0.5 * (1 - 1 / scale)
    left = np.floor(u - width / 2)
    taps = left[:, None] + np.arange(int(math.ceil(width)) + 2)[None, :]
    weights = kernel_scale * cubic(kernel_scale * (u[:, None] - taps))
    weights /= weights.sum(axis=1, keepdims=True)
    # 1-based tap t -> mirrored 0-based index: period 2n, the second half running backwards.
    period = (taps.astype(np.int64) - 1) % (2 * in_len)
    index = np.where(period < in_len, period, 2 * in_len - 1 - period)
    matrix = np.zeros((out_len, in_len))
    np.add.at(matrix, (np.repeat(np.arange(out_len), taps.shape[1]), index.ravel()),
              weights.ravel())
    return matrix


def _scales(shape: Sequence[int], scale: Optional[float],
            size: Optional[Sequence[int]]) -> tuple[tuple[float, float], tuple[int, int]]:
    """Per-axis scale and output (H, W) from either a scale or an output size, as MATLAB."""
    h, w = shape
    if (scale is None) == (size is None):
        raise ArgumentError("scale: give either scale or size, not both or neither")
    if size is not None:
        out_h, out_w = (int(s) for s in size)
        if out_h < 1 or out_w < 1:
            raise ArgumentError(f"size: expected two positive sides, got {size!r}")
        return (out_h / h, out_w / w), (out_h, out_w)
    if not scale > 0:
        raise ArgumentError(f"scale: expected a number > 0, got {scale!r}")
    return (scale, scale), (output_length(h, scale), output_length(w, scale))


def imresize(img: np.ndarray, scale: Optional[float] = None,
             size: Optional[Sequence[int]] = None, antialias: bool = True) -> np.ndarray:
    """MATLAB ``imresize(img, scale)`` (or ``imresize(img, [h w])``), bicubic, of an HW or HWC
    array; float input gives float64 (no clipping), integer input the same integer type."""
    (sh, sw), (out_h, out_w) = _scales(img.shape[:2], scale, size)
    rows = resize_matrix(img.shape[0], out_h, sh, antialias)
    cols = resize_matrix(img.shape[1], out_w, sw, antialias)
    x = img.astype(np.float64).reshape(img.shape[0], img.shape[1], -1)
    out = np.tensordot(cols, np.tensordot(rows, x, axes=(1, 0)), axes=(1, 1))  # (W', H', C)
    out = out.transpose(1, 0, 2).reshape((out_h, out_w) + img.shape[2:])
    if np.issubdtype(img.dtype, np.integer):
        info = np.iinfo(img.dtype)
        return np.clip(np.floor(out + 0.5), info.min, info.max).astype(img.dtype)
    return out


def imresize_pt(x: torch.Tensor, scale: Optional[float] = None,
                size: Optional[Sequence[int]] = None, antialias: bool = True) -> torch.Tensor:
    """:func:`imresize` of a float (..., H, W) tensor, batched, on its device (no clipping)."""
    (sh, sw), (out_h, out_w) = _scales(x.shape[-2:], scale, size)
    kw = {"dtype": x.dtype, "device": x.device}
    rows = torch.from_numpy(resize_matrix(x.shape[-2], out_h, sh, antialias)).to(**kw)
    cols = torch.from_numpy(resize_matrix(x.shape[-1], out_w, sw, antialias)).to(**kw)
    return rows @ x @ cols.T


@DEGRADATIONS.register_module()
class BicubicDownsample(Degradation):
    """Shrink by ``scale`` (e.g. 4: quarter size) with MATLAB's antialiased bicubic, as SR's
    "bicubic" LR images are made; output side ceil(side / scale), clipped to [0, 1].

    ``quantize`` rounds to 8-bit levels, as an LR PNG made by MATLAB (or tools/make_lr.py) from an
    8-bit HR image stores them; ``antialias: false`` is MATLAB's ``'Antialiasing', false``.
    """

    def __init__(self, scale: float = 4, antialias: bool = True, quantize: bool = False) -> None:
        self.scale = as_number("scale", scale, 1.0, 16.0)
        self.antialias = bool(antialias)
        self.quantize = bool(quantize)

    def apply(self, img: np.ndarray, params: Mapping[str, Any],
              rng: np.random.Generator) -> np.ndarray:
        out = np.clip(imresize(img, 1.0 / self.scale, antialias=self.antialias), 0.0, 1.0)
        if self.quantize:
            out = np.floor(out * 255.0 + 0.5) / 255.0
        return finish(out, img)
