"""SwinIR: published parameter counts and checkpoint layout; shifted-window attention against a
direct whole-image formulation; non-square sizes and sizes that are not a window multiple."""
import math

import numpy as np
import pytest
import torch

from llcv.archs.swinir_arch import SwinTransformerBlock, shifted_window_mask
from llcv.errors import OptionError
from llcv.registry import ARCHS, build

CLASSICAL = {"img_size": 64, "window_size": 8, "img_range": 1.0, "depths": [6] * 6,
             "embed_dim": 180, "num_heads": [6] * 6, "mlp_ratio": 2,
             "upsampler": "pixelshuffle", "resi_connection": "1conv"}
SMALL = {"img_size": 8, "embed_dim": 12, "depths": [2, 2], "num_heads": [2, 3],
         "window_size": 4, "mlp_ratio": 2, "upsampler": "pixelshuffle", "upscale": 2}


def swinir(device=None, seed=0, **options):
    torch.manual_seed(seed)
    return build(ARCHS, {"type": "SwinIR", **options}, "network_g",
                 **({"device": device} if device else {}))


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


# Classical SR (SwinIR-M, 001_classicalSR_*_s64w8_SwinIR-M_x{2,3,4}.pth): 11,752,487 (x2) and
# 11,900,199 (x4) as listed for these checkpoints in public architecture benchmark tables; the
# SwinIR README gives "11.9M" for x4 (JingyunLiang/SwinIR#18). x3 (11,937,127) is computed: x2
# plus one 64->576 conv instead of 64->256 (+184,640). Lightweight x2 (embed 60, depths 6x4,
# pixelshuffledirect): 910,152, the "910.2K" the reference code gives (JingyunLiang/SwinIR#45;
# the paper prints 878K). Colour denoising (img_size 128, upsampler '') is computed: 11,504,163.
@pytest.mark.parametrize("options, expected", [
    ({**CLASSICAL, "upscale": 2}, 11_752_487),
    ({**CLASSICAL, "upscale": 3}, 11_937_127),
    ({**CLASSICAL, "upscale": 4}, 11_900_199),
    ({**CLASSICAL, "upscale": 2, "embed_dim": 60, "depths": [6] * 4, "num_heads": [6] * 4,
      "upsampler": "pixelshuffledirect"}, 910_152),
    ({**CLASSICAL, "upscale": 1, "img_size": 128, "upsampler": ""}, 11_504_163),
])
def test_published_parameter_counts(options, expected):
    assert count(swinir("meta", **options)) == expected


def test_checkpoint_layout_of_the_classical_x2_model():
    state = swinir("meta", **CLASSICAL, upscale=2).state_dict()
    block = "layers.0.residual_group.blocks"
    # The shift mask is saved with the weights, sized for img_size (64 windows of 8x8 on 64x64);
    # a model built for another img_size refuses such a checkpoint (JingyunLiang/SwinIR#129).
    assert state[f"{block}.1.attn_mask"].shape == (64, 64, 64)
    assert f"{block}.0.attn_mask" not in state  # unshifted blocks have none
    assert state[f"{block}.0.attn.relative_position_bias_table"].shape == (15 * 15, 6)
    assert state[f"{block}.0.attn.relative_position_index"].shape == (64, 64)
    for key in ("conv_first.weight", "patch_embed.norm.weight", f"{block}.5.mlp.fc2.bias",
                f"{block}.1.attn.qkv.weight", f"{block}.1.attn.proj.bias", "layers.5.conv.weight",
                "norm.bias", "conv_after_body.weight", "conv_before_upsample.0.weight",
                "upsample.0.weight", "conv_last.weight"):
        assert key in state, key
    assert not any(k.startswith("mean") for k in state)


def test_stored_mask_bands_match_a_hand_drawn_case():
    # 8x8 map, 4x4 windows, shift 2: the last window row/column mixes rows 4-5 (kept) with rows
    # 6-7 (rolled in from the top), which must not attend to each other.
    mask = shifted_window_mask(8, 8, 4, 2)
    assert mask.shape == (4, 16, 16)
    assert not mask[0].any()  # top-left window: nothing rolled in
    pixel = lambda r, c: r * 4 + c  # noqa: E731 (position inside a window)
    last = mask[3]  # bottom-right window: 4 regions (rows 4-5 / 6-7 x cols 4-5 / 6-7)
    assert last[pixel(0, 0), pixel(1, 1)] == 0 and last[pixel(0, 0), pixel(2, 0)] == -100
    assert last[pixel(0, 0), pixel(0, 2)] == -100 and last[pixel(3, 3), pixel(2, 2)] == 0
    assert int((last == 0).sum()) == 4 * 4 * 4  # four regions of 4 pixels, each all-to-all


def direct_block(block: SwinTransformerBlock, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """The block as whole-image attention: pixel p attends q iff, after the cyclic roll, both
    fall in the same window and the roll did not wrap between them (their offset is the same
    before and after the roll); the bias is indexed by their offset inside the window."""
    ws, s = block.window_size, block.shift_size
    rows, cols = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    rows, cols = rows.flatten(), cols.flatten()
    rr, rc = (rows - s) % h, (cols - s) % w  # position after the roll
    same_window = (rr[:, None] // ws == rr[None] // ws) & (rc[:, None] // ws == rc[None] // ws)
    no_wrap = (rr[:, None] - rr[None] == rows[:, None] - rows[None]) & \
        (rc[:, None] - rc[None] == cols[:, None] - cols[None])
    dy = rr[:, None] % ws - rr[None] % ws + ws - 1
    dx = rc[:, None] % ws - rc[None] % ws + ws - 1
    attn_mod = block.attn
    heads = attn_mod.relative_position_bias_table.shape[1]
    bias = attn_mod.relative_position_bias_table[dy * (2 * ws - 1) + dx].permute(2, 0, 1)
    y = block.norm1(x)
    b, n, c = y.shape
    q, k, v = attn_mod.qkv(y).view(b, n, 3, heads, c // heads).permute(2, 0, 3, 1, 4)
    logits = q @ k.transpose(-2, -1) / math.sqrt(c // heads) + bias
    logits = logits.masked_fill(~(same_window & no_wrap), float("-inf"))
    out = attn_mod.proj((logits.softmax(-1) @ v).transpose(1, 2).reshape(b, n, c))
    x = x + out
    return x + block.mlp(block.norm2(x))


@pytest.mark.parametrize("shift", [0, 2])
@pytest.mark.parametrize("h, w", [(8, 8), (16, 8), (8, 24)])
def test_window_attention_equals_the_direct_whole_image_formulation(shift, h, w):
    torch.manual_seed(0)
    block = SwinTransformerBlock(12, (8, 8), num_heads=3, window_size=4, shift_size=shift,
                                 mlp_ratio=2, qkv_bias=True, qk_scale=None, drop=0.0,
                                 attn_drop=0.0, drop_path=0.0, dtype=torch.float64)
    x = torch.randn(2, h * w, 12, dtype=torch.float64)
    mask = shifted_window_mask(h, w, 4, 2, dtype=torch.float64) if (h, w) != (8, 8) else None
    torch.testing.assert_close(block(x, (h, w), mask), direct_block(block, x, h, w))


def test_masks_computed_for_other_sizes_equal_the_stored_ones():
    # Non-square 256x128 input on a model built for 8x8 crops, against the same weights in a
    # model built for 256x128 (which uses its stored masks): the shifted blocks agree.
    small = swinir(**SMALL).eval()
    big = swinir(**{**SMALL, "img_size": [256, 128]}).eval()
    state = {k: v for k, v in small.state_dict().items() if not k.endswith("attn_mask")}
    big.load_state_dict(state, strict=False)
    x = torch.rand(1, 3, 256, 128)
    with torch.no_grad():
        out = small(x)
        assert out.shape == (1, 3, 512, 256)
        torch.testing.assert_close(out, big(x))


@pytest.mark.parametrize("h, w", [(13, 10), (5, 19), (1, 1)])
def test_sizes_not_a_window_multiple_are_reflect_padded_and_cropped(h, w):
    model = swinir(**SMALL).eval()
    x = torch.rand(1, 3, h, w)
    # numpy's reflect, like the model's, mirrors back and forth and repeats a 1-pixel side
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, -h % 4), (0, -w % 4)), mode="reflect")
    with torch.no_grad():
        torch.testing.assert_close(model(x), model(torch.from_numpy(padded))[..., :2 * h, :2 * w])


@pytest.mark.parametrize("upsampler, upscale", [("pixelshuffle", 3), ("pixelshuffledirect", 2),
                                                ("nearest+conv", 4), ("nearest+conv", 2),
                                                ("", 1)])
def test_every_reconstruction_gives_input_size_times_upscale(upsampler, upscale):
    model = swinir(**{**SMALL, "upsampler": upsampler, "upscale": upscale, "in_chans": 1}).eval()
    with torch.no_grad():
        assert model(torch.rand(2, 1, 6, 9)).shape == (2, 1, 6 * upscale, 9 * upscale)


def test_denoising_configuration_adds_its_output_to_the_input():
    model = swinir(**{**SMALL, "upsampler": "", "upscale": 1, "resi_connection": "3conv"}).eval()
    with torch.no_grad():
        model.conv_last.weight.zero_()
        model.conv_last.bias.zero_()
        x = torch.rand(1, 3, 9, 6)
        torch.testing.assert_close(model(x), x)


def test_drop_path_is_random_in_training_only():
    model = swinir(**{**SMALL, "drop_path_rate": 0.5})
    x = torch.rand(4, 3, 8, 8)
    with torch.no_grad():
        a, b = model(x), model(x)
        assert not torch.equal(a, b)
        model.eval()
        torch.testing.assert_close(model(x), model(x), rtol=0, atol=0)


@pytest.mark.parametrize("options, message", [
    ({"num_heads": [5, 3]}, r"network_g\.num_heads: every entry must divide embed_dim \(12\)"),
    ({"num_heads": [2]}, r"network_g\.num_heads: expected 2 integers"),
    ({"upsampler": "bicubic"}, r"network_g\.upsampler: expected one of"),
    ({"upsampler": "", "upscale": 2}, r"network_g\.upscale: expected one of 1, got 2"),
    ({"upsampler": "nearest+conv", "upscale": 3}, r"network_g\.upscale: expected one of 2, 4"),
    ({"resi_connection": "2conv"}, r"network_g\.resi_connection: expected one of"),
    ({"img_size": [8, 8, 8]}, r"network_g\.img_size: expected 2 integers"),
])
def test_bad_options_name_the_key(options, message):
    with pytest.raises(OptionError, match=message):
        swinir(**{**SMALL, **options})
