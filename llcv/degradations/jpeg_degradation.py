"""JPEG compression artefacts through OpenCV's encoder (baseline, 4:2:0 chroma subsampling)."""
from __future__ import annotations

from typing import Any, Mapping

import cv2
import numpy as np

from llcv.degradations.base import Degradation, RangeLike, as_range, draw_int
from llcv.errors import DataError
from llcv.registry import DEGRADATIONS


def jpeg_roundtrip(img: np.ndarray, quality: int) -> np.ndarray:
    """Encode an HWC RGB (or gray) float image in [0, 1] as JPEG at ``quality`` and decode it."""
    u8 = np.clip(np.rint(img * 255.0), 0, 255).astype(np.uint8)
    if u8.shape[2] == 3:
        u8 = cv2.cvtColor(u8, cv2.COLOR_RGB2BGR)
    elif u8.shape[2] != 1:
        raise DataError(f"img: JPEG takes 1 or 3 channels, got {u8.shape[2]}")
    ok, buf = cv2.imencode(".jpg", u8, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise DataError(f"img: OpenCV could not JPEG-encode an image of shape {img.shape}")
    out = cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)
    if out.ndim == 2:
        out = out[..., None]
    else:
        out = cv2.cvtColor(out, cv2.COLOR_BGR2RGB)
    return out.astype(img.dtype) / img.dtype.type(255.0)


@DEGRADATIONS.register_module()
class JPEGCompression(Degradation):
    """JPEG round trip at an integer ``quality`` in [0, 100], fixed or uniform in [low, high].

    The image is quantised to 8 bits first, as a saved JPEG would be.
    """

    def __init__(self, quality: RangeLike = (30, 95)) -> None:
        self.quality = as_range("quality", quality, 0, 100, integer=True)

    def sample_params(self, rng: np.random.Generator) -> dict:
        return {"quality": draw_int(rng, self.quality)}

    def apply(self, img: np.ndarray, params: Mapping[str, Any], rng: np.random.Generator) -> np.ndarray:
        return jpeg_roundtrip(img, params["quality"])
