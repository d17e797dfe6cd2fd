"""GALPruner and its soft masks: which groups a mask covers exactly, the masked network equals
the folded one, pruning by one mask threshold meets a peak-memory budget (estimated and
measured) at the lowest threshold that does, the pruned network after folding computes what
the masked one did with the removed masks at 0 (within 1e-5), memory weights follow the peak,
and the proximal step drives masks to exact zeros, heavier-weighted ones first."""
import copy
import os

import pytest
import torch

from llcv.errors import LLCVError
from llcv.evaluation import measured_inference_peak
from llcv.memory import estimate_peak_memory
from llcv.options import read_yaml
from llcv.pruners.base import trace_shape
from llcv.pruners.gal_pruner import MEMORY_FLOOR, GALPruner, widths_above
from llcv.pruners.graph import trace_graph
from llcv.pruners.soft_masks import ProximalL1, SoftMasks, attached_masks, maskable_groups
from llcv.utils import MB
from gal_helpers import zero_removed
from prune_helpers import tiny_network

SHAPE = [1, 3, 64, 64]
UNET = {"type": "UNet", "widths": [16, 16, 16], "blocks": [1, 1, 1]}
OPTIONS = os.path.join(os.path.dirname(__file__), "..", "..", "options")


def budget_of(model, fraction):
    return fraction * estimate_peak_memory(model, SHAPE).total


def gal(budget, **kwargs):
    return GALPruner({"peak_memory_mb": budget / MB, "input_shape": SHAPE}, round_to=2, **kwargs)


def masked(options, pruner, seed=0):
    """A tiny network with random soft masks (about a fifth exactly 0) attached."""
    spec, model = tiny_network(options)
    problem = pruner.problem(model, spec)
    masks = SoftMasks(model, problem.graph, pruner.trainable(model, problem))
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in masks.parameters():
            p.copy_(torch.rand(p.shape, generator=gen) * (torch.rand(p.shape, generator=gen) > 0.2))
    masks.attach(model)
    return spec, model, masks


def test_every_unet_group_is_maskable_and_nafnet_norm_groups_are_not():
    spec, model = tiny_network(UNET)
    problem = gal(1e9).problem(model, spec)
    assert set(maskable_groups(model, problem.graph)) == set(problem.reducible())
    nafnet = {"type": "NAFNet", "width": 8, "middle_blk_num": 1, "enc_blk_nums": [1, 1],
              "dec_blk_nums": [1, 1]}
    _, model = tiny_network(nafnet)
    graph = trace_graph(model, trace_shape(model, 3))
    ok = set(maskable_groups(model, graph))
    assert ok and ok < {g.id for g in graph.groups}
    for g in graph.groups:
        if g.id not in ok:  # a depthwise conv or a LayerNorm over channels touches it
            assert any("norm" in m.tensor or "conv2" in m.tensor for m in g.members), g.name


def test_masked_network_equals_its_consumers_scaled():
    pruner = gal(1e9)
    _, model, masks = masked(UNET, pruner)
    x = torch.rand(1, 3, 20, 12)
    folded = copy.deepcopy(model)
    for module in folded.modules():
        module._forward_pre_hooks.clear()
    masks.fold(folded, {"keep": {}})
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=0, atol=1e-6)
        masks.detach()
        assert attached_masks(model) is None
        assert not torch.allclose(folded(x), model(x))


@pytest.mark.parametrize("options", [UNET, {"type": "DnCNN", "in_ch": 3, "depth": 4,
                                            "features": 16}], ids=["UNet", "DnCNN"])
def test_pruned_and_folded_equals_masked_with_removed_masks_at_zero(options):
    _, dense = tiny_network(options)
    pruner = gal(budget_of(dense, 0.75))
    spec, model, masks = masked(options, pruner)
    result = pruner.prune(model, spec)
    zero_removed(masks, result.plan)
    x = torch.rand(2, 3, 24, 16)
    with torch.no_grad():
        before = model(x)
        pruned = result.apply(model).eval()
        masks.fold(pruned, result.plan)
        assert attached_masks(pruned) is None  # a plain network, masks inside its weights
        torch.testing.assert_close(pruned(x), before, rtol=0, atol=1e-5)
    assert sum(p.numel() for p in pruned.parameters()) < sum(p.numel() for p in model.parameters())


def test_threshold_meets_the_budget_estimated_and_measured_and_is_the_lowest_that_does():
    _, dense = tiny_network(UNET)
    budget = budget_of(dense, 0.6)
    pruner = gal(budget)
    spec, model, masks = masked(UNET, pruner, seed=3)
    result = pruner.prune(model, spec)
    pruned = result.apply(model).eval()
    estimated = estimate_peak_memory(pruned, SHAPE).total
    measured = measured_inference_peak(pruned, SHAPE, torch.device("cpu"))
    assert result.report.after.est_infer_peak_bytes == estimated <= budget
    assert measured <= budget
    problem = pruner.problem(model, spec)
    problem.rank(pruner.importance.scores(model, problem.graph))
    values = {g: problem.raw[g] for g in pruner.importance.masked}
    chosen = pruner.allocate(problem)
    lower = sorted({float(v) for t in values.values() for v in t}
                   | {-1.0})
    index = next(i for i, tau in enumerate(lower) if widths_above(problem, values, tau) == chosen)
    assert index > 0 and not problem.meets(widths_above(problem, values, lower[index - 1]))
    assert all(chosen[g] <= problem.full[g] for g in chosen)


def test_memory_weights_follow_the_peak():
    spec, model = tiny_network(UNET)
    pruner = gal(1e9)
    problem = pruner.problem(model, spec)
    ones = {g: torch.ones(problem.full[g]) for g in pruner.trainable(model, problem)}
    weights = pruner.mask_weights(problem, ones)
    names = {g.id: g.name for g in problem.graph.groups}
    assert max(weights.values()) == 1.0 and min(weights.values()) == MEMORY_FLOOR
    heaviest = max(weights, key=weights.get)
    assert names[heaviest].startswith(("encoders.0", "decoders.0", "ups.0"))  # full resolution
    assert all(w == MEMORY_FLOOR for g, w in weights.items() if names[g].startswith("bottleneck"))
    flat = gal(1e9, memory_weighted=False).mask_weights(problem, ones)
    assert set(flat.values()) == {1.0}
    ratio = GALPruner({"channel_ratio": 0.5}).mask_weights(problem, ones)
    assert set(ratio.values()) == {1.0}


def test_proximal_step_reaches_exact_zeros_heavier_weights_first():
    heavy, light = torch.nn.Parameter(torch.ones(4)), torch.nn.Parameter(torch.ones(4))
    opt = ProximalL1([{"params": [heavy], "weight": 1.0}, {"params": [light], "weight": 0.1}],
                     lr=0.1, sparsity=1.0)
    history = []
    for _ in range(12):
        heavy.grad, light.grad = torch.zeros(4), torch.zeros(4)  # the sparsity term alone
        opt.step()
        history.append((heavy[0].item(), light[0].item()))
    assert history[0] == pytest.approx((0.9, 0.99))  # shrunk by lr * sparsity * weight
    first_zero = next(i for i, (h, _) in enumerate(history) if h == 0.0)
    assert first_zero < 8 and all(l > 0.5 for _, l in history)  # momentum speeds it up
    assert torch.equal(heavy.detach().abs(), torch.zeros(4)) and (light > 0).all()
    assert opt.penalty() == pytest.approx(0.1 * light.detach().sum().item())


def test_gal_needs_masks_and_a_reachable_target():
    spec, model = tiny_network(UNET)
    with pytest.raises(LLCVError, match="carries no soft masks.*GALModel"):
        gal(budget_of(model, 0.6)).prune(model, spec)
    with pytest.raises(LLCVError, match="target.peak_memory_mb"):
        gal(budget_of(model, 0.05)).check(model, spec)


def test_demo_unet_meets_the_demo_budget_estimated_and_measured():
    demo = read_yaml(os.path.join(OPTIONS, "prune_unet_gal_demo.yml"))
    assert demo["prune"]["target"] == read_yaml(os.path.join(OPTIONS, "prune_unet_demo.yml"))[
        "prune"]["target"]  # the same budget as the other pruners' demo
    target = demo["prune"]["target"]
    pruner = GALPruner(target, round_to=demo["prune"]["round_to"])
    full = estimate_peak_memory(tiny_network(demo["network_g"])[1], target["input_shape"]).total
    spec, model, _ = masked(demo["network_g"], pruner, seed=1)
    assert target["peak_memory_mb"] * MB == pytest.approx(0.5 * full, rel=0.01)
    pruned = pruner.prune(model, spec).apply(model).eval()
    budget = target["peak_memory_mb"] * MB
    assert estimate_peak_memory(pruned, target["input_shape"]).total <= budget
    assert measured_inference_peak(pruned, target["input_shape"], torch.device("cpu")) <= budget
