"""The contract every registered architecture keeps, checked on a tiny configuration of each.

A new arch must add its tiny configuration here (the first test fails until it does).
"""
import io

import pytest
import torch

from llcv.registry import ARCHS, build, registered_names

TINY = {  # name -> (options, input channels, expected size_multiple)
    "UNet": ({"widths": [4, 8, 16], "blocks": [1, 2, 1]}, 3, 4),
    "NAFNet": ({"width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]}, 3, 4),
    "Restormer": ({"dim": 8, "num_blocks": [1, 1, 1, 1], "num_refinement_blocks": 1,
                   "heads": [1, 2, 2, 4]}, 3, 8),
    "DnCNN": ({"in_ch": 3, "depth": 4, "features": 8}, 3, 1),
    "RepPlainNet": ({"features": 8, "num_blocks": 2}, 3, 1),
}
SIZES = [(13, 7), (17, 23), (1, 1), (16, 8)]


def tiny(name: str, seed: int = 0, **kwargs):
    torch.manual_seed(seed)
    options, _, _ = TINY[name]
    return build(ARCHS, {"type": name, **options}, "network_g", **kwargs)


def test_every_registered_arch_has_a_tiny_configuration():
    assert set(registered_names(ARCHS)) == set(TINY)


@pytest.mark.parametrize("name", sorted(TINY))
def test_any_input_size_keeps_shape(name):
    model = tiny(name).eval()
    channels, multiple = TINY[name][1], TINY[name][2]
    assert model.size_multiple == multiple
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.rand(2, channels, h, w)
            assert model(x).shape == x.shape


@pytest.mark.parametrize("name", sorted(TINY))
def test_state_dict_round_trip_gives_identical_outputs(name):
    a, b = tiny(name, 0).eval(), tiny(name, 1).eval()
    for module in a.modules():  # non-trivial running statistics, where there are any
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.uniform_(-0.1, 0.1)
            module.running_var.uniform_(0.5, 1.5)
    buf = io.BytesIO()
    torch.save(a.state_dict(), buf)
    buf.seek(0)
    b.load_state_dict(torch.load(buf, weights_only=True))
    x = torch.rand(1, TINY[name][1], 9, 10)
    with torch.no_grad():
        torch.testing.assert_close(a(x), b(x), rtol=0, atol=0)


@pytest.mark.parametrize("name", sorted(TINY))
def test_builds_on_meta_device(name):
    model = tiny(name, device="meta")
    assert all(p.device.type == "meta" for p in model.parameters())
    x = torch.empty(1, TINY[name][1], 16, 16, device="meta")
    assert model(x).shape == x.shape
