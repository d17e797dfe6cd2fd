"""Blur with one kernel family per class: Gaussian, generalized Gaussian, plateau, motion.

All parameters are drawn per call (``sample_params``); ``kernel(params)`` rebuilds the exact
kernel, so labels and tests can inspect it. Angles are in degrees, counter-clockwise from the
x axis (see :mod:`llcv.degradations.kernels`).
"""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch

from llcv.degradations import kernels
from llcv.degradations.base import (BatchedDegradation, RangeLike, as_range, draw, draw_int, finish,
                                    numpy_rng)
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS


def _odd_range(value: RangeLike) -> tuple[int, int]:
    lo, hi = as_range("kernel_size", value, 1, 99, integer=True)
    if lo % 2 == 0 or hi % 2 == 0:
        raise OptionError(f"kernel_size: kernel sizes must be odd, got {value!r}; use e.g. [7, 21]")
    return lo, hi


class KernelBlur(BatchedDegradation):
    """Shared part of the kernel blurs: draw the parameters, build the kernel, convolve."""

    def kernel(self, params: Mapping[str, Any]) -> np.ndarray:
        """The blur kernel described by ``params`` (non-negative, sums to 1)."""
        raise NotImplementedError

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return finish(kernels.filter_image(img, self.kernel(params)), img)

    def degrade_torch(self, x: torch.Tensor, generator: Optional[torch.Generator] = None
                      ) -> tuple[torch.Tensor, list[dict]]:
        """Blur each image of an NCHW batch with its own drawn kernel (one grouped convolution)."""
        rng = numpy_rng(generator)
        params = [self.sample_params(rng) for _ in range(x.shape[0])]
        out = kernels.filter_tensor(x, [self.kernel(p) for p in params])
        return out.clamp(0.0, 1.0), params


class ShapedBlur(KernelBlur):
    """A kernel shaped by the covariance (sigma_x, sigma_y, angle): isotropic when ``sigma_y`` is None."""

    def __init__(self, sigma: RangeLike, sigma_y: Optional[RangeLike], angle: RangeLike,
                 kernel_size: RangeLike) -> None:
        self.sigma = as_range("sigma", sigma, 0.0, open_low=True)
        self.sigma_y = None if sigma_y is None else as_range("sigma_y", sigma_y, 0.0, open_low=True)
        self.angle = as_range("angle", angle, -360.0, 360.0)
        self.kernel_size = _odd_range(kernel_size)

    def sample_params(self, rng: np.random.Generator) -> dict:
        lo, hi = self.kernel_size
        size = lo + 2 * draw_int(rng, (0, (hi - lo) // 2))
        sigma_x = draw(rng, self.sigma)
        if self.sigma_y is None:
            return {"kernel_size": size, "sigma_x": sigma_x, "sigma_y": sigma_x, "angle": 0.0}
        return {"kernel_size": size, "sigma_x": sigma_x, "sigma_y": draw(rng, self.sigma_y),
                "angle": draw(rng, self.angle)}


@DEGRADATIONS.register_module()
class GaussianBlur(ShapedBlur):
    """Gaussian blur; anisotropic when ``sigma_y`` is given (``sigma`` is then the x-axis sigma
    before rotating by ``angle``). Sigmas are in pixels; ``kernel_size`` is an odd size or range."""

    def __init__(self, sigma: RangeLike = (0.2, 3.0), sigma_y: Optional[RangeLike] = None,
                 angle: RangeLike = (0.0, 180.0), kernel_size: RangeLike = (7, 21)) -> None:
        super().__init__(sigma, sigma_y, angle, kernel_size)

    def kernel(self, params: Mapping[str, Any]) -> np.ndarray:
        return kernels.gaussian_kernel(params["kernel_size"], params["sigma_x"], params["sigma_y"],
                                       params["angle"])


@DEGRADATIONS.register_module()
class GeneralizedGaussianBlur(ShapedBlur):
    """Generalized Gaussian blur ``exp(-q^beta / 2)`` (beta < 1 heavy tails, > 1 flat top)."""

    def __init__(self, sigma: RangeLike = (0.2, 3.0), sigma_y: Optional[RangeLike] = None,
                 angle: RangeLike = (0.0, 180.0), kernel_size: RangeLike = (7, 21),
                 beta: RangeLike = (0.5, 4.0)) -> None:
        super().__init__(sigma, sigma_y, angle, kernel_size)
        self.beta = as_range("beta", beta, 0.0, open_low=True)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {**super().sample_params(rng), "beta": draw(rng, self.beta)}

    def kernel(self, params: Mapping[str, Any]) -> np.ndarray:
        return kernels.generalized_gaussian_kernel(params["kernel_size"], params["sigma_x"],
                                                   params["sigma_y"], params["angle"], params["beta"])


@DEGRADATIONS.register_module()
class PlateauBlur(ShapedBlur):
    """Plateau-shaped blur ``1 / (1 + q^beta)``: flat top, slowly decaying tails."""

    def __init__(self, sigma: RangeLike = (0.2, 3.0), sigma_y: Optional[RangeLike] = None,
                 angle: RangeLike = (0.0, 180.0), kernel_size: RangeLike = (7, 21),
                 beta: RangeLike = (1.0, 2.0)) -> None:
        super().__init__(sigma, sigma_y, angle, kernel_size)
        self.beta = as_range("beta", beta, 0.0, open_low=True)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {**super().sample_params(rng), "beta": draw(rng, self.beta)}

    def kernel(self, params: Mapping[str, Any]) -> np.ndarray:
        return kernels.plateau_kernel(params["kernel_size"], params["sigma_x"], params["sigma_y"],
                                      params["angle"], params["beta"])


@DEGRADATIONS.register_module()
class MotionBlur(KernelBlur):
    """Camera-shake blur along a random trajectory of arc ``length`` pixels around ``angle``.

    ``jitter`` is the spread (radians, std) of the path's heading: 0 gives a straight streak.
    The trajectory comes from the drawn ``seed``, so the parameters fix the kernel.
    """

    def __init__(self, length: RangeLike = (5.0, 20.0), angle: RangeLike = (0.0, 180.0),
                 jitter: RangeLike = (0.0, 0.5)) -> None:
        self.length = as_range("length", length, 0.0, 99.0, open_low=True)
        self.angle = as_range("angle", angle, -360.0, 360.0)
        self.jitter = as_range("jitter", jitter, 0.0, 3.15)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"length": draw(rng, self.length), "angle": draw(rng, self.angle),
                "jitter": draw(rng, self.jitter), "seed": int(rng.integers(2**63))}

    def kernel(self, params: Mapping[str, Any]) -> np.ndarray:
        return kernels.motion_kernel(params["length"], params["angle"], params["jitter"],
                                     np.random.default_rng(params["seed"]))
