"""Pruning targets, and the figures of a candidate network measured without building it for real.

``target:`` holds exactly one of

- ``channel_ratio: r`` — remove the fraction ``r`` of the prunable channels;
- ``params_ratio: r`` / ``macs_ratio: r`` — remove the fraction ``r`` of the parameters / MACs
  (MACs at ``input_shape``);
- ``peak_memory_mb: N`` — estimated peak memory at most N MiB at ``input_shape`` for ``mode``
  ``inference`` or ``train`` (one step with ``optimizer``, default AdamW; ``amp``), on
  ``device`` (default: the model's); ``kind`` says which figure (``llcv.memory.MEMORY_KINDS``):
  on CUDA ``reserved`` (default: what the caching allocator holds), ``allocated``, ``tensors``
  or ``device`` (with a calibration); on CPU every kind is the tensors' peak.

``input_shape`` (default ``[1, C, 256, 256]``, C the arch's image channels) is also the shape the
report's MACs and peaks are given at. Ratios are relative to the network being pruned.

A candidate is a width per group; :class:`Evaluator` makes it on the meta device (no memory,
no data) and counts parameters, MACs (``llcv.analysis.profile``) or the estimated peak
(``llcv.memory.estimate_peak_memory``), caching every figure it computed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any, Mapping, Optional

from torch import nn

from llcv.analysis.profile import count_parameters, profile_model
from llcv.errors import ArgumentError
from llcv.memory import MEMORY_KINDS, MemoryEstimate, estimate_peak_memory
from llcv.network import apply_plan, build_network, network_spec
from llcv.pruners.graph import ChannelGraph
from llcv.utils import MB, check_int_list, check_number

KINDS = ("channel_ratio", "params_ratio", "macs_ratio", "peak_memory_mb")
OPTIONS = ("input_shape", "mode", "optimizer", "amp", "device", "kind")


@dataclass(frozen=True)
class Target:
    """A checked ``target:`` section."""

    kind: str
    value: float
    input_shape: Optional[tuple] = None
    mode: str = "inference"
    optimizer: Any = "AdamW"
    amp: Any = False
    device: Optional[str] = None
    memory_kind: str = "reserved"

    def describe(self, shape: tuple) -> str:
        """E.g. ``peak 512.00 MiB at 1x3x512x512 (inference)`` or ``params_ratio 0.5``."""
        if self.kind != "peak_memory_mb":
            return f"{self.kind} {self.value:g}"
        return f"peak {self.value:.2f} MiB at {'x'.join(map(str, shape))} ({self.mode})"


def parse_target(target: Any) -> Target:
    """Check a ``target:`` mapping; messages start with ``target``."""
    if not isinstance(target, Mapping):
        raise ArgumentError(f"target: expected a mapping with one of {', '.join(KINDS)}, "
                            f"got {target!r}")
    kinds = [k for k in KINDS if k in target]
    unknown = [k for k in target if k not in KINDS + OPTIONS]
    if unknown or len(kinds) != 1:
        raise ArgumentError(f"target: needs exactly one of {', '.join(KINDS)} (options: "
                            f"{', '.join(OPTIONS)}); got {sorted(target)}")
    kind = kinds[0]
    value = check_number(f"target.{kind}", target[kind], 0)
    if kind != "peak_memory_mb" and not 0 <= value < 1:
        raise ArgumentError(f"target.{kind}: expected the fraction to remove, in [0, 1), "
                            f"got {value!r}")
    shape = target.get("input_shape")
    if shape is not None:
        shape = tuple(check_int_list("target.input_shape", shape, 1, length=4))
    mode = target.get("mode", "inference")
    if mode not in ("inference", "train"):
        raise ArgumentError(f"target.mode: expected inference or train, got {mode!r}")
    if kind == "peak_memory_mb" and shape is None:
        raise ArgumentError("target.input_shape: a peak-memory target needs the input shape "
                            "it holds at, e.g. [1, 3, 1024, 1024]")
    memory_kind = target.get("kind", "reserved")
    if memory_kind not in MEMORY_KINDS:
        raise ArgumentError(f"target.kind: expected one of {', '.join(MEMORY_KINDS)}, "
                            f"got {memory_kind!r}")
    return Target(kind, value, shape, mode, target.get("optimizer", "AdamW"),
                  target.get("amp", False), target.get("device"), memory_kind)


class Evaluator:
    """Figures of candidate widths of ``base`` (a meta-device network whose groups are
    ``graph``'s), for ``target``, at ``input_shape`` on ``device``."""

    def __init__(self, base: nn.Module, graph: ChannelGraph, target: Target,
                 input_shape: tuple, device: Any) -> None:
        self.base, self.graph, self.target = base, graph, target
        self.input_shape, self.device = input_shape, device
        self._figures: dict[tuple, float] = {}
        self._estimates: dict[tuple, MemoryEstimate] = {}

    def model(self, widths: Mapping[int, int]) -> nn.Module:
        """The meta-device network with ``widths[group]`` channels in each group."""
        plan = self.graph.plan({g: range(k) for g, k in widths.items()})
        return apply_plan(copy.deepcopy(self.base), plan) if plan["keep"] else self.base

    def estimate(self, widths: Mapping[int, int]) -> MemoryEstimate:
        """The estimated peak of the candidate for the target's mode (cached)."""
        key = tuple(sorted(widths.items()))
        if key not in self._estimates:
            self._estimates[key] = estimate_model(self.model(widths), self.input_shape,
                                                  self.target.mode, self.target, self.device)
        return self._estimates[key]

    def figure(self, widths: Mapping[int, int]) -> float:
        """The target's figure of the candidate: channels, params, MACs or peak bytes."""
        key = tuple(sorted(widths.items()))
        if key not in self._figures:
            self._figures[key] = self._compute(widths)
        return self._figures[key]

    def _compute(self, widths: Mapping[int, int]) -> float:
        kind = self.target.kind
        if kind == "channel_ratio":
            return float(sum(widths.values()))
        if kind == "peak_memory_mb":
            return float(self.estimate(widths).peak(self.target.memory_kind))
        model = self.model(widths)
        if kind == "params_ratio":
            return float(count_parameters(model))
        return float(profile_model(model, self.input_shape).macs)


def estimate_model(model: nn.Module, shape: tuple, mode: str, target: Target,
                   device: Any) -> MemoryEstimate:
    """``estimate_peak_memory`` with the target's optimizer, precision and device."""
    return estimate_peak_memory(model, shape, mode, optimizer=target.optimizer, amp=target.amp,
                                device=device)


def dense_peak_mb(network_g: Mapping[str, Any], target: Target, device: Any = None) -> float:
    """The unpruned ``network_g``'s estimated peak (MiB) for a peak-memory ``target``: its shape,
    mode and memory kind, on the target's device (else ``device``)."""
    dense = build_network(network_spec(network_g), "meta")
    return estimate_model(dense, target.input_shape, target.mode, target,
                          target.device or device).peak(target.memory_kind) / MB


def format_figure(kind: str, value: float) -> str:
    """A figure in the target's unit (MiB for peaks, counts otherwise)."""
    return f"{value / MB:.2f} MiB" if kind == "peak_memory_mb" else f"{value:,.0f}"
