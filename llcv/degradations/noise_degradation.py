"""Additive white Gaussian noise and photon-limited (Poisson) noise, in colour or gray."""
from __future__ import annotations

from typing import Any, Mapping, Optional

import numpy as np
import torch

from llcv.degradations.base import (BatchedDegradation, RangeLike, as_probability, as_range, draw,
                                    draw_log, finish, numpy_rng, to_gray)
from llcv.registry import DEGRADATIONS
from llcv.utils import luma


def _per_sample(params: list[dict], key: str, like: torch.Tensor) -> torch.Tensor:
    """One parameter of every sample as an N x 1 x 1 x 1 tensor on ``like``'s device."""
    values = torch.tensor([float(p[key]) for p in params], dtype=like.dtype, device=like.device)
    return values.view(-1, 1, 1, 1)


def _draw_gray(rng: np.random.Generator, gray_prob: float) -> bool:
    """Whether this call's noise is shared by all channels (no draw when the answer is fixed)."""
    if gray_prob in (0.0, 1.0):
        return gray_prob == 1.0
    return bool(rng.random() < gray_prob)


@DEGRADATIONS.register_module()
class GaussianNoise(BatchedDegradation):
    """Add N(0, sigma²) noise; ``sigma`` is on the 8-bit scale (25 means 25/255), as in the literature.

    ``sigma`` is fixed or drawn uniformly from [low, high]; with probability ``gray_prob`` one noise
    field is shared by all channels (gray noise). ``clip`` keeps the result in [0, 1].
    """

    def __init__(self, sigma: RangeLike = (0.0, 50.0), gray_prob: float = 0.0, clip: bool = True) -> None:
        self.sigma = as_range("sigma", sigma, 0.0, 255.0)
        self.gray_prob = as_probability("gray_prob", gray_prob)
        self.clip = bool(clip)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"sigma": draw(rng, self.sigma), "gray": _draw_gray(rng, self.gray_prob)}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        h, w, c = img.shape
        noise = rng.standard_normal((h, w, 1 if params["gray"] else c), dtype=np.float32)
        return finish(img + noise * np.float32(params["sigma"] / 255.0), img, self.clip)

    def degrade_torch(self, x: torch.Tensor, generator: Optional[torch.Generator] = None
                      ) -> tuple[torch.Tensor, list[dict]]:
        """Batched NCHW version (own parameters per image); ``generator`` must be on x's device."""
        rng = numpy_rng(generator)
        params = [self.sample_params(rng) for _ in range(x.shape[0])]
        noise = torch.randn(x.shape, generator=generator, device=x.device, dtype=x.dtype)
        gray = _per_sample(params, "gray", x) > 0
        noise = torch.where(gray, noise[:, :1].expand_as(noise), noise)
        out = x + noise * (_per_sample(params, "sigma", x) / 255.0)
        return (out.clamp(0.0, 1.0) if self.clip else out), params


@DEGRADATIONS.register_module()
class PoissonNoise(BatchedDegradation):
    """Photon noise: ``Poisson(img * peak) / peak``, so the variance at level x is x / peak.

    ``peak`` (photons at white, > 0) is fixed or drawn log-uniformly from [low, high]: noise strength
    goes as 1/sqrt(peak), so a log scale spreads the levels evenly. With probability ``gray_prob``
    the noise is drawn on the luma and shared by all channels. ``clip`` caps the result at 1.
    """

    def __init__(self, peak: RangeLike = (10.0, 1000.0), gray_prob: float = 0.0, clip: bool = True) -> None:
        self.peak = as_range("peak", peak, 0.0, open_low=True)
        self.gray_prob = as_probability("gray_prob", gray_prob)
        self.clip = bool(clip)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"peak": draw_log(rng, self.peak), "gray": _draw_gray(rng, self.gray_prob)}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        peak = params["peak"]
        base = to_gray(img) if params["gray"] else img
        base = np.maximum(base, 0.0)
        noise = rng.poisson(base * peak) / peak - base
        return finish(img + noise.astype(img.dtype), img, self.clip)

    def degrade_torch(self, x: torch.Tensor, generator: Optional[torch.Generator] = None
                      ) -> tuple[torch.Tensor, list[dict]]:
        """Batched NCHW version (own parameters per image); ``generator`` must be on x's device."""
        rng = numpy_rng(generator)
        params = [self.sample_params(rng) for _ in range(x.shape[0])]
        peak, gray = _per_sample(params, "peak", x), _per_sample(params, "gray", x) > 0
        brightness, colour = luma(x).clamp_min(0.0), x.clamp_min(0.0)
        gray_noise = torch.poisson(brightness * peak, generator=generator) / peak - brightness
        colour_noise = torch.poisson(colour * peak, generator=generator) / peak - colour
        out = x + torch.where(gray, gray_noise.expand_as(x), colour_noise)
        return (out.clamp(0.0, 1.0) if self.clip else out), params
