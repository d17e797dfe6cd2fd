"""RepPlainNet: reparameterization keeps eval outputs and leaves only plain 3x3 convs."""

import pytest
import torch
from torch import nn

from llcv.errors import OptionError
from llcv.registry import ARCHS, build


def tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    cfg = {"type": "RepPlainNet", "in_ch": 3, "features": 8, "num_blocks": 2, **overrides}
    return build(ARCHS, cfg, "network_g")


def trained_statistics(model):
    """Random BN affine parameters and running stats, as after training."""
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("upscale", [1, 2])
@pytest.mark.parametrize("shape", [(1, 3, 13, 7), (2, 3, 1, 1)])
def test_forward_shape(upscale, shape):
    model = tiny(upscale=upscale)
    n, c, h, w = shape
    assert model(torch.rand(shape)).shape == (n, c, h * upscale, w * upscale)


@pytest.mark.parametrize("upscale", [1, 2])
def test_reparameterized_outputs_match_within_1e5(upscale):
    model = trained_statistics(tiny(upscale=upscale, act="leaky_relu")).eval()
    x = torch.rand(2, 3, 15, 12)
    with torch.no_grad():
        before = model(x)
        after = model.reparameterize()(x)
    assert (before - after).abs().max() < 1e-5
    assert model.deployed


def test_deployed_model_has_only_plain_3x3_convs():
    model = tiny().reparameterize()
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4  # head, 2 body blocks, tail
    assert all(c.kernel_size == (3, 3) and c.groups == 1 and c.bias is not None for c in convs)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in model.modules())


def test_deploy_flag_loads_reparameterized_weights():
    deployed = trained_statistics(tiny(0)).eval().reparameterize()
    fresh = tiny(1, deploy=True)
    fresh.load_state_dict(deployed.state_dict())
    x = torch.rand(1, 3, 9, 9)
    torch.testing.assert_close(fresh.eval()(x), deployed(x), rtol=0, atol=0)


def test_backward_reaches_every_parameter():
    model = tiny()
    model(torch.rand(2, 3, 11, 9)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_parameter_counts_training_and_deployed():
    f, n, c = 32, 8, 3

    def block(i, o):  # 3x3 conv + BN, 1x1 conv + BN, identity BN when i == o
        return i * o * 9 + 2 * o + i * o + 2 * o + (2 * i if i == o else 0)

    train = build(ARCHS, {"type": "RepPlainNet", "features": f, "num_blocks": n}, "network_g",
                  device="meta")
    deploy = build(ARCHS, {"type": "RepPlainNet", "features": f, "num_blocks": n, "deploy": True},
                   "network_g", device="meta")
    assert sum(p.numel() for p in train.parameters()) == block(c, f) + n * block(f, f) + block(f, c)
    assert sum(p.numel() for p in deploy.parameters()) == \
        (c * f * 9 + f) + n * (f * f * 9 + f) + (f * c * 9 + c)


def test_unknown_activation_names_the_option():
    with pytest.raises(OptionError, match=r"act: unknown activation 'prelu'"):
        tiny(act="prelu")
