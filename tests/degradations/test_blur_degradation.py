"""Blur kernels (sum, orientation, spread) and the blur degradations built on them."""
import numpy as np
import pytest
import scipy.ndimage
import skimage.data

from llcv.degradations import kernels
from llcv.degradations.blur_degradation import (GaussianBlur, GeneralizedGaussianBlur, MotionBlur,
                                                PlateauBlur)
from llcv.errors import OptionError


def photo():
    return (skimage.data.astronaut()[96:160, 176:240] / 255.0).astype(np.float32)


def second_moments(k, disk=False):
    """Central second moments (xx, yy, xy) with x right, y up; ``disk`` keeps the inscribed disk."""
    n = k.shape[0]
    r = np.arange(n) - n // 2
    x, y = np.meshgrid(r, -r)
    if disk:
        k = k * (x ** 2 + y ** 2 <= (n // 2) ** 2)
    k = k / k.sum()
    x, y = x - (k * x).sum(), y - (k * y).sum()
    return (k * x * x).sum(), (k * y * y).sum(), (k * x * y).sum()


def principal_angle(k, disk=False):
    xx, yy, xy = second_moments(k, disk)
    return np.degrees(0.5 * np.arctan2(2 * xy, xx - yy)) % 180


def angle_error(a, b):
    d = abs(a - b) % 180
    return min(d, 180 - d)


ALL_BLURS = [GaussianBlur(), GaussianBlur(sigma_y=[0.2, 3.0]), GeneralizedGaussianBlur(),
             GeneralizedGaussianBlur(sigma_y=[0.2, 3.0]), PlateauBlur(), PlateauBlur(sigma_y=[0.2, 3.0]),
             MotionBlur()]


@pytest.mark.parametrize("blur", ALL_BLURS, ids=lambda b: type(b).__name__)
def test_kernels_sum_to_one_and_are_odd_and_nonnegative(blur):
    rng = np.random.default_rng(0)
    for _ in range(20):
        k = blur.kernel(blur.sample_params(rng))
        assert k.shape[0] == k.shape[1] and k.shape[0] % 2 == 1
        assert k.min() >= 0 and abs(float(k.sum()) - 1) < 1e-5


@pytest.mark.parametrize("angle", [0.0, 30.0, 75.0, 120.0, 160.0])
def test_anisotropic_gaussian_orientation_and_sigmas(angle):
    k = kernels.gaussian_kernel(41, 4.0, 1.5, angle)
    assert angle_error(principal_angle(k), angle) < 0.1
    xx, yy, xy = second_moments(k)
    small, large = np.sqrt(np.linalg.eigvalsh([[xx, xy], [xy, yy]]))
    assert abs(large / 4.0 - 1) < 0.01 and abs(small / 1.5 - 1) < 0.01


@pytest.mark.parametrize("make", [
    lambda a: kernels.generalized_gaussian_kernel(31, 4.0, 1.5, a, beta=0.5),
    lambda a: kernels.generalized_gaussian_kernel(31, 4.0, 1.5, a, beta=2.0),
    lambda a: kernels.plateau_kernel(31, 4.0, 1.5, a, beta=1.0),
    lambda a: kernels.plateau_kernel(31, 4.0, 1.5, a, beta=2.0),
], ids=["ggauss0.5", "ggauss2", "plateau1", "plateau2"])
@pytest.mark.parametrize("angle", [20.0, 65.0, 140.0])
def test_shaped_kernels_follow_requested_orientation(make, angle):
    # moments over the inscribed disk, so the square window does not bias heavy tails
    assert angle_error(principal_angle(make(angle), disk=True), angle) < 1.0


def test_generalized_gaussian_with_beta_one_is_gaussian():
    assert np.allclose(kernels.generalized_gaussian_kernel(21, 3.0, 1.0, 40.0, beta=1.0),
                       kernels.gaussian_kernel(21, 3.0, 1.0, 40.0), atol=1e-7)


def test_isotropic_blur_has_symmetric_kernel():
    blur = GaussianBlur(sigma=[1.0, 3.0])
    params = blur.sample_params(np.random.default_rng(1))
    assert params["sigma_x"] == params["sigma_y"]
    k = blur.kernel(params)
    assert np.allclose(k, k.T) and np.allclose(k, k[::-1])


@pytest.mark.parametrize("angle", [0.0, 35.0, 90.0, 150.0])
def test_straight_motion_kernel_has_requested_angle_and_length(angle):
    blur = MotionBlur(length=15.0, angle=angle, jitter=0.0)
    k = blur.kernel(blur.sample_params(np.random.default_rng(2)))
    assert angle_error(principal_angle(k), angle) < 0.5
    xx, yy, xy = second_moments(k)
    length = np.sqrt(12 * np.linalg.eigvalsh([[xx, xy], [xy, yy]])[1])   # uniform segment: L²/12
    assert abs(length / 15.0 - 1) < 0.05


def test_shaky_motion_kernels_keep_their_main_direction_and_vary():
    blur = MotionBlur(length=15.0, angle=40.0, jitter=0.3)
    rng = np.random.default_rng(3)
    ks = [blur.kernel(blur.sample_params(rng)) for _ in range(10)]
    assert all(angle_error(principal_angle(k), 40.0) < 5.0 for k in ks)
    assert not np.array_equal(ks[0], ks[1])


def test_blur_is_a_true_convolution_with_reflected_borders():
    img = photo()
    blur = MotionBlur(length=9.0, angle=30.0, jitter=0.5)
    out, params = blur.degrade(img, np.random.default_rng(4))
    k = blur.kernel(params)
    ref = np.stack([scipy.ndimage.convolve(img[..., c].astype(np.float64), k.astype(np.float64),
                                           mode="mirror") for c in range(3)], axis=-1)
    assert np.abs(out - ref).max() < 1e-5


def test_blur_on_photo_keeps_range_mean_and_removes_detail():
    img = photo()
    for blur in ALL_BLURS:
        out = blur(img, np.random.default_rng(5))
        assert out.dtype == np.float32 and out.shape == img.shape
        assert out.min() >= 0 and out.max() <= 1
        assert abs(out.mean() - img.mean()) < 0.01
        assert np.abs(np.diff(out, axis=1)).mean() < np.abs(np.diff(img, axis=1)).mean()


def test_kernel_size_range_draws_odd_sizes_over_the_range():
    blur = GaussianBlur(kernel_size=[7, 21])
    rng = np.random.default_rng(6)
    sizes = {blur.sample_params(rng)["kernel_size"] for _ in range(200)}
    assert sizes == set(range(7, 22, 2))


@pytest.mark.parametrize("cls, kwargs, name", [
    (GaussianBlur, {"kernel_size": 8}, "kernel_size"),
    (GaussianBlur, {"kernel_size": [7, 20]}, "kernel_size"),
    (GaussianBlur, {"sigma": 0}, "sigma"), (GaussianBlur, {"sigma_y": [-1, 2]}, "sigma_y"),
    (PlateauBlur, {"beta": -1}, "beta"), (GeneralizedGaussianBlur, {"angle": [0, 720]}, "angle"),
    (MotionBlur, {"length": 0}, "length"), (MotionBlur, {"jitter": -0.1}, "jitter"),
])
def test_bad_options_name_the_argument(cls, kwargs, name):
    with pytest.raises(OptionError, match=f"^{name}: "):
        cls(**kwargs)


@pytest.mark.parametrize("blur", [GaussianBlur(sigma_y=[0.2, 3.0]), PlateauBlur(), MotionBlur()],
                         ids=lambda b: type(b).__name__)
@pytest.mark.parametrize("size", [48, 6])
def test_batched_torch_blur_equals_the_numpy_path_per_image(blur, size):
    import torch

    imgs = np.stack([photo()[i:i + size, i:i + size] for i in (0, 5, 9)])
    x = torch.from_numpy(imgs).permute(0, 3, 1, 2).contiguous()
    out, params = blur.degrade_torch(x, torch.Generator().manual_seed(0))
    assert len({p["kernel_size"] if "kernel_size" in p else p["seed"] for p in params}) > 1
    for i, p in enumerate(params):
        ref = blur.apply(imgs[i], p, np.random.default_rng(0))
        assert np.abs(out[i].permute(1, 2, 0).numpy() - ref).max() < 1e-5
