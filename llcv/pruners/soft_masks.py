"""Soft channel masks over a network's pruning groups (GAL), their L1 proximal optimizer, and
folding them into the weights that survive a prune event.

A mask ``m_g`` (one learnable scale per channel of group ``g``, initialised to 1) multiplies the
group's channels **where they are read**: at the input of every conv/linear layer that consumes
the group along its input dim (a *consumer*; positions of other groups, e.g. the other half of a
concat, keep scale 1). Because a consumer is linear in its input, the masked network equals the
network whose consumer weights are scaled column by column — which is how masks are *folded*:
after a prune event the surviving consumer columns are multiplied by their channels' masks. A
channel whose mask is 0 then contributes nothing, so removing it changes no output.

That holds for groups whose channels reach the output only through consumers: every tensor dim
the group indexes is a consumer's input dim, a conv/linear output dim (weight or bias), or a
per-channel BatchNorm/PReLU parameter. Groups touching anything else (depthwise or grouped
convs, LayerNorm or other cross-channel ops' parameters) are left unmasked: GAL keeps them whole.

The masks are attached to a live network with forward pre-hooks (no tensor is added to its
``state_dict``, so its spec still describes it); :func:`attached_masks` finds them again, which
is how :class:`~llcv.pruners.gal_pruner.GALPruner` reads what a training step learnt.
"""
from __future__ import annotations

import math
import weakref
from dataclasses import dataclass
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import nn

from llcv.errors import LLCVError
from llcv.network import Plan
from llcv.pruners.graph import ChannelGraph, Group, output_dim

_ATTACHED: "weakref.WeakKeyDictionary[nn.Module, SoftMasks]" = weakref.WeakKeyDictionary()
PER_CHANNEL = (nn.modules.batchnorm._NormBase, nn.PReLU)  # per-channel affine maps only


@dataclass
class Part:
    """The positions of one consumer's input channels that belong to a group."""

    group: int
    positions: torch.Tensor  # input-channel positions of the consumer
    channels: torch.Tensor  # the group channel at each position


@dataclass
class Consumer:
    """A conv/linear layer reading masked channels: its weight, the weight's input dim, where
    channels sit in its input (1 for conv, -1 for linear), its input width and the parts."""

    module: str
    weight: str
    dim: int
    channel_dim: int
    size: int
    parts: list


def _input_dim(module: nn.Module) -> Optional[tuple[int, int]]:
    """(weight dim, input dim) holding a plain conv/linear layer's input channels, else None
    (grouped convolutions mix no channels but are not linear in one column either)."""
    if isinstance(module, nn.Linear):
        return 1, -1
    if isinstance(module, nn.modules.conv._ConvNd) and module.groups == 1:
        return (0 if isinstance(module, nn.modules.conv._ConvTransposeNd) else 1), 1
    return None


def _member_kind(modules: Mapping[str, nn.Module], tensor: str, dim: int) -> str:
    """``consumer``, ``passive`` (an output dim or a per-channel parameter) or ``other``."""
    owner, _, leaf = tensor.rpartition(".")
    module = modules.get(owner)
    if module is None:
        return "other"
    inputs = _input_dim(module)
    if leaf == "weight" and inputs is not None and dim == inputs[0]:
        return "consumer"
    if inputs is not None and ((leaf == "weight" and dim == output_dim(module))
                               or leaf == "bias"):
        return "passive"
    return "passive" if isinstance(module, PER_CHANNEL) else "other"


def maskable_groups(model: nn.Module, graph: ChannelGraph) -> list[int]:
    """Ids of the groups a consumer-side mask covers exactly (see the module docstring)."""
    modules = dict(model.named_modules())
    out = []
    for group in graph.groups:
        kinds = {_member_kind(modules, m.tensor, m.dim) for m in group.members}
        if "consumer" in kinds and "other" not in kinds:
            out.append(group.id)
    return out


def _consumers(model: nn.Module, groups: Iterable[Group]) -> list[Consumer]:
    """Every consumer of ``groups``, with the positions each group occupies in its input."""
    modules = dict(model.named_modules())
    found: dict[str, Consumer] = {}
    for group in groups:
        for m in group.members:
            if _member_kind(modules, m.tensor, m.dim) != "consumer":
                continue
            name = m.tensor.rpartition(".")[0]
            dim, channel_dim = _input_dim(modules[name])
            consumer = found.setdefault(name, Consumer(name, m.tensor, dim, channel_dim,
                                                       len(m.index), []))
            positions = (m.index >= 0).nonzero().flatten()
            consumer.parts.append(Part(group.id, positions, m.index[positions]))
    return list(found.values())


class SoftMasks(nn.Module):
    """One mask vector per maskable group of ``graph`` (a trace of ``model``), all ones."""

    def __init__(self, model: nn.Module, graph: ChannelGraph,
                 groups: Optional[Iterable[int]] = None) -> None:
        super().__init__()
        ids = maskable_groups(model, graph) if groups is None else list(groups)
        if not ids:
            raise LLCVError(f"{type(model).__name__}: no channel group can be soft-masked "
                            f"exactly (every group touches a grouped conv or a cross-channel "
                            f"norm); GALPruner needs plain conv/linear consumers")
        self.groups = {g: (graph.groups[g].name, graph.groups[g].size) for g in ids}
        self.masks = nn.ParameterDict({str(g): nn.Parameter(torch.ones(size))
                                       for g, (_, size) in self.groups.items()})
        self.consumers = _consumers(model, [graph.groups[g] for g in ids])
        self._handles: list[Any] = []

    def mask(self, g: int) -> nn.Parameter:
        """The mask vector of group ``g``."""
        return self.masks[str(g)]

    def values(self) -> dict[int, torch.Tensor]:
        """Every group's mask values (detached copies)."""
        return {g: self.mask(g).detach().clone() for g in self.groups}

    def scale(self, consumer: Consumer) -> torch.Tensor:
        """The per-input-channel scale of ``consumer`` (1 where no mask applies); differentiable."""
        scale = torch.ones(consumer.size, device=self.mask(consumer.parts[0].group).device)
        for part in consumer.parts:
            scale = scale.index_put((part.positions.to(scale.device),),
                                    self.mask(part.group)[part.channels.to(scale.device)])
        return scale

    # ------------------------------------------------------------------ live network
    def attach(self, model: nn.Module) -> None:
        """Mask ``model``'s consumers' inputs from now on (replacing masks attached before)."""
        previous = attached_masks(model)
        if previous is not None:
            previous.detach()
        modules = dict(model.named_modules())
        for consumer in self.consumers:
            self._handles.append(modules[consumer.module].register_forward_pre_hook(
                _masking_hook(self, consumer)))
        _ATTACHED[model] = self

    def detach(self) -> None:
        """Remove the hooks: the network computes unmasked again."""
        for handle in self._handles:
            handle.remove()
        self._handles = []
        for model in [m for m, masks in _ATTACHED.items() if masks is self]:
            del _ATTACHED[model]

    @torch.no_grad()
    def fold(self, model: nn.Module, plan: Plan) -> None:
        """Multiply the consumer columns of ``model`` — the network ``plan`` made of the masked
        one — by their masks, so it computes what the masked network did."""
        weights = dict(model.named_parameters())
        keep = plan.get("keep", {})
        for consumer in self.consumers:
            scale = self.scale(consumer)
            kept = keep.get(consumer.weight, {}).get(consumer.dim)
            if kept is not None:
                scale = scale[torch.as_tensor(kept, device=scale.device)]
            weight = weights[consumer.weight]
            shape = [1] * weight.dim()
            shape[consumer.dim] = -1
            weight.mul_(scale.to(weight.dtype).view(shape))

    def check_graph(self, graph: ChannelGraph) -> None:
        """Fail when ``graph`` is not the network these masks were made for."""
        for g, (name, size) in self.groups.items():
            if g >= len(graph.groups) or (graph.groups[g].name, graph.groups[g].size) != \
                    (name, size):
                raise LLCVError(f"GALPruner: the soft masks were made for another network "
                                f"(group {g} {name} of {size} channels); retrain them on "
                                f"this one")


def _masking_hook(masks: SoftMasks, consumer: Consumer):
    """A forward pre-hook scaling ``consumer``'s input channels (a plain function, so a deep
    copy of the network keeps masking with the same masks)."""
    def hook(module: nn.Module, args: tuple) -> tuple:
        x = args[0]
        shape = [1] * x.dim()
        shape[consumer.channel_dim] = -1
        scale = masks.scale(consumer).to(device=x.device, dtype=x.dtype).view(shape)
        return (x * scale, *args[1:])
    return hook


def attached_masks(model: nn.Module) -> Optional[SoftMasks]:
    """The soft masks attached to ``model`` (None when it computes unmasked)."""
    return _ATTACHED.get(model)


def soft_threshold(x: torch.Tensor, kappa: float) -> torch.Tensor:
    """The proximal map of ``kappa * |x|_1``: shrink toward 0 by ``kappa``, exact zeros inside."""
    return torch.sign(x) * (x.abs() - kappa).clamp_min(0.0)


class ProximalL1(torch.optim.Optimizer):
    """FISTA-style accelerated proximal gradient for masks under a weighted L1 penalty.

    Each param group holds one mask with its own ``weight`` (the memory weight); a step is
    ``y = x + (t - 1) / t' * (x - x_prev)``, ``x' = shrink(y - lr * grad, lr * sparsity *
    weight)``, with ``t' = (1 + sqrt(1 + 4 t^2)) / 2``. The gradient is taken at the current
    masks, which are always a proximal output, so channels at exactly 0 are what the network
    runs with. :meth:`restart` resets the momentum (done whenever the weights change).
    """

    def __init__(self, params: Iterable[Any], lr: float, sparsity: float) -> None:
        super().__init__(params, {"lr": lr, "sparsity": sparsity, "weight": 1.0})

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # noqa: D401 - torch's signature
        """One proximal step of every mask that has a gradient."""
        for group in self.param_groups:
            kappa = group["lr"] * group["sparsity"] * group["weight"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                state = self.state[p]
                if not state:
                    state["previous"], state["t"] = p.detach().clone(), 1.0
                t = state["t"]
                t_next = (1.0 + math.sqrt(1.0 + 4.0 * t * t)) / 2.0
                y = p + ((t - 1.0) / t_next) * (p - state["previous"])
                state["previous"].copy_(p)
                p.copy_(soft_threshold(y - group["lr"] * p.grad, kappa))
                state["t"] = t_next

    def restart(self) -> None:
        """Forget the momentum."""
        self.state.clear()

    def penalty(self) -> float:
        """``sum_g sparsity * weight_g * |m_g|_1`` (the regulariser, for the logs)."""
        return float(sum(g["sparsity"] * g["weight"] * p.detach().abs().sum()
                         for g in self.param_groups for p in g["params"]))
