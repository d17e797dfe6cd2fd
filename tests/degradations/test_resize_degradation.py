"""Resize: requested sizes, interpolation choice, down-and-up, value range, options."""
import numpy as np
import pytest
import skimage.data

from llcv.degradations.resize_degradation import Resize
from llcv.errors import OptionError


def photo(h=64, w=48):
    return (skimage.data.astronaut()[96:96 + h, 176:176 + w] / 255.0).astype(np.float32)


@pytest.mark.parametrize("mode", ["bicubic", "bilinear", "area", "nearest"])
@pytest.mark.parametrize("scale, size", [(0.5, (32, 24)), (0.37, (24, 18)), (1.5, (96, 72)), (1.0, (64, 48))])
def test_output_has_the_requested_size(mode, scale, size):
    out = Resize(scale=scale, modes=[mode])(photo(), np.random.default_rng(0))
    assert out.shape == (*size, 3) and out.dtype == np.float32
    assert out.min() >= 0 and out.max() <= 1


def test_area_halving_is_the_block_mean():
    img = photo()
    out = Resize(scale=0.5, modes=["area"])(img, np.random.default_rng(0))
    ref = img.reshape(32, 2, 24, 2, 3).mean(axis=(1, 3))
    assert np.abs(out - ref).max() < 1e-6


def test_restore_returns_input_size_and_loses_more_detail_at_smaller_scales():
    img = photo()
    errors = []
    for scale in [0.8, 0.5, 0.25]:
        out = Resize(scale=scale, modes=["bicubic"], restore=True)(img, np.random.default_rng(0))
        assert out.shape == img.shape
        errors.append(np.abs(out - img).mean())
    assert errors[0] < errors[1] < errors[2]


def test_bicubic_overshoot_is_clipped():
    img = np.zeros((16, 16, 3), np.float32)
    img[:, 8:] = 1.0
    out = Resize(scale=3.0, modes=["bicubic"])(img, np.random.default_rng(0))
    assert out.min() == 0 and out.max() == 1


def test_scale_and_mode_are_drawn_and_recorded():
    deg = Resize(scale=[0.25, 0.75], modes=["bicubic", "area"], mode_probs=[3, 1], restore=True)
    rng = np.random.default_rng(1)
    params = [deg.sample_params(rng) for _ in range(2000)]
    scales = np.array([p["scale"] for p in params])
    assert scales.min() >= 0.25 and scales.max() <= 0.75 and abs(scales.mean() - 0.5) < 0.01
    assert abs(np.mean([p["mode"] == "bicubic" for p in params]) - 0.75) < 0.03
    assert {p["up_mode"] for p in params} == {"bicubic", "area"}


def test_gray_images_keep_their_channel_axis():
    out = Resize(scale=0.5)(photo()[..., :1].copy(), np.random.default_rng(0))
    assert out.shape == (32, 24, 1)


@pytest.mark.parametrize("kwargs, name", [
    ({"scale": 0}, "scale"), ({"scale": [0.5, 0.2]}, "scale"), ({"modes": ["lanczos"]}, "modes"),
    ({"modes": []}, "modes"), ({"mode_probs": [1, 1]}, "mode_probs"),
    ({"mode_probs": [1, -1, 1]}, "mode_probs"),
])
def test_bad_options_name_the_argument(kwargs, name):
    with pytest.raises(OptionError, match=f"^{name}: "):
        Resize(**kwargs)
