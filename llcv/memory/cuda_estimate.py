"""What a CUDA device holds for a traced step: allocated, reserved and device total.

The estimator's tracker records, in order, every allocation and free of a storage during the
step, after the registered weights, inputs and optimizer state. Here:

- :func:`workspace_hook` adds library workspaces to that stream. cuDNN convolutions allocate
  their workspace through the caching allocator inside the call and free it on return
  (aten/src/ATen/native/cudnn/Conv_v8.cpp); its size depends on the algorithm cuDNN picks, so it
  is a per-family rule (``const + ratio x`` the op's tensor bytes) from the device's
  calibration, 0 without one. The cuBLAS workspace is allocated through the caching allocator
  at the first matmul and kept per stream (aten/src/ATen/cuda/CublasHandlePool.cpp).
- :func:`replay_step` replays the stream through :class:`CachingAllocatorModel` as a run makes
  it: the registered storages (weights, buffers, inputs), a first step in which the optimizer
  state is created when the optimizer first steps (``torch.optim`` initialises it lazily), then
  steady steps — each starting by freeing what the previous one left (the gradients, set to
  None) — until one adds no reserved memory. ``allocated`` is the last step's peak (what
  ``max_memory_allocated`` shows after ``reset_peak_memory_stats``), ``reserved`` the peak of
  the whole run (``max_memory_reserved``; without a memory limit the cache only grows).
- The device total adds the calibrated context (CUDA context, kernels, library handles).

Storages on the host (an optimizer's ``step`` counters, CPU scalars) are left out.
"""
from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any, Callable, Hashable, Iterable, Optional, Sequence

import torch

from llcv.memory.alloc_conf import AllocatorConfig
from llcv.memory.calibration import Calibration, WorkspaceRule, cublas_workspace_bytes
from llcv.memory.cuda_allocator import CachingAllocatorModel
from llcv.memory.tracker import LiveStorageTracker, MemoryEvent, StorageInfo

aten = torch.ops.aten
MATMUL_OPS = frozenset({aten.mm.default, aten.addmm.default, aten.bmm.default,
                        aten.baddbmm.default, aten.addbmm.default, aten.mv.default,
                        aten.addmv.default})
KEPT = ("persistent", "optimizer_state", "weight", "input")  # survive every step
MAX_STEPS = 8  # steady steps replayed at most (the cache settles in one or two)


def _nbytes(t: Any) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def workspace_hook(calibration: Optional[Calibration],
                   capability: Optional[tuple]) -> Callable[..., tuple[int, dict[str, int]]]:
    """``(func, args, kwargs, out) -> (transient bytes, {name: kept bytes})`` for CUDA ops."""
    forward = calibration.rule("conv_forward") if calibration else WorkspaceRule()
    backward = calibration.rule("conv_backward") if calibration else WorkspaceRule()
    cublas = calibration.cublas_workspace_bytes if calibration else \
        cublas_workspace_bytes(capability)

    def hook(func: Any, args: Sequence[Any], kwargs: dict, out: Any) -> tuple[int, dict]:
        if func is aten.convolution.default:
            return forward.bytes(_nbytes(args[0]) + _nbytes(args[1]) + _nbytes(out)), {}
        if func is aten.convolution_backward.default:
            return backward.bytes(sum(_nbytes(a) for a in args[:3])), {}
        if func in MATMUL_OPS:
            return 0, {"cublas": cublas}
        return 0, {}

    return hook


@dataclass
class DeviceFigures:
    """Modelled CUDA figures of one estimate (bytes)."""

    allocated: int  # max_memory_allocated during a steady step
    reserved: int  # max_memory_reserved over the run
    workspace: int  # cuBLAS workspace kept plus the largest transient (cuDNN) workspace
    context: Optional[int] = None  # calibrated memory outside the allocator
    device_total: Optional[int] = None  # reserved + context
    calibration: Optional[str] = None  # the calibration file


@dataclass
class MemoryTrace:
    """The allocation/free stream of one traced step (``step_start``: its first event inside
    the step; those before are the registered storages), with the record of every storage
    and which of them a CUDA run keeps on the host."""

    events: list
    step_start: int
    infos: dict
    host: Callable[[StorageInfo], bool]

    @classmethod
    def of(cls, tracker: LiveStorageTracker, host: Callable[[StorageInfo], bool]) -> "MemoryTrace":
        return cls(tracker.events, tracker.step_start, tracker.infos, host)

    def device_events(self) -> tuple[list[MemoryEvent], list[MemoryEvent]]:
        """The registered storages' and the step's events, host storages left out."""
        def on_device(e: MemoryEvent) -> bool:
            return e.tag in ("workspace", "persistent") or not self.host(self.infos[e.serial])

        return ([e for e in self.events[:self.step_start] if on_device(e)],
                [e for e in self.events[self.step_start:] if on_device(e)])


class _Replay:
    """Feeds events to the allocator model, mapping each storage to its live allocation."""

    def __init__(self, config: AllocatorConfig, limit: Optional[int]) -> None:
        self.model = CachingAllocatorModel(config, limit)
        self.keys: dict[Hashable, int] = {}  # event serial -> the model's key of its block
        self._count = itertools.count()
        self.reserved_peak = 0

    def run(self, events: Iterable[MemoryEvent]) -> list[MemoryEvent]:
        """Replay ``events``; returns the step's allocations still alive after them (the
        gradients), not the kept ones (optimizer state, the cuBLAS workspace)."""
        made = []
        for event in events:
            if event.op == "free":
                self.free(event)
            elif not (event.tag == "persistent" and event.serial in self.keys):
                key = next(self._count)
                self.model.malloc(key, event.nbytes)
                self.keys[event.serial] = key
                made.append(event)
        self.reserved_peak = max(self.reserved_peak, self.model.stats.peak_reserved)
        return [e for e in made if e.serial in self.keys and e.tag not in KEPT]

    def free(self, event: MemoryEvent) -> None:
        key = self.keys.pop(event.serial, None)
        if key is not None:
            self.model.free(key)


def _first_step(step: list[MemoryEvent], state: list[MemoryEvent]) -> list[MemoryEvent]:
    """The step with the optimizer state allocated when the optimizer phase begins."""
    at = next((i for i, e in enumerate(step) if e.phase == "optimizer"), len(step))
    return step[:at] + state + step[at:]


def replay_step(trace: MemoryTrace, config: AllocatorConfig,
                limit: Optional[int] = None) -> tuple[int, int]:
    """``(allocated, reserved)`` of the traced step run again and again on a fresh device."""
    prefix, step = trace.device_events()
    state = [e for e in prefix if e.tag == "optimizer_state"]
    replay = _Replay(config, limit)
    replay.run([e for e in prefix if e.tag != "optimizer_state"])
    left = replay.run(_first_step(step, state))
    for _ in range(MAX_STEPS):
        before = replay.model.stats.reserved
        for event in left:
            replay.free(event)
        replay.model.reset_peak()
        left = replay.run(step)
        if replay.model.stats.reserved == before:
            break
    return replay.model.stats.peak_allocated, replay.reserved_peak


def replay_windows(traces: Sequence[MemoryTrace], config: AllocatorConfig,
                   limit: Optional[int] = None) -> int:
    """Reserved peak of inference run on windows of several shapes in turn (``traces``, in
    visiting order, each freeing all it made): the weights of the first, then each window's
    input and step, the sequence repeated until it adds no reserved memory."""
    replay = _Replay(config, limit)
    prefix, _ = traces[0].device_events()
    replay.run([e for e in prefix if e.tag != "input"])
    windows = []
    for i, trace in enumerate(traces):
        head, step = trace.device_events()
        events = [e for e in head if e.tag == "input"] + step
        events += [MemoryEvent("free", e.serial, 0, "input") for e in head if e.tag == "input"]
        windows.append([e._replace(serial=(i, e.serial)) for e in events])
    for _ in range(MAX_STEPS):
        before = replay.model.stats.reserved
        for events in windows:
            replay.run(events)
        if replay.model.stats.reserved == before:
            break
    return replay.reserved_peak


def memory_limit(config: AllocatorConfig, calibration: Optional[Calibration]) -> Optional[int]:
    """The allowed bytes of a per-process memory fraction (needs the card's size)."""
    if calibration is None or config.memory_fraction >= 1.0:
        return None
    return int(config.memory_fraction * calibration.total_bytes)


def device_figures(trace: MemoryTrace, config: AllocatorConfig,
                   calibration: Optional[Calibration]) -> DeviceFigures:
    """Allocated, reserved, workspaces and (calibrated) device total of a traced step."""
    allocated, reserved = replay_step(trace, config, memory_limit(config, calibration))
    kept = sum(e.nbytes for e in trace.events if e.tag == "persistent")
    transient = max((e.nbytes for e in trace.events if e.tag == "workspace"), default=0)
    context = None if calibration is None else calibration.context_bytes
    return DeviceFigures(allocated, reserved, kept + transient, context,
                         None if context is None else reserved + context,
                         None if calibration is None else calibration.source)
