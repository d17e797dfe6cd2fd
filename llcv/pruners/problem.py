"""One prune event's problem: the groups, the widths each may take, channel scores, the goal.

Widths a group may take: its full width, and every multiple of ``round_to`` from its minimum
(``max(min_width, round_to)``, or the ``min_widths`` of its layer) up to it; ignored layers and
the arch's ``keep_width`` layers keep their width. Within a group the highest-scored channels
are kept. The goal is the target's figure (channels, params, MACs, peak bytes) the pruned
network must not exceed; a goal below what the minimum widths reach is refused before any work.
"""
from __future__ import annotations

import fnmatch
import math
from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import torch
from torch import nn

from llcv.errors import LLCVError, OptionError
from llcv.memory import MemoryEstimate
from llcv.pruners.graph import ChannelGraph, layer_groups
from llcv.pruners.importance import normalized
from llcv.pruners.targets import Evaluator, Target, format_figure
from llcv.utils import MB

Widths = dict  # group id -> kept channels


@dataclass
class Constraints:
    """What the user and the arch allow: ``round_to``, minimum widths, layers left alone."""

    round_to: int = 1
    min_width: int = 1
    min_widths: Mapping[str, int] = field(default_factory=dict)
    ignored: Sequence[str] = ()


def allowed_widths(size: int, low: int, step: int) -> list[int]:
    """Ascending widths: multiples of ``step`` in [low, size], and ``size`` itself."""
    low = max(step, -(-low // step) * step)
    return sorted({w for w in range(low, size + 1, step)} | {size})


def _layer_minimum(model: nn.Module, graph: ChannelGraph, pattern: str, width: int) \
        -> dict[int, int]:
    """Minimum channels per group for a layer kept at least ``width`` wide (groups sharing
    the layer's output get their proportional share)."""
    ids = layer_groups(model, graph, pattern)
    if not ids:
        raise OptionError(f"min_widths.{pattern}: matches no prunable layer of "
                          f"{type(model).__name__}")
    total = sum(graph.groups[g].size for g in ids)
    return {g: math.ceil(width * graph.groups[g].size / total) for g in ids}


class Problem:
    """The groups of ``graph`` under ``constraints``, with an evaluator and a goal; channel
    scores come with :meth:`rank` (feasibility needs none)."""

    def __init__(self, model: nn.Module, graph: ChannelGraph, evaluator: Evaluator,
                 constraints: Constraints, keep_width: Sequence[str]) -> None:
        self.graph, self.evaluator = graph, evaluator
        self.target: Target = evaluator.target
        self.constraints = constraints
        self.allowed = self._allowed(model, constraints, keep_width)
        self.full = {g.id: g.size for g in graph.groups}
        self.minimum = {g: widths[0] for g, widths in self.allowed.items()}
        self.base_figure = evaluator.figure(self.full)
        self.goal = self._goal()
        self.order: dict[int, list[int]] = {}
        self.raw: dict[int, torch.Tensor] = {}
        self.scores: dict[int, torch.Tensor] = {}

    def rank(self, scores: Mapping[int, torch.Tensor]) -> None:
        """Take an importance's raw scores: each group's channels ranked, best first."""
        self.order = {g: torch.argsort(s, descending=True, stable=True).tolist()
                      for g, s in scores.items()}
        self.raw = dict(scores)
        self.scores = normalized(scores)

    def _allowed(self, model: nn.Module, c: Constraints, keep_width: Sequence[str]) \
            -> dict[int, list[int]]:
        """Each group's allowed widths, ascending."""
        low = {g.id: max(c.min_width, c.round_to) for g in self.graph.groups}
        for pattern, width in c.min_widths.items():
            for g, need in _layer_minimum(model, self.graph, pattern, width).items():
                low[g] = max(low[g], need)
        fixed: set[int] = set()
        arch = type(model).__name__
        for key, patterns in (("ignored_layers", c.ignored),
                              (f"{arch}.pruning.keep_width", keep_width)):
            for pattern in patterns:
                if not _names_layer(model, pattern):
                    raise OptionError(f"{key}: '{pattern}' matches no layer of {arch}")
                fixed |= layer_groups(model, self.graph, pattern)
        return {g.id: [g.size] if g.id in fixed else allowed_widths(g.size, low[g.id], c.round_to)
                for g in self.graph.groups}

    def _goal(self) -> float:
        """The figure the pruned network must not exceed."""
        t = self.target
        if t.kind == "peak_memory_mb":
            return t.value * MB
        if t.kind == "channel_ratio":
            prunable = sum(self.full[g] for g in self.reducible())
            return self.base_figure - t.value * prunable
        return (1.0 - t.value) * self.base_figure

    def reducible(self) -> list[int]:
        """Groups that may lose channels at all."""
        return [g for g, widths in self.allowed.items() if len(widths) > 1]

    def lower(self, g: int, width: int) -> Optional[int]:
        """The next allowed width below ``width`` (None at the minimum)."""
        below = [w for w in self.allowed[g] if w < width]
        return below[-1] if below else None

    def nearest(self, g: int, width: float) -> int:
        """The allowed width nearest ``width`` (the larger one on a tie)."""
        return min(reversed(self.allowed[g]), key=lambda w: abs(w - width))

    def lost(self, g: int, width: int, new: int, raw: bool = False) -> float:
        """Score of the channels going from ``width`` to ``new`` (the lowest-ranked ones):
        normalised (each group's mean is 1, to rank channels across groups), or ``raw`` (the
        criterion's own sums over every coupled weight, to weigh against bytes)."""
        scores = self.raw if raw else self.scores
        return float(scores[g][self.order[g][new:width]].sum())

    def figure(self, widths: Mapping[int, int]) -> float:
        """The target's figure of a candidate."""
        return self.evaluator.figure(widths)

    def estimate(self, widths: Mapping[int, int]) -> MemoryEstimate:
        """The estimated peak of a candidate."""
        return self.evaluator.estimate(widths)

    def meets(self, widths: Mapping[int, int]) -> bool:
        """True when a candidate meets the goal."""
        return self.figure(widths) <= self.goal

    def keep(self, widths: Mapping[int, int]) -> dict[int, list[int]]:
        """The channels kept in each group: its ``widths[g]`` highest-scored, ascending."""
        return {g: sorted(self.order[g][:k]) for g, k in widths.items()}

    def check_feasible(self, shape: tuple) -> None:
        """Refuse a goal below what every prunable width at its minimum reaches (one line)."""
        if not self.reducible():
            raise LLCVError("target: nothing to prune: every channel group is tied to the "
                            "input/output channels, ignored, or at its minimum width")
        floor = self.figure(self.minimum)
        if floor <= self.goal:
            return
        t, c = self.target, self.constraints
        how = f"round_to {c.round_to}, min_width {max(c.min_width, c.round_to)}"
        if t.kind == "peak_memory_mb":
            raise LLCVError(f"target.peak_memory_mb: {t.describe(shape)} is below the "
                            f"{floor / MB:.2f} MiB this network reaches with every "
                            f"prunable width at its minimum ({how})")
        reach = 1 - floor / self.base_figure if t.kind != "channel_ratio" else \
            (self.base_figure - floor) / sum(self.full[g] for g in self.reducible())
        raise LLCVError(f"target.{t.kind}: removing {t.value:.1%} is beyond the {reach:.1%} "
                        f"this network reaches with every prunable width at its minimum "
                        f"({format_figure(t.kind, floor)} left; {how})")


def _names_layer(model: nn.Module, pattern: str) -> bool:
    """True when ``pattern`` names some module (a layer whose groups are fixed anyway)."""
    return any(fnmatch.fnmatchcase(n, pattern) for n, _ in model.named_modules() if n)
