"""FFTLoss against numpy's FFT."""
import numpy as np
import pytest
import torch

from llcv.errors import OptionError
from llcv.registry import LOSSES, build


def numpy_reference(pred, target, norm):
    diff = np.fft.rfft2(pred.double().numpy(), norm=norm) - np.fft.rfft2(target.double().numpy(),
                                                                        norm=norm)
    return np.stack([np.abs(diff.real), np.abs(diff.imag)], axis=-1)


@pytest.mark.parametrize("norm", ["backward", "ortho", "forward"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_matches_numpy_fft(norm, reduction):
    torch.manual_seed(0)
    pred, target = torch.rand(2, 3, 9, 12), torch.rand(2, 3, 9, 12)
    loss = build(LOSSES, {"type": "FFTLoss", "loss_weight": 0.1, "reduction": reduction,
                          "norm": norm}, "train.fft_opt")
    ref = 0.1 * numpy_reference(pred, target, norm)
    ref = {"mean": ref.mean(), "sum": ref.sum(), "none": ref}[reduction]
    np.testing.assert_allclose(loss(pred, target).numpy(), ref, rtol=1e-4, atol=1e-6)


def test_zero_for_equal_images_and_gradient_flows():
    x = torch.rand(1, 3, 8, 8, requires_grad=True)
    loss = build(LOSSES, {"type": "FFTLoss"}, "train.fft_opt")
    assert loss(x, x.detach()).item() == 0
    loss(x, torch.rand(1, 3, 8, 8)).backward()
    assert x.grad.abs().sum() > 0


def test_half_precision_input_is_transformed_in_float32():
    loss = build(LOSSES, {"type": "FFTLoss"}, "train.fft_opt")
    a, b = torch.rand(1, 1, 5, 7), torch.rand(1, 1, 5, 7)
    out = loss(a.half(), b.half())
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, loss(a.half().float(), b.half().float()))


def test_bad_norm_names_the_option():
    with pytest.raises(OptionError, match="norm: unknown FFT normalisation 'l2'"):
        build(LOSSES, {"type": "FFTLoss", "norm": "l2"}, "train.fft_opt")
