"""RRDBNet: ESRGAN's parameter count, keys, dense connectivity, pixel-unshuffle scales."""
import numpy as np
import pytest
import torch

from llcv.errors import OptionError
from llcv.registry import ARCHS, build


def rrdbnet(device=None, **options):
    torch.manual_seed(0)
    return build(ARCHS, {"type": "RRDBNet", **options}, "network_g",
                 **({"device": device} if device else {}))


def count(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_published_esrgan_x4_parameter_count():
    # ESRGAN / RealESRGAN_x4plus generator (23 RRDBs, 64 feats, growth 32): 16,697,987 as
    # listed for these checkpoints in public model tables. By hand: 1,792 + 23 x 3 x 239,808
    # (one dense block: 18,464 + 27,680 + 36,896 + 46,112 + 110,656) + 4 x 36,928 + 1,731.
    assert count(rrdbnet("meta")) == 16_697_987


def test_x2_folds_the_input_by_pixel_unshuffle():
    # RealESRGAN_x2plus: the first conv sees 4 x 3 channels, 64 x 9 x 9 more weights (computed).
    model = rrdbnet("meta", scale=2)
    assert model.conv_first.weight.shape == (64, 12, 3, 3)
    assert count(model) == 16_697_987 + 64 * 9 * 9
    assert model.size_multiple == 2 and rrdbnet("meta", scale=1).size_multiple == 4


def test_state_dict_keys_are_basicsr_s():
    keys = set(rrdbnet(num_feat=8, num_block=2, num_grow_ch=4).state_dict())
    expected = {f"{name}.{t}" for name in ("conv_first", "conv_body", "conv_up1", "conv_up2",
                                           "conv_hr", "conv_last") for t in ("weight", "bias")}
    expected |= {f"body.{i}.rdb{r}.conv{c}.{t}" for i in range(2) for r in (1, 2, 3)
                 for c in range(1, 6) for t in ("weight", "bias")}
    assert keys == expected


def test_dense_block_convs_see_every_earlier_feature():
    rdb = rrdbnet(num_feat=8, num_block=1, num_grow_ch=4).body[0].rdb1
    assert [getattr(rdb, f"conv{i}").in_channels for i in range(1, 6)] == [8, 12, 16, 20, 24]
    assert rdb.conv5.out_channels == 8


@pytest.mark.parametrize("scale", [1, 2, 4])
def test_odd_sizes_are_reflect_padded_then_cropped(scale):
    model = rrdbnet(num_feat=8, num_block=1, num_grow_ch=4, scale=scale).eval()
    x = torch.rand(1, 3, 9, 11)
    m = model.size_multiple
    padded = np.pad(x.numpy(), ((0, 0), (0, 0), (0, -9 % m), (0, -11 % m)), mode="reflect")
    with torch.no_grad():
        out = model(x)
        assert out.shape == (1, 3, 9 * scale, 11 * scale)
        torch.testing.assert_close(out, model(torch.from_numpy(padded))[..., :9 * scale,
                                                                         :11 * scale])


def test_unsupported_scale_names_the_option():
    with pytest.raises(OptionError, match=r"^network_g\.scale: expected one of 1, 2, 4, got 3"):
        rrdbnet(scale=3)
