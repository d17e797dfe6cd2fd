"""NAFNetLocal: windows derived as NAFNet's reference does, local means against a direct
computation, equality with NAFNet up to 1.5x the training size, same weights and keys."""
import pytest
import torch
import torch.nn.functional as F

from llcv.archs.nafnet_local_arch import LocalAvgPool2d
from llcv.registry import ARCHS, build

TINY = {"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}


def build_pair(train_size=(1, 3, 8, 8)):
    """NAFNetLocal and NAFNet (zero padding, as the reference) with the same non-trivial weights."""
    torch.manual_seed(0)
    local = build(ARCHS, {"type": "NAFNetLocal", **TINY, "train_size": list(train_size)},
                  "network_g").eval()
    with torch.no_grad():
        for p in local.parameters():  # zero-initialised beta/gamma would hide the attention
            p.add_(torch.randn_like(p) * 0.2)
    plain = build(ARCHS, {"type": "NAFNet", **TINY, "padding_mode": "zeros"}, "network_g").eval()
    plain.load_state_dict(local.state_dict())
    return local, plain


def test_gopro_windows_are_one_and_a_half_crops_per_level():
    # NAFNet's GoPro/REDS files: width 64, enc [1, 1, 1, 28], train_size 256 -> base 384 at
    # full resolution, halved at every level (reference: size_l * int(1.5 * 256) // 256).
    model = build(ARCHS, {"type": "NAFNetLocal", "width": 64, "enc_blk_nums": [1, 1, 1, 28],
                          "middle_blk_num": 1, "dec_blk_nums": [1, 1, 1, 1]}, "network_g",
                  device="meta")
    assert [model.window_at_level(level) for level in range(5)] == \
        [(384, 384), (192, 192), (96, 96), (48, 48), (24, 24)]
    assert model.encoders[3][27].sca[0].kernel_size == (48, 48)
    assert model.middle_blks[0].sca[0].kernel_size == (24, 24)
    assert model.decoders[0][0].sca[0].kernel_size == (48, 48)  # first decoder: level 3
    assert model.decoders[3][0].sca[0].kernel_size == (384, 384)


def test_non_square_and_odd_training_sizes_round_as_the_reference():
    # train 100x60, multiple 4: level-0 map 100x60 -> 100*150//100, 60*90//60; level 2: 25x15
    model = build(ARCHS, {"type": "NAFNetLocal", **TINY, "train_size": [1, 3, 100, 60]},
                  "network_g", device="meta")
    assert model.window_at_level(0) == (150, 90) and model.window_at_level(2) == (37, 22)
    odd = build(ARCHS, {"type": "NAFNetLocal", **TINY, "train_size": [1, 3, 10, 10]},
                "network_g", device="meta")  # padded to 12 first: 12 * 15 // 10
    assert odd.window_at_level(0) == (18, 18)


@pytest.mark.parametrize("h, w, k", [(9, 7, (4, 3)), (6, 10, (6, 4)), (5, 5, (2, 9))])
def test_local_mean_equals_a_direct_window_average(h, w, k):
    x = torch.randn(2, 3, h, w, dtype=torch.float64)
    k1, k2 = min(h, k[0]), min(w, k[1])
    direct = F.avg_pool2d(x, (k1, k2), stride=1)  # the 'valid' windows, then edge-replicated
    dh, dw = h - direct.shape[-2], w - direct.shape[-1]
    direct = F.pad(direct, (dw // 2, (dw + 1) // 2, dh // 2, (dh + 1) // 2), mode="replicate")
    torch.testing.assert_close(LocalAvgPool2d(k)(x), direct)


def test_window_covering_the_map_is_the_global_mean():
    x = torch.randn(1, 4, 6, 5)
    torch.testing.assert_close(LocalAvgPool2d((6, 5))(x), x.mean(dim=(2, 3), keepdim=True))


@pytest.mark.parametrize("h, w", [(8, 8), (12, 12), (11, 9)])
def test_equals_nafnet_up_to_one_and_a_half_training_crops(h, w):
    local, plain = build_pair()
    x = torch.rand(1, 3, h, w)
    with torch.no_grad():
        torch.testing.assert_close(local(x), plain(x))


def test_larger_inputs_use_local_statistics():
    local, plain = build_pair()
    x = torch.rand(1, 3, 32, 24)
    with torch.no_grad():
        assert (local(x) - plain(x)).abs().max() > 1e-3
        # a change in the far corner does not reach the opposite corner's channel statistics
        # through the first block's attention (window 12 < 32): outputs there barely move
        block = local.encoders[0][0]
        y = torch.rand(1, 8, 32, 24)
        z = y.clone()
        z[..., -4:, -4:] += 5.0
        torch.testing.assert_close(block.sca(y)[..., :4, :4], block.sca(z)[..., :4, :4])


def test_same_state_dict_keys_and_parameter_count_as_nafnet():
    local, plain = build_pair()
    assert list(local.state_dict()) == list(plain.state_dict())
    gopro = {"width": 64, "enc_blk_nums": [1, 1, 1, 28], "middle_blk_num": 1,
             "dec_blk_nums": [1, 1, 1, 1]}
    counts = [sum(p.numel() for p in build(ARCHS, {"type": t, **gopro}, "g", device="meta")
                  .parameters()) for t in ("NAFNetLocal", "NAFNet")]
    # NAFNet-GoPro-width64's layout (NAFNet's options/test/GoPro file); a figure computed here,
    # not looked up: local pooling adds no parameters.
    assert counts == [67_888_835, 67_888_835]
