"""Restormer: shapes at odd sizes, gradients, published parameter count, checkpoint layout."""

import pytest
import torch

from llcv.errors import OptionError
from llcv.registry import ARCHS, build

TINY = {"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1, "heads": [1, 2, 2, 4],
        "ffn_expansion_factor": 2.66, "bias": False, "LayerNorm_type": "WithBias"}


def tiny(seed: int = 0, **overrides):
    torch.manual_seed(seed)
    return build(ARCHS, {"type": "Restormer", **TINY, **overrides}, "network_g")


def test_dual_pixel_variant_maps_six_channels_to_three():
    model = tiny(inp_channels=6, dual_pixel_task=True)
    assert model(torch.rand(1, 6, 9, 12)).shape == (1, 3, 9, 12)


@pytest.mark.parametrize("norm_type,bias", [("WithBias", False), ("BiasFree", True)])
def test_backward_reaches_every_parameter(norm_type, bias):
    model = tiny(LayerNorm_type=norm_type, bias=bias)
    model(torch.rand(2, 3, 11, 9)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.abs().sum() > 0, name


def test_published_parameter_count():
    model = build(ARCHS, {"type": "Restormer"}, "network_g", device="meta")
    assert sum(p.numel() for p in model.parameters()) == 26_126_644


def test_state_dict_keys_follow_published_checkpoints():
    keys = set(tiny().state_dict())
    for key in ("patch_embed.proj.weight", "encoder_level1.0.norm1.body.weight",
                "encoder_level1.0.norm1.body.bias", "encoder_level1.0.attn.temperature",
                "encoder_level1.0.attn.qkv.weight", "encoder_level1.0.attn.qkv_dwconv.weight",
                "encoder_level1.0.attn.project_out.weight",
                "encoder_level1.0.ffn.project_in.weight",
                "encoder_level1.0.ffn.dwconv.weight", "encoder_level1.0.ffn.project_out.weight",
                "down1_2.body.0.weight", "latent.0.norm2.body.weight", "up4_3.body.0.weight",
                "reduce_chan_level3.weight", "reduce_chan_level2.weight", "up2_1.body.0.weight",
                "decoder_level1.0.attn.qkv.weight", "refinement.0.ffn.dwconv.weight",
                "output.weight"):
        assert key in keys, key


def test_bias_free_layer_norm_scales_without_centering():
    from llcv.archs.restormer_arch import LayerNorm
    norm = LayerNorm(6, "BiasFree").double()
    with torch.no_grad():
        norm.body.weight.uniform_(0.5, 2)
    x = torch.randn(2, 6, 3, 4, dtype=torch.float64) + 3
    var = x.var(dim=1, unbiased=False, keepdim=True)
    expected = x / torch.sqrt(var + 1e-5) * norm.body.weight.view(1, 6, 1, 1)
    torch.testing.assert_close(norm(x), expected)
    assert [n for n, _ in norm.named_parameters()] == ["body.weight"]


def test_attention_is_across_channels():
    # MDTA's map is (C/heads) x (C/heads) per head: the output at a pixel depends on all pixels,
    # and on the heads' own channels only through the grouped projections.
    from llcv.archs.restormer_arch import Attention
    torch.manual_seed(0)
    attn = Attention(8, 2, bias=False)
    x = torch.rand(1, 8, 5, 5, requires_grad=True)
    attn(x)[0, :, 0, 0].sum().backward()
    assert (x.grad[0, :, 4, 4].abs() > 0).all()  # far outside the 3x3 depthwise footprint


def test_bad_heads_name_the_option():
    with pytest.raises(OptionError, match=r"heads: level 1 has 16 channels"):
        tiny(heads=[1, 3, 2, 4])
