"""MOSP compactors: identity-initialised 1x1 convs on a network's long skips, so the channels a
skip keeps alive are pruned apart from the encoder branch that produces them.

Adding them is an architecture change the spec records: the arch declares a boolean option
(``pruning = {"compactors": "skip_compactors", ...}``) and the new spec's ``network_g`` sets
it. :func:`network.transfer` fills the new tensors from the network's own (identity)
initialisation, so the network with compactors computes what it did without them. An earlier
plan is carried over: each group of the network with compactors keeps the channels the old plan
kept of it (the compactors of a pruned skip keep the same channels on both sides).
"""
from __future__ import annotations

from typing import Any, Sequence

from torch import nn

from llcv.errors import LLCVError
from llcv.network import Plan, Spec, network_spec, transfer
from llcv.pruners.graph import trace_graph
from llcv.registry import ARCHS, build
from llcv.utils import module_device


def compactor_spec(spec: Spec, option: str, trace_shape: Sequence[int]) -> Spec:
    """``spec`` with ``option`` (the arch's compactor switch) on, its plan carried over."""
    if spec["network_g"].get(option):
        return spec
    network_g = {**spec["network_g"], option: True}
    plan = _lift_plan(spec["plan"], network_g, trace_shape) if spec["plan"] else None
    return network_spec(network_g, plan)


def _lift_plan(plan: Plan, network_g: dict, trace_shape: Sequence[int]) -> Plan:
    """The plan of the network with compactors that keeps what ``plan`` kept."""
    dense = build(ARCHS, network_g, "network_g", device="meta")
    graph = trace_graph(dense, trace_shape)
    keep = {}
    for group in graph.groups:
        for m in group.members:
            indices = plan["keep"].get(m.tensor, {}).get(m.dim)
            if indices is not None:
                channels = m.index[list(indices)]
                keep[group.id] = sorted(set(channels[channels >= 0].tolist()))
                break
    lifted = graph.plan(keep)
    for name, dims in plan["keep"].items():
        if lifted["keep"].get(name) != dims:
            raise LLCVError(f"compactors: the earlier plan's cut of '{name}' cannot be carried "
                            f"onto the network with compactors; prune with compactors: false")
    return lifted


def add_compactors(model: nn.Module, spec: Spec, option: str,
                   trace_shape: Sequence[int]) -> tuple[nn.Module, Spec]:
    """``model`` rebuilt with compactors (same function, same weights elsewhere), and its spec."""
    new_spec = compactor_spec(spec, option, trace_shape)
    if new_spec is spec:
        return model, spec
    device: Any = module_device(model)
    return transfer(model, None, new_spec, device), new_spec
