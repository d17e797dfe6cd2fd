"""MemoryAwarePruner: memory-oriented structural pruning in the manner of MOSP (Shi et al.,
AAAI 2023), on llcv's peak-memory estimator.

Repeated until the target is met:

- **outer step**: estimate the peak of the current widths and take the groups live at it —
  the channels of the largest tensors alive at the peak (``MemoryEstimate.live_at_peak``:
  activations named by the module that made them, weights by name), at most ``CANDIDATES``,
  those carrying the most bytes first; measure, for each, the bytes its next chunk
  (``round_to`` channels) saves off the peak (one estimate each, every step: the peak is a
  maximum over time, so these gains change as widths do);
- **inner step**: remove chunks from those groups, always the one losing the least importance
  per byte saved (the criterion's own sums over all coupled weights), until a memory stride
  (``memory_stride`` x the starting peak) is saved by the measured gains.

If no group live at the peak lowers it, every open group is measured; if none does alone
(tensors tie at the peak), one chunk of each is cut at once.

``compactors: true`` first inserts the arch's identity 1x1 compactors on the long skips (see
``llcv.pruners.compactors``), so a skip's channels — alive across the whole decoder in a UNet —
are pruned apart from its encoder's. With other targets (ratios) the same loop runs on that
target's figure instead of bytes, over every group.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

from torch import nn

from llcv.errors import ArgumentError, LLCVError
from llcv.network import Spec
from llcv.pruners.arch_config import ArchPruning
from llcv.pruners.base import BasePruner
from llcv.pruners.compactors import add_compactors
from llcv.pruners.problem import Problem, Widths
from llcv.registry import PRUNERS
from llcv.utils import check_number

PEAK_SHARE = 0.8  # the groups of the largest live tensors holding this share of the peak
CANDIDATES = 8  # at most this many groups are measured per outer step (the most bytes at peak)


def peak_groups(problem: Problem, widths: Widths) -> dict[int, int]:
    """Groups carried by the largest tensors alive at the estimated peak of ``widths``, with
    the bytes of those tensors each one carries."""
    estimate = problem.estimate(widths)
    live = [t for t in estimate.live_at_peak if t.kind != "input"]
    budget, carried = PEAK_SHARE * sum(t.bytes for t in live), {}
    graph = problem.graph
    for t in live:  # largest first
        ids = graph.module_groups.get(t.name.split(" / ")[0], set()) | graph.tensor_groups(t.name)
        for g in ids:
            carried[g] = carried.get(g, 0) + t.bytes
        budget -= t.bytes
        if budget <= 0:
            break
    return carried


@PRUNERS.register_module()
class MemoryAwarePruner(BasePruner):
    """Prune where the peak is, by importance lost per byte saved (MOSP-style)."""

    def __init__(self, target: Mapping[str, Any], importance: Any = "l1", round_to: int = 1,
                 min_width: int = 1, min_widths: Mapping[str, int] | None = None,
                 ignored_layers: Sequence[str] = (), seed: int = 0, compactors: bool = False,
                 memory_stride: float = 0.05) -> None:
        super().__init__(target, importance, round_to, min_width, min_widths, ignored_layers,
                         seed)
        if not isinstance(compactors, bool):
            raise ArgumentError(f"compactors: expected true or false, got {compactors!r}")
        self.compactors = compactors
        self.memory_stride = check_number("memory_stride", memory_stride, 0)
        if not 0 < self.memory_stride <= 1:
            raise ArgumentError(f"memory_stride: expected a fraction of the peak in (0, 1], "
                                f"got {memory_stride!r}")

    def prepare(self, model: nn.Module, spec: Spec, decl: ArchPruning,
                shape: Sequence[int]) -> tuple[nn.Module, Spec]:
        if not self.compactors:
            return model, spec
        if not decl.compactors:
            raise ArgumentError(f"compactors: {decl.arch} declares no skip-compactor option "
                                f"(pruning['compactors']); set compactors: false")
        return add_compactors(model, spec, decl.compactors, shape)

    def allocate(self, problem: Problem) -> Widths:
        widths = dict(problem.full)
        stride = self.memory_stride * problem.base_figure
        while (current := problem.figure(widths)) > problem.goal:
            gains = self._gains(problem, widths, self._candidates(problem, widths))
            if not gains:
                gains = self._gains(problem, widths, self._open(problem, widths))
            if gains:
                widths = self._inner(problem, widths, gains, min(stride, current - problem.goal))
            else:
                widths = self._joint_step(problem, widths, current)
        return widths

    @staticmethod
    def _open(problem: Problem, widths: Widths) -> list[int]:
        """Groups that can still lose a chunk."""
        return [g for g in problem.reducible() if problem.lower(g, widths[g]) is not None]

    def _candidates(self, problem: Problem, widths: Widths) -> list[int]:
        """Open groups live at the peak, those carrying the most bytes first (every open group
        for a non-memory target)."""
        groups = self._open(problem, widths)
        if problem.target.kind != "peak_memory_mb":
            return groups
        carried = peak_groups(problem, widths)
        live = sorted((g for g in groups if g in carried), key=lambda g: -carried[g])
        return live[:CANDIDATES]

    @staticmethod
    def _gains(problem: Problem, widths: Widths, groups: Sequence[int]) -> dict[int, float]:
        """Figure saved per channel by each group's next chunk (only groups that save)."""
        current, gains = problem.figure(widths), {}
        for g in groups:
            lower = problem.lower(g, widths[g])
            saved = current - problem.figure({**widths, g: lower})
            if saved > 0:
                gains[g] = saved / (widths[g] - lower)
        return gains

    @staticmethod
    def _inner(problem: Problem, widths: Widths, gains: dict[int, float], stride: float) \
            -> Widths:
        """Remove chunks, cheapest importance per byte first, until ``stride`` is saved
        (by the per-channel gains measured; at least one chunk)."""
        widths, gains, saved = dict(widths), dict(gains), 0.0
        while gains and (saved == 0.0 or saved < stride):
            def cost(g: int) -> float:
                lower = problem.lower(g, widths[g])
                return problem.lost(g, widths[g], lower, raw=True) / (
                    gains[g] * (widths[g] - lower))
            g = min(gains, key=cost)
            lower = problem.lower(g, widths[g])
            saved += gains[g] * (widths[g] - lower)
            widths[g] = lower
            if problem.lower(g, lower) is None:
                del gains[g]
        return widths

    def _joint_step(self, problem: Problem, widths: Widths, current: float) -> Widths:
        """No single group lowers the peak (several tensors tie there): cut one chunk of every
        group live at the peak at once, else of every open group."""
        for groups in (self._candidates(problem, widths), self._open(problem, widths)):
            trial = {**widths, **{g: problem.lower(g, widths[g]) for g in groups}}
            if groups and problem.figure(trial) < current:
                return trial
        if not self._open(problem, widths):
            raise LLCVError("target: the minimum widths do not meet the target")
        return {**widths, **{g: problem.lower(g, widths[g]) for g in self._open(problem, widths)}}
