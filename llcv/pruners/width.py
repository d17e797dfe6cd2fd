"""Width multipliers: the "thinner model trained from scratch" baseline.

:func:`scale_widths` multiplies an arch's width options (its pruning declaration's
``width_options``) by a factor, rounded to ``round_to``; :func:`largest_multiplier` finds the
largest factor whose network's estimated peak at an input shape meets a budget (bisection on
meta-device builds, so any resolution costs milliseconds per try).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

from llcv.analysis.profile import count_parameters
from llcv.errors import ArgumentError, LLCVError
from llcv.memory import estimate_peak_memory
from llcv.pruners.arch_config import arch_pruning, option_value
from llcv.registry import ARCHS, build
from llcv.utils import MB, check_int, check_number

BISECTION_STEPS = 24


def _scale(value: int, factor: float, round_to: int) -> int:
    return max(round_to, int(round(value * factor / round_to)) * round_to)


def scale_widths(network_g: Mapping[str, Any], factor: float, round_to: int = 1) -> dict:
    """``network_g`` with every width option times ``factor`` (rounded to ``round_to``)."""
    check_number("factor", factor, 0)
    check_int("round_to", round_to)
    arch = network_g["type"]
    out = dict(network_g)
    for name in arch_pruning(arch).width_options:
        value = option_value(arch, network_g, name)
        out[name] = [_scale(v, factor, round_to) for v in value] \
            if isinstance(value, (list, tuple)) else _scale(value, factor, round_to)
    return out


@dataclass
class WidthChoice:
    """A width multiplier and the network it gives."""

    factor: float
    network_g: dict
    peak_bytes: int
    params: int


def _try(network_g: Mapping[str, Any], factor: float, round_to: int, shape: Sequence[int],
         mode: str, options: Mapping[str, Any]) -> WidthChoice | None:
    """The scaled network's figures (None when the arch refuses those widths)."""
    scaled = scale_widths(network_g, factor, round_to)
    try:
        model = build(ARCHS, scaled, "network_g", device="meta")
    except ArgumentError:
        return None
    kind = options.get("kind", "reserved")
    peak = estimate_peak_memory(model, shape, mode, **{k: v for k, v in options.items()
                                                       if k != "kind"}).peak(kind)
    return WidthChoice(factor, scaled, peak, count_parameters(model))


def _smallest_buildable(network_g: Mapping[str, Any], low: float, high: float,
                        args: tuple) -> WidthChoice | None:
    """The first factor from ``low`` up (steps of 25%) whose widths the arch accepts."""
    factor = low
    while factor <= high:
        choice = _try(network_g, factor, *args)
        if choice is not None:
            return choice
        factor *= 1.25
    return None


def largest_multiplier(network_g: Mapping[str, Any], budget_mb: float, input_shape: Sequence[int],
                       mode: str = "inference", round_to: int = 1, low: float = 1 / 64,
                       high: float = 1.0, **estimate_options: Any) -> WidthChoice:
    """The largest factor in [low, high] whose scaled network's estimated peak at
    ``input_shape`` (``mode``; ``estimate_options`` go to ``estimate_peak_memory``, except
    ``kind``, the memory figure compared: ``llcv.memory.MEMORY_KINDS``) is at most
    ``budget_mb``; a budget even the thinnest one misses is refused with its figure. Widths the
    arch refuses (e.g. not divisible by its heads) count as out of budget."""
    budget = check_number("budget_mb", budget_mb, 0) * MB
    args = (round_to, tuple(input_shape), mode, estimate_options)
    best = _try(network_g, high, *args)
    if best is not None and best.peak_bytes <= budget:
        return best
    floor = _smallest_buildable(network_g, low, high, args)
    where = f"{'x'.join(map(str, input_shape))} ({mode})"
    if floor is None:
        raise LLCVError(f"round_to: no width multiplier in [{low:g}, {high:g}] gives "
                        f"{network_g['type']} widths it accepts with round_to {round_to}")
    if floor.peak_bytes > budget:
        raise LLCVError(f"budget_mb: {budget_mb:.2f} MiB at {where} is below the "
                        f"{floor.peak_bytes / MB:.2f} MiB {network_g['type']} needs at width "
                        f"x{floor.factor:g} (round_to {round_to})")
    best, low = floor, floor.factor
    for _ in range(BISECTION_STEPS):
        mid = (low + high) / 2
        if scale_widths(network_g, mid, round_to) == best.network_g:
            low = mid
            continue
        choice = _try(network_g, mid, *args)
        if choice is not None and choice.peak_bytes <= budget:
            best, low = choice, mid
        else:
            high = mid
    return best
