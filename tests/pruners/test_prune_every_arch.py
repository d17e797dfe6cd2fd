"""Every registered architecture prunes: 50% of its channels, any input size afterwards, fewer
parameters, a plan that replays bit-identically on a fresh dense model, ``round_to`` kept; and
wherever removed channels would only carry zeros, the pruned network computes what the dense one
does with those channels zeroed (a check of every index mapping: concat, PixelShuffle, gates...).
"""
import copy

import pytest
import torch
from torch import nn

from archs.test_all_archs import SIZES, TINY, image_archs
from llcv.network import apply_plan, build_network, kept_widths, network_spec
from llcv.pruners.arch_config import arch_pruning
from llcv.pruners.base import trace_shape
from llcv.pruners.graph import trace_graph
from llcv.pruners.magnitude_pruner import MagnitudePruner
from prune_helpers import tiny_network, zero_removed

NAMES = sorted(TINY)
NORMALISED = {"NAFNet", "NAFNetLocal", "Restormer", "SwinIR"}  # LayerNorm over channels


def test_every_registered_arch_declares_how_it_prunes():
    assert set(image_archs()) == set(TINY)  # discriminators (network_d) are never pruned
    for name in image_archs():
        decl = arch_pruning(name)  # a missing declaration raises, naming the fix
        assert decl.unprunable is None and decl.width_options, name


@pytest.mark.parametrize("name", NAMES)
def test_half_the_channels(name):
    options, channels, _, upscale = TINY[name]
    spec, model = tiny_network({"type": name, **options})
    pruner = MagnitudePruner({"channel_ratio": 0.5, "input_shape": [1, channels, 16, 16]},
                             round_to=2)
    result = pruner.prune(model, spec)
    pruned = result.apply(model).eval()
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        for h, w in SIZES:
            x = torch.rand(2, channels, h, w)
            assert pruned(x).shape == (2, channels, h * upscale, w * upscale)
    replayed = apply_plan(copy.deepcopy(model), result.spec["plan"]).eval()
    x = torch.rand(1, channels, 11, 9)
    with torch.no_grad():
        torch.testing.assert_close(replayed(x), pruned(x), rtol=0, atol=0)
    before, after = kept_widths(model), kept_widths(pruned)
    changed = [n for n in after if after[n] != before[n]]
    assert changed and all(after[n] % 2 == 0 for n in changed), (name, after)
    assert result.report.after.params == sum(p.numel() for p in pruned.parameters())


def _without_channel_norms(model: nn.Module) -> nn.Module:
    """NAFNet-style blocks with their LayerNorm2d replaced by identities (zeroed channels then
    stay out of every statistic)."""
    for module in list(model.modules()):
        for child_name, child in list(module.named_children()):
            if type(child).__name__ == "LayerNorm2d":
                setattr(module, child_name, nn.Identity())
    return model


@pytest.mark.parametrize("name", [n for n in NAMES if n not in NORMALISED - {"NAFNet"}])
def test_pruned_equals_dense_with_removed_channels_zeroed(name):
    options, channels, _, _ = TINY[name]
    _, model = tiny_network({"type": name, **options})
    if name == "NAFNet":  # PixelShuffle decoder, SimpleGate, depthwise convs, SCA
        _without_channel_norms(model)
    graph = trace_graph(model, trace_shape(model, channels))
    gen = torch.Generator().manual_seed(1)
    keep = {g.id: sorted(torch.randperm(g.size, generator=gen)[:g.size // 2 or 1].tolist())
            for g in graph.groups}
    plan = graph.plan(keep)
    pruned = apply_plan(copy.deepcopy(model), plan).eval()
    reference = zero_removed(copy.deepcopy(model), plan).eval()
    x = torch.rand(1, channels, 12, 10)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), reference(x), rtol=1e-5, atol=1e-5)


def test_reparameterizable_net_prunes_before_folding_and_still_folds():
    spec, model = tiny_network({"type": "RepPlainNet", "features": 8, "num_blocks": 2})
    result = MagnitudePruner({"channel_ratio": 0.5}, round_to=2).prune(model, spec)
    pruned = result.apply(model).eval()
    assert pruned.body[2].branch_identity.weight.shape[0] == 4  # identity branch kept, in = out
    x = torch.rand(1, 3, 9, 11)
    with torch.no_grad():
        before = pruned(x)
        pruned.reparameterize()
        assert pruned.deployed and pruned.body[2].fused.weight.shape[:2] == (4, 4)
        torch.testing.assert_close(pruned(x), before, rtol=1e-5, atol=1e-5)


def test_deployed_reparameterized_net_prunes_too():
    spec, model = tiny_network({"type": "RepPlainNet", "features": 8, "num_blocks": 2,
                                "deploy": True})
    result = MagnitudePruner({"channel_ratio": 0.5}, round_to=2).prune(model, spec)
    pruned = result.apply(model).eval()
    assert pruned.body[2].fused.weight.shape[:2] == (4, 4)
    rebuilt = build_network(result.spec, init=False)
    rebuilt.load_state_dict(pruned.state_dict())
    x = torch.rand(1, 3, 5, 6)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.eval()(x), pruned(x), rtol=0, atol=0)


def test_unet_spec_with_compactors_is_an_identity_change():
    spec, model = tiny_network({"type": "UNet", "widths": [4, 8, 16], "blocks": [1, 2, 1]})
    _, with_compactors = tiny_network({**spec["network_g"], "skip_compactors": True})
    with_compactors.load_state_dict(model.state_dict(), strict=False)
    x = torch.rand(1, 3, 13, 7)
    with torch.no_grad():
        torch.testing.assert_close(with_compactors(x), model(x), rtol=0, atol=1e-6)
    assert network_spec(spec["network_g"])["plan"] is None
