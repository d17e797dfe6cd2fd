"""Channel importance criteria, group-aware: a channel's score sums over every tensor slice its
group couples (producer rows, biases, norm scales, consumer columns, head parameters).

``importance: l1`` (or ``{type: l2}``, ``{type: taylor, iterations: 64}``, ...):

- ``l1`` / ``l2``: the L1 / L2 norm of the channel's weights.
- ``taylor``: |w · dL/dw| summed over the iterations fed to :meth:`TaylorImportance.accumulate`
  (call it after ``loss.backward()``; the prune hook does, for ``iterations`` steps before each
  prune event, then :meth:`~TaylorImportance.reset`).
- ``bn_scale``: |gamma| of the BatchNorm/LayerNorm/GroupNorm scales in the group (network
  slimming); groups without a norm layer fall back to ``l1``.
- ``random``: uniform random scores (a baseline), from ``seed``.

Scores are compared across groups after dividing each group's by its mean (:func:`normalized`).
"""
from __future__ import annotations

from typing import Any, Callable, Mapping, Optional

import torch
from torch import nn

from llcv.errors import ArgumentError, LLCVError
from llcv.pruners.graph import ChannelGraph, Group
from llcv.utils import check_int


def _reduce_rows(t: torch.Tensor, dim: int, fn: Callable[[torch.Tensor], torch.Tensor]) \
        -> torch.Tensor:
    """``fn`` of every slice of ``t`` along ``dim``, summed over the other dims."""
    rows = t.detach().float().movedim(dim, 0).reshape(t.shape[dim], -1)
    return fn(rows).sum(1)


def group_sums(group: Group, tensors: Mapping[str, torch.Tensor],
               fn: Callable[[torch.Tensor], torch.Tensor]) -> Optional[torch.Tensor]:
    """Per-channel sums of ``fn`` over the group's members found in ``tensors`` (None: none)."""
    score, found = torch.zeros(group.size), False
    for m in group.members:
        t = tensors.get(m.tensor)
        if t is None:
            continue
        rows = _reduce_rows(t, m.dim, fn).cpu()
        valid = m.index >= 0
        score.index_add_(0, m.index[valid], rows[valid])
        found = True
    return score if found else None


class Importance:
    """Scores every channel of every group of ``graph`` from ``model``'s tensors."""

    name = ""
    needs_gradients = False

    def scores(self, model: nn.Module, graph: ChannelGraph) -> dict[int, torch.Tensor]:
        params = dict(model.named_parameters())
        return {g.id: self.group_scores(g, params) for g in graph.groups}

    def group_scores(self, group: Group, params: Mapping[str, torch.Tensor]) -> torch.Tensor:
        raise NotImplementedError


class L1Importance(Importance):
    name = "l1"

    def group_scores(self, group, params):
        return group_sums(group, params, torch.abs)


class L2Importance(Importance):
    name = "l2"

    def group_scores(self, group, params):
        return group_sums(group, params, torch.square).sqrt()


class BNScaleImportance(Importance):
    """|gamma| of the group's normalisation layers (L1 for groups without one)."""

    name = "bn_scale"

    def scores(self, model, graph):
        params = dict(model.named_parameters())
        norms = {f"{n}.weight" for n, m in model.named_modules() if _is_norm(m)}
        scales = {n: t for n, t in params.items() if n in norms and t.dim() == 1}
        out = {}
        for g in graph.groups:
            score = group_sums(g, scales, torch.abs)
            out[g.id] = score if score is not None else group_sums(g, params, torch.abs)
        return out


def _is_norm(module: nn.Module) -> bool:
    """BatchNorm/GroupNorm/LayerNorm, and llcv's channel LayerNorms (class name ends in Norm)."""
    return isinstance(module, (nn.modules.batchnorm._NormBase, nn.GroupNorm, nn.LayerNorm)) \
        or type(module).__name__.endswith(("Norm", "Norm2d"))


class RandomImportance(Importance):
    name = "random"

    def __init__(self, seed: int = 0) -> None:
        self.seed = check_int("seed", seed, 0)

    def scores(self, model, graph):
        gen = torch.Generator().manual_seed(self.seed)
        return {g.id: torch.rand(g.size, generator=gen) for g in graph.groups}


class TaylorImportance(Importance):
    """First-order Taylor: |w · dL/dw| per weight, summed over the fed iterations."""

    name = "taylor"
    needs_gradients = True

    def __init__(self, iterations: int = 32) -> None:
        #: How many training iterations the prune hook feeds before each prune event.
        self.iterations = check_int("iterations", iterations)
        self.sums: dict[str, torch.Tensor] = {}
        self.steps = 0

    @torch.no_grad()
    def accumulate(self, model: nn.Module) -> None:
        """Add |w · grad| of every parameter that has a gradient (call after backward)."""
        for name, p in model.named_parameters():
            if p.grad is not None:
                term = (p.detach() * p.grad.detach()).abs()
                self.sums[name] = self.sums[name] + term if name in self.sums else term.clone()
        self.steps += 1

    def reset(self) -> None:
        """Forget the sums (after a prune event the tensors have new shapes)."""
        self.sums, self.steps = {}, 0

    def scores(self, model, graph):
        if not self.steps:
            raise LLCVError("importance: taylor has no gradients yet; call accumulate(model) "
                            "after loss.backward() for some iterations before pruning, or use "
                            "l1/l2/bn_scale/random offline")
        return {g.id: self.group_scores(g, self.sums) for g in graph.groups}

    def group_scores(self, group, params):
        score = group_sums(group, params, lambda t: t)
        return torch.zeros(group.size) if score is None else score


IMPORTANCES: dict[str, type] = {cls.name: cls for cls in (
    L1Importance, L2Importance, TaylorImportance, BNScaleImportance, RandomImportance)}


def build_importance(spec: Any, seed: int = 0) -> Importance:
    """An importance from ``'l1'`` or ``{type: taylor, iterations: 64}``."""
    cfg = {"type": spec} if isinstance(spec, str) else dict(spec) if isinstance(spec, Mapping) \
        else None
    if cfg is None or cfg.get("type") not in IMPORTANCES:
        raise ArgumentError(f"importance: expected one of {', '.join(IMPORTANCES)} (or "
                            f"{{type: ..., ...}}), got {spec!r}")
    cls = IMPORTANCES[cfg.pop("type")]
    if cls is RandomImportance:
        cfg.setdefault("seed", seed)
    try:
        return cls(**cfg)
    except ArgumentError as err:
        raise ArgumentError(f"importance.{err}") from None
    except TypeError:
        raise ArgumentError(f"importance: {cls.name} takes no options {sorted(cfg)}") from None


def normalized(scores: Mapping[int, torch.Tensor]) -> dict[int, torch.Tensor]:
    """Each group's scores divided by their mean, so groups of different fan-in compare."""
    out = {}
    for gid, s in scores.items():
        mean = s.mean()
        out[gid] = s / mean if mean > 0 else torch.ones_like(s)
    return out
