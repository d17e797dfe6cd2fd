"""Shared pieces of degradations: the ``Degradation`` protocol, option ranges and image checks.

A degradation draws its parameters first (``sample_params``), then applies them
(``apply``); keeping the two apart lets pipelines and datasets record exactly what was done.
"""
from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence, Union

import numpy as np
import torch

from llcv.errors import DataError, OptionError
from llcv.utils import BT601_LUMA_RGB

Number = Union[int, float]
RangeLike = Union[Number, Sequence[Number]]


class Degradation:
    """Base class: ``deg(img, rng)`` returns a degraded copy of an HWC float image in [0, 1]."""

    def sample_params(self, rng: np.random.Generator) -> dict:
        """Draw this call's parameters (plain Python values, usable as labels)."""
        return {}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        """Degrade ``img`` with ``params``; ``rng`` supplies what is not a parameter (noise fields)."""
        raise NotImplementedError

    def degrade(self, img: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        """Degrade ``img`` and return the drawn parameters with it."""
        check_image(img)
        params = self.sample_params(rng)
        return self.apply(img, params, rng), params

    def __call__(self, img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        return self.degrade(img, rng)[0]


class BatchedDegradation(Degradation):
    """A degradation that also runs batched on NCHW tensors (on the training device), with its
    random draws taken from a ``torch.Generator``."""

    def degrade_torch(self, x: torch.Tensor, generator: Optional[torch.Generator] = None
                      ) -> tuple[torch.Tensor, Any]:
        """Degrade the batch ``x``; returns it with the drawn parameters."""
        raise NotImplementedError

    def apply_torch(self, x: torch.Tensor, generator: Optional[torch.Generator] = None
                    ) -> torch.Tensor:
        """Degrade the batch ``x`` with parameters drawn from ``generator``."""
        return self.degrade_torch(x, generator)[0]


def check_image(img: Any) -> None:
    """Fail with a clear message unless ``img`` is an HxWxC float32/float64 array."""
    if not isinstance(img, np.ndarray) or img.ndim != 3 or img.dtype not in (np.float32, np.float64):
        got = f"{img.dtype} array of shape {img.shape}" if isinstance(img, np.ndarray) else type(img).__name__
        raise DataError(
            f"img: degradations take an HxWxC float32 array in [0, 1], got {got}; "
            "convert with img[..., None] for gray and img.astype(np.float32) / 255 for uint8"
        )


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)


def as_range(name: str, value: RangeLike, low: float = -math.inf, high: float = math.inf,
             *, integer: bool = False, open_low: bool = False) -> tuple[float, float]:
    """Parse a fixed number or a ``[low, high]`` pair into a checked ``(lo, hi)`` tuple."""
    pair = [value, value] if _is_number(value) else value
    ok = isinstance(pair, (list, tuple)) and len(pair) == 2 and all(_is_number(v) for v in pair)
    if ok:
        lo, hi = (int(v) if integer else float(v) for v in pair)
        ok = lo <= hi and (lo > low if open_low else lo >= low) and hi <= high
        ok = ok and (not integer or all(float(v).is_integer() for v in pair))
    if not ok:
        kind = "an integer" if integer else "a number"
        bound = f"{low} {'<' if open_low else '<='} low <= high <= {high}"
        raise OptionError(f"{name}: expected {kind} or a [low, high] pair with {bound}, got {value!r}")
    return lo, hi


def as_number(name: str, value: Any, low: float = -math.inf, high: float = math.inf) -> float:
    """Check that ``value`` is a single number in [low, high] (no range allowed)."""
    if not _is_number(value) or not low <= float(value) <= high:
        raise OptionError(f"{name}: expected a single number in [{low}, {high}], got {value!r}")
    return float(value)


def as_probability(name: str, value: Any) -> float:
    """Check that ``value`` is a probability in [0, 1]."""
    if not _is_number(value) or not 0.0 <= float(value) <= 1.0:
        raise OptionError(f"{name}: expected a probability in [0, 1], got {value!r}")
    return float(value)


def as_probs(name: str, probs: Optional[Sequence[Number]], count: int) -> np.ndarray:
    """Normalise ``count`` non-negative weights (``None`` means uniform)."""
    if probs is None:
        return np.full(count, 1.0 / count)
    ok = isinstance(probs, (list, tuple)) and len(probs) == count and all(_is_number(p) for p in probs)
    weights = np.asarray(probs, dtype=np.float64) if ok else np.zeros(0)
    if not ok or (weights < 0).any() or weights.sum() <= 0:
        raise OptionError(f"{name}: expected {count} non-negative weights with a positive sum, got {probs!r}")
    return weights / weights.sum()


def draw(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """Uniform draw in ``bounds``; a fixed value (equal ends) consumes no randomness."""
    lo, hi = bounds
    return float(lo) if lo == hi else float(rng.uniform(lo, hi))


def draw_int(rng: np.random.Generator, bounds: tuple[int, int]) -> int:
    """Uniform integer draw in the closed interval ``bounds``."""
    lo, hi = bounds
    return int(lo) if lo == hi else int(rng.integers(lo, hi + 1))


def draw_log(rng: np.random.Generator, bounds: tuple[float, float]) -> float:
    """Log-uniform draw in ``bounds`` (for scale parameters spanning decades)."""
    lo, hi = bounds
    return float(lo) if lo == hi else float(math.exp(rng.uniform(math.log(lo), math.log(hi))))


def to_gray(img: np.ndarray) -> np.ndarray:
    """BT.601 luma of an RGB image as HxWx1 (a 1-channel image is returned unchanged)."""
    if img.shape[2] == 1:
        return img
    weights = np.asarray(BT601_LUMA_RGB, dtype=img.dtype)
    return (img[..., :3] @ weights)[..., None]


def finish(out: np.ndarray, like: np.ndarray, clip: bool = True) -> np.ndarray:
    """Cast ``out`` to the dtype of ``like``, clipped to [0, 1] unless ``clip`` is false."""
    if clip:
        out = np.clip(out, 0.0, 1.0)
    return out.astype(like.dtype, copy=False)


class CallableDegradation(Degradation):
    """Adapter for a degradation that only has ``__call__(img, rng)`` and ``sample_params(rng)``.

    Its parameters are drawn from a child seed, and ``__call__`` is replayed on that seed, so the
    recorded parameters are the ones used when ``__call__`` starts by calling ``sample_params``.
    """

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def sample_params(self, rng: np.random.Generator) -> dict:
        seed = int(rng.integers(2**63))
        params = getattr(self.inner, "sample_params", lambda _rng: {})(np.random.default_rng(seed))
        return {"seed": seed, **params}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return self.inner(img, np.random.default_rng(params["seed"]))


def build_child(key: str, cfg: Any) -> Degradation:
    """Build a nested degradation from its option mapping (``key`` names it in errors).

    An already built degradation is taken as it is; one without ``apply`` is adapted.
    """
    from llcv.registry import DEGRADATIONS, build

    if isinstance(cfg, Mapping):
        cfg = build(DEGRADATIONS, cfg, key)
    if isinstance(cfg, Degradation):
        return cfg
    if callable(cfg):
        return CallableDegradation(cfg)
    raise OptionError(f"{key}: expected a degradation mapping like {{type: GaussianNoise}}, got {cfg!r}")


def numpy_rng(generator: Optional["torch.Generator"]) -> np.random.Generator:
    """A numpy generator seeded by one draw from ``generator`` (torch's global RNG when None).

    Batched torch paths draw their per-sample parameters with numpy, so they match ``sample_params``.
    """
    import torch

    device = generator.device if generator is not None else "cpu"
    seed = torch.randint(0, 2**62, (1,), generator=generator, device=device)
    return np.random.default_rng(int(seed.item()))
