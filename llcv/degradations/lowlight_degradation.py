"""Under-exposure: darkening with a tone curve and an exposure factor, then sensor noise."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np

from llcv.degradations.base import Degradation, RangeLike, as_range, build_child, draw, finish
from llcv.registry import DEGRADATIONS


@DEGRADATIONS.register_module()
class LowLight(Degradation):
    """``exposure * img ** gamma``, then the nested ``noise`` degradation (none when omitted).

    ``exposure`` in (0, 1] scales the light; ``gamma`` >= 1 crushes the shadows further. Both are
    fixed or uniform in [low, high]. Noise is added after darkening, where its relative strength
    is what makes low-light images hard, e.g. ``noise: {type: PoissonNoise, peak: [20, 200]}``.
    """

    def __init__(self, exposure: RangeLike = (0.1, 0.5), gamma: RangeLike = (1.0, 2.0),
                 noise: Optional[Mapping[str, Any]] = None) -> None:
        self.exposure = as_range("exposure", exposure, 0.0, 1.0, open_low=True)
        self.gamma = as_range("gamma", gamma, 0.0, 10.0, open_low=True)
        self.noise = None if noise is None else build_child("noise", noise)

    def sample_params(self, rng: np.random.Generator) -> dict:
        params = {"exposure": draw(rng, self.exposure), "gamma": draw(rng, self.gamma)}
        if self.noise is not None:
            params["noise"] = self.noise.sample_params(rng)
        return params

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        dtype = img.dtype.type
        dark = dtype(params["exposure"]) * np.clip(img, 0.0, 1.0) ** dtype(params["gamma"])
        dark = finish(dark, img)
        return dark if self.noise is None else self.noise.apply(dark, params["noise"], rng)
