"""Haze from the atmospheric scattering model I = J·t + A·(1 − t), t = exp(−beta·d)."""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from llcv.degradations.base import (Degradation, RangeLike, as_number, as_range, draw, finish,
                                    to_gray)
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS

DEPTH_PROXIES = ("luminance", "vertical", "uniform")


def depth_proxy(img: np.ndarray, kind: str, smooth: float) -> np.ndarray:
    """Relative depth in [0, 1] (1 = farthest) as HxWx1.

    ``luminance``: smoothed luma (Gaussian sigma = ``smooth`` × long side), min-max normalised, as
    bright regions (sky, distant haze) tend to be far; ``vertical``: 1 at the top row, 0 at the
    bottom; ``uniform``: 1 everywhere (and the fallback for a flat image).
    """
    h, w = img.shape[:2]
    if kind == "vertical":
        ramp = np.linspace(1.0, 0.0, h) if h > 1 else np.ones(1)
        return np.broadcast_to(ramp[:, None, None], (h, w, 1)).astype(img.dtype)
    if kind == "luminance":
        lum = cv2.GaussianBlur(to_gray(img).astype(np.float32), (0, 0), max(smooth * max(h, w), 0.1))
        lo, hi = float(lum.min()), float(lum.max())
        if hi - lo > 1e-6:
            return ((lum - lo) / (hi - lo)).reshape(h, w, 1).astype(img.dtype)
    return np.ones((h, w, 1), dtype=img.dtype)


@DEGRADATIONS.register_module()
class Haze(Degradation):
    """Blend toward the airlight ``A`` with transmission ``t = exp(-beta * d)``.

    ``beta`` (>= 0, the optical depth of the farthest point) and ``airlight`` (gray level of
    ``A`` in [0, 1]) are fixed or uniform in [low, high]; ``depth`` picks the depth proxy d
    (``luminance``, ``vertical`` or ``uniform``), ``depth_smooth`` the luminance blur.
    """

    def __init__(self, beta: RangeLike = (0.5, 2.0), airlight: RangeLike = (0.7, 1.0),
                 depth: str = "luminance", depth_smooth: float = 0.05) -> None:
        self.beta = as_range("beta", beta, 0.0, 20.0)
        self.airlight = as_range("airlight", airlight, 0.0, 1.0)
        if depth not in DEPTH_PROXIES:
            raise OptionError(f"depth: expected one of {', '.join(DEPTH_PROXIES)}, got {depth!r}")
        self.depth = depth
        self.depth_smooth = as_number("depth_smooth", depth_smooth, 0.0, 1.0)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"beta": draw(rng, self.beta), "airlight": draw(rng, self.airlight)}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        d = depth_proxy(img, self.depth, self.depth_smooth)
        t = np.exp(-params["beta"] * d).astype(img.dtype)
        return finish(img * t + img.dtype.type(params["airlight"]) * (1 - t), img)
