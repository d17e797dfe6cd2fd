"""Gaussian and Poisson noise: measured strength on flat images and photos, colour/gray, options."""
import numpy as np
import pytest
import skimage.data

from llcv.degradations.noise_degradation import GaussianNoise, PoissonNoise
from llcv.errors import OptionError


def flat(level, size=128):
    return np.full((size, size, 3), level, dtype=np.float32)


def photo():
    return (skimage.data.astronaut()[96:160, 176:240] / 255.0).astype(np.float32)


@pytest.mark.parametrize("sigma", [5.0, 15.0, 25.0, 50.0])
def test_gaussian_sigma_measured_on_flat_image(sigma):
    img = flat(0.5)
    out = GaussianNoise(sigma=sigma, clip=False)(img, np.random.default_rng(1))
    assert abs((out - img).std() * 255 / sigma - 1) < 0.02
    assert abs((out - img).mean()) < 0.1 * sigma / 255


@pytest.mark.parametrize("level", [0.25, 0.75])
def test_gaussian_sigma_on_coloured_flat_image_with_clipping(level):
    img = np.empty((128, 128, 3), np.float32)
    img[:] = [level, 0.5, 1 - level]
    out = GaussianNoise(sigma=15.0)(img, np.random.default_rng(2))
    assert out.min() >= 0 and out.max() <= 1
    for c in range(3):
        assert abs((out[..., c] - img[..., c]).std() * 255 / 15.0 - 1) < 0.02


def test_gaussian_on_photo_matches_drawn_sigma():
    img = photo()
    deg = GaussianNoise(sigma=[5.0, 30.0])
    for seed in range(3):
        out, params = deg.degrade(img, np.random.default_rng(seed))
        assert 5.0 <= params["sigma"] <= 30.0
        inside = (img > 0.15) & (img < 0.85)   # away from clipping
        measured = (out - img)[inside].std() * 255
        assert abs(measured / params["sigma"] - 1) < 0.03


def test_gaussian_colour_noise_is_independent_and_gray_noise_shared():
    img = flat(0.5)
    colour = GaussianNoise(sigma=20.0, gray_prob=0.0)(img, np.random.default_rng(3)) - img
    gray = GaussianNoise(sigma=20.0, gray_prob=1.0)(img, np.random.default_rng(3)) - img
    corr = np.corrcoef(colour.reshape(-1, 3).T)
    assert np.abs(corr[np.triu_indices(3, 1)]).max() < 0.03
    assert np.array_equal(gray[..., 0], gray[..., 1]) and np.array_equal(gray[..., 1], gray[..., 2])


def test_gray_prob_is_a_frequency():
    deg = GaussianNoise(gray_prob=0.3)
    rng = np.random.default_rng(4)
    grays = [deg.sample_params(rng)["gray"] for _ in range(2000)]
    assert abs(np.mean(grays) - 0.3) < 0.04


def test_sigma_range_is_drawn_uniformly_over_its_ends():
    deg = GaussianNoise(sigma=[10.0, 20.0])
    rng = np.random.default_rng(5)
    sigmas = np.array([deg.sample_params(rng)["sigma"] for _ in range(2000)])
    assert sigmas.min() >= 10 and sigmas.max() <= 20
    assert abs(sigmas.mean() - 15) < 0.3 and sigmas.min() < 10.1 and sigmas.max() > 19.9


@pytest.mark.parametrize("level", [0.2, 0.5, 0.8])
def test_poisson_variance_is_level_over_peak(level):
    img = flat(level)
    out = PoissonNoise(peak=100.0, clip=False)(img, np.random.default_rng(6))
    assert abs((out - img).std() / np.sqrt(level / 100.0) - 1) < 0.02
    assert abs((out - img).mean()) < 0.002
    assert np.allclose(out * 100, np.round(out * 100), atol=1e-3)   # whole photon counts


def test_poisson_gray_noise_shared_and_clip_keeps_range():
    img = photo()
    out = PoissonNoise(peak=5.0, gray_prob=1.0)(img, np.random.default_rng(7))
    assert out.min() >= 0 and out.max() <= 1
    noise = PoissonNoise(peak=50.0, gray_prob=1.0, clip=False)(flat(0.4), np.random.default_rng(7)) - 0.4
    assert np.allclose(noise[..., 0], noise[..., 2], atol=1e-6)


def test_poisson_peak_is_log_uniform():
    deg = PoissonNoise(peak=[10.0, 1000.0])
    rng = np.random.default_rng(8)
    peaks = np.array([deg.sample_params(rng)["peak"] for _ in range(2000)])
    assert peaks.min() >= 10 and peaks.max() <= 1000
    assert 85 < np.median(peaks) < 118        # geometric mean 100


@pytest.mark.parametrize("cls, kwargs, name", [
    (GaussianNoise, {"sigma": -1}, "sigma"), (GaussianNoise, {"sigma": [30, 10]}, "sigma"),
    (GaussianNoise, {"sigma": "25"}, "sigma"), (GaussianNoise, {"gray_prob": 1.5}, "gray_prob"),
    (PoissonNoise, {"peak": 0}, "peak"), (PoissonNoise, {"peak": [5, "a"]}, "peak"),
])
def test_bad_options_name_the_argument(cls, kwargs, name):
    with pytest.raises(OptionError, match=f"^{name}: "):
        cls(**kwargs)


def test_batched_torch_gaussian_noise_matches_each_drawn_sigma():
    import torch

    x = torch.full((4, 3, 96, 96), 0.5)
    deg = GaussianNoise(sigma=[5.0, 40.0], gray_prob=0.5, clip=False)
    out, params = deg.degrade_torch(x, torch.Generator().manual_seed(0))
    assert out.shape == x.shape and out.dtype == x.dtype
    for i, p in enumerate(params):
        noise = out[i] - x[i]
        assert abs(float(noise.std()) * 255 / p["sigma"] - 1) < 0.02
        assert torch.equal(noise[0], noise[2]) == p["gray"]
    again = deg.apply_torch(x, torch.Generator().manual_seed(0))
    other = deg.apply_torch(x, torch.Generator().manual_seed(1))
    assert torch.equal(out, again) and not torch.equal(out, other)


def test_batched_torch_poisson_noise_matches_each_drawn_peak():
    import torch

    x = torch.full((3, 3, 96, 96), 0.5)
    deg = PoissonNoise(peak=[20.0, 500.0], clip=False)
    out, params = deg.degrade_torch(x, torch.Generator().manual_seed(2))
    for i, p in enumerate(params):
        assert abs(float((out[i] - x[i]).std()) / np.sqrt(0.5 / p["peak"]) - 1) < 0.02
    clipped = PoissonNoise(peak=3.0).apply_torch(torch.rand(2, 3, 16, 16), torch.Generator().manual_seed(3))
    assert clipped.min() >= 0 and clipped.max() <= 1
