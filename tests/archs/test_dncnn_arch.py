"""DnCNN: shapes, residual learning, gradients, parameter counts of the paper's models."""

import pytest
import torch
from torch import nn

from llcv.errors import OptionError
from llcv.registry import ARCHS, build


def tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = {"type": "DnCNN", "in_ch": 3, "depth": 4, "features": 8, **overrides}
    return build(ARCHS, cfg, "network_g")


def test_residual_learning_subtracts_the_predicted_noise():
    model = tiny().eval()
    x = torch.rand(1, 3, 8, 8)
    torch.testing.assert_close(model(x), x - model.body(x))
    plain = tiny(residual=False).eval()
    torch.testing.assert_close(plain(x), plain.body(x))


@pytest.mark.parametrize("use_bn", [True, False])
def test_backward_reaches_every_parameter(use_bn):
    model = tiny(use_bn=use_bn)
    model(torch.rand(2, 3, 11, 9)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name
    assert any(isinstance(m, nn.BatchNorm2d) for m in model.modules()) == use_bn


@pytest.mark.parametrize("in_ch,depth", [(1, 17), (1, 20), (3, 20)])  # DnCNN-S, -B, CDnCNN-B
def test_paper_model_parameter_counts(in_ch, depth):
    f = 64
    first = in_ch * f * 9 + f                    # conv with bias
    middle = (depth - 2) * (f * f * 9 + 2 * f)   # bias-free conv + BN weight and bias
    last = f * in_ch * 9 + in_ch
    model = build(ARCHS, {"type": "DnCNN", "in_ch": in_ch, "depth": depth}, "network_g",
                  device="meta")
    assert sum(p.numel() for p in model.parameters()) == first + middle + last
    assert depth != 17 or in_ch != 1 or first + middle + last == 556_097


def test_bad_depth_names_the_option():
    with pytest.raises(OptionError, match=r"depth: expected an integer >= 2"):
        tiny(depth=1)
