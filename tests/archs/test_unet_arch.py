"""UNet: any input size, residual output, training, checkpoints, argument errors, pruning."""
import numpy as np
import pytest
import torch
from torch import nn

from llcv.errors import OptionError
from llcv.registry import ARCHS, build

TINY = {"type": "UNet", "in_ch": 3, "widths": [4, 8, 16], "blocks": [1, 2, 1]}


def make(seed: int = 0, **overrides) -> nn.Module:
    torch.manual_seed(seed)
    return build(ARCHS, {**TINY, **overrides}, "network_g")


@pytest.mark.parametrize("size", [(17, 23), (1, 1), (2, 3), (16, 16), (5, 32)])
def test_forward_keeps_shape_for_any_size(size):
    model = make()
    x = torch.rand(2, 3, *size)
    assert model(x).shape == x.shape


def test_size_multiple_is_downsampling_factor():
    assert make().size_multiple == 4
    assert make(widths=[4, 8, 8, 8], blocks=[1, 1, 1, 1]).size_multiple == 8
    single = make(widths=[8], blocks=[2])
    assert single.size_multiple == 1
    x = torch.rand(1, 3, 5, 7)
    assert single(x).shape == x.shape


def test_odd_size_output_equals_edge_padded_run_cropped():
    model = make()
    x = torch.rand(1, 3, 5, 6, dtype=torch.float64)
    model = model.double()
    padded = torch.from_numpy(np.pad(x.numpy(), ((0, 0), (0, 0), (0, 3), (0, 2)), mode="edge"))
    residual = model(padded) - padded
    torch.testing.assert_close(model(x), x + residual[..., :5, :6])


def test_layout_follows_widths_and_blocks():
    model = make(widths=[4, 8, 16], blocks=[1, 2, 3])
    convs = [m for m in model.modules() if type(m) is nn.Conv2d]
    ups = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    # encoders 1+2, bottleneck 3, decoders 1+2, 2 downsampling convs, 1 tail conv
    assert len(convs) == 3 + 3 + 3 + 2 + 1
    assert [(u.in_channels, u.out_channels, u.stride) for u in ups] == [(8, 4, (2, 2)),
                                                                        (16, 8, (2, 2))]
    assert model.decoders[0][0].in_channels == 2 * 4  # upsampled + skip concatenated
    assert model.decoders[1][0].in_channels == 2 * 8
    assert model.tail.out_channels == 3


def test_backward_reaches_every_parameter():
    model = make()
    model(torch.rand(2, 3, 16, 16)).square().mean().backward()
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and p.grad.abs().sum() > 0, name


def test_zero_tail_gives_identity_and_default_is_not_identity():
    model = make()
    x = torch.rand(2, 3, 9, 13)
    assert not torch.allclose(model(x), x)
    nn.init.zeros_(model.tail.weight)
    nn.init.zeros_(model.tail.bias)
    assert torch.equal(model(x), x)


def test_builds_on_meta_device_and_in_float64():
    meta = make(device="meta")
    assert all(p.device.type == "meta" for p in meta.parameters())
    double = make(dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in double.parameters())


@pytest.mark.parametrize("act", ["relu", "leaky_relu", "gelu", "silu"])
def test_every_activation_builds_and_runs(act):
    assert make(act=act)(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)


@pytest.mark.parametrize("overrides, arg", [
    ({"blocks": [1, 1]}, "blocks"),
    ({"widths": [4, 0, 16]}, "widths"),
    ({"widths": []}, "widths"),
    ({"widths": 16}, "widths"),
    ({"blocks": [1, -1, 1]}, "blocks"),
    ({"in_ch": 0}, "in_ch"),
    ({"out_ch": 1}, "out_ch"),
    ({"act": "swish"}, "act"),
])
def test_bad_arguments_name_the_argument(overrides, arg):
    with pytest.raises(ValueError, match=f"^network_g\\.{arg}:") as info:
        make(**overrides)
    assert isinstance(info.value, OptionError)


def test_unknown_activation_lists_allowed():
    with pytest.raises(ValueError, match="relu, leaky_relu, gelu, silu"):
        make(act="prelu")


def test_out_ch_equal_to_in_ch_is_accepted():
    assert make(out_ch=3)(torch.rand(1, 3, 4, 4)).shape == (1, 3, 4, 4)


def test_structured_pruning_through_transpose_and_concat():
    tp = pytest.importorskip("torch_pruning")
    model = make()
    importance = tp.importance.MagnitudeImportance(p=1)
    pruner = tp.pruner.MagnitudePruner(model, torch.rand(1, 3, 16, 16), importance,
                                       pruning_ratio=0.5, ignored_layers=[model.tail])
    before = sum(p.numel() for p in model.parameters())
    pruner.step()
    assert sum(p.numel() for p in model.parameters()) < before / 2
    assert model.decoders[0][0].in_channels == 2 * model.ups[0].out_channels
    x = torch.rand(1, 3, 17, 23)
    assert model(x).shape == x.shape
