"""Low light: exposure and gamma against the formula, nested noise, options."""
import numpy as np
import pytest
import skimage.data

from llcv.degradations.lowlight_degradation import LowLight
from llcv.errors import OptionError


def photo():
    return (skimage.data.astronaut()[96:160, 176:240] / 255.0).astype(np.float32)


def test_noise_free_output_is_exposure_times_gamma_curve():
    img = photo()
    deg = LowLight(exposure=[0.1, 0.4], gamma=[1.2, 2.2])
    out, params = deg.degrade(img, np.random.default_rng(0))
    assert 0.1 <= params["exposure"] <= 0.4 and 1.2 <= params["gamma"] <= 2.2
    ref = params["exposure"] * img.astype(np.float64) ** params["gamma"]
    assert np.abs(out - ref).max() < 1e-6
    assert out.dtype == np.float32 and out.mean() < 0.4 * img.mean()


def test_gamma_darkens_shadows_more_than_highlights():
    img = photo()
    out = LowLight(exposure=1.0, gamma=2.0)(img, np.random.default_rng(0))
    ratio = out / np.maximum(img, 1e-3)
    dark, bright = img < 0.3, img > 0.7
    assert ratio[dark].mean() < ratio[bright].mean()


def test_nested_noise_is_added_after_darkening():
    img = np.full((128, 128, 3), 0.6, np.float32)
    deg = LowLight(exposure=0.5, gamma=1.0, noise={"type": "GaussianNoise", "sigma": 10.0})
    out, params = deg.degrade(img, np.random.default_rng(1))
    assert params["noise"] == {"sigma": 10.0, "gray": False}
    assert abs(out.mean() - 0.3) < 0.002
    assert abs(out.std() * 255 / 10.0 - 1) < 0.02


def test_nested_poisson_noise_is_stronger_relative_to_signal_in_the_dark():
    img = np.full((128, 128, 3), 0.8, np.float32)
    deg = LowLight(exposure=0.1, gamma=1.0, noise={"type": "PoissonNoise", "peak": 200.0})
    out = deg(img, np.random.default_rng(2))
    assert abs(out.std() / np.sqrt(0.08 / 200.0) - 1) < 0.03     # variance = level / peak
    assert out.min() >= 0 and out.max() <= 1


@pytest.mark.parametrize("kwargs, name", [
    ({"exposure": 0}, "exposure"), ({"exposure": [0.1, 1.5]}, "exposure"), ({"gamma": -1}, "gamma"),
    ({"noise": {"type": "GausianNoise"}}, "noise.type"),
    ({"noise": {"type": "GaussianNoise", "sigma": -2}}, "noise.sigma"),
    ({"noise": "gaussian"}, "noise"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(OptionError, match=f"^{name}: "):
        LowLight(**kwargs)


def test_unknown_nested_noise_suggests_the_close_name():
    with pytest.raises(OptionError, match="GaussianNoise"):
        LowLight(noise={"type": "GausianNoise"})
