"""profile_model: per-layer MACs against the hand formula, activation bytes, meta device."""
import pytest
import torch
from torch import nn

from llcv.analysis.profile import count_parameters, format_profile, profile_model
from llcv.archs.nafnet_arch import NAFNet


def conv_macs(n, cin, cout, k, h_out, w_out, groups=1):
    return n * cout * h_out * w_out * (cin // groups) * k * k


class MatmulMixer(nn.Module):
    """A container doing its own matrix product around a child conv."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Conv2d(4, 4, 1, bias=False)
        self.mix = nn.Parameter(torch.randn(6, 6))

    def forward(self, x):
        return self.proj(x) @ self.mix  # (N, 4, 5, 6) @ (6, 6)


def test_plain_conv_layers_match_hand_formula():
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                          nn.Conv2d(8, 8, 3, padding=1, groups=8),
                          nn.Conv2d(8, 4, 1, stride=2), MatmulMixer())
    model.train()
    model[1].eval()
    prof = profile_model(model, (2, 3, 10, 12))
    rows = {r.name: r for r in prof.layers}
    assert list(rows) == ["0", "1", "2", "3", "4.proj", "4"]
    assert rows["0"].macs == conv_macs(2, 3, 8, 3, 10, 12)
    assert rows["1"].macs == 0
    assert rows["2"].macs == conv_macs(2, 8, 8, 3, 10, 12, groups=8)
    assert rows["3"].macs == conv_macs(2, 8, 4, 1, 5, 6)
    assert rows["4.proj"].macs == conv_macs(2, 4, 4, 1, 5, 6)
    assert rows["4"].macs == 2 * 4 * 5 * 6 * 6  # own matmul only, not its child's conv
    assert prof.macs == sum(r.macs for r in prof.layers)
    assert prof.flops == 2 * prof.macs
    assert rows["0"].output_shape == [2, 8, 10, 12]
    assert rows["0"].activation_bytes == 2 * 8 * 10 * 12 * 4
    assert prof.params == sum(p.numel() for p in model.parameters()) == count_parameters(model)
    assert model.training and not model[1].training  # every module's mode restored
    assert not any(m._forward_hooks for m in model.modules())  # hooks removed


def test_module_called_twice_sums_calls():
    conv = nn.Conv2d(2, 2, 3, padding=1, bias=False)
    model = nn.Sequential(conv, nn.ReLU(), conv)
    prof = profile_model(model, (1, 2, 6, 6))
    assert prof.params == 36  # shared weights counted once
    (row,) = [r for r in prof.layers if r.name == "0"]
    assert row.calls == 2 and row.macs == 2 * conv_macs(1, 2, 2, 3, 6, 6)


def test_meta_device_gives_the_same_figures():
    cfg = {"width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1, "dec_blk_nums": [1, 1]}
    cpu = profile_model(NAFNet(**cfg), (1, 3, 20, 18)).to_dict()
    meta = profile_model(NAFNet(**cfg, device="meta"), (1, 3, 20, 18)).to_dict()
    assert cpu == meta
    assert cpu["macs"] > 0 and cpu["layers"]


def test_nafnet_width32_published_figures():
    # The paper's 16 GMACs at 256x256; PyTorch's counter gives 32.09 GFLOPs.
    prof = profile_model(NAFNet(width=32, device="meta"), (1, 3, 256, 256))
    assert prof.params == 29_159_715
    assert prof.macs == 16_045_035_520
    assert round(prof.macs / 1e9, 2) == 16.05
    text = format_profile(prof, layers=False)
    assert "29,159,715" in text and "16.05 G" in text and "FLOPs = 2 x MACs" in text


@pytest.mark.parametrize("layers", [True, False])
def test_format_lists_layers_on_request(layers):
    prof = profile_model(nn.Sequential(nn.Conv2d(1, 2, 3)), (1, 1, 5, 5))
    text = format_profile(prof, layers=layers)
    assert ("Conv2d" in text) == layers
    assert "MACs:   162 (162)" in text
