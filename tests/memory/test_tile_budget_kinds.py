"""Tiled-inference budgets by kind: reserved by default on a CUDA target (no GPU needed)."""
import pytest
import torch

from llcv.archs.unet_arch import UNet
from llcv.errors import OptionError
from llcv.inference import (_visit_sizes, budget_kind, choose_tile, tile_peak_bytes,
                            tiling_peak_bytes)
from llcv.memory.calibration import ENV_VAR, Calibration
from llcv.utils import MB

IMAGE = (700, 650)


@pytest.fixture(scope="module")
def unet():
    return UNet(widths=[8, 16], blocks=[1, 1])


def test_visit_sizes_follow_the_windows():
    # length 203, tile 48, overlap 8: cores of 32; windows 40 (clipped at 0), 48 x 5, 19
    assert _visit_sizes(203, 48, 8) == [40, 48, 48, 19]
    assert _visit_sizes(40, 48, 8) == [40]


def test_default_kind_is_reserved_on_cuda_and_tensors_on_cpu():
    assert budget_kind(None, torch.device("cuda")) == "reserved"
    assert budget_kind(None, torch.device("cpu")) == budget_kind("device", torch.device("cpu")) \
        == "tensors"
    assert budget_kind("allocated", torch.device("cuda")) == "allocated"


def test_reserved_budget_picks_the_largest_tile_that_fits(unet):
    budget = 40 * MB
    tile = choose_tile(unet, budget, 8, IMAGE, device="cuda")
    assert tiling_peak_bytes(unet, tile, 8, IMAGE, device="cuda") <= 0.9 * budget
    bigger = tile + unet.size_multiple
    assert tiling_peak_bytes(unet, bigger, 8, IMAGE, device="cuda") > 0.9 * budget
    # segments of 2 and 20 MiB: reserved is above the tensors' peak, so the tile is smaller
    tensors_tile = choose_tile(unet, budget, 8, IMAGE, device="cuda", kind="tensors")
    assert tensors_tile > tile
    assert tile_peak_bytes(unet, tile, tile, device="cuda", kind="reserved") >= \
        tile_peak_bytes(unet, tile, tile, device="cuda", kind="allocated")


def test_device_budget_needs_a_calibration(unet, monkeypatch):
    monkeypatch.delenv(ENV_VAR, raising=False)
    with pytest.raises(OptionError, match="calibrate_memory"):
        choose_tile(unet, 600 * MB, 8, IMAGE, device="cuda", kind="device")
    cal = Calibration("Test GPU", (8, 0), 80 << 30, 500 * MB, 8 * MB, source="cal.json")
    tile = choose_tile(unet, 600 * MB, 8, IMAGE, device="cuda", kind="device", calibration=cal)
    reserved = tiling_peak_bytes(unet, tile, 8, IMAGE, device="cuda", calibration=cal)
    assert reserved + 500 * MB == tiling_peak_bytes(unet, tile, 8, IMAGE, device="cuda",
                                                    kind="device", calibration=cal)
    assert reserved + 500 * MB <= 0.9 * 600 * MB and tile > 200


def test_cpu_kinds_are_the_tensors_peak(unet):
    assert tile_peak_bytes(unet, 64, 64, kind="reserved") == tile_peak_bytes(unet, 64, 64)
    assert choose_tile(unet, 8 * MB, 8, IMAGE, kind="reserved") == choose_tile(unet, 8 * MB, 8,
                                                                               IMAGE)
