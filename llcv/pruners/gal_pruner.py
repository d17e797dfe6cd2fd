"""GALPruner: structured pruning by soft masks learnt adversarially (GAL, Lin et al., CVPR 2019),
steered toward a peak-memory budget.

GAL puts a learnable soft mask on each prunable structure and trains it, label-free, against a
discriminator that tells the masked network's outputs from those of the frozen unpruned
baseline, with an MSE to the baseline's outputs and an L1 sparsity term solved by a fast
iterative shrinkage-thresholding step (FISTA); structures whose mask reaches 0 are removed. In
llcv the structures are the channel groups of the pruning engine (``llcv.pruners.graph``), the
masks live in :mod:`llcv.pruners.soft_masks`, and the training is the ``GALModel`` training step
(``model_type: GALModel``), which runs the two-stage alternation over the ``mask_iters``
iterations before each point of ``prune.schedule`` using this pruner's settings.

What is new here is the memory: with a ``peak_memory_mb`` target (and ``memory_weighted``), the
sparsity weight of each group is the bytes per channel it carries in the tensors alive at the
estimated peak (``MemoryEstimate.live_at_peak`` via ``memory_aware_pruner.peak_groups``),
relative to the heaviest group, floored at ``MEMORY_FLOOR``, re-estimated every
``reweight_every`` iterations at the widths the masks currently keep — so masks of the channels
that hold the peak are driven to 0 first. GAL itself knows only sparsity.

At the prune point the channels are ranked by |mask| (ties, such as masks at exactly 0, by
their weights' L1 norm) and one global threshold is searched (bisection over the ranked
scores; the figure only falls as the threshold rises): the lowest one whose kept widths (each
rounded up to an allowed width) meet the target. The plan is the same plain-data plan as
every pruner's; the training step folds the kept masks into the surviving weights, so the
pruned network computes what the masked one did with the removed masks at 0. Groups a mask
cannot cover exactly (see ``soft_masks``) keep their width.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from llcv.errors import ArgumentError, LLCVError
from llcv.network import Spec
from llcv.pruners.base import BasePruner
from llcv.pruners.graph import ChannelGraph
from llcv.pruners.importance import Importance, L1Importance
from llcv.pruners.memory_aware_pruner import peak_groups
from llcv.pruners.problem import Problem, Widths
from llcv.pruners.soft_masks import attached_masks, maskable_groups
from llcv.pruners.targets import format_figure
from llcv.registry import PRUNERS
from llcv.utils import check_int, check_number

MEMORY_FLOOR = 0.1  # sparsity weight of a group carrying nothing at the peak (relative)


class MaskImportance(Importance):
    """Channel scores = |soft mask| of the masks attached to the model (``GALModel`` attaches
    them), ties (masks at exactly 0 above all) broken by the L1 norm of the channel's weights
    relative to its group's largest — a share of the smallest gap between mask values, so the
    masks' order stands; unmasked groups score above every mask, so a threshold never cuts
    them."""

    name = "gal_masks"

    def __init__(self) -> None:
        self.masked: set[int] = set()

    def scores(self, model: nn.Module, graph: ChannelGraph) -> dict[int, torch.Tensor]:
        """Per-group channel scores from the attached masks (see the class docstring)."""
        masks = attached_masks(model)
        if masks is None:
            raise LLCVError("GALPruner: the network carries no soft masks; GALPruner prunes "
                            "what model_type: GALModel trained before each prune.schedule point "
                            "(it cannot prune a network offline)")
        masks.check_graph(graph)
        values = {g: v.abs().float().cpu() for g, v in masks.values().items()}
        distinct = torch.unique(torch.cat(list(values.values())))
        gap = float((distinct[1:] - distinct[:-1]).min()) if len(distinct) > 1 else 1.0
        l1 = L1Importance().scores(model, graph)
        for g, v in values.items():
            values[g] = v + 0.5 * gap * l1[g] / (float(l1[g].max()) * (1 + 1e-6) + 1e-30)
        top = max(float(v.max()) for v in values.values()) + 1.0
        self.masked = set(values)
        return {g.id: values.get(g.id, torch.full((g.size,), top)) for g in graph.groups}


@PRUNERS.register_module()
class GALPruner(BasePruner):
    """Keep the channels with the largest learnt masks, under one threshold meeting the target.

    ``mask_iters``: iterations of mask training before each schedule point (fewer when the
    previous point or the run start is closer). ``sparsity``: the L1 weight lambda. ``mask_lr``:
    the masks' step size (it follows the run's LR schedule). ``memory_weighted``: weight each
    group's sparsity by the bytes it holds at the estimated peak (peak-memory targets).
    ``reweight_every``: iterations between re-estimates of those weights. The other options
    are :class:`BasePruner`'s (the masks are the importance).
    """

    def __init__(self, target: Mapping[str, Any], round_to: int = 1, min_width: int = 1,
                 min_widths: Optional[Mapping[str, int]] = None,
                 ignored_layers: Sequence[str] = (), mask_iters: int = 200,
                 sparsity: float = 1e-3, mask_lr: float = 1e-2, memory_weighted: bool = True,
                 reweight_every: int = 50) -> None:
        super().__init__(target, "l1", round_to, min_width, min_widths, ignored_layers)
        self.importance = MaskImportance()
        self.mask_iters = check_int("mask_iters", mask_iters)
        self.sparsity = check_number("sparsity", sparsity, 0.0)
        self.mask_lr = check_number("mask_lr", mask_lr, 0.0)
        if not isinstance(memory_weighted, bool):
            raise ArgumentError(f"memory_weighted: expected true or false, got "
                                f"{memory_weighted!r}")
        self.memory_weighted = memory_weighted
        self.reweight_every = check_int("reweight_every", reweight_every)

    # ------------------------------------------------------------------ for the training step
    def problem(self, model: nn.Module, spec: Spec) -> Problem:
        """The prune problem of ``model`` (groups, allowed widths, the target's evaluator)."""
        return self._event(model, spec).problem

    def trainable(self, model: nn.Module, problem: Problem) -> list[int]:
        """The groups whose masks are trained: maskable and allowed to lose channels."""
        reducible = set(problem.reducible())
        return [g for g in maskable_groups(model, problem.graph) if g in reducible]

    def mask_weights(self, problem: Problem, values: Mapping[int, torch.Tensor]) \
            -> dict[int, float]:
        """Each masked group's relative sparsity weight at the widths ``values`` keep now."""
        if not self.memory_weighted or self.target.kind != "peak_memory_mb":
            return {g: 1.0 for g in values}
        widths = widths_above(problem, values, 0.0)
        carried = peak_groups(problem, widths)
        per_channel = {g: carried.get(g, 0) / widths[g] for g in values}
        top = max(per_channel.values())
        if top <= 0:
            return {g: 1.0 for g in values}
        return {g: max(v / top, MEMORY_FLOOR) for g, v in per_channel.items()}

    # ------------------------------------------------------------------ the prune event
    def check(self, model: nn.Module, spec: Spec) -> None:
        """Also refuse a target the maskable groups cannot reach (the others keep width)."""
        event = self._event(model, spec)
        problem = event.problem
        floor = {**problem.full, **{g: problem.minimum[g]
                                    for g in self.trainable(event.model, problem)}}
        if not problem.meets(floor):
            reach = format_figure(problem.target.kind, problem.figure(floor))
            raise LLCVError(f"target.{problem.target.kind}: GALPruner reaches only {reach} with "
                            f"every maskable group at its minimum (groups touching grouped "
                            f"convs or cross-channel norms keep their width); relax the target "
                            f"or use MemoryAwarePruner")

    def allocate(self, problem: Problem) -> Widths:
        """The widths kept by the lowest mask threshold that meets the target (bisection)."""
        masked = {g: problem.raw[g] for g in problem.reducible() if g in self.importance.masked}
        if not masked:
            raise LLCVError("GALPruner: no masked group may lose channels")
        taus = [-1.0] + sorted(set(torch.cat(list(masked.values())).tolist()))
        if not problem.meets(widths_above(problem, masked, taus[-1])):
            raise LLCVError("target: not met with every masked group at its minimum width")
        low, high = 0, len(taus) - 1  # invariant: taus[high] meets the goal
        while low < high:
            mid = (low + high) // 2
            if problem.meets(widths_above(problem, masked, taus[mid])):
                high = mid
            else:
                low = mid + 1
        return widths_above(problem, masked, taus[high])


def widths_above(problem: Problem, values: Mapping[int, torch.Tensor], tau: float) -> Widths:
    """Widths keeping, in each group of ``values``, the channels with |mask| above ``tau``
    (rounded up to an allowed width); other groups whole."""
    widths = dict(problem.full)
    for g, v in values.items():
        count = int((v.abs() > tau).sum())
        widths[g] = next(w for w in problem.allowed[g] if w >= count)
    return widths
