"""Synthetic rain: sparse drops smeared into straight streaks and screen-blended onto the image."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from llcv.degradations import kernels
from llcv.degradations.base import Degradation, RangeLike, as_range, draw, finish
from llcv.registry import DEGRADATIONS


@DEGRADATIONS.register_module()
class RainStreaks(Degradation):
    """Add white rain streaks; every option is fixed or uniform in [low, high].

    ``angle``: tilt from vertical in degrees (positive leans the top of the streaks to the right);
    ``length``: streak length in pixels; ``density``: fraction of pixels that start a streak;
    ``intensity``: opacity of the brightest streaks in (0, 1]. Rain only brightens
    (screen blend ``1 - (1 - img) * (1 - rain)``), so values stay in [0, 1].
    """

    def __init__(self, angle: RangeLike = (-20.0, 20.0), length: RangeLike = (10.0, 30.0),
                 density: RangeLike = (0.002, 0.01), intensity: RangeLike = (0.5, 0.9)) -> None:
        self.angle = as_range("angle", angle, -90.0, 90.0)
        self.length = as_range("length", length, 1.0, 99.0)
        self.density = as_range("density", density, 0.0, 1.0)
        self.intensity = as_range("intensity", intensity, 0.0, 1.0)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"angle": draw(rng, self.angle), "length": draw(rng, self.length),
                "density": draw(rng, self.density), "intensity": draw(rng, self.intensity)}

    def rain_layer(self, shape: tuple[int, int], params: Mapping[str, Any],
                   rng: np.random.Generator) -> np.ndarray:
        """The HxWx1 streak opacity map in [0, intensity]."""
        drops = rng.random(shape) < params["density"]
        seeds = (drops * rng.uniform(0.5, 1.0, shape)).astype(np.float32)[..., None]
        line = kernels.motion_kernel(params["length"], 90.0 - params["angle"], 0.0, rng)
        streaks = kernels.filter_image(seeds, line / line.max())
        return np.clip(streaks, 0.0, 1.0) * np.float32(params["intensity"])

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        rain = self.rain_layer(img.shape[:2], params, rng).astype(img.dtype)
        return finish(1.0 - (1.0 - img) * (1.0 - rain), img)
