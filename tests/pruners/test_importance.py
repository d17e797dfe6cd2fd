"""Importance criteria: group-aware sums over every coupled slice, Taylor fed by training steps."""
import pytest
import torch
from torch import nn

from llcv.errors import ArgumentError, LLCVError
from llcv.pruners.graph import trace_graph
from llcv.pruners.importance import build_importance, normalized
from prune_helpers import tiny_network


class Two(nn.Module):
    """conv a -> BN -> relu -> conv b, plus a residual on a's output: one group of 4 channels
    coupling a's rows, the BN, b's columns and c's rows."""

    def __init__(self):
        super().__init__()
        self.a, self.bn = nn.Conv2d(3, 4, 1), nn.BatchNorm2d(4)
        self.b, self.c = nn.Conv2d(4, 3, 1), nn.Conv2d(3, 4, 1)

    def forward(self, x):
        y = torch.relu(self.bn(self.a(x))) + self.c(x)
        return self.b(y)


@pytest.fixture
def two():
    torch.manual_seed(0)
    model = Two().eval()
    graph = trace_graph(model, (1, 3, 4, 4))
    assert len(graph.groups) == 1
    return model, graph


def by_channel(model, fn):
    """The expected sum of ``fn`` over every slice coupled to each of the 4 channels."""
    a, b, c, bn = model.a, model.b, model.c, model.bn
    return (fn(a.weight).sum((1, 2, 3)) + fn(a.bias) + fn(bn.weight) + fn(bn.bias)
            + fn(b.weight).sum((0, 2, 3)) + fn(c.weight).sum((1, 2, 3)) + fn(c.bias))


def test_l1_and_l2_sum_over_every_coupled_slice(two):
    model, graph = two
    with torch.no_grad():
        l1 = build_importance("l1").scores(model, graph)[0]
        l2 = build_importance({"type": "l2"}).scores(model, graph)[0]
        torch.testing.assert_close(l1, by_channel(model, torch.abs))
        torch.testing.assert_close(l2, by_channel(model, torch.square).sqrt())


def test_bn_scale_uses_the_norm_scales_and_falls_back_to_l1():
    _, model = tiny_network({"type": "DnCNN", "in_ch": 3, "depth": 4, "features": 8})
    graph = trace_graph(model, (1, 3, 6, 6))
    scores = build_importance("bn_scale").scores(model, graph)
    (mid,) = graph.dim_groups("body.2.weight", 0)
    torch.testing.assert_close(scores[mid], model.body[3].weight.detach().abs())
    (first,) = graph.dim_groups("body.0.weight", 0)  # no BN after the first conv: L1
    torch.testing.assert_close(scores[first],
                               build_importance("l1").scores(model, graph)[first])


def test_taylor_accumulates_weight_times_gradient_over_the_fed_steps(two):
    model, graph = two
    model.train()
    taylor = build_importance({"type": "taylor", "iterations": 3})
    assert taylor.needs_gradients and taylor.iterations == 3
    with pytest.raises(LLCVError, match="accumulate"):
        taylor.scores(model, graph)
    expected = torch.zeros(4)
    for step in range(3):
        model.zero_grad()
        model(torch.rand(2, 3, 4, 4)).square().mean().backward()
        taylor.accumulate(model)
        expected += by_channel_grad(model)
    torch.testing.assert_close(taylor.scores(model, graph)[0], expected)
    taylor.reset()
    assert taylor.steps == 0 and not taylor.sums


def by_channel_grad(model):
    """|w * grad| summed over each channel's coupled slices (parameters only)."""
    def term(p):
        return (p.detach() * p.grad).abs()
    a, b, c, bn = model.a, model.b, model.c, model.bn
    return (term(a.weight).sum((1, 2, 3)) + term(a.bias) + term(bn.weight) + term(bn.bias)
            + term(b.weight).sum((0, 2, 3)) + term(c.weight).sum((1, 2, 3)) + term(c.bias))


def test_random_is_reproducible_and_scores_compare_after_normalising(two):
    model, graph = two
    first = build_importance("random", seed=3).scores(model, graph)[0]
    assert torch.equal(first, build_importance("random", seed=3).scores(model, graph)[0])
    norm = normalized({0: torch.tensor([1.0, 3.0]), 1: torch.zeros(2)})
    assert norm[0].tolist() == [0.5, 1.5] and norm[1].tolist() == [1.0, 1.0]


@pytest.mark.parametrize("spec, message", [
    ("l3", "importance: expected one of l1, l2, taylor"),
    ({"type": "taylor", "iterations": 0}, "importance.iterations: expected an integer >= 1"),
    ({"type": "l1", "power": 2}, "importance: l1 takes no options"),
])
def test_bad_importance_options_name_the_key(spec, message):
    with pytest.raises(ArgumentError, match=message):
        build_importance(spec)
