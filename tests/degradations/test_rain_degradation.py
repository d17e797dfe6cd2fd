"""Rain streaks: orientation, density and length effects, brightening only, options."""
import numpy as np
import pytest
import scipy.ndimage
import skimage.data

from llcv.degradations.rain_degradation import RainStreaks
from llcv.errors import OptionError


def photo():
    return (skimage.data.astronaut()[96:160, 176:240] / 255.0).astype(np.float32)


def streak_orientation(layer):
    """Streak direction (degrees, counter-clockwise from x, y up) from the structure tensor.

    Smoothing first: finite differences on 1-2 px lines are biased toward the diagonals.
    """
    gy, gx = np.gradient(scipy.ndimage.gaussian_filter(layer.astype(np.float64), 2.0))
    gy = -gy                                     # rows grow downwards; y points up
    jxx, jyy, jxy = (gx * gx).sum(), (gy * gy).sum(), (gx * gy).sum()
    gradient_dir = 0.5 * np.degrees(np.arctan2(2 * jxy, jxx - jyy))
    return (gradient_dir + 90) % 180             # streaks run across the gradients


@pytest.mark.parametrize("angle", [-30.0, 0.0, 25.0])
def test_streaks_follow_the_requested_tilt_from_vertical(angle):
    black = np.zeros((64, 64, 3), np.float32)
    out = RainStreaks(angle=angle, length=20.0, density=0.01, intensity=1.0)(black, np.random.default_rng(0))
    assert out.max() > 0.5
    measured = streak_orientation(out[..., 0])
    assert abs(measured - (90.0 - angle)) < 3.0


def test_more_or_longer_streaks_add_more_rain():
    img = photo()

    def added(**kw):
        deg = RainStreaks(angle=10.0, intensity=0.8, **kw)
        return (deg(img, np.random.default_rng(1)) - img).mean()

    by_density = [added(density=d, length=15.0) for d in (0.001, 0.004, 0.016)]
    assert by_density[0] < by_density[1] < by_density[2]
    assert added(density=0.004, length=5.0) < added(density=0.004, length=25.0)


def test_rain_only_brightens_and_keeps_range():
    img = photo()
    out = RainStreaks()(img, np.random.default_rng(2))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert (out >= img - 1e-6).all() and out.max() <= 1 and (out > img + 0.05).any()


def test_zero_density_leaves_the_image_unchanged():
    img = photo()
    assert np.allclose(RainStreaks(density=0.0)(img, np.random.default_rng(3)), img, atol=1e-6)


@pytest.mark.parametrize("kwargs, name", [
    ({"angle": 100}, "angle"), ({"length": 0.5}, "length"), ({"density": 2}, "density"),
    ({"intensity": [0.5, 1.5]}, "intensity"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(OptionError, match=f"^{name}: "):
        RainStreaks(**kwargs)
