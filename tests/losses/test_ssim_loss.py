"""SSIMLoss equals 1 - SSIM (checked against scikit-image's Gaussian SSIM) and trains."""
import numpy as np
import pytest
import torch
from skimage.metrics import structural_similarity

from llcv.errors import OptionError
from llcv.metrics.torch_ops import ssim_per_image
from llcv.registry import LOSSES, build


def skimage_ssim(a, b, data_range):
    """Mean over channels of scikit-image's SSIM with the Wang et al. Gaussian settings."""
    return np.mean([structural_similarity(a[c], b[c], data_range=data_range, gaussian_weights=True,
                                          sigma=1.5, use_sample_covariance=False)
                    for c in range(a.shape[0])])


def test_equals_one_minus_ssim_of_the_metrics():
    torch.manual_seed(0)
    gt = torch.rand(3, 3, 24, 20, dtype=torch.float64)
    pred = (gt + 0.1 * torch.randn_like(gt)).clamp(0, 1)
    loss = build(LOSSES, {"type": "SSIMLoss", "reduction": "none"}, "train.ssim_opt")
    per_image = loss(pred, gt)
    torch.testing.assert_close(per_image, 1 - ssim_per_image(pred, gt, 1.0))
    # independent reference: scikit-image, which averages the same valid region
    for i in range(3):
        ref = 1 - skimage_ssim(pred[i].numpy(), gt[i].numpy(), 1.0)
        assert abs(per_image[i].item() - ref) < 1e-6


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_weight_and_reduction(reduction):
    gt, pred = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    loss = build(LOSSES, {"type": "SSIMLoss", "loss_weight": 0.5, "reduction": reduction},
                 "train.ssim_opt")
    per_image = 1 - ssim_per_image(pred, gt, 1.0)
    expected = 0.5 * (per_image.mean() if reduction == "mean" else per_image.sum())
    torch.testing.assert_close(loss(pred, gt), expected)


def test_zero_for_identical_images_and_gradient_flows():
    gt = torch.rand(1, 3, 16, 16)
    loss = build(LOSSES, {"type": "SSIMLoss", "data_range": 1.0}, "train.ssim_opt")
    assert loss(gt.clone(), gt).abs().item() < 1e-6
    pred = torch.rand(1, 3, 16, 16, requires_grad=True)
    loss(pred, gt).backward()
    assert pred.grad.abs().sum() > 0


def test_small_images_and_bad_options_are_refused():
    loss = build(LOSSES, {"type": "SSIMLoss"}, "train.ssim_opt")
    with pytest.raises(ValueError, match="at least 11x11"):
        loss(torch.rand(1, 1, 8, 8), torch.rand(1, 1, 8, 8))
    with pytest.raises(OptionError, match="data_range: must be > 0"):
        build(LOSSES, {"type": "SSIMLoss", "data_range": 0}, "train.ssim_opt")
