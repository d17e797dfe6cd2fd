"""The channel graph of a network: its pruning groups, computed from one traced forward pass.

:func:`trace_graph` runs the model once on a tiny input under a ``TorchDispatchMode`` that
labels every dim of every tensor with a channel space (``llcv.pruners.spaces``) using one rule
per ATen op (``llcv.pruners.op_rules``). Afterwards each free atom that reaches a feature map is
a :class:`Group` — channels that must be kept or removed together — whose :class:`Member` s are
the ``state_dict`` tensor dims it indexes. Nothing is hand-listed per architecture and nothing is
cached across prune events: each call traces the network as it is now.

Fixed (never pruned): the input's and the outputs' dims (image channels, and so every layer tied
to them by a residual), spatial positions, dims an unknown op touches, and dims of buffers that
are not saved in the ``state_dict`` (a plan could not replay them).
"""
from __future__ import annotations

import fnmatch
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import torch
from torch import nn
from torch.utils._python_dispatch import TorchDispatchMode

from llcv.errors import OptionError
from llcv.memory.naming import ModuleNames
from llcv.network import Plan
from llcv.pruners.op_rules import opaque, rule_for
from llcv.pruners.spaces import Space, atom, atoms, find, fix, index_map
from llcv.utils import module_device, module_modes


@dataclass
class Member:
    """One tensor dim a group indexes: ``index[p]`` is the group channel at position ``p``
    (-1 where the position belongs to other channels)."""

    tensor: str
    dim: int
    index: torch.Tensor


@dataclass
class Group:
    """Channels pruned together: keeping channel ``c`` keeps every position it builds."""

    id: int
    size: int
    name: str  # the layer producing it (or the first tensor dim it indexes)
    members: list = field(default_factory=list)


@dataclass
class ChannelGraph:
    """The pruning groups of a network, and what touches them."""

    groups: list
    opaque: list  # "<module> / <op>" of ops without a rule (their dims are fixed)
    module_groups: dict  # module name (root: class name) -> ids of groups its ops touch
    shapes: dict  # state_dict name -> shape

    def tensor_groups(self, name: str) -> set[int]:
        """Ids of the groups indexing any dim of a ``state_dict`` tensor."""
        if not hasattr(self, "_by_tensor"):
            self._by_tensor: dict[str, set[int]] = defaultdict(set)
            for g in self.groups:
                for m in g.members:
                    self._by_tensor[m.tensor].add(g.id)
        return set(self._by_tensor.get(name, ()))

    def dim_groups(self, name: str, dim: int) -> set[int]:
        """Ids of the groups indexing one tensor dim."""
        return {g.id for g in self.groups
                if any(m.tensor == name and m.dim == dim for m in g.members)}

    def plan(self, keep: Mapping[int, Sequence[int]]) -> Plan:
        """The plan keeping channels ``keep[group id]`` (groups not named are kept whole)."""
        masks: dict[tuple[str, int], torch.Tensor] = {}
        for gid, kept in keep.items():
            group = self.groups[gid]
            if len(kept) == group.size:
                continue
            if not kept:
                raise OptionError(f"plan: group {group.name} would keep no channel")
            chosen = torch.zeros(group.size, dtype=torch.bool)
            chosen[torch.as_tensor(list(kept), dtype=torch.long)] = True
            for m in group.members:
                mask = masks.get((m.tensor, m.dim))
                if mask is None:
                    mask = torch.ones(len(m.index), dtype=torch.bool)
                mask &= (m.index < 0) | chosen[m.index.clamp(min=0)]
                masks[(m.tensor, m.dim)] = mask
        out: dict[str, dict[int, list[int]]] = {}
        for (name, dim), mask in masks.items():
            out.setdefault(name, {})[dim] = mask.nonzero().flatten().tolist()
        return {"keep": out}


class _Tracer(TorchDispatchMode):
    """Labels every tensor an op returns, and notes what each module's ops touch."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.names = ModuleNames(model)
        self.labels: dict[int, list[Space]] = {}
        self.refs: list[torch.Tensor] = []  # keeps ids unique while tracing
        self.derived: set[int] = set()  # tensors computed from the input
        self.activations: list[Space] = []
        self.module_spaces: dict[str, list[Space]] = defaultdict(list)
        self.opaque: list[str] = []

    def label(self, t: torch.Tensor) -> list[Space]:
        """The spaces of ``t``'s dims (a tensor never seen before is a constant)."""
        if id(t) not in self.labels:
            self.set(t, [atom(s, fixed=True) for s in t.shape])
        return self.labels[id(t)]

    def set(self, t: torch.Tensor, spaces: Sequence[Space]) -> None:
        """Label ``t``'s dims (a rule giving spaces of other sizes fails)."""
        if [find(s).size for s in spaces] != list(t.shape):
            raise RuntimeError(f"channel rule gave spaces {[find(s).size for s in spaces]} for "
                               f"shape {tuple(t.shape)}")
        self.labels[id(t)] = list(spaces)
        self.refs.append(t)

    def opaque_op(self, func: Any) -> None:
        name = self.names(func)
        if name not in self.opaque:
            self.opaque.append(name)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        inputs = _tensors(list(args) + list(kwargs.values()))
        try:
            rule_for(func)(self, func, args, kwargs, out)
        except (ValueError, IndexError, TypeError, RuntimeError):  # a rule that does not fit
            opaque(self, func, args, kwargs, out)  # this call: pin what it touches
        if any(id(t) in self.derived for t in inputs):
            module = self.names(func).split(" / ")[0]
            for o in _tensors(out):
                self.derived.add(id(o))
                self.activations += self.labels[id(o)]
                self.module_spaces[module] += self.labels[id(o)]
            for t in inputs:
                self.module_spaces[module] += self.label(t)
        return out


def _tensors(value: Any) -> list[torch.Tensor]:
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, Mapping):
        value = list(value.values())
    if isinstance(value, (list, tuple)):
        return [t for item in value for t in _tensors(item)]
    return []


def trace_graph(model: nn.Module, input_shape: Sequence[int]) -> ChannelGraph:
    """Trace ``model`` (eval mode, no grad) on a random input of ``input_shape`` — keep it
    tiny: only shapes matter — and return its pruning groups."""
    tracer = _Tracer(model)
    state = model.state_dict(keep_vars=True)
    names_of: dict[int, list[str]] = {}
    for name, t in state.items():
        if id(t) not in names_of:
            tracer.set(t, [atom(s) for s in t.shape])
        names_of.setdefault(id(t), []).append(name)
    unsaved = [b for n, b in model.named_buffers() if n not in state]
    for b in unsaved:
        tracer.set(b, [atom(s) for s in b.shape])
    dtype = next((p.dtype for p in model.parameters() if p.is_floating_point()), torch.float32)
    x = torch.rand(tuple(input_shape), device=module_device(model), dtype=dtype)
    tracer.label(x)
    tracer.derived.add(id(x))
    with torch.no_grad(), module_modes(model, False), tracer.names.hooks(), tracer:
        out = model(x)
    for t in _tensors(out) + unsaved:
        for s in tracer.label(t):
            fix(s)
    return _finalize(model, tracer, names_of)


def _state_maps(tracer: _Tracer, names_of: Mapping[int, list[str]]) \
        -> dict[tuple[str, int], dict[Space, torch.Tensor]]:
    """Index maps of every state tensor dim; a space that has none is fixed, and again."""
    while True:
        maps, stable = {}, True
        for key, names in names_of.items():
            for d, space in enumerate(tracer.labels[key]):
                m = index_map(space)
                if m is None:
                    fix(space)
                    stable = False
                    continue
                for name in names:
                    maps[(name, d)] = m
        if stable:
            return maps


def _finalize(model: nn.Module, tracer: _Tracer, names_of: Mapping[int, list[str]]) \
        -> ChannelGraph:
    """Groups = free atoms reaching a feature map, with the state tensor dims they index."""
    maps = _state_maps(tracer, names_of)
    active = {a for s in tracer.activations for a in atoms(s) if not a.fixed}
    by_atom: dict[Space, Group] = {}
    for (name, dim), m in maps.items():
        for a, idx in m.items():
            if a in active:
                group = by_atom.setdefault(a, Group(len(by_atom), a.size, ""))
                group.members.append(Member(name, dim, idx))
    groups = list(by_atom.values())
    for group in groups:
        group.name = _group_name(model, group)
    module_groups = {module: {by_atom[a].id for s in spaces for a in atoms(s) if a in by_atom}
                     for module, spaces in tracer.module_spaces.items()}
    shapes = {n: tuple(t.shape) for n, t in model.state_dict(keep_vars=True).items()}
    return ChannelGraph(groups, tracer.opaque, module_groups, shapes)


def output_dim(module: nn.Module) -> int:
    """The weight dim holding a layer's output channels (1 for transposed convolutions)."""
    return 1 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 0


def _group_name(model: nn.Module, group: Group) -> str:
    """The first conv/linear layer whose output channels are exactly this group."""
    modules = dict(model.named_modules())
    for m in group.members:
        layer = m.tensor[:-len(".weight")] if m.tensor.endswith(".weight") else None
        module = modules.get(layer)
        if isinstance(module, (nn.modules.conv._ConvNd, nn.Linear)) \
                and m.dim == output_dim(module) and torch.equal(m.index, torch.arange(group.size)):
            return layer
    first = group.members[0]
    return f"{first.tensor}[{first.dim}]"


def layer_groups(model: nn.Module, graph: ChannelGraph, pattern: str) -> set[int]:
    """Ids of the groups holding the output channels of the layers ``pattern`` names (a module
    name or a glob; a container names every layer in it). A conv/linear layer's output
    channels are its weight's output dim; another module's are every group of its tensors."""
    ids: set[int] = set()
    for name, module in model.named_modules():
        if not name or not fnmatch.fnmatchcase(name, pattern):
            continue
        for sub_name, sub in module.named_modules(prefix=name):
            if isinstance(sub, (nn.modules.conv._ConvNd, nn.Linear)):
                ids |= graph.dim_groups(f"{sub_name}.weight", output_dim(sub))
                continue
            for tensor, _ in sub.named_parameters(prefix=sub_name, recurse=False):
                ids |= graph.tensor_groups(tensor)
    return ids
