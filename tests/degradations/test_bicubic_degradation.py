"""MATLAB bicubic imresize: weights derived by hand, exactness on constant and linear images,
a direct per-pixel formulation written here, Pillow in the interior, uint8 rounding, options."""
import numpy as np
import pytest
import skimage.data
import torch

from llcv.degradations.bicubic_degradation import (BicubicDownsample, imresize, imresize_pt,
                                                   resize_matrix)
from llcv.errors import OptionError
from llcv.registry import DEGRADATIONS, build

# x2 antialiased kernel, h(d) = cubic(d / 2) / 2 at d = +-0.5, +-1.5, +-2.5, +-3.5 (by hand:
# cubic(0.25) = 0.8671875, cubic(0.75) = 0.2265625, cubic(1.25) = -0.0703125,
# cubic(1.75) = -0.0234375); these sum to 1, so no normalisation changes them.
X2 = [-0.01171875, -0.03515625, 0.11328125, 0.43359375, 0.43359375, 0.11328125, -0.03515625,
      -0.01171875]
# x3: u = 3i - 1 falls on a pixel; h(d) = cubic(d / 3) / 3 for d = 0..5 is 1/3, 7/27, 1/9, 0,
# -2/81, -1/81 (by hand), summing to exactly 1 over d = -5..5.
X3 = [-1 / 81, -2 / 81, 0, 1 / 9, 7 / 27, 1 / 3, 7 / 27, 1 / 9, 0, -2 / 81, -1 / 81]


def test_x2_interior_weights_are_the_hand_derived_ones():
    m = resize_matrix(16, 8, 0.5)
    for k in range(2, 6):  # output k (0-based) is centred between inputs 2k and 2k+1
        expected = np.zeros(16)
        expected[2 * k - 3:2 * k + 5] = X2
        np.testing.assert_array_equal(m[k], expected)


def test_x2_border_taps_are_mirrored_half_sample_symmetric():
    # Output 0 takes inputs -3..4; -1, -2, -3 mirror to 0, 1, 2 (the edge pixel repeats).
    row = resize_matrix(16, 8, 0.5)[0]
    w = X2
    np.testing.assert_array_equal(row[:6], [w[2] + w[3], w[1] + w[4], w[0] + w[5], w[6], w[7], 0])
    np.testing.assert_array_equal(resize_matrix(16, 8, 0.5)[-1], row[::-1])


def test_x3_interior_weights_are_the_hand_derived_ones():
    m = resize_matrix(30, 10, 1 / 3)
    expected = np.zeros(30)
    expected[13 - 5:13 + 6] = X3  # output 4 (0-based) is centred on input 3 * 4 + 1
    np.testing.assert_allclose(m[4], expected, rtol=0, atol=1e-15)


@pytest.mark.parametrize("scale", [0.5, 1 / 3, 0.25, 0.37, 1.0, 2.0, 2.5])
def test_constant_images_stay_constant(scale):
    img = np.full((23, 17, 3), 0.3)
    out = imresize(img, scale)
    assert out.shape == (int(np.ceil(23 * scale)), int(np.ceil(17 * scale)), 3)
    np.testing.assert_allclose(out, 0.3, rtol=0, atol=1e-12)


@pytest.mark.parametrize("factor", [2, 3, 4])
def test_linear_ramps_stay_linear_away_from_the_borders(factor):
    # Symmetric taps about each output centre u = (i + 0.5) * factor - 0.5 (0-based) reproduce
    # a linear function exactly; mirrored taps at the borders do not, so those are left out.
    n = 24 * factor
    ramp = 0.01 * np.arange(n, dtype=np.float64) + 0.2
    img = np.broadcast_to(ramp[:, None], (n, 5)).copy()
    out = imresize(img, 1 / factor)[:, 0]
    centres = (np.arange(24) + 0.5) * factor - 0.5
    inner = slice(3, -3)
    np.testing.assert_allclose(out[inner], 0.01 * centres[inner] + 0.2, rtol=0, atol=1e-12)


def direct_resize(img: np.ndarray, scale: float) -> np.ndarray:
    """MATLAB's rule written out per output pixel: the stretched kernel evaluated at every tap
    of a symmetrically padded image, weights normalised per axis, 2-D sum of the products."""
    def keys(x):
        x = abs(x)
        return (1.5 * x ** 3 - 2.5 * x ** 2 + 1) if x <= 1 else \
            (-0.5 * x ** 3 + 2.5 * x ** 2 - 4 * x + 2) if x <= 2 else 0.0

    def taps(out_len, in_len):
        s = min(scale, 1.0)
        half = 2.0 / s
        rows = []
        for i in range(out_len):
            centre = (i + 0.5) / scale - 0.5  # 0-based
            lo, hi = int(np.floor(centre - half)), int(np.ceil(centre + half))
            idx = list(range(lo, hi + 1))
            w = np.array([s * keys(s * (centre - t)) for t in idx])
            rows.append((np.array(idx), w / w.sum()))
        return rows

    h, w = img.shape
    out_h, out_w = int(np.ceil(h * scale)), int(np.ceil(w * scale))
    pad = 64
    padded = np.pad(img, pad, mode="symmetric")
    out = np.zeros((out_h, out_w))
    for i, (ri, rw) in enumerate(taps(out_h, h)):
        for j, (ci, cw) in enumerate(taps(out_w, w)):
            out[i, j] = rw @ padded[np.ix_(ri + pad, ci + pad)] @ cw
    return out


@pytest.mark.parametrize("scale, shape", [(0.5, (12, 9)), (1 / 3, (10, 14)), (0.25, (9, 16)),
                                          (0.37, (11, 8)), (2.0, (5, 4)), (1.5, (6, 7))])
def test_matches_a_direct_per_pixel_formulation(scale, shape):
    img = np.random.default_rng(1).random(shape)
    np.testing.assert_allclose(imresize(img, scale), direct_resize(img, scale), rtol=0,
                               atol=1e-12)


@pytest.mark.parametrize("scale, shape", [(0.5, (60, 44)), (0.25, (64, 48)), (0.37, (100, 200)),
                                          (1 / 3, (99, 81)), (2.5, (20, 16))])
def test_agrees_with_pillow_away_from_the_borders(scale, shape):
    # Pillow's antialiased bicubic uses the same kernel and centres but truncates (rather than
    # mirrors) at the borders; where every tap is inside the image the two must agree.
    from PIL import Image

    img = np.random.default_rng(2).random(shape)
    out = imresize(img, scale)
    pil = Image.fromarray(img.astype(np.float32), mode="F").resize(
        (out.shape[1], out.shape[0]), Image.BICUBIC, reducing_gap=None)
    np.testing.assert_allclose(out[8:-8, 8:-8], np.asarray(pil)[8:-8, 8:-8], rtol=0, atol=1e-6)


def test_uint8_is_rounded_half_up_and_saturated_once_at_the_end():
    img = skimage.data.astronaut()[:64, :48]
    out = imresize(img, 0.25)
    assert out.dtype == np.uint8 and out.shape == (16, 12, 3)
    exact = imresize(img.astype(np.float64), 0.25)
    np.testing.assert_array_equal(out, np.clip(np.floor(exact + 0.5), 0, 255).astype(np.uint8))
    step = np.zeros((16, 16), np.uint8)
    step[:, 8:] = 255  # bicubic over- and undershoots at a step: saturated, not wrapped
    exact = imresize(step.astype(np.float64), 0.5)
    assert exact.max() > 255.5 and exact.min() < -0.5
    out = imresize(step, 0.5)
    assert (out[exact > 255] == 255).all() and (out[exact < 0] == 0).all()
    np.testing.assert_array_equal(out, np.clip(np.floor(exact + 0.5), 0, 255))


def test_size_gives_per_axis_scales_as_matlab():
    img = np.random.default_rng(3).random((20, 30))
    np.testing.assert_allclose(imresize(img, size=(10, 15)), imresize(img, 0.5), atol=1e-15)
    out = imresize(img, size=(7, 40))
    np.testing.assert_allclose(out, resize_matrix(20, 7, 7 / 20) @ img @
                               resize_matrix(30, 40, 40 / 30).T, atol=1e-12)


def test_torch_version_matches_numpy_batched():
    img = np.random.default_rng(4).random((2, 3, 17, 13))
    out = imresize_pt(torch.from_numpy(img), 0.25)
    assert out.shape == (2, 3, 5, 4)
    for n in range(2):
        np.testing.assert_allclose(out[n].numpy(), imresize(img[n].transpose(1, 2, 0), 0.25)
                                   .transpose(2, 0, 1), atol=1e-12)


def test_bad_scale_or_size_arguments():
    with pytest.raises(OptionError, match="^scale: give either scale or size"):
        imresize(np.zeros((4, 4)))
    with pytest.raises(OptionError, match="^scale: expected a number > 0"):
        imresize(np.zeros((4, 4)), -2)


def photo(h=64, w=48):
    return (skimage.data.astronaut()[96:96 + h, 176:176 + w] / 255.0).astype(np.float32)


@pytest.mark.parametrize("scale, size", [(2, (32, 24)), (3, (22, 16)), (4, (16, 12))])
def test_degradation_shrinks_by_scale_and_keeps_range_and_dtype(scale, size):
    img = photo()
    deg = build(DEGRADATIONS, {"type": "BicubicDownsample", "scale": scale}, "degradation")
    out = deg(img, np.random.default_rng(0))
    assert out.shape == (*size, 3) and out.dtype == np.float32
    assert 0 <= out.min() and out.max() <= 1
    np.testing.assert_allclose(out, np.clip(imresize(img, 1 / scale), 0, 1), atol=1e-6)


def test_quantize_gives_what_an_lr_png_made_from_the_uint8_hr_holds():
    hr = skimage.data.astronaut()[96:160, 176:224]
    lr_png = imresize(hr, 0.25)
    out = BicubicDownsample(scale=4, quantize=True)(hr / 255.0, np.random.default_rng(0))
    np.testing.assert_array_equal(np.round(out * 255).astype(np.uint8), lr_png)


def test_without_antialiasing_the_kernel_is_not_stretched():
    m = resize_matrix(16, 4, 0.25, antialias=False)
    assert (m != 0).sum(axis=1).max() <= 4  # 4 taps of the plain cubic
    img = photo()
    sharp = BicubicDownsample(scale=4, antialias=False)(img, np.random.default_rng(0))
    smooth = BicubicDownsample(scale=4)(img, np.random.default_rng(0))
    assert np.abs(np.diff(sharp, axis=1)).mean() > np.abs(np.diff(smooth, axis=1)).mean()


def test_scale_below_one_names_the_option():
    with pytest.raises(OptionError, match=r"^degradation\.scale: expected a single number in "
                                          r"\[1.0, 16.0\]"):
        build(DEGRADATIONS, {"type": "BicubicDownsample", "scale": 0.5}, "degradation")
