"""Optimizers for ``train.optim_g``, and rebuilding one over a pruned model with its state.

torch optimizers key their state by Parameter object; a pruned model has new Parameter objects,
so :func:`rebuild_optimizer` carries state over by parameter *name*, slicing every
parameter-shaped moment with the same plan as the weights, and keeps every param-group
hyper-parameter (``lr``, ``initial_lr``, betas, ...) so a closed-form LR schedule continues.
"""
from __future__ import annotations

import inspect
from typing import Any, Iterable, Mapping, Optional

import torch
from torch import nn

from llcv.network import Plan, slice_tensor
from llcv.registry import OPTIMIZERS, lookup

for _cls in (torch.optim.Adam, torch.optim.AdamW, torch.optim.SGD):
    OPTIMIZERS.register_module(module=_cls)


def optimizer_class(cfg: Any, key: str = "train.optim_g") -> type:
    """The optimizer class a ``{type: Name, ...}`` section (or a bare name) names."""
    name = cfg if isinstance(cfg, str) else cfg.get("type")
    return lookup(OPTIMIZERS, name, f"{key}.type")


def optimizer_kwargs(cfg: Mapping[str, Any]) -> dict[str, Any]:
    """The section's arguments for the torch constructor (YAML lists become tuples)."""
    return {k: (tuple(v) if isinstance(v, list) else v) for k, v in cfg.items() if k != "type"}


def build_optimizer(params: Iterable[nn.Parameter], cfg: Mapping[str, Any],
                    key: str = "train.optim_g") -> torch.optim.Optimizer:
    """Build the optimizer ``cfg`` names over the parameters that require grad."""
    cls = optimizer_class(cfg, key)
    return cls([p for p in params if p.requires_grad], **optimizer_kwargs(cfg))


def rebuild_optimizer(old: torch.optim.Optimizer, old_model: nn.Module, new_model: nn.Module,
                      plan: Optional[Plan]) -> torch.optim.Optimizer:
    """An optimizer like ``old`` over ``new_model``'s parameters, its state carried by name.

    Parameter-shaped state (Adam's moments, SGD's momentum) is sliced by ``plan``; other state
    (``step``) is kept. A parameter new in ``new_model`` joins the first group with no state.
    """
    names = {id(p): n for n, p in old_model.named_parameters()}
    new_params = dict(new_model.named_parameters())
    groups, placed = [], set()
    for group in old.param_groups:
        members = [names[id(p)] for p in group["params"]]
        placed.update(members)
        groups.append({**{k: v for k, v in group.items() if k != "params"},
                       "params": [new_params[n] for n in members if n in new_params]})
    groups[0]["params"] += [p for n, p in new_params.items() if n not in placed and p.requires_grad]
    accepted = inspect.signature(type(old)).parameters  # defaults may hold more (AdamW's)
    new = type(old)(groups, **{k: v for k, v in old.defaults.items() if k in accepted})
    keep = plan["keep"] if plan else {}
    old_by_name = dict(old_model.named_parameters())
    for name in placed & set(new_params):
        state = old.state.get(old_by_name[name])
        if state:
            new.state[new_params[name]] = {
                k: _carry(v, old_by_name[name].shape, keep.get(name)) for k, v in state.items()}
    return new


def _carry(value: Any, param_shape: torch.Size, dims: Optional[Mapping[int, list]]) -> Any:
    if isinstance(value, torch.Tensor) and dims and value.shape == param_shape:
        return slice_tensor(value, dims)
    return value
