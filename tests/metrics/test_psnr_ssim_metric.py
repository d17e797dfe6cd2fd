"""PSNR/SSIM metrics: BasicSR semantics checked against scikit-image and the BT.601 formula on real
photos; the batched torch versions agree with the numpy ones; the differentiable ops are sound."""
import cv2
import numpy as np
import pytest
import torch
from skimage import data
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

import llcv.metrics.psnr_ssim_metric as psnr_ssim
from llcv.metrics import calculate_psnr, calculate_psnr_pt, calculate_ssim, calculate_ssim_pt
from llcv.metrics.torch_ops import (SsimBuffers, filter_valid, gaussian_kernel_1d, rgb_to_y,
                                    ssim_from_statistics, ssim_from_statistics_, ssim_per_image,
                                    ssim_statistics)
from llcv.registry import METRICS, registered_names


def _bgr_crop(photo: np.ndarray, top: int, left: int) -> np.ndarray:
    return np.ascontiguousarray(photo[top:top + 48, left:left + 56, ::-1])  # as cv2.imread gives


def _make_pairs() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """GT/distorted uint8 BGR crops of real photos: seeded Gaussian noise, and JPEG quality 25."""
    rng = np.random.default_rng(0)
    astro = _bgr_crop(data.astronaut(), 100, 180)
    noisy = np.clip(np.rint(astro + rng.normal(0, 12, astro.shape)), 0, 255).astype(np.uint8)
    cat = _bgr_crop(data.chelsea(), 60, 120)
    jpeg = cv2.imdecode(cv2.imencode(".jpg", cat, [cv2.IMWRITE_JPEG_QUALITY, 25])[1], 1)
    return {"noise": (astro, noisy), "jpeg": (cat, jpeg)}


PAIRS = _make_pairs()
CASES = [(name, crop) for name in PAIRS for crop in (0, 4)]


def _crop(img: np.ndarray, border: int) -> np.ndarray:
    return img[border:img.shape[0] - border, border:img.shape[1] - border]


def _skimage_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """scikit-image's SSIM in the Wang et al. setting, which is BasicSR's: truncate 3.5 x sigma 1.5
    gives radius 5, i.e. the same normalised 11-tap Gaussian; the mean is taken after cropping
    (win_size - 1) // 2 = 5 pixels per side, i.e. over the same valid region as [5:-5, 5:-5];
    use_sample_covariance=False gives E[x^2] - mu^2; channel_axis averages per-channel SSIM."""
    return structural_similarity(a, b, gaussian_weights=True, sigma=1.5, data_range=255,
                                 use_sample_covariance=False,
                                 channel_axis=2 if a.ndim == 3 else None)


def _bt601_y(bgr: np.ndarray) -> np.ndarray:
    """Y = 16 + 65.481 R + 128.553 G + 24.966 B for RGB in [0, 1], in float64 (no rounding)."""
    rgb = bgr[..., ::-1].astype(np.float64) / 255.0
    return 16.0 + 65.481 * rgb[..., 0] + 128.553 * rgb[..., 1] + 24.966 * rgb[..., 2]


def _as_tensor(bgr: np.ndarray) -> torch.Tensor:
    """uint8 (N)HWC BGR -> float64 NCHW RGB in [0, 1], as the torch metrics take them."""
    batch = bgr if bgr.ndim == 4 else bgr[None]
    rgb = torch.from_numpy(np.ascontiguousarray(batch[..., ::-1]))
    return rgb.permute(0, 3, 1, 2).double() / 255


@pytest.mark.parametrize("order", ["HWC", "CHW"])
@pytest.mark.parametrize("name,crop", CASES)
def test_rgb_metrics_match_scikit_image(name, crop, order):
    gt, out = PAIRS[name]
    args = (gt, out) if order == "HWC" else (gt.transpose(2, 0, 1), out.transpose(2, 0, 1))
    ref_gt, ref_out = _crop(gt, crop).astype(np.float64), _crop(out, crop).astype(np.float64)
    psnr = calculate_psnr(*args, crop_border=crop, input_order=order)
    ref_psnr = peak_signal_noise_ratio(ref_gt, ref_out, data_range=255)
    assert psnr == pytest.approx(ref_psnr, abs=1e-10)
    ssim = calculate_ssim(*args, crop_border=crop, input_order=order)
    assert ssim == pytest.approx(_skimage_ssim(ref_gt, ref_out), abs=1e-9)
    assert isinstance(psnr, float) and isinstance(ssim, float)
    assert 20 < psnr < 40 and 0.3 < ssim < 0.99  # real distortions, not a degenerate case


@pytest.mark.parametrize("name,crop", CASES)
def test_y_channel_metrics_match_the_bt601_formula(name, crop):
    gt, out = PAIRS[name]
    y_gt, y_out = _crop(_bt601_y(gt), crop), _crop(_bt601_y(out), crop)
    assert 16 <= y_gt.min() and y_gt.max() <= 235
    # BasicSR keeps Y in float32 (relative rounding 6e-8, <= 1.5e-5 on [16, 235]), hence the
    # tolerances; a wrong coefficient order (RGB vs BGR) would be off by whole decibels.
    psnr = calculate_psnr(gt, out, crop, test_y_channel=True)
    assert psnr == pytest.approx(peak_signal_noise_ratio(y_gt, y_out, data_range=255), abs=1e-5)
    ssim = calculate_ssim(gt, out, crop, test_y_channel=True)
    assert ssim == pytest.approx(_skimage_ssim(y_gt, y_out), abs=1e-7)
    assert psnr != pytest.approx(calculate_psnr(gt, out, crop), abs=0.1)


def test_identical_images_give_inf_psnr_and_unit_ssim():
    gt, x = PAIRS["noise"][0], _as_tensor(PAIRS["noise"][0])
    one = pytest.approx(1.0, abs=1e-12)
    for y in (False, True):
        assert calculate_psnr(gt, gt.copy(), 0, test_y_channel=y) == float("inf")
        assert calculate_ssim(gt, gt.astype(np.float64), 4, test_y_channel=y) == one
        assert torch.isinf(calculate_psnr_pt(x, x.clone(), 0, test_y_channel=y)).all()
        assert calculate_ssim_pt(x, x.clone(), 4, test_y_channel=y).item() == one


@pytest.mark.parametrize("test_y", [False, True])
@pytest.mark.parametrize("crop", [0, 4])
def test_torch_metrics_agree_with_numpy_per_image(crop, test_y):
    gts, outs = (np.stack([pair[i] for pair in PAIRS.values()]) for i in (0, 1))
    kwargs = {"crop_border": crop, "test_y_channel": test_y}
    psnr_pt = calculate_psnr_pt(_as_tensor(gts), _as_tensor(outs), **kwargs)
    ssim_pt = calculate_ssim_pt(_as_tensor(gts), _as_tensor(outs), **kwargs)
    assert psnr_pt.shape == ssim_pt.shape == (2,) and psnr_pt.dtype == torch.float64
    for i, (gt, out) in enumerate(zip(gts, outs)):
        for a, b in ((gt, out), (gt.astype(np.float64), out.astype(np.float64))):  # uint8, float
            assert abs(psnr_pt[i].item() - calculate_psnr(a, b, **kwargs)) < 1e-6
            assert abs(ssim_pt[i].item() - calculate_ssim(a, b, **kwargs)) < 1e-6


def test_chunks_and_threads_do_not_change_results(monkeypatch):
    gts, outs = (_as_tensor(np.stack([pair[i] for pair in PAIRS.values()] * 3)) for i in (0, 1))

    def both():
        return calculate_ssim_pt(gts, outs, 2), calculate_psnr_pt(gts, outs, 2, test_y_channel=True)

    expected = both()
    monkeypatch.setattr(psnr_ssim, "_CHUNK_VALUES", 4000)  # one image per chunk
    monkeypatch.setattr(psnr_ssim, "_GROUP_VALUES", 1000)  # one plane filtered at a time
    threads = torch.get_num_threads()
    try:
        for n in (1, 2):
            torch.set_num_threads(n)
            assert all(torch.equal(g, e) for g, e in zip(both(), expected))
            assert torch.get_num_threads() == n  # the worker threads leave the setting as it was
    finally:
        torch.set_num_threads(threads)
    assert calculate_ssim_pt(gts[:0], outs[:0], 0).shape == (0,)


def test_bad_inputs_are_refused_with_clear_messages():
    gt, out = PAIRS["noise"]
    with pytest.raises(ValueError, match=r"\(48, 56, 3\) vs \(48, 50, 3\)"):
        calculate_psnr(gt, out[:, :50], 0)
    with pytest.raises(ValueError, match="HWC, CHW"):
        calculate_ssim(gt, out, 0, input_order="NHWC")
    with pytest.raises(ValueError, match="at least 11x11"):
        calculate_ssim(gt, out, 19)
    x = _as_tensor(gt)
    with pytest.raises(ValueError, match="shapes differ"):
        calculate_ssim_pt(x, x[..., :50], 0)
    with pytest.raises(ValueError, match="divide integer images by 255"):
        calculate_psnr_pt(x.to(torch.uint8), x.to(torch.uint8), 0)


def test_registered_with_input_kind_for_the_validator():
    assert {"calculate_psnr", "calculate_ssim", "calculate_psnr_pt",
            "calculate_ssim_pt"} <= set(registered_names(METRICS))
    kinds = {name: METRICS.get(name).input_kind for name in registered_names(METRICS)}
    assert kinds["calculate_psnr"] == kinds["calculate_ssim"] == "numpy"
    assert kinds["calculate_psnr_pt"] == kinds["calculate_ssim_pt"] == "tensor"


# ----------------------------------------------------------------------------- torch_ops
def test_gaussian_kernel_and_separable_filter_match_opencv():
    kernel = gaussian_kernel_1d(11, 1.5)
    np.testing.assert_allclose(kernel.numpy(), cv2.getGaussianKernel(11, 1.5)[:, 0], atol=1e-16)
    plane = PAIRS["jpeg"][0][..., 1].astype(np.float64)
    window = np.outer(kernel.numpy(), kernel.numpy())
    ref = cv2.filter2D(plane, -1, window)[5:-5, 5:-5]  # 2-D correlation, valid part
    got = filter_valid(torch.from_numpy(plane)[None, None], kernel)[0, 0].numpy()
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-9)


def test_ssim_per_image_is_differentiable_and_scale_free():
    torch.manual_seed(0)
    x = torch.rand(2, 1, 12, 11, dtype=torch.float64, requires_grad=True)
    y = (x.detach() + 0.1 * torch.randn_like(x)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, b: ssim_per_image(a, b, 1.0), (x, y))
    # SSIM of [0, 1] images with L = 1 equals that of the same images x 255 with L = 255
    torch.testing.assert_close(ssim_per_image(x, y, 1.0), ssim_per_image(255 * x, 255 * y, 255.0))


def test_buffered_in_place_ssim_equals_the_autograd_one():
    x = _as_tensor(PAIRS["noise"][0]).reshape(3, 1, 48, 56)
    y = _as_tensor(PAIRS["noise"][1]).reshape(3, 1, 48, 56)
    kernel = gaussian_kernel_1d()
    expected = ssim_from_statistics(ssim_statistics(x, y, kernel), 1.0)
    for group in (1, 2, 3):  # planes filtered at once, the last group may be partial
        buffers = SsimBuffers(x.shape, 11, group, torch.float64)
        for _ in range(2):  # buffers are reused
            got = ssim_from_statistics_(ssim_statistics(x, y, kernel, buffers), 1.0)
            torch.testing.assert_close(got, expected, rtol=0, atol=1e-14)


def test_rgb_to_y_is_bt601_on_the_input_scale():
    rgb = torch.tensor([[0.0, 0.0, 0.0], [1.0, 1.0, 1.0], [1.0, 0.0, 0.0], [0.2, 0.5, 0.9]],
                       dtype=torch.float64).T.reshape(1, 3, 1, 4)
    expected = (16 + 65.481 * rgb[:, 0] + 128.553 * rgb[:, 1] + 24.966 * rgb[:, 2]) / 255
    torch.testing.assert_close(rgb_to_y(rgb), expected[:, None])
    assert rgb_to_y(rgb)[0, 0, 0, :2].tolist() == pytest.approx([16 / 255, 235 / 255])
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        rgb_to_y(rgb[:, :1])
