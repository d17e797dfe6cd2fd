"""SRVGGNetCompact: Real-ESRGAN's released configurations, keys, nearest base, options."""
import pytest
import torch
import torch.nn.functional as F

from llcv.errors import OptionError
from llcv.registry import ARCHS, build


def srvgg(device=None, **options):
    torch.manual_seed(0)
    return build(ARCHS, {"type": "SRVGGNetCompact", **options}, "network_g",
                 **({"device": device} if device else {}))


# Real-ESRGAN's released compact models (PReLU, 64 feats, x4): realesr-general-x4v3 has
# num_conv 32 and 1,213,296 parameters, realesr-animevideov3 num_conv 16 and 621,424 (counts
# listed by public ports of these checkpoints). By hand: 1,792 + 64 (first conv and PReLU)
# + num_conv x (36,928 + 64) + 27,696 (conv to 48 = 3 x 4^2 channels).
@pytest.mark.parametrize("num_conv, expected", [(32, 1_213_296), (16, 621_424)])
def test_published_parameter_counts(num_conv, expected):
    model = srvgg("meta", num_feat=64, num_conv=num_conv, upscale=4, act_type="prelu")
    assert sum(p.numel() for p in model.parameters()) == expected


def test_state_dict_keys_count_activations_as_layers():
    keys = set(srvgg(num_feat=8, num_conv=2).state_dict())
    # body: conv, prelu, (conv, prelu) x 2, conv -> indices 0..6; PReLU has one weight
    assert keys == {"body.0.weight", "body.0.bias", "body.1.weight", "body.2.weight",
                    "body.2.bias", "body.3.weight", "body.4.weight", "body.4.bias",
                    "body.5.weight", "body.6.weight", "body.6.bias"}
    assert srvgg(num_feat=8, num_conv=2).state_dict()["body.1.weight"].shape == (8,)


@pytest.mark.parametrize("act_type", ["relu", "prelu", "leakyrelu"])
def test_a_zero_last_conv_returns_the_nearest_upsampled_input(act_type):
    model = srvgg(num_feat=8, num_conv=1, upscale=3, act_type=act_type)
    with torch.no_grad():
        model.body[-1].weight.zero_()
        model.body[-1].bias.zero_()
        x = torch.rand(2, 3, 4, 5)
        torch.testing.assert_close(model(x), F.interpolate(x, scale_factor=3, mode="nearest"))


@pytest.mark.parametrize("options, message", [
    ({"act_type": "gelu"}, r"network_g\.act_type: unknown activation 'gelu'; allowed: relu, "
                           r"prelu, leakyrelu"),
    ({"num_out_ch": 1}, r"network_g\.num_out_ch: must equal num_in_ch \(3\)"),
    ({"upscale": 0}, r"network_g\.upscale: expected an integer >= 1, got 0"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(OptionError, match=message):
        srvgg(**options)
