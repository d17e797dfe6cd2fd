"""Targets (channel, params, MACs ratios; peak memory), constraints, infeasible targets, reports,
and the pruners as registered components."""
import pytest
import torch

from llcv.analysis.profile import profile_model
from llcv.errors import LLCVError, OptionError
from llcv.network import kept_widths
from llcv.pruners.graph import trace_graph
from llcv.registry import PRUNERS, build
from prune_helpers import tiny_network

UNET = {"type": "UNet", "widths": [8, 16, 32], "blocks": [1, 2, 1]}
SHAPE = [1, 3, 32, 32]


@pytest.fixture(scope="module")
def unet():
    return tiny_network(UNET)


def prune(unet, **cfg):
    spec, model = unet
    pruner = build(PRUNERS, {"type": "MagnitudePruner", **cfg}, "prune")
    result = pruner.prune(model, spec)
    return result, result.apply(model)


def params(model):
    return sum(p.numel() for p in model.parameters())


def macs(model):
    return profile_model(model, SHAPE).macs


@pytest.mark.parametrize("kind, targets", [
    ("UniformPruner", [({"params_ratio": 0.6}, params),
                       ({"macs_ratio": 0.5, "input_shape": SHAPE}, macs)]),
    ("MagnitudePruner", [({"params_ratio": 0.6}, params),
                         ({"macs_ratio": 0.5, "input_shape": SHAPE}, macs)]),
    ("MemoryAwarePruner", [({"params_ratio": 0.6}, params)]),
])
def test_params_and_macs_ratios_are_met(unet, kind, targets):
    spec, model = unet
    for target, figure in targets:
        result, pruned = prune(unet, type=kind, target=target, round_to=2)
        assert figure(pruned) <= (1 - list(target.values())[0]) * figure(model)
        assert figure(pruned) > 0.2 * figure(model)  # not far beyond the target


def test_uniform_channel_ratio_halves_every_prunable_width(unet):
    _, model = unet
    result, pruned = prune(unet, type="UniformPruner", target={"channel_ratio": 0.5})
    before, after = kept_widths(model), kept_widths(pruned)
    assert after == {n: w if n == "tail" else w // 2 for n, w in before.items()}
    assert result.report.widths["encoders.0.0"] == [8, 4]


def test_round_to_min_widths_and_ignored_layers_hold(unet):
    _, model = unet
    _, pruned = prune(unet, target={"channel_ratio": 0.5}, round_to=4,
                      min_widths={"bottleneck.*": 24}, ignored_layers=["encoders.0.0"])
    widths = kept_widths(pruned)
    assert widths["encoders.0.0"] == 8
    assert widths["bottleneck.0"] >= 24
    assert all(w % 4 == 0 for n, w in widths.items() if n != "tail")


def test_an_arch_can_declare_layers_that_keep_their_width(unet, monkeypatch):
    from llcv.archs.unet_arch import UNet

    monkeypatch.setitem(UNet.__dict__["pruning"], "keep_width", ["decoders.*"])
    _, model = unet
    _, pruned = prune(unet, type="UniformPruner", target={"channel_ratio": 0.5})
    before, after = kept_widths(model), kept_widths(pruned)
    assert all(after[n] == before[n] for n in after if n.startswith("decoders."))
    assert after["encoders.1.0"] == before["encoders.1.0"] // 2


def test_magnitude_pruner_removes_the_lowest_scored_channels(unet):
    spec, model = unet
    with torch.no_grad():
        model.encoders[0][0].weight[[1, 5]] *= 1e-3  # two weak channels in the first layer
    try:
        result, _ = prune(unet, target={"channel_ratio": 0.05})
        kept = result.plan["keep"]["encoders.0.0.weight"][0]
        assert 1 not in kept and 5 not in kept
    finally:
        torch.manual_seed(0)
        unet[1].load_state_dict(tiny_network(UNET)[1].state_dict())


@pytest.mark.parametrize("target, message", [
    ({"peak_memory_mb": 0.01, "input_shape": SHAPE},
     r"target.peak_memory_mb: peak 0.01 MiB at 1x3x32x32 \(inference\) is below the [\d.]+ MiB "
     r"this network reaches with every prunable width at its minimum \(round_to 2, min_width 2\)"),
    ({"params_ratio": 0.999},
     r"target.params_ratio: removing 99.9% is beyond the [\d.]+% this network reaches"),
])
def test_infeasible_targets_are_refused_first_with_the_reachable_figure(unet, target, message):
    with pytest.raises(LLCVError, match=message) as err:
        prune(unet, target=target, round_to=2)
    assert "\n" not in str(err.value)


@pytest.mark.parametrize("cfg, message", [
    ({"target": {"ratio": 0.5}}, "prune.target: needs exactly one of channel_ratio"),
    ({"target": {"channel_ratio": 1.5}}, r"prune.target.channel_ratio: expected the fraction"),
    ({"target": {"peak_memory_mb": 10}}, "prune.target.input_shape: a peak-memory target"),
    ({"target": {"channel_ratio": 0.5}, "round_to": 0}, "prune.round_to: expected an integer"),
    ({"target": {"channel_ratio": 0.5}, "compactor": True}, "prune.compactor: unknown option"),
    ({"target": {"channel_ratio": 0.5}, "ignored_layers": "tail"},
     "prune.ignored_layers: expected a list"),
])
def test_bad_options_name_the_key(cfg, message):
    with pytest.raises(OptionError, match=message):
        build(PRUNERS, {"type": "MagnitudePruner", **cfg}, "prune")


def test_unknown_layers_and_missing_declarations_are_clear_errors(unet, monkeypatch):
    with pytest.raises(OptionError, match="ignored_layers: 'encoder.0' matches no layer"):
        prune(unet, target={"channel_ratio": 0.5}, ignored_layers=["encoder.0"])
    from llcv.archs.unet_arch import UNet

    monkeypatch.setattr(UNet, "pruning", {"unprunable": "its widths are fixed by a checkpoint"})
    with pytest.raises(LLCVError, match="UNet cannot be pruned structurally: its widths"):
        prune(unet, target={"channel_ratio": 0.5})
    monkeypatch.delattr(UNet, "pruning")
    with pytest.raises(LLCVError, match="UNet: no pruning declaration; add e.g. pruning ="):
        prune(unet, target={"channel_ratio": 0.5})


def test_compactors_need_an_arch_that_declares_them():
    spec, model = tiny_network({"type": "DnCNN", "in_ch": 3, "depth": 3, "features": 8})
    pruner = build(PRUNERS, {"type": "MemoryAwarePruner", "compactors": True,
                             "target": {"channel_ratio": 0.5}}, "prune")
    with pytest.raises(OptionError, match="compactors: DnCNN declares no skip-compactor option"):
        pruner.prune(model, spec)


def test_report_as_dict_and_table(unet):
    spec, model = unet
    result, pruned = prune(unet, target={"peak_memory_mb": 0.6, "input_shape": SHAPE},
                           round_to=2)
    report = result.report.to_dict()
    assert report["pruner"] == "MagnitudePruner" and report["input_shape"] == SHAPE
    assert report["before"]["params"] == params(model)
    assert report["after"]["params"] == params(pruned)
    assert report["after"]["est_infer_peak_bytes"] <= 0.6 * 2 ** 20
    assert report["before"]["est_train_peak_bytes"] > report["after"]["est_train_peak_bytes"]
    assert report["seconds"] > 0 and report["widths"]
    table = result.report.format()
    assert table.splitlines()[0].startswith("MagnitudePruner to peak 0.60 MiB at 1x3x32x32")
    assert "est. inference peak" in table and "->" in table


def test_groups_are_traced_afresh_for_each_event(unet):
    spec, model = unet
    result, pruned = prune(unet, target={"channel_ratio": 0.5}, round_to=2)
    again, twice = prune((result.spec, pruned), target={"channel_ratio": 0.5}, round_to=2)
    assert params(twice) < params(pruned)
    assert len(trace_graph(twice, (1, 3, 8, 8)).groups) == len(trace_graph(model, (1, 3, 8, 8))
                                                                .groups)
    assert again.spec["plan"]["keep"]["encoders.0.0.weight"][0] == [
        result.plan["keep"]["encoders.0.0.weight"][0][i]
        for i in again.plan["keep"]["encoders.0.0.weight"][0]]


def test_check_refuses_an_unreachable_target_before_any_gradients(unet):
    spec, model = unet
    taylor = {"type": "taylor", "iterations": 4}
    build(PRUNERS, {"type": "MemoryAwarePruner", "importance": taylor,
                    "target": {"peak_memory_mb": 1, "input_shape": SHAPE}}, "prune") \
        .check(model, spec)  # reachable: no error, no gradients needed
    with pytest.raises(LLCVError, match="target.peak_memory_mb: peak 0.01 MiB"):
        build(PRUNERS, {"type": "MemoryAwarePruner", "importance": taylor,
                        "target": {"peak_memory_mb": 0.01, "input_shape": SHAPE}}, "prune") \
            .check(model, spec)


def test_peak_memory_targets_say_which_figure_they_bound():
    from llcv.errors import ArgumentError
    from llcv.memory import estimate_peak_memory
    from llcv.network import build_network, network_spec
    from llcv.pruners.targets import estimate_model, parse_target

    with pytest.raises(ArgumentError, match=r"^target.kind: expected one of tensors, allocated"):
        parse_target({"peak_memory_mb": 10, "input_shape": [1, 3, 64, 64], "kind": "free"})
    model = build_network(network_spec({"type": "UNet", "widths": [8, 16], "blocks": [1, 1]}),
                          device="meta")
    figures = {}
    for kind in ("tensors", "allocated", "reserved"):
        target = parse_target({"peak_memory_mb": 10, "input_shape": [1, 3, 64, 64],
                               "device": "cuda", "kind": kind})
        figures[kind] = estimate_model(model, target.input_shape, "inference", target,
                                       "cuda").peak(kind)
    direct = estimate_peak_memory(model, [1, 3, 64, 64], "inference", device="cuda")
    assert figures == {k: direct.peak(k) for k in figures}
    assert figures["tensors"] <= figures["allocated"] <= figures["reserved"]
    assert figures["reserved"] > figures["tensors"]  # the caching allocator's segments
