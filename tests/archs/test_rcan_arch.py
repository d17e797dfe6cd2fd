"""RCAN: published parameter counts, BasicSR checkpoint keys, channel attention, options."""
import pytest
import torch

from llcv.archs.rcan_arch import ChannelAttention
from llcv.errors import OptionError
from llcv.registry import ARCHS, build


def rcan(device=None, **options):
    return build(ARCHS, {"type": "RCAN", **options}, "network_g",
                 **({"device": device} if device else {}))


# The published RCAN (10 groups x 20 blocks, 64 feats, squeeze 16): 15,592,379 (x4) and
# 15,444,667 (x2) counted on the authors' code (public architecture benchmark tables; paper:
# "about 16M"), which holds the data mean in two frozen 1x1 MeanShift convs (24 parameters).
# BasicSR, whose options and keys llcv follows, keeps the mean as a constant: 24 fewer, and
# 15,592,355 for x4 is quoted as such in public comparison tables. By hand (x4): 1,792 + 10 x
# (20 x (2 x 36,928 + 260 + 320) + 36,928) + 36,928 + 2 x 147,712 + 1,731.
@pytest.mark.parametrize("upscale, expected", [(4, 15_592_379 - 24), (2, 15_444_667 - 24)])
def test_published_parameter_counts(upscale, expected):
    model = rcan("meta", num_block=20, upscale=upscale)
    assert sum(p.numel() for p in model.parameters()) == expected


def test_state_dict_keys_are_basicsr_s():
    keys = set(rcan(num_feat=8, num_group=2, num_block=2, squeeze_factor=4).state_dict())
    for key in ("conv_first.weight", "body.0.residual_group.0.rcab.0.weight",
                "body.0.residual_group.1.rcab.2.bias",
                "body.1.residual_group.0.rcab.3.attention.1.weight",
                "body.1.residual_group.1.rcab.3.attention.3.bias", "body.1.conv.weight",
                "conv_after_body.weight", "upsample.0.weight", "upsample.2.weight",
                "conv_last.bias"):
        assert key in keys, key
    assert "mean" not in keys and len(keys) == 2 + 2 * (2 * 8 + 2) + 2 + 4 + 2


def test_channel_attention_gates_each_channel_by_its_global_mean():
    torch.manual_seed(0)
    ca = ChannelAttention(8, squeeze_factor=4)
    x = torch.randn(2, 8, 5, 6, dtype=torch.float64)
    ca.double()
    squeeze, excite = ca.attention[1], ca.attention[3]
    mean = x.mean(dim=(2, 3))
    gate = torch.sigmoid(excite.weight[:, :, 0, 0] @ torch.relu(
        squeeze.weight[:, :, 0, 0] @ mean.T + squeeze.bias[:, None]) + excite.bias[:, None])
    torch.testing.assert_close(ca(x), x * gate.T[:, :, None, None])


def test_zero_residual_groups_leave_the_edsr_like_trunk():
    torch.manual_seed(0)
    model = rcan(num_feat=8, num_group=1, num_block=1, squeeze_factor=4, upscale=2, res_scale=0.5)
    with torch.no_grad():
        model.body[0].conv.weight.zero_()
        model.body[0].conv.bias.zero_()
        x = torch.rand(1, 3, 4, 4)
        feat = model.conv_first((x - model.mean) * 255.0)
        feat = feat + model.conv_after_body(feat)
        expected = model.conv_last(model.upsample(feat)) / 255.0 + model.mean
        torch.testing.assert_close(model(x), expected)


@pytest.mark.parametrize("options, message", [
    ({"upscale": 6}, r"network_g\.upscale: expected a power of 2 or 3, got 6"),
    ({"num_group": -1}, r"network_g\.num_group: expected an integer >= 0"),
    ({"squeeze_factor": 0}, r"network_g\.squeeze_factor: expected an integer >= 1"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(OptionError, match=message):
        rcan(**options)
