"""JPEG: error grows as quality drops, 8-bit output, channel order, options."""
import numpy as np
import pytest
import skimage.data

from llcv.degradations.jpeg_degradation import JPEGCompression
from llcv.errors import OptionError


def photo():
    return (skimage.data.astronaut()[96:160, 176:240] / 255.0).astype(np.float32)


def test_error_grows_as_quality_drops():
    img = photo()
    errors = [np.abs(JPEGCompression(quality=q)(img, np.random.default_rng(0)) - img).mean()
              for q in [100, 90, 70, 50, 30, 10]]
    assert all(a < b for a, b in zip(errors, errors[1:])), errors
    assert errors[0] < 2.5 / 255            # 4:2:0 chroma subsampling remains at quality 100


def test_output_is_8bit_quantised_float_in_range():
    img = photo()
    out = JPEGCompression(quality=60)(img, np.random.default_rng(0))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() >= 0 and out.max() <= 1
    assert np.allclose(out * 255, np.round(out * 255), atol=1e-4)


def test_colours_stay_in_their_channels():
    img = np.zeros((32, 32, 3), np.float32)
    img[..., 0] = 0.9                       # red
    img[:, 16:, 2] = 0.8                    # blue on the right half
    out = JPEGCompression(quality=90)(img, np.random.default_rng(0))
    assert abs(out[:, :12, 0].mean() - 0.9) < 0.02 and out[:, :12, 2].mean() < 0.03
    assert abs(out[:, 20:, 2].mean() - 0.8) < 0.02


def test_gray_image():
    img = photo()[..., 1:2].copy()
    out = JPEGCompression(quality=50)(img, np.random.default_rng(0))
    assert out.shape == img.shape and 0 < np.abs(out - img).mean() < 0.05


def test_quality_range_draws_integers_over_its_ends():
    deg = JPEGCompression(quality=[30, 35])
    rng = np.random.default_rng(1)
    assert {deg.sample_params(rng)["quality"] for _ in range(300)} == set(range(30, 36))


@pytest.mark.parametrize("quality", [101, -1, 50.5, [90, 30], "high"])
def test_bad_quality_is_named(quality):
    with pytest.raises(OptionError, match="^quality: "):
        JPEGCompression(quality=quality)
