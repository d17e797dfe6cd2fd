"""Channel groups traced from the model: one regression test per structure that couples channels
(the cases Torch-Pruning gets wrong among them: PixelShuffle, chunk gates, attention heads)."""
import copy

import pytest
import torch
from torch import nn

from llcv.errors import LLCVError
from llcv.network import apply_plan
from llcv.pruners.graph import trace_graph
from llcv.pruners.uniform_pruner import UniformPruner
from prune_helpers import tiny_network, zero_removed


def group_of(graph, tensor, dim=0):
    """The one group indexing ``tensor``'s ``dim``."""
    (gid,) = graph.dim_groups(tensor, dim)
    return graph.groups[gid]


def members(group):
    return {(m.tensor, m.dim) for m in group.members}


def check_zero_equivalence(model, shape, seed=0):
    """Pruning half of every group equals zeroing those channels in the dense model."""
    graph = trace_graph(model, shape)
    gen = torch.Generator().manual_seed(seed)
    keep = {g.id: sorted(torch.randperm(g.size, generator=gen)[:max(1, g.size // 2)].tolist())
            for g in graph.groups}
    plan = graph.plan(keep)
    pruned = apply_plan(copy.deepcopy(model), plan).eval()
    reference = zero_removed(copy.deepcopy(model), plan).eval()
    x = torch.rand(shape)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), reference(x), rtol=1e-5, atol=1e-5)
    return graph


class ShuffleNet(nn.Module):
    """conv -> PixelShuffle -> conv -> PixelUnshuffle -> conv (an SR/NAFNet-style resampler)."""

    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 16, 3, padding=1)
        self.b = nn.Conv2d(4, 4, 3, padding=1)
        self.c = nn.Conv2d(16, 6, 1)

    def forward(self, x):
        y = self.b(nn.functional.pixel_shuffle(self.a(x), 2))
        return self.c(torch.relu(nn.functional.pixel_unshuffle(y, 2)))


def test_pixel_shuffle_groups_are_r_squared_blocks():
    model = ShuffleNet().eval()
    graph = check_zero_equivalence(model, (1, 3, 6, 8))
    shuffled = group_of(graph, "b.weight", 1)  # the 4 channels after PixelShuffle
    assert shuffled.size == 4 and ("a.weight", 0) in members(shuffled)
    index = next(m.index for m in shuffled.members if m.tensor == "a.weight")
    assert index.tolist() == [c for c in range(4) for _ in range(4)]  # channel c*4 + k -> c
    unshuffled = group_of(graph, "b.weight", 0)
    index = next(m.index for m in unshuffled.members if m.tensor == "c.weight")
    assert index.tolist() == [c for c in range(4) for _ in range(4)]
    assert graph.dim_groups("c.weight", 0) == set()  # tied to the output


def test_nafnet_decoder_pixel_shuffle_and_gate_prune_and_run():
    spec, model = tiny_network({"type": "NAFNet", "width": 8, "middle_blk_num": 1,
                                "enc_blk_nums": [1, 1], "dec_blk_nums": [1, 1]})
    graph = trace_graph(model, (1, 3, 8, 8))
    up = group_of(graph, "decoders.0.0.conv1.weight", 1)  # decoder stream = skip = encoder's
    assert ("ups.0.0.weight", 0) in members(up) and ("encoders.1.0.conv3.weight", 0) in members(up)
    gate = group_of(graph, "encoders.0.0.conv3.weight", 1)  # SimpleGate output
    index = next(m.index for m in gate.members if m.tensor == "encoders.0.0.conv1.weight")
    assert index.tolist() == list(range(8)) * 2  # channel i goes with i + C/2
    result = UniformPruner({"channel_ratio": 0.5}).prune(model, spec)
    pruned = result.apply(model)
    # pruning again (a fresh graph per event) keeps working
    again = UniformPruner({"channel_ratio": 0.5}).prune(pruned, result.spec).apply(pruned)
    x = torch.rand(1, 3, 9, 7)
    with torch.no_grad():
        assert again(x).shape == x.shape
    assert again.ups[0][0].weight.shape[0] == 4 * again.decoders[0][0].conv1.weight.shape[1]


class Blocks(nn.Module):
    """Concat skip, residual add, depthwise conv, BN, GroupNorm, transposed conv."""

    def __init__(self, groups=2):
        super().__init__()
        self.stem = nn.Conv2d(3, 8, 3, padding=1)
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8)
        self.bn = nn.BatchNorm2d(8)
        self.res = nn.Conv2d(8, 8, 3, padding=1)
        self.gn_conv = nn.Conv2d(8, 8, 1)
        self.gn = nn.GroupNorm(groups, 8)
        self.down = nn.Conv2d(8, 6, 2, stride=2)
        self.up = nn.ConvTranspose2d(6, 4, 2, stride=2)
        self.head = nn.Conv2d(12, 3, 3, padding=1)

    def forward(self, x):
        s = torch.relu(self.bn(self.dw(self.stem(x))))
        s = s + self.res(s)
        g = self.gn(self.gn_conv(s))
        return self.head(torch.cat([self.up(self.down(g)), s], 1))


def test_concat_residual_depthwise_batchnorm_transposed():
    model = Blocks(groups=8).eval()  # per-channel statistics: zeroed channels stay zero
    model.bn.running_mean.uniform_(-0.1, 0.1)
    graph = check_zero_equivalence(model, (1, 3, 8, 8))
    stream = group_of(graph, "stem.weight")
    assert {("dw.weight", 0), ("bn.weight", 0), ("bn.running_mean", 0), ("bn.running_var", 0),
            ("res.weight", 0), ("res.weight", 1), ("gn_conv.weight", 1),
            ("head.weight", 1)} <= members(stream)
    index = next(m.index for m in stream.members if m.tensor == "head.weight")
    assert index.tolist() == [-1] * 4 + list(range(8))  # the skip is the second part of the cat
    up = group_of(graph, "up.weight", 1)  # a transposed conv's output channels are dim 1
    assert ("up.bias", 0) in members(up)
    assert group_of(graph, "up.weight", 0) is group_of(graph, "down.weight", 0)


def test_group_norm_prunes_equally_in_every_group():
    model = Blocks(groups=2).eval()
    graph = trace_graph(model, (1, 3, 8, 8))
    per_group = group_of(graph, "gn.weight")
    assert per_group.size == 4  # 2 groups x 4: a channel index removes one from each group
    keep = {per_group.id: [1, 3]}
    pruned = apply_plan(copy.deepcopy(model), graph.plan(keep))
    assert pruned.gn.num_groups == 2 and pruned.gn.weight.shape[0] == 4
    assert pruned(torch.rand(1, 3, 8, 8)).shape == (1, 3, 8, 8)
    whole = trace_graph(Blocks(groups=8).eval(), (1, 3, 8, 8))  # one channel per group: any
    assert group_of(whole, "gn.weight").size == 8


def test_restormer_attention_prunes_whole_heads_or_equal_head_dims():
    spec, model = tiny_network({"type": "Restormer", "dim": 8, "num_blocks": [1, 1, 1, 1],
                                "num_refinement_blocks": 1, "heads": [1, 2, 2, 4]})
    graph = trace_graph(model, (1, 3, 16, 16))
    attn = "latent.0.attn"
    heads = group_of(graph, f"{attn}.temperature")
    (dims_id,) = graph.dim_groups(f"{attn}.project_out.weight", 1) - {heads.id}
    head_dim = graph.groups[dims_id]
    assert heads.size == 4 and head_dim.size == 16
    qkv = next(m.index for m in heads.members if m.tensor == f"{attn}.qkv.weight")
    assert qkv.tolist() == [h for _ in range(3) for h in range(4) for _ in range(16)]
    for keep in ({heads.id: [0, 2]}, {dims_id: list(range(0, 16, 2))}):
        pruned = apply_plan(copy.deepcopy(model), graph.plan(keep)).eval()
        block = pruned.latent[0].attn
        assert block.qkv.weight.shape[0] == 3 * block.temperature.shape[0] * (
            8 if dims_id in keep else 16)
        with torch.no_grad():
            assert pruned(torch.rand(1, 3, 9, 13)).shape == (1, 3, 9, 13)


def test_dncnn_batchnorm_statistics_follow_their_conv():
    spec, model = tiny_network({"type": "DnCNN", "in_ch": 3, "depth": 4, "features": 8})
    graph = check_zero_equivalence(model, (1, 3, 6, 6))
    g = group_of(graph, "body.2.weight")
    assert {("body.3.weight", 0), ("body.3.bias", 0), ("body.3.running_mean", 0),
            ("body.3.running_var", 0), ("body.5.weight", 1)} <= members(g)
    assert graph.dim_groups("body.8.weight", 0) == set()  # the last conv: image channels


def test_layernorm_scales_join_the_residual_stream():
    _, model = tiny_network({"type": "NAFNet", "width": 8, "middle_blk_num": 1,
                             "enc_blk_nums": [1], "dec_blk_nums": [1]})
    graph = trace_graph(model, (1, 3, 8, 8))
    stream = group_of(graph, "intro.weight")
    assert {("encoders.0.0.norm1.weight", 0), ("encoders.0.0.norm2.bias", 0),
            ("encoders.0.0.beta", 1), ("ending.weight", 1)} <= members(stream)


class Opaque(nn.Module):
    """A channel sort (no rule) between two convs; the rest stays prunable."""

    def __init__(self):
        super().__init__()
        self.a, self.b, self.c = nn.Conv2d(3, 8, 1), nn.Conv2d(8, 8, 1), nn.Conv2d(8, 3, 1)

    def forward(self, x):
        y = self.b(torch.relu(self.a(x)))
        return self.c(torch.sort(y, dim=1).values)


def test_an_op_without_rule_pins_what_it_touches():
    graph = trace_graph(Opaque(), (1, 3, 4, 4))
    assert [g.name for g in graph.groups] == ["a"]
    assert graph.opaque == ["Opaque / sort"]


class Pinned(nn.Module):
    def __init__(self):
        super().__init__()
        self.a = nn.Conv2d(3, 3, 1)

    def forward(self, x):
        return x + self.a(x)


def test_a_network_with_nothing_to_prune_says_so(monkeypatch):
    from llcv.pruners import base

    monkeypatch.setattr(base, "build_network", lambda spec, device=None: Pinned())
    monkeypatch.setattr(base, "arch_pruning", lambda arch: base.ArchPruning(arch, 3, ()))
    with pytest.raises(LLCVError, match="nothing to prune"):
        UniformPruner({"channel_ratio": 0.5}).prune(Pinned(), {"network_g": {"type": "X"},
                                                                "plan": None})


class TokenAttention(nn.Module):
    """Tokens, linear qkv, fused multi-head attention (heads read from a parameter), a GLU,
    padding and resampling: the ops of transformer and SR blocks."""

    def __init__(self):
        super().__init__()
        self.inp, self.qkv, self.proj = nn.Conv2d(3, 8, 1), nn.Linear(8, 24), nn.Linear(8, 8)
        self.scale = nn.Parameter(torch.rand(2, 1, 1) + 0.5)  # one per head
        self.gate, self.out = nn.Conv2d(8, 16, 1), nn.Conv2d(8, 3, 3)

    def forward(self, x):
        y = self.inp(x)
        b, _, h, w = y.shape
        tokens = y.flatten(2).transpose(1, 2)
        q, k, v = self.qkv(tokens).reshape(b, h * w, 3, self.scale.shape[0], -1) \
            .permute(2, 0, 3, 1, 4)
        a = nn.functional.scaled_dot_product_attention(q * self.scale, k, v)
        y = y + self.proj(a.transpose(1, 2).reshape(b, h * w, -1)).transpose(1, 2) \
            .reshape(b, -1, h, w)
        y = nn.functional.glu(self.gate(y), dim=1)
        return self.out(nn.functional.interpolate(nn.functional.pad(y, (1, 1, 1, 1)),
                                                  scale_factor=2))[..., 1:-1, 1:-1]


def test_tokens_fused_attention_glu_padding_and_resampling():
    torch.manual_seed(0)
    graph = check_zero_equivalence(TokenAttention().eval(), (1, 3, 4, 6))
    heads = group_of(graph, "scale")
    index = next(m.index for m in heads.members if m.tensor == "qkv.weight")
    assert index.tolist() == [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4 + [0] * 4 + [1] * 4
    gate = group_of(graph, "out.weight", 1)
    index = next(m.index for m in gate.members if m.tensor == "gate.weight")
    assert index.tolist() == list(range(8)) * 2
    assert not graph.opaque
