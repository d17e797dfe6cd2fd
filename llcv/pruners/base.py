"""What every pruner shares: checked options, one prune event end to end, and its result.

A prune event (:meth:`BasePruner.prune`) traces a fresh channel graph of the network the spec
describes (on the meta device), scores channels on the live model's weights, refuses an
infeasible target, lets the pruner choose a width per group (:meth:`BasePruner.allocate`), keeps
the best-scored channels of each group, and returns a :class:`PruneResult`: a plain-data plan,
the new spec and a report. The live model is not touched; ``result.apply(model)`` (or
``llcv.network.transfer``) builds the pruned network with the kept weights.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Mapping, Optional, Sequence

import torch
from torch import nn

from llcv.errors import ArgumentError, LLCVError
from llcv.network import Plan, Spec, build_network, spec_with, transfer
from llcv.pruners.arch_config import ArchPruning, arch_pruning, check_prunable
from llcv.pruners.graph import ChannelGraph, trace_graph
from llcv.pruners.importance import build_importance
from llcv.pruners.problem import Constraints, Problem, Widths
from llcv.pruners.report import PruneReport, figures, width_changes
from llcv.pruners.targets import Evaluator, parse_target
from llcv.utils import check_int, module_device

REPORT_SIZE = 256  # H and W of the report's input shape when the target names none


@dataclass
class PruneResult:
    """A prune event's outcome. ``plan`` refers to the network ``base_spec`` builds (the input
    spec, or its version with compactors); ``spec`` is the pruned network's."""

    plan: Plan
    spec: Spec
    base_spec: Spec
    report: PruneReport

    def apply(self, model: nn.Module) -> nn.Module:
        """The pruned network holding ``model``'s kept weights (``model`` is left as it is)."""
        return transfer(model, self.plan, self.spec, module_device(model))


def _check_patterns(name: str, value: Any) -> tuple[str, ...]:
    """A list of layer names or globs."""
    if isinstance(value, str) or not isinstance(value, Sequence) \
            or any(not isinstance(v, str) for v in value):
        raise ArgumentError(f"{name}: expected a list of layer names or globs, got {value!r}")
    return tuple(value)


def _check_min_widths(value: Any) -> dict[str, int]:
    """``{layer name or glob: minimum output width}``."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ArgumentError(f"min_widths: expected {{layer name or glob: width}}, got {value!r}")
    return {str(k): check_int(f"min_widths.{k}", v) for k, v in value.items()}


def trace_shape(model: nn.Module, channels: int) -> tuple[int, int, int, int]:
    """A tiny input the network takes (H, W multiples of its ``size_multiple``)."""
    m = max(int(getattr(model, "size_multiple", 1)), 4)
    return (1, channels, 2 * m, 3 * m)


class BasePruner:
    """Options every pruner takes; subclasses implement :meth:`allocate`.

    ``target``: see ``llcv.pruners.targets``. ``importance``: ``l1`` (default), ``l2``,
    ``bn_scale``, ``random`` or ``{type: taylor, iterations: N}``. ``round_to``: every pruned
    width a multiple of it. ``min_width``: the fewest channels any group keeps (at least
    ``round_to``); ``min_widths``: per layer (name or glob: width). ``ignored_layers``: layers
    (names or globs; a container covers its layers) whose output width is kept. ``seed``: of
    the random importance.
    """

    def __init__(self, target: Mapping[str, Any], importance: Any = "l1", round_to: int = 1,
                 min_width: int = 1, min_widths: Optional[Mapping[str, int]] = None,
                 ignored_layers: Sequence[str] = (), seed: int = 0) -> None:
        self.target = parse_target(target)
        self.importance = build_importance(importance, check_int("seed", seed, 0))
        self.constraints = Constraints(check_int("round_to", round_to),
                                       check_int("min_width", min_width),
                                       _check_min_widths(min_widths),
                                       _check_patterns("ignored_layers", ignored_layers))

    def allocate(self, problem: Problem) -> Widths:
        """The width of every group, meeting ``problem``'s goal."""
        raise NotImplementedError

    def prepare(self, model: nn.Module, spec: Spec, decl: ArchPruning,
                shape: Sequence[int]) -> tuple[nn.Module, Spec]:
        """The network to prune and its spec (a pruner may change the architecture first)."""
        return model, spec

    def check(self, model: nn.Module, spec: Spec) -> None:
        """Refuse, before any work, a target this network cannot reach (or an arch that
        cannot be pruned); needs no importance (a Taylor one has no gradients yet)."""
        self._event(model, spec)

    def prune(self, model: nn.Module, spec: Spec) -> PruneResult:
        """One prune event of ``model`` (described by ``spec``) to the target."""
        start = time.perf_counter()
        event = self._event(model, spec)
        problem = event.problem
        problem.rank(self.importance.scores(event.model, problem.graph))
        widths = self.allocate(problem)
        plan = problem.graph.plan(problem.keep(widths))
        pruned = problem.evaluator.model(widths)
        before = build_network(spec, device="meta")
        shape, device = event.shape, problem.evaluator.device
        report = PruneReport(type(self).__name__, self.target.describe(shape), list(shape),
                             figures(before, shape, self.target, device),
                             figures(pruned, shape, self.target, device),
                             width_changes(before, pruned), time.perf_counter() - start)
        return PruneResult(plan, spec_with(event.base_spec, plan), event.base_spec, report)

    def _event(self, model: nn.Module, spec: Spec) -> "_Event":
        """Everything a prune event works on, the target checked against the minimum widths."""
        decl = arch_pruning(spec["network_g"]["type"])
        check_prunable(decl)
        channels = decl.channels(spec["network_g"])
        model, base_spec = self.prepare(model, spec, decl, trace_shape(model, channels))
        base = build_network(base_spec, device="meta")
        _check_matches(model, base)
        shape = self.target.input_shape or (1, channels, REPORT_SIZE, REPORT_SIZE)
        graph = _graph(base, trace_shape(base, channels))
        evaluator = Evaluator(base, graph, self.target, shape,
                              self.target.device or _real_device(model))
        problem = Problem(base, graph, evaluator, self.constraints, decl.keep_width)
        problem.check_feasible(shape)
        return _Event(model, base_spec, tuple(shape), problem)


@dataclass
class _Event:
    """One prune event's network (with compactors, if added), its spec and its problem."""

    model: nn.Module
    base_spec: Spec
    shape: tuple
    problem: Problem


def _real_device(model: nn.Module) -> torch.device:
    device = module_device(model)
    return torch.device("cpu") if device.type == "meta" else device


def _graph(base: nn.Module, shape: tuple) -> ChannelGraph:
    """The channel graph, or a clear error for a network with nothing to prune."""
    graph = trace_graph(base, shape)
    if not graph.groups:
        why = f"; ops without a channel rule pinned theirs: {', '.join(graph.opaque[:5])}" \
            if graph.opaque else ""
        raise LLCVError(f"{type(base).__name__}: nothing to prune: every channel is tied to "
                        f"the input or output channels{why}")
    return graph


def _check_matches(model: nn.Module, base: nn.Module) -> None:
    """The live model must be the network its spec describes (names and shapes)."""
    own = {n: tuple(t.shape) for n, t in model.state_dict().items()}
    spec = {n: tuple(t.shape) for n, t in base.state_dict().items()}
    if own != spec:
        diff = sorted(set(own.items()) ^ set(spec.items()))[:3]
        raise LLCVError(f"prune: the model does not match its network spec (e.g. {diff}); "
                        f"the spec must describe the live network")
