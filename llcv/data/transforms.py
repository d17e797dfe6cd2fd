"""Crops and flips on HWC arrays, drawn from a caller's rng and applied identically to GT and LQ.

All of them return views (slices, negative strides), so only the kept pixels are copied later.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np

from llcv.errors import OptionError


def check_crop_size(img: np.ndarray, size: int, option: str, source: str) -> None:
    """Fail naming ``option`` and the image when ``img`` is smaller than ``size`` on a side."""
    h, w = img.shape[:2]
    if h < size or w < size:
        raise OptionError(f"{option}: {size} is larger than image '{source}' ({h}x{w}); lower "
                          f"{option} or remove the image")


def random_crop(img: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A ``size`` x ``size`` window of ``img`` at a position drawn from ``rng``."""
    h, w = img.shape[:2]
    top = int(rng.integers(0, h - size + 1))
    left = int(rng.integers(0, w - size + 1))
    return img[top:top + size, left:left + size]


def paired_random_crop(gt: np.ndarray, lq: np.ndarray, gt_size: int, scale: int,
                       rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Matching windows: ``gt_size`` on GT and ``gt_size // scale`` on LQ, aligned on the LQ grid."""
    lq_size = gt_size // scale
    h, w = lq.shape[:2]
    top = int(rng.integers(0, h - lq_size + 1))
    left = int(rng.integers(0, w - lq_size + 1))
    lq = lq[top:top + lq_size, left:left + lq_size]
    gt = gt[top * scale:(top + lq_size) * scale, left * scale:(left + lq_size) * scale]
    return gt, lq


def center_crop(img: np.ndarray, size: int) -> np.ndarray:
    """The centred window of at most ``size`` x ``size`` (a smaller side is kept whole)."""
    h, w = img.shape[:2]
    ch, cw = min(size, h), min(size, w)
    top, left = (h - ch) // 2, (w - cw) // 2
    return img[top:top + ch, left:left + cw]


def augment(imgs: Sequence[np.ndarray], rng: np.random.Generator, hflip: bool,
            rot: bool) -> list[np.ndarray]:
    """Apply one random element of the flip/rotation group to every image in ``imgs``.

    ``hflip`` allows a horizontal flip; ``rot`` allows a vertical flip and a transpose, which
    together give all eight 90-degree rotations and reflections. Three numbers are always drawn,
    so the rest of the sample's random stream does not depend on these switches.
    """
    draws = rng.random(3) < 0.5
    do_h, do_v, do_t = hflip and draws[0], rot and draws[1], rot and draws[2]
    out = []
    for img in imgs:
        if do_h:
            img = img[:, ::-1]
        if do_v:
            img = img[::-1]
        if do_t:
            img = img.transpose(1, 0, 2)
        out.append(img)
    return out
