"""Signal-dependent camera noise: y = x + n with Var(n) = a*x + b (shot gain a, read variance b).

Noise levels follow the smartphone model of Brooks et al. 2019, "Unprocessing Images for Learned
Raw Denoising": log(a) uniform in [log 1e-4, log 1.2e-2], log(b) = 2.18 log(a) + 1.20 + N(0, 0.26).
That model is fitted on linear raw data; applied to an sRGB image it is the usual approximation.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional

import numpy as np

from llcv.degradations.base import Degradation, RangeLike, as_range, draw_log, finish
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS
from llcv.utils import check_number


@DEGRADATIONS.register_module()
class PoissonGaussianNoise(Degradation):
    """Shot plus read noise at levels drawn per call from ``rng``.

    ``shot_range``: a, fixed or log-uniform in [low, high]. The read variance b follows
    log(b) = read_slope*log(a) + read_intercept + N(0, read_std), unless ``read_range`` gives
    it its own fixed value or log-uniform range. ``poisson=False`` draws n ~ N(0, a*x + b) (the
    Gaussian approximation Brooks et al. use); ``poisson=True`` draws photon counts Poisson(x / a)
    times a, plus N(0, b) read noise: same variance, but skewed and discrete in the shadows.
    ``clip`` saturates the output to [0, 1] as a sensor does.
    """

    def __init__(self, shot_range: RangeLike = (1e-4, 1.2e-2), read_slope: float = 2.18,
                 read_intercept: float = 1.20, read_std: float = 0.26,
                 read_range: Optional[RangeLike] = None, poisson: bool = False,
                 clip: bool = True) -> None:
        self.shot_range = as_range("shot_range", shot_range, 0.0, open_low=True)
        self.read_range = (None if read_range is None
                           else as_range("read_range", read_range, 0.0, open_low=True))
        self.read_slope, self.read_intercept = float(read_slope), float(read_intercept)
        self.read_std = check_number("read_std", read_std, 0.0, error=OptionError)
        self.poisson, self.clip = bool(poisson), bool(clip)

    def sample_params(self, rng: np.random.Generator) -> dict:
        """Noise levels for one image: ``shot`` (a) and ``read`` (b, a variance)."""
        shot = draw_log(rng, self.shot_range)
        if self.read_range is not None:
            read = draw_log(rng, self.read_range)
        else:
            log_read = self.read_slope * math.log(shot) + self.read_intercept
            if self.read_std > 0:
                log_read += float(rng.normal(0.0, self.read_std))
            read = math.exp(log_read)
        return {"shot": shot, "read": read}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        """Add noise with levels ``params`` to ``img`` (HWC, values in [0, 1])."""
        shot, read = np.float32(params["shot"]), np.float32(params["read"])
        signal = np.maximum(img, 0, dtype=np.float32)
        normal = rng.standard_normal(img.shape, dtype=np.float32)
        if self.poisson:
            photons = rng.poisson(signal / shot).astype(np.float32)
            out = photons * shot + normal * np.sqrt(read)
        else:
            out = img + normal * np.sqrt(signal * shot + read)
        return finish(out, img, self.clip)
