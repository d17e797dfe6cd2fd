"""PoissonGaussianNoise: measured noise statistics against Var = a*x + b and the Brooks et al. levels."""
import math

import numpy as np
import pytest

from llcv.degradations.camera_noise_degradation import PoissonGaussianNoise
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS, build

LEVELS = (0.05, 0.2, 0.5, 0.8)


def flat_bands(rows: int = 128, width: int = 256) -> np.ndarray:
    """One flat band per level in LEVELS, stacked vertically (HWC float32)."""
    return np.concatenate([np.full((rows, width, 3), x, np.float32) for x in LEVELS])


@pytest.mark.parametrize("poisson", [False, True])
@pytest.mark.parametrize("shot,read", [(1e-2, 1e-4), (1e-3, 2e-6)])
def test_measured_variance_matches_shot_plus_read(poisson, shot, read):
    deg = PoissonGaussianNoise(shot_range=(shot, shot), read_range=(read, read), poisson=poisson,
                               clip=False)
    img = flat_bands()
    out = deg(img, np.random.default_rng(0))
    rows = img.shape[0] // len(LEVELS)
    for i, x in enumerate(LEVELS):
        noise = (out[i * rows:(i + 1) * rows] - x).astype(np.float64)
        expected = shot * x + read
        assert noise.var() == pytest.approx(expected, rel=0.02), (poisson, x)
        assert abs(noise.mean()) < 5 * math.sqrt(expected / noise.size)  # unbiased


def test_brooks_levels_distribution():
    deg = PoissonGaussianNoise()
    rng = np.random.default_rng(1)
    params = [deg.sample_params(rng) for _ in range(4000)]
    log_shot = np.log([p["shot"] for p in params])
    log_read = np.log([p["read"] for p in params])
    lo, hi = math.log(1e-4), math.log(1.2e-2)
    assert lo <= log_shot.min() and log_shot.max() <= hi
    assert log_shot.mean() == pytest.approx((lo + hi) / 2, abs=0.05)
    assert log_shot.std() == pytest.approx((hi - lo) / math.sqrt(12), rel=0.03)  # uniform
    residual = log_read - (2.18 * log_shot + 1.20)
    assert residual.mean() == pytest.approx(0.0, abs=0.02)
    assert residual.std() == pytest.approx(0.26, rel=0.05)


def test_fixed_levels_and_independent_read_range():
    rng = np.random.default_rng(2)
    fixed = PoissonGaussianNoise(shot_range=(3e-3, 3e-3), read_std=0.0)
    assert fixed.sample_params(rng) == pytest.approx(
        {"shot": 3e-3, "read": math.exp(2.18 * math.log(3e-3) + 1.20)})
    ranged = PoissonGaussianNoise(read_range=(1e-6, 1e-5))
    reads = [ranged.sample_params(rng)["read"] for _ in range(200)]
    assert 1e-6 <= min(reads) and max(reads) <= 1e-5 and len(set(reads)) == 200


def test_same_seed_same_output_and_input_untouched():
    img = np.random.default_rng(3).random((16, 20, 3), dtype=np.float32)
    before = img.copy()
    for poisson in (False, True):
        deg = PoissonGaussianNoise(poisson=poisson)
        a = deg(img, np.random.default_rng(7))
        b = deg(img, np.random.default_rng(7))
        c = deg(img, np.random.default_rng(8))
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
    np.testing.assert_array_equal(img, before)


def test_value_range_and_dtype():
    img = np.random.default_rng(4).random((32, 32, 3), dtype=np.float32)
    img[:4] = 0.0
    img[-4:] = 1.0
    strong = {"shot_range": (1.2e-2, 1.2e-2), "read_range": (1e-3, 1e-3)}
    out = PoissonGaussianNoise(**strong)(img, np.random.default_rng(5))
    assert out.dtype == np.float32 and out.shape == img.shape
    assert out.min() >= 0.0 and out.max() <= 1.0
    raw = PoissonGaussianNoise(**strong, clip=False)(img, np.random.default_rng(5))
    assert raw.min() < 0.0 and raw.max() > 1.0  # a sensor saturates; clip=False keeps the tails


def test_built_from_options():
    cfg = {"type": "PoissonGaussianNoise", "shot_range": [1e-3, 1e-2], "poisson": True}
    deg = build(DEGRADATIONS, cfg, "degradation")
    assert isinstance(deg, PoissonGaussianNoise) and deg.poisson
    assert cfg == {"type": "PoissonGaussianNoise", "shot_range": [1e-3, 1e-2], "poisson": True}


@pytest.mark.parametrize("kwargs,start", [
    ({"shot_range": (0.0, 1e-2)}, "shot_range"),
    ({"shot_range": (1e-2, 1e-3)}, "shot_range"),
    ({"read_range": (-1.0, 1e-3)}, "read_range"),
    ({"read_std": -0.1}, "read_std"),
])
def test_bad_options_name_the_option(kwargs, start):
    with pytest.raises(OptionError, match=f"^{start}:"):
        PoissonGaussianNoise(**kwargs)
