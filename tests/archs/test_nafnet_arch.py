"""NAFNet: shapes at odd sizes, gradients, published parameter counts, checkpoint layout."""

import pytest
import torch

from llcv.errors import OptionError
from llcv.registry import ARCHS, build

TINY = {"img_channel": 3, "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
        "dec_blk_nums": [1, 1]}


def tiny(seed: int = 0):
    torch.manual_seed(seed)
    return build(ARCHS, {"type": "NAFNet", **TINY}, "network_g")


def test_fresh_model_is_identity():
    # beta/gamma start at zero, so every block passes its input through; only intro/ending act.
    model = tiny()
    x = torch.rand(1, 3, 8, 8)
    blocks_off = model.ending(_decode_without_blocks(model, model.intro(x)))
    torch.testing.assert_close(model(x), x + blocks_off)


def _decode_without_blocks(model, x):
    skips = []
    for down in model.downs:
        skips.append(x)
        x = down(x)
    for up, skip in zip(model.ups, reversed(skips)):
        x = up(x) + skip
    return x


def test_backward_reaches_every_parameter():
    model = tiny()
    with torch.no_grad():  # beta/gamma are zero at init, which would zero most gradients
        for p in model.parameters():
            if not p.any():
                p.normal_(0, 0.1)
    model(torch.rand(2, 3, 11, 9)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


@pytest.mark.parametrize("width,count", [(32, 29_159_715), (64, 115_982_915)])
def test_published_sidd_parameter_counts(width, count):
    model = build(ARCHS, {"type": "NAFNet", "width": width, "enc_blk_nums": [2, 2, 4, 8],
                          "middle_blk_num": 12, "dec_blk_nums": [2, 2, 2, 2]},
                  "network_g", device="meta")
    assert sum(p.numel() for p in model.parameters()) == count


def test_state_dict_keys_follow_published_checkpoints():
    keys = set(tiny().state_dict())
    for key in ("intro.weight", "ending.bias", "encoders.0.0.conv1.weight",
                "encoders.0.0.conv2.weight", "encoders.1.0.sca.1.weight",
                "encoders.0.0.norm1.weight", "encoders.0.0.norm2.bias", "encoders.0.0.beta",
                "encoders.0.0.gamma", "downs.1.weight", "middle_blks.0.conv4.weight",
                "ups.0.0.weight", "decoders.1.0.conv5.bias"):
        assert key in keys, key


def test_layer_norm_2d_matches_formula():
    from llcv.archs.nafnet_arch import LayerNorm2d
    norm = LayerNorm2d(5)
    with torch.no_grad():
        norm.weight.normal_()
        norm.bias.normal_()
    x = torch.randn(2, 5, 3, 4, dtype=torch.float64)
    mu = x.mean(1, keepdim=True)
    var = (x - mu).square().mean(1, keepdim=True)
    expected = (x - mu) / torch.sqrt(var + 1e-6) * norm.weight.double().view(1, 5, 1, 1) \
        + norm.bias.double().view(1, 5, 1, 1)
    torch.testing.assert_close(norm.double()(x), expected)


def test_mismatched_levels_name_the_option():
    with pytest.raises(OptionError, match=r"dec_blk_nums: needs one entry per encoder level"):
        build(ARCHS, {"type": "NAFNet", "enc_blk_nums": [1, 1], "dec_blk_nums": [1]},
              "network_g")
