"""UniformPruner: every prunable width shrunk by the same factor, the smallest factor that meets
the target — the "just use a thinner model" baseline, starting from the trained weights (each
group keeps its best-scored channels)."""
from __future__ import annotations

from llcv.pruners.base import BasePruner
from llcv.pruners.problem import Problem, Widths
from llcv.registry import PRUNERS

BISECTION_STEPS = 30


def uniform_widths(problem: Problem, shrink: float) -> Widths:
    """Each reducible group at the allowed width nearest ``(1 - shrink)`` of its size."""
    widths = dict(problem.full)
    for g in problem.reducible():
        widths[g] = problem.nearest(g, problem.full[g] * (1.0 - shrink))
    return widths


@PRUNERS.register_module()
class UniformPruner(BasePruner):
    """Shrink every prunable group by one factor, found by bisection on the target's figure."""

    def allocate(self, problem: Problem) -> Widths:
        if problem.meets(problem.full):
            return dict(problem.full)
        low, high = 0.0, 1.0  # the factor 1 (every group at its minimum) meets: checked
        for _ in range(BISECTION_STEPS):
            mid = (low + high) / 2
            if uniform_widths(problem, mid) == uniform_widths(problem, high):
                high = mid
                continue
            if problem.meets(uniform_widths(problem, mid)):
                high = mid
            else:
                low = mid
        return uniform_widths(problem, high)
