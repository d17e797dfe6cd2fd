"""Basic losses against numpy references: reductions, weights, loss_weight, PSNR in dB, errors."""
import numpy as np
import pytest
import torch

from llcv.errors import OptionError
from llcv.registry import LOSSES, build

RNG = np.random.default_rng(0)
PRED = RNG.random((2, 3, 5, 7))
TARGET = RNG.random((2, 3, 5, 7))
WEIGHT = RNG.random((2, 1, 5, 7))

ELEMENTWISE = {
    "L1Loss": lambda p, t: np.abs(p - t),
    "MSELoss": lambda p, t: (p - t) ** 2,
    "CharbonnierLoss": lambda p, t: np.sqrt((p - t) ** 2 + 1e-12),
}


def loss_of(name: str, **kwargs):
    return build(LOSSES, {"type": name, **kwargs}, "train.pixel_opt")


def run(loss, pred=PRED, target=TARGET, weight=None) -> np.ndarray:
    as_t = torch.from_numpy
    out = loss(as_t(pred), as_t(target), None if weight is None else as_t(weight))
    return out.numpy()


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_pixel_losses_match_numpy_for_each_reduction(name):
    ref = ELEMENTWISE[name](PRED, TARGET)
    np.testing.assert_allclose(run(loss_of(name)), ref.mean(), rtol=1e-12)
    np.testing.assert_allclose(run(loss_of(name, reduction="sum")), ref.sum(), rtol=1e-12)
    np.testing.assert_allclose(run(loss_of(name, reduction="none")), ref, rtol=1e-12)


@pytest.mark.parametrize("name", sorted(ELEMENTWISE))
def test_weighted_pixel_losses(name):
    ref = ELEMENTWISE[name](PRED, TARGET)
    full_weight = np.broadcast_to(WEIGHT, ref.shape)
    weighted = ref * full_weight
    np.testing.assert_allclose(run(loss_of(name), weight=WEIGHT),
                               weighted.sum() / full_weight.sum(), rtol=1e-12)
    np.testing.assert_allclose(run(loss_of(name, reduction="sum"), weight=WEIGHT),
                               weighted.sum(), rtol=1e-12)
    np.testing.assert_allclose(run(loss_of(name, reduction="none"), weight=WEIGHT), weighted,
                               rtol=1e-12)


def test_binary_mask_averages_over_masked_in_pixels():
    mask = np.zeros((2, 1, 5, 7))
    mask[:, :, :2] = 1.0
    expected = np.abs(PRED - TARGET)[:, :, :2].mean()
    np.testing.assert_allclose(run(loss_of("L1Loss"), weight=mask), expected, rtol=1e-12)
    assert run(loss_of("L1Loss"), weight=np.zeros_like(mask)) == 0.0


@pytest.mark.parametrize("name", [*sorted(ELEMENTWISE), "PSNRLoss"])
@pytest.mark.parametrize("reduction", ["none", "mean", "sum"])
def test_loss_weight_scales_linearly(name, reduction):
    base = run(loss_of(name, reduction=reduction))
    np.testing.assert_allclose(run(loss_of(name, reduction=reduction, loss_weight=2.5)),
                               2.5 * base, rtol=1e-12)


def test_charbonnier_eps_and_finite_gradient_at_zero():
    loss = loss_of("CharbonnierLoss", eps=1e-6)
    pred = torch.zeros(1, 1, 2, 2, requires_grad=True)
    value = loss(pred, torch.zeros(1, 1, 2, 2))
    value.backward()
    assert value.item() == pytest.approx(1e-3)
    assert torch.isfinite(pred.grad).all()


def numpy_psnr(img1: np.ndarray, img2: np.ndarray, peak: float = 1.0) -> np.ndarray:
    mse = ((img1 - img2) ** 2).reshape(len(img1), -1).mean(axis=1)
    return 10 * np.log10(peak ** 2 / mse)


def test_psnr_loss_is_negative_psnr_in_db():
    psnr = numpy_psnr(PRED, TARGET)
    np.testing.assert_allclose(run(loss_of("PSNRLoss")), -psnr.mean(), rtol=1e-6)
    np.testing.assert_allclose(run(loss_of("PSNRLoss", reduction="sum")), -psnr.sum(), rtol=1e-6)
    np.testing.assert_allclose(run(loss_of("PSNRLoss", reduction="none")), -psnr, rtol=1e-6)


def test_psnr_loss_on_y_channel_matches_bt601_psnr():
    def y255(img):  # BT.601 luma of RGB in [0, 1], on the [0, 255] scale
        return 16 + 65.481 * img[:, 0] + 128.553 * img[:, 1] + 24.966 * img[:, 2]
    psnr = numpy_psnr(y255(PRED), y255(TARGET), peak=255.0)
    np.testing.assert_allclose(run(loss_of("PSNRLoss", toY=True)), -psnr.mean(), rtol=1e-6)


def test_psnr_loss_weighted_mse_per_image():
    mask = np.zeros((2, 1, 5, 7))
    mask[:, :, 1:4] = 1.0
    psnr = numpy_psnr(PRED[:, :, 1:4], TARGET[:, :, 1:4])
    np.testing.assert_allclose(run(loss_of("PSNRLoss"), weight=mask), -psnr.mean(), rtol=1e-6)


def test_psnr_loss_identical_images_hits_eps_floor():
    value = run(loss_of("PSNRLoss"), PRED, PRED)
    assert value == pytest.approx(-80.0)  # 10 * log10(1e-8)


def test_psnr_loss_to_y_needs_three_channels():
    loss = loss_of("PSNRLoss", toY=True)
    with pytest.raises(ValueError, match="toY"):
        loss(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))


@pytest.mark.parametrize("name", [*sorted(ELEMENTWISE), "PSNRLoss"])
def test_bad_reduction_names_allowed_values(name):
    with pytest.raises(ValueError, match=r"^train\.pixel_opt\.reduction: .*none, mean, sum") as info:
        loss_of(name, reduction="avg")
    assert isinstance(info.value, OptionError)


@pytest.mark.parametrize("name", [*sorted(ELEMENTWISE), "PSNRLoss"])
def test_shape_mismatches_are_reported(name):
    loss = loss_of(name)
    with pytest.raises(ValueError, match="^target"):
        loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 5))
    with pytest.raises(ValueError, match="^weight"):
        loss(torch.rand(1, 3, 4, 4), torch.rand(1, 3, 4, 4), torch.rand(1, 2, 4, 4))
