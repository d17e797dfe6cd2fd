"""Combinators over nested degradation configs, and a two-stage real-world chain.

Every combinator records in ``sample_params`` what it chose (branch, applied or not) along with
the chosen children's parameters, so a dataset can return them as labels.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import numpy as np

from llcv.degradations.base import (Degradation, RangeLike, as_number, as_probability, as_probs,
                                    as_range, build_child, draw_int)
from llcv.degradations.jpeg_degradation import jpeg_roundtrip
from llcv.degradations.resize_degradation import check_modes, resize_image
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS


def _children(key: str, cfgs: Any) -> list[Degradation]:
    if not isinstance(cfgs, (list, tuple)) or not cfgs:
        raise OptionError(f"{key}: expected a non-empty list of degradation mappings, got {cfgs!r}")
    return [build_child(f"{key}.{i}", cfg) for i, cfg in enumerate(cfgs)]


def _type_name(deg: Degradation) -> str:
    return type(getattr(deg, "inner", deg)).__name__


@DEGRADATIONS.register_module()
class Identity(Degradation):
    """Return the image unchanged (a "keep" branch for ``RandomChoice``)."""

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return img.copy()


@DEGRADATIONS.register_module()
class Compose(Degradation):
    """Apply ``degradations`` one after the other; parameters: ``steps``, one ``{type, params}`` each."""

    def __init__(self, degradations: Sequence[Any]) -> None:
        self.degradations = _children("degradations", degradations)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"steps": [{"type": _type_name(d), "params": d.sample_params(rng)} for d in self.degradations]}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        for deg, step in zip(self.degradations, params["steps"]):
            img = deg.apply(img, step["params"], rng)
        return img


@DEGRADATIONS.register_module()
class RandomChoice(Degradation):
    """Apply one of ``degradations``, picked with weights ``probs`` (uniform when omitted).

    Parameters: ``choice`` (index), ``type`` (class name) and the branch's ``params``.
    """

    def __init__(self, degradations: Sequence[Any], probs: Optional[Sequence[float]] = None) -> None:
        self.degradations = _children("degradations", degradations)
        self.probs = as_probs("probs", probs, len(self.degradations))

    def sample_params(self, rng: np.random.Generator) -> dict:
        choice = int(rng.choice(len(self.degradations), p=self.probs))
        deg = self.degradations[choice]
        return {"choice": choice, "type": _type_name(deg), "params": deg.sample_params(rng)}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return self.degradations[params["choice"]].apply(img, params["params"], rng)


@DEGRADATIONS.register_module()
class RandomApply(Degradation):
    """Apply ``degradation`` with probability ``prob``; ``applied`` says whether it was."""

    def __init__(self, degradation: Any, prob: float = 0.5) -> None:
        self.degradation = build_child("degradation", degradation)
        self.prob = as_probability("prob", prob)

    def sample_params(self, rng: np.random.Generator) -> dict:
        applied = bool(rng.random() < self.prob)
        return {"applied": applied, "params": self.degradation.sample_params(rng) if applied else {}}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return self.degradation.apply(img, params["params"], rng) if params["applied"] else img.copy()


def blur_choice(sigma: Sequence[float]) -> dict:
    """Real-ESRGAN's kernel mix without sinc: iso/aniso Gaussian, generalized Gaussian, plateau."""
    iso, aniso = {"sigma": list(sigma)}, {"sigma": list(sigma), "sigma_y": list(sigma), "angle": [0, 180]}
    return {"type": "RandomChoice", "probs": [0.45, 0.25, 0.12, 0.03, 0.12, 0.03], "degradations": [
        {"type": "GaussianBlur", **iso}, {"type": "GaussianBlur", **aniso},
        {"type": "GeneralizedGaussianBlur", "beta": [0.5, 4.0], **iso},
        {"type": "GeneralizedGaussianBlur", "beta": [0.5, 4.0], **aniso},
        {"type": "PlateauBlur", "beta": [1.0, 2.0], **iso},
        {"type": "PlateauBlur", "beta": [1.0, 2.0], **aniso}]}


def stage_config(blur_sigma: Sequence[float], blur_prob: float, up: float, down: float,
                 resize_probs: Sequence[float], noise_sigma: Sequence[float],
                 poisson_peak: Sequence[float]) -> dict:
    """One degradation stage: blur -> resize (up / down / keep) -> noise -> JPEG."""
    return {"type": "Compose", "degradations": [
        {"type": "RandomApply", "prob": blur_prob, "degradation": blur_choice(blur_sigma)},
        {"type": "RandomChoice", "probs": list(resize_probs), "degradations": [
            {"type": "Resize", "scale": [1.0, up]}, {"type": "Resize", "scale": [down, 1.0]},
            {"type": "Identity"}]},
        {"type": "RandomChoice", "degradations": [
            {"type": "GaussianNoise", "sigma": list(noise_sigma), "gray_prob": 0.4},
            {"type": "PoissonNoise", "peak": list(poisson_peak), "gray_prob": 0.4}]},
        {"type": "JPEGCompression", "quality": [30, 95]}]}


def first_stage() -> dict:
    """Default first stage, after Real-ESRGAN's x4 settings (Poisson given as photon peak)."""
    return stage_config([0.2, 3.0], 1.0, 1.5, 0.15, [0.2, 0.7, 0.1], [1.0, 30.0], [25.0, 2500.0])


def second_stage() -> dict:
    """Default second stage: milder, blur applied with probability 0.8."""
    return stage_config([0.2, 1.5], 0.8, 1.2, 0.3, [0.3, 0.4, 0.3], [1.0, 25.0], [40.0, 2500.0])


@DEGRADATIONS.register_module()
class RealWorldChain(Degradation):
    """Second-order degradation in the style of Real-ESRGAN (without sinc filters).

    ``first`` then ``second`` (nested configs; by default blur -> resize -> noise -> JPEG each),
    then a resize to the input size divided by ``scale`` (interpolation drawn from
    ``final_modes``) and a last JPEG at ``final_quality``. ``scale: 1`` gives a same-size LQ.
    """

    def __init__(self, scale: float = 4.0, first: Optional[Mapping[str, Any]] = None,
                 second: Optional[Mapping[str, Any]] = None,
                 final_modes: Sequence[str] = ("bicubic", "bilinear", "area"),
                 final_quality: RangeLike = (30, 95)) -> None:
        self.scale = as_number("scale", scale, 1.0, 16.0)
        self.first = build_child("first", first_stage() if first is None else first)
        self.second = build_child("second", second_stage() if second is None else second)
        self.final_modes = check_modes("final_modes", final_modes)
        self.final_quality = as_range("final_quality", final_quality, 0, 100, integer=True)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"first": self.first.sample_params(rng), "second": self.second.sample_params(rng),
                "final_mode": self.final_modes[int(rng.integers(len(self.final_modes)))],
                "final_quality": draw_int(rng, self.final_quality)}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        size = (max(1, int(h / self.scale + 0.5)), max(1, int(w / self.scale + 0.5)))
        out = self.second.apply(self.first.apply(img, params["first"], rng), params["second"], rng)
        out = resize_image(out, size, params["final_mode"])
        return jpeg_roundtrip(out, params["final_quality"])
