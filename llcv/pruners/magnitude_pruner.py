"""MagnitudePruner: classic pruning — channels ranked globally by importance (each group's
scores divided by their mean), the lowest removed until the target is met."""
from __future__ import annotations

from llcv.pruners.base import BasePruner
from llcv.pruners.problem import Problem, Widths
from llcv.registry import PRUNERS


def removal_order(problem: Problem) -> list[tuple[float, int, int]]:
    """Every removable chunk (from one allowed width to the next lower one) as
    ``(mean score of its channels, group, width after)``, lowest first; within a group the
    chunks come in removal order because a group loses its lowest-scored channels first."""
    chunks = []
    for g in problem.reducible():
        width = problem.full[g]
        while (lower := problem.lower(g, width)) is not None:
            chunks.append((problem.lost(g, width, lower) / (width - lower), g, lower))
            width = lower
    return sorted(chunks, key=lambda c: c[0])


@PRUNERS.register_module()
class MagnitudePruner(BasePruner):
    """Remove the globally lowest-scored chunks; bisection on how many meets the target."""

    def allocate(self, problem: Problem) -> Widths:
        chunks = removal_order(problem)

        def widths(count: int) -> Widths:
            out = dict(problem.full)
            for _, g, width in chunks[:count]:
                out[g] = width
            return out

        low, high = 0, len(chunks)  # all chunks removed = the minimum widths, which meet
        if problem.meets(widths(0)):
            return widths(0)
        while high - low > 1:
            mid = (low + high) // 2
            if problem.meets(widths(mid)):
                high = mid
            else:
                low = mid
        return widths(high)
