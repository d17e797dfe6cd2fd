"""Helpers shared by the pruning tests: tiny networks and the zeroed-channels reference."""
from __future__ import annotations

import torch
from torch import nn

from llcv.network import build_network, network_spec


def tiny_network(options: dict, seed: int = 0):
    """A network spec and its model (eval mode, BN statistics made non-trivial)."""
    torch.manual_seed(seed)
    spec = network_spec(options)
    model = build_network(spec).eval()
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.running_mean.uniform_(-0.1, 0.1)
            m.running_var.uniform_(0.5, 1.5)
            m.weight.data.uniform_(0.5, 1.5)
    return spec, model


def zero_removed(model: nn.Module, plan: dict) -> nn.Module:
    """``model`` with every parameter position the plan removes set to zero: a dense network
    computing what the pruned one does wherever removed channels only ever carry zeros."""
    params = dict(model.named_parameters())
    with torch.no_grad():
        for name, dims in plan["keep"].items():
            if name not in params:
                continue
            for dim, kept in dims.items():
                gone = torch.ones(params[name].shape[dim], dtype=torch.bool)
                gone[kept] = False
                params[name].index_fill_(dim, gone.nonzero().flatten(), 0.0)
    return model
