"""Tiled inference: exact against whole-image inference, under a measured budget, clear refusals."""
import numpy as np
import pytest
import torch
from torch import nn

from llcv.archs.unet_arch import UNet
from llcv.errors import LLCVError
from llcv.inference import (axis_weights, axis_windows, choose_tile, plan_overlap,
                            receptive_field_radius, tiled_inference)
from llcv.memory import AllocatorPeakMeter, resident_bytes
from llcv.utils import MB


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    return UNet(widths=[16, 32, 64], blocks=[1, 1, 1]).eval()


def smooth_image(h, w, seed=0):
    """A synthetic photo-like image: smooth colour gradients, edges and noise, in [0, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    base = np.stack([0.5 + 0.4 * np.sin(xx / 37), 0.5 + 0.4 * np.cos(yy / 53),
                     ((xx // 64 + yy // 64) % 2) * 0.6 + 0.2], axis=2)
    return np.clip(base + rng.normal(0, 0.05, base.shape), 0, 1).astype(np.float32)


def untiled(model, img):
    with torch.no_grad():
        x = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))[None]
        return model(x)[0].permute(1, 2, 0).numpy()


def test_tiled_under_budget_equals_untiled(unet):
    img = smooth_image(1003, 1021)  # ~1 MP, sizes not multiples of anything
    budget = 100 * MB
    overlap, feather = plan_overlap(unet, None, 3)
    assert overlap >= receptive_field_radius(unet) > 0
    tile = choose_tile(unet, budget, overlap, img.shape[:2])
    assert tile % unet.size_multiple == 0 and tile < 1003  # really tiled
    meter = AllocatorPeakMeter("cpu")  # the allocator's own peak while the tiles run
    with meter.window(resident_bytes(unet)):
        out = tiled_inference(unet, img, tile, overlap, progress=False)
    assert meter.peak_bytes <= budget
    assert out.shape == img.shape and out.dtype == np.float32
    assert np.abs(out - untiled(unet, img)).max() <= 1e-4


def test_too_small_budget_is_refused_with_the_minimum(unet):
    overlap = plan_overlap(unet, None, 3)[0]
    with pytest.raises(LLCVError, match=r"--memory-budget-mb: 1\.00 MiB is too small; UNet needs "
                                        r"at least ([0-9.]+) MiB") as info:
        choose_tile(unet, 1 * MB, overlap, (4000, 4000))
    minimum = float(info.value.args[0].split("at least ")[1].split(" MiB")[0])
    smallest = 2 * overlap + unet.size_multiple
    assert choose_tile(unet, int((minimum + 0.01) * MB), overlap, (4000, 4000)) == smallest


def test_windows_cover_the_axis_and_weights_sum_to_one():
    length, tile, overlap, m = 203, 48, 8, 4
    windows = axis_windows(length, tile, overlap)
    assert windows[0].core_start == 0 and windows[-1].core_stop == length
    total = np.zeros(length)
    for win in windows:
        assert win.start % m == 0 and win.stop - win.start <= tile
        total[win.start:win.stop] += axis_weights(win, length, feather=5)
    np.testing.assert_allclose(total, 1.0, atol=1e-6)
    assert axis_windows(40, 48, 8) == [axis_windows(40, 48, 8)[0]]  # one window when it fits


def test_feathered_blend_without_full_context_still_blends_smoothly(unet):
    img = smooth_image(100, 92, seed=1)
    exact = untiled(unet, img)
    rough = tiled_inference(unet, img, tile=56, overlap=4, progress=False)  # overlap < radius
    assert 1e-4 < np.abs(rough - exact).max() < 0.5  # seams are blended, not exact
    as8 = tiled_inference(unet, (img * 255).round().astype(np.uint8), tile=64,
                          out_dtype=np.uint8, progress=False)
    ref8 = untiled(unet, (img * 255).round().astype(np.float32) / 255)
    assert as8.dtype == np.uint8
    assert np.abs(as8.astype(np.float32) - np.clip(ref8 * 255, 0, 255).round()).max() <= 1


def test_receptive_field_of_plain_and_global_models():
    plain = nn.Sequential(*(nn.Conv2d(3, 3, 3, padding=1) for _ in range(3)))
    assert receptive_field_radius(plain, probe=32) == 3
    global_model = nn.Sequential(nn.Conv2d(3, 3, 1), nn.AdaptiveAvgPool2d(1))
    assert receptive_field_radius(global_model, probe=32) is None


def test_super_resolution_tiles_equal_the_whole_image():
    torch.manual_seed(0)
    upscaler = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                             nn.Conv2d(8, 12, 3, padding=1), nn.PixelShuffle(2)).eval()
    assert receptive_field_radius(upscaler, probe=32) == 2  # in input pixels
    img = smooth_image(45, 53)
    tiled = tiled_inference(upscaler, img, tile=16, progress=False)
    assert tiled.shape == (90, 106, 3)
    np.testing.assert_allclose(tiled, untiled(upscaler, img), atol=1e-5)


def test_models_that_shrink_the_image_are_refused():
    shrinker = nn.Sequential(nn.Conv2d(3, 3, 3, padding=1), nn.AvgPool2d(2))
    with pytest.raises(LLCVError, match="output of the input's size times an integer scale"):
        tiled_inference(shrinker, smooth_image(40, 40), tile=32, overlap=0, progress=False)
