"""Haze: the scattering formula, brightening and contrast loss as beta rises, depth proxies."""
import numpy as np
import pytest
import skimage.data

from llcv.degradations.haze_degradation import Haze, depth_proxy
from llcv.errors import OptionError


def photo():
    return (skimage.data.astronaut()[96:160, 176:240] / 255.0).astype(np.float32)


def test_uniform_depth_follows_the_scattering_model():
    img = photo()
    deg = Haze(beta=[0.5, 2.0], airlight=[0.7, 1.0], depth="uniform")
    out, params = deg.degrade(img, np.random.default_rng(0))
    t = np.exp(-params["beta"])
    assert np.abs(out - (img * t + params["airlight"] * (1 - t))).max() < 1e-6


@pytest.mark.parametrize("depth", ["luminance", "vertical", "uniform"])
def test_haze_brightens_and_lowers_contrast_as_beta_rises(depth):
    img = photo()
    outs = [Haze(beta=b, airlight=0.95, depth=depth)(img, np.random.default_rng(0))
            for b in [0.0, 0.5, 1.0, 2.0, 3.0]]
    means, stds = [o.mean() for o in outs], [o.std() for o in outs]
    assert np.allclose(outs[0], img)
    assert all(a < b for a, b in zip(means, means[1:])) and all(a > b for a, b in zip(stds, stds[1:]))
    assert all(o.min() >= 0 and o.max() <= 1 and o.dtype == np.float32 for o in outs)


def test_vertical_depth_hazes_the_top_and_spares_the_bottom_row():
    img = photo()
    out = Haze(beta=2.0, airlight=1.0, depth="vertical")(img, np.random.default_rng(0))
    assert np.allclose(out[-1], img[-1])
    assert np.allclose(out[0], img[0] * np.exp(-2.0) + (1 - np.exp(-2.0)), atol=1e-6)


def test_luminance_depth_spans_zero_to_one_and_is_smooth():
    img = photo()
    d = depth_proxy(img, "luminance", 0.05)
    assert d.shape == (64, 64, 1) and d.min() == 0 and abs(d.max() - 1) < 1e-6
    assert np.abs(np.diff(d, axis=1)).max() < np.abs(np.diff(img.mean(-1), axis=1)).max()
    assert (depth_proxy(np.full((8, 8, 3), 0.3, np.float32), "luminance", 0.05) == 1).all()


@pytest.mark.parametrize("kwargs, name", [
    ({"beta": -1}, "beta"), ({"airlight": 1.5}, "airlight"), ({"depth": "stereo"}, "depth"),
    ({"depth_smooth": -0.1}, "depth_smooth"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(OptionError, match=f"^{name}: "):
        Haze(**kwargs)
