"""Rescaling with a random factor and interpolation, optionally back to the input size."""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import cv2
import numpy as np

from llcv.degradations.base import Degradation, RangeLike, as_probs, as_range, draw, finish
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS

INTERPOLATIONS = {"bicubic": cv2.INTER_CUBIC, "bilinear": cv2.INTER_LINEAR, "area": cv2.INTER_AREA,
                  "nearest": cv2.INTER_NEAREST}


def resize_image(img: np.ndarray, size: tuple[int, int], mode: str) -> np.ndarray:
    """Resize an HWC image to ``size`` = (height, width) with interpolation ``mode``; kept in [0, 1]."""
    h, w = size
    out = cv2.resize(img, (w, h), interpolation=INTERPOLATIONS[mode])
    return finish(out.reshape(h, w, img.shape[2]), img)


def check_modes(name: str, modes: Sequence[str]) -> tuple[str, ...]:
    """Check interpolation names against :data:`INTERPOLATIONS`."""
    if isinstance(modes, str):
        modes = [modes]
    if not isinstance(modes, (list, tuple)) or not modes or any(m not in INTERPOLATIONS for m in modes):
        raise OptionError(f"{name}: expected a list of interpolations from {sorted(INTERPOLATIONS)}, "
                          f"got {modes!r}")
    return tuple(modes)


@DEGRADATIONS.register_module()
class Resize(Degradation):
    """Rescale by ``scale`` (fixed or uniform in [low, high]) with an interpolation drawn from
    ``modes`` (weights ``mode_probs``). ``restore`` resizes back to the input size with an
    independently drawn interpolation: "down and back up" keeps the size but loses the detail.
    """

    def __init__(self, scale: RangeLike = (0.5, 1.0),
                 modes: Sequence[str] = ("bicubic", "bilinear", "area"),
                 mode_probs: Optional[Sequence[float]] = None, restore: bool = False) -> None:
        self.scale = as_range("scale", scale, 0.0, 16.0, open_low=True)
        self.modes = check_modes("modes", modes)
        self.mode_probs = as_probs("mode_probs", mode_probs, len(self.modes))
        self.restore = bool(restore)

    def _mode(self, rng: np.random.Generator) -> str:
        if len(self.modes) == 1:
            return self.modes[0]
        return self.modes[int(rng.choice(len(self.modes), p=self.mode_probs))]

    def sample_params(self, rng: np.random.Generator) -> dict:
        params = {"scale": draw(rng, self.scale), "mode": self._mode(rng)}
        if self.restore:
            params["up_mode"] = self._mode(rng)
        return params

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        h, w = img.shape[:2]
        size = (max(1, int(h * params["scale"] + 0.5)), max(1, int(w * params["scale"] + 0.5)))
        out = resize_image(img, size, params["mode"])
        return resize_image(out, (h, w), params["up_mode"]) if self.restore else out
