"""Blur kernels: anisotropic Gaussian, generalized Gaussian, plateau, and motion trajectories.

Coordinates: x to the right, y up (screen view); ``angle`` is in degrees, counter-clockwise from
the x axis, and gives the direction of the long axis (``sigma_x``) or of the motion.
Every kernel is non-negative, odd-sized, centred, and sums to 1.
"""
from __future__ import annotations

import math
from typing import Optional

import cv2
import numpy as np
import torch
import torch.nn.functional as F


def kernel_grid(size: int) -> tuple[np.ndarray, np.ndarray]:
    """Centred (x, y) coordinates of a ``size`` x ``size`` kernel, y pointing up."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"size: kernel size must be odd and positive, got {size}")
    r = np.arange(size, dtype=np.float64) - size // 2
    return np.meshgrid(r, -r)


def quadratic_form(size: int, sigma_x: float, sigma_y: float, angle: float) -> np.ndarray:
    """``v^T C^-1 v`` over the kernel grid, C = R(angle) diag(sigma_x², sigma_y²) R(angle)^T."""
    x, y = kernel_grid(size)
    t = math.radians(angle)
    u = x * math.cos(t) + y * math.sin(t)      # along the long axis
    v = -x * math.sin(t) + y * math.cos(t)     # across it
    return (u / sigma_x) ** 2 + (v / sigma_y) ** 2


def _normalise(k: np.ndarray) -> np.ndarray:
    return (k / k.sum()).astype(np.float32)


def gaussian_kernel(size: int, sigma_x: float, sigma_y: Optional[float] = None,
                    angle: float = 0.0) -> np.ndarray:
    """Gaussian ``exp(-q/2)``; isotropic when ``sigma_y`` is None."""
    q = quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, angle)
    return _normalise(np.exp(-0.5 * q))


def generalized_gaussian_kernel(size: int, sigma_x: float, sigma_y: Optional[float] = None,
                                angle: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """Generalized Gaussian ``exp(-q^beta / 2)``: beta < 1 heavy-tailed, beta > 1 flat-topped."""
    q = quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, angle)
    return _normalise(np.exp(-0.5 * q ** beta))


def plateau_kernel(size: int, sigma_x: float, sigma_y: Optional[float] = None,
                   angle: float = 0.0, beta: float = 1.0) -> np.ndarray:
    """Plateau-shaped ``1 / (1 + q^beta)``: a flat top and slowly decaying tails."""
    q = quadratic_form(size, sigma_x, sigma_x if sigma_y is None else sigma_y, angle)
    return _normalise(1.0 / (1.0 + q ** beta))


def motion_trajectory(length: float, angle: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Points (x, y up) of a constant-speed path of arc length ``length``, centred on its centroid.

    The heading is a random walk around ``angle`` whose total spread has std ``jitter`` radians
    (0 gives a straight line); its mean is ``angle``, so the path's main direction is kept.
    """
    n = max(16, math.ceil(4 * length))
    heading = np.zeros(n)
    if jitter > 0:
        heading = np.cumsum(rng.normal(0.0, jitter / math.sqrt(n), n))
        heading -= heading.mean()
    heading += math.radians(angle)
    steps = (length / n) * np.stack([np.cos(heading), np.sin(heading)], axis=1)
    points = np.concatenate([np.zeros((1, 2)), np.cumsum(steps, axis=0)])
    return points - points.mean(axis=0)


def rasterize_trajectory(points: np.ndarray) -> np.ndarray:
    """Kernel of the time spent at each pixel by a path of equally spaced points (bilinear splat)."""
    radius = int(math.ceil(np.abs(points).max())) + 1
    size = 2 * radius + 1
    col, row = radius + points[:, 0], radius - points[:, 1]
    c0, r0 = np.floor(col).astype(int), np.floor(row).astype(int)
    fc, fr = col - c0, row - r0
    k = np.zeros((size, size))
    for dr, dc, wgt in ((0, 0, (1 - fr) * (1 - fc)), (0, 1, (1 - fr) * fc),
                        (1, 0, fr * (1 - fc)), (1, 1, fr * fc)):
        np.add.at(k, (r0 + dr, c0 + dc), wgt)
    return _normalise(k)


def motion_kernel(length: float, angle: float, jitter: float, rng: np.random.Generator) -> np.ndarray:
    """Motion-blur kernel of a random trajectory (see :func:`motion_trajectory`)."""
    return rasterize_trajectory(motion_trajectory(length, angle, jitter, rng))


def filter_image(img: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Convolve each channel of an HWC image with ``kernel`` (reflected borders)."""
    flipped = np.ascontiguousarray(kernel[::-1, ::-1], dtype=np.float32)
    out = cv2.filter2D(img, -1, flipped, borderType=cv2.BORDER_REFLECT_101)
    return out.reshape(img.shape)


def reflect_index(n: int, r: int) -> np.ndarray:
    """Source indices of ``range(-r, n + r)`` under reflect-101 padding (OpenCV's default border)."""
    if n == 1:
        return np.zeros(n + 2 * r, dtype=np.int64)
    period = 2 * n - 2
    i = np.abs(np.arange(-r, n + r)) % period
    return np.where(i >= n, period - i, i)


def filter_tensor(x: torch.Tensor, kernels: list[np.ndarray]) -> torch.Tensor:
    """Convolve each image of an NCHW batch with its own kernel, with the same reflected borders
    as :func:`filter_image`; kernels of different sizes are zero-padded to the largest."""
    n, c, h, w = x.shape
    size = max(k.shape[0] for k in kernels)
    stack = np.zeros((n, size, size), dtype=np.float32)
    for i, k in enumerate(kernels):
        pad = (size - k.shape[0]) // 2
        stack[i, pad:pad + k.shape[0], pad:pad + k.shape[0]] = k[::-1, ::-1]
    weight = torch.from_numpy(stack).to(x).repeat_interleave(c, dim=0)[:, None]
    r = size // 2
    rows = torch.from_numpy(reflect_index(h, r)).to(x.device)
    cols = torch.from_numpy(reflect_index(w, r)).to(x.device)
    padded = x.reshape(1, n * c, h, w)[:, :, rows][:, :, :, cols]
    return F.conv2d(padded, weight, groups=n * c).reshape(n, c, h, w)
