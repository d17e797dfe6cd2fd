"""Photos bundled with scikit-image, so demos and tests have real content without downloads."""
from __future__ import annotations

import functools

import numpy as np

from llcv.errors import OptionError

# Loader names in ``skimage.data`` whose images ship inside the scikit-image wheel.
BUILTIN_IMAGE_NAMES = (
    "astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "colorwheel", "grass",
    "gravel", "hubble_deep_field", "immunohistochemistry", "moon", "page", "retina", "rocket",
    "stereo_motorcycle", "text",
)


def check_builtin_name(name: str, option: str = "builtin_images") -> None:
    """Fail naming ``option`` and listing the choices when ``name`` is not a bundled photo."""
    if name not in BUILTIN_IMAGE_NAMES:
        raise OptionError(f"{option}: unknown built-in image {name!r}; available: "
                          f"{', '.join(BUILTIN_IMAGE_NAMES)}")


@functools.lru_cache(maxsize=None)
def load_builtin_uint8(name: str) -> np.ndarray:
    """Bundled photo ``name`` as a read-only HWC uint8 RGB array (gray repeated to 3 channels)."""
    check_builtin_name(name)
    import skimage.data  # imported here: it is slow to import and only demos need it

    img = getattr(skimage.data, name)()
    if isinstance(img, tuple):  # stereo_motorcycle: (left, right, disparity)
        img = img[0]
    if img.ndim == 2:
        img = np.repeat(img[:, :, None], 3, axis=2)
    img = np.ascontiguousarray(img[:, :, :3], dtype=np.uint8)
    img.flags.writeable = False
    return img


def load_builtin_image(name: str) -> np.ndarray:
    """Bundled photo ``name`` as an HWC float32 RGB array in [0, 1]."""
    return load_builtin_uint8(name).astype(np.float32) / np.float32(255.0)
