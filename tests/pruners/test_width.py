"""The width-multiplier baseline: scaled width options, and the largest multiplier in budget."""
import pytest

from llcv.errors import LLCVError
from llcv.memory import estimate_peak_memory
from llcv.pruners.width import largest_multiplier, scale_widths
from llcv.registry import ARCHS, build
from llcv.utils import MB

SHAPE = [1, 3, 128, 128]


def test_scale_widths_scales_every_declared_option():
    assert scale_widths({"type": "UNet", "widths": [32, 64, 128, 256]}, 0.5, 8)["widths"] == \
        [16, 32, 64, 128]
    assert scale_widths({"type": "UNet"}, 0.3, 8)["widths"] == [8, 16, 40, 80]  # defaults
    assert scale_widths({"type": "NAFNet", "width": 32}, 0.25)["width"] == 8
    scaled = scale_widths({"type": "RRDBNet", "num_feat": 64, "num_grow_ch": 32}, 0.5, 4)
    assert (scaled["num_feat"], scaled["num_grow_ch"]) == (32, 16)


def peak(network_g, mode="inference"):
    return estimate_peak_memory(build(ARCHS, network_g, "network_g", device="meta"), SHAPE,
                                mode).total


@pytest.mark.parametrize("mode", ["inference", "train"])
def test_largest_multiplier_meets_the_budget_and_the_next_step_does_not(mode):
    network_g = {"type": "UNet", "widths": [16, 32, 64], "blocks": [1, 1, 1]}
    budget = 0.4 * peak(network_g, mode)
    choice = largest_multiplier(network_g, budget / MB, SHAPE, mode, round_to=2)
    assert choice.peak_bytes == peak(choice.network_g, mode) <= budget
    assert 0.1 < choice.factor < 1
    wider = scale_widths(network_g, choice.factor * 1.05, 2)
    assert wider == choice.network_g or peak(wider, mode) > budget
    assert choice.params == sum(p.numel() for p in build(ARCHS, choice.network_g, "n").parameters())


def test_a_budget_below_the_thinnest_network_is_refused():
    with pytest.raises(LLCVError, match=r"budget_mb: 0.01 MiB at 1x3x128x128 \(inference\) is "
                                        r"below the [\d.]+ MiB UNet needs at width x0.015625"):
        largest_multiplier({"type": "UNet"}, 0.01, SHAPE)


def test_widths_an_arch_refuses_are_skipped():
    network_g = {"type": "SwinIR", "img_size": 8, "embed_dim": 12, "depths": [1],
                 "num_heads": [3], "window_size": 4, "mlp_ratio": 2, "upsampler": "",
                 "upscale": 1}
    budget = 0.9 * peak(network_g)  # embed_dims 8 and 10 are refused (3 heads)
    choice = largest_multiplier(network_g, budget / MB, SHAPE, round_to=2)
    assert choice.network_g["embed_dim"] == 6 and choice.peak_bytes <= budget
