"""MSRResNet: the challenge baseline's parameter count, BasicSR keys, bilinear base, init."""
import math

import pytest
import torch
import torch.nn.functional as F

from llcv.errors import OptionError
from llcv.registry import ARCHS, build


def msrresnet(device=None, **options):
    torch.manual_seed(0)
    return build(ARCHS, {"type": "MSRResNet", **options}, "network_g",
                 **({"device": device} if device else {}))


def test_published_x4_parameter_count():
    # 1,517,571: the MSRResNet baseline of the AIM 2019 constrained SR challenge (its README:
    # "Number of parameters: 1,517,571 (1.5M)", counted as sum of p.numel()); the NTIRE 2022
    # efficient SR challenge tables list it as 1.517M.
    assert sum(p.numel() for p in msrresnet("meta").parameters()) == 1_517_571


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_state_dict_keys_are_basicsr_s(upscale):
    keys = set(msrresnet(num_feat=8, num_block=2, upscale=upscale).state_dict())
    expected = {f"{name}.{t}" for name in ("conv_first", "upconv1", "conv_hr", "conv_last")
                for t in ("weight", "bias")}
    expected |= {f"body.{i}.conv{j}.{t}" for i in range(2) for j in (1, 2)
                 for t in ("weight", "bias")}
    if upscale == 4:
        expected |= {"upconv2.weight", "upconv2.bias"}
    assert keys == expected


@pytest.mark.parametrize("upscale", [2, 3, 4])
def test_a_zero_last_conv_returns_the_bilinear_upsampled_input(upscale):
    model = msrresnet(num_feat=8, num_block=1, upscale=upscale)
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        x = torch.rand(1, 3, 5, 7)
        expected = F.interpolate(x, scale_factor=upscale, mode="bilinear", align_corners=False)
        torch.testing.assert_close(model(x), expected)


def test_convs_start_from_kaiming_scaled_by_a_tenth_with_zero_bias():
    model = msrresnet(num_feat=64, num_block=4)
    conv = model.body[2].conv1
    expected_std = 0.1 * math.sqrt(2.0 / (64 * 9))  # Kaiming normal, fan_in, ReLU gain
    assert abs(conv.weight.std().item() / expected_std - 1) < 0.05
    assert not conv.bias.any() and not model.conv_first.bias.any()


def test_unsupported_upscale_names_the_option():
    with pytest.raises(OptionError, match=r"^network_g\.upscale: expected one of 2, 3, 4, got 8"):
        msrresnet(upscale=8)
