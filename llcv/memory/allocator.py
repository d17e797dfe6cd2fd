"""Allocator-level measured memory: the peak of bytes PyTorch holds over a window (an iteration).

CUDA: the caching allocator's own counter, ``max_memory_allocated`` after
``reset_peak_memory_stats`` — it knows every block, so the figure is absolute.

CPU has no such counter. Two methods, both measuring what is allocated *during* the window on top
of ``resident`` (the bytes alive when it starts — weights, optimizer state, the batch — which
the caller knows; :func:`resident_bytes` sums them):

- ``profiler`` (default, exact): the profiler's allocator memory events (``profile_memory``)
  report every allocation and free made by PyTorch's CPU allocator in this thread — tensors
  and the buffers kernels use internally (oneDNN reorders, im2col). The peak of their running
  sum is the allocator's own peak. About 20-40 us per ATen op.
- ``tensors`` (cheaper, ~10 us per op): a dispatch-level tracker of the storages ops return
  (``llcv.memory.tracker``); it misses kernel-internal buffers, typically 10-50% of a CPU
  convolution network's peak.

Frees of blocks allocated before profiling started are not reported by the profiler (PyTorch logs
"Memory block of unknown size"), so measure consecutive windows, or free such blocks (e.g. the
previous iteration's gradients) before the window starts. Allocations made by other threads
(DataLoader pin-memory thread) are not seen on CPU.
"""
from __future__ import annotations

import contextlib
import os
import sys
from typing import Any, Iterable, Iterator, Optional

import torch
from torch import nn

from llcv.errors import OptionError
from llcv.memory.tracker import LiveStorageTracker
from llcv.utils import MB

METHODS = ("auto", "profiler", "tensors")


def _storages(obj: Any, seen: dict[int, int]) -> None:
    """Collect ``storage pointer -> bytes`` of every tensor in ``obj`` (recursively)."""
    if isinstance(obj, torch.Tensor):
        if obj.device.type != "meta":
            st = obj.untyped_storage()
            seen[st.data_ptr() or id(st)] = st.nbytes()
        if obj.grad is not None:
            _storages(obj.grad, seen)
    elif isinstance(obj, nn.Module):
        for t in list(obj.parameters()) + list(obj.buffers()):
            _storages(t, seen)
    elif isinstance(obj, torch.optim.Optimizer):
        _storages(list(obj.state.values()), seen)
    elif isinstance(obj, dict):
        for value in obj.values():
            _storages(value, seen)
    elif isinstance(obj, (list, tuple, set)):
        for value in obj:
            _storages(value, seen)


def resident_bytes(*objects: Any) -> int:
    """Bytes of the distinct storages behind modules (parameters, buffers, their gradients),
    optimizers (state), tensors and containers of them — each shared storage counted once."""
    seen: dict[int, int] = {}
    for obj in objects:
        _storages(obj, seen)
    return sum(seen.values())


@contextlib.contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence file descriptor 2: kineto prints a line on every profiler start and stop."""
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _ProfilerWindow:
    """CPU allocator events through the low-level profiler API (no event post-processing)."""

    def __init__(self) -> None:
        from torch._C import _autograd, _profiler

        self._autograd = _autograd
        self._activities = {_profiler.ProfilerActivity.CPU}
        self._config = _profiler.ProfilerConfig(
            _profiler.ProfilerState.KINETO, False, True, False, False, False,
            _profiler._ExperimentalConfig())

    def start(self) -> bool:
        if self._autograd._profiler_enabled():  # someone else is profiling: do not interfere
            return False
        try:
            with _quiet_stderr():
                self._autograd._prepare_profiler(self._config, self._activities)
                self._autograd._enable_profiler(self._config, self._activities)
        except RuntimeError:  # a build without the Kineto profiler: no figure, no failure
            return False
        return True

    def stop(self) -> int:
        """Peak of the running sum of CPU allocations minus frees since ``start``."""
        with _quiet_stderr():
            result = self._autograd._disable_profiler()
        cpu = torch._C._autograd.DeviceType.CPU
        events = [(e.start_ns(), e.nbytes()) for e in result.events()
                  if e.name() == "[memory]" and e.device_type() == cpu]
        events.sort(key=lambda item: item[0])
        level = peak = 0
        for _, nbytes in events:
            level += nbytes
            peak = max(peak, level)
        return peak


class _TensorWindow:
    """Dispatch-level tracker of returned storages (no kernel-internal buffers). One tracker
    serves every window, so a storage made in one window and freed in a later one counts."""

    def __init__(self) -> None:
        self.tracker = LiveStorageTracker()
        self._base = 0

    def start(self) -> bool:
        self._base = self.tracker.peak = self.tracker.level
        self.tracker.__enter__()
        return True

    def stop(self) -> int:
        self.tracker.__exit__(None, None, None)
        return self.tracker.peak - self._base


class AllocatorPeakMeter:
    """Peak allocator bytes over a window: ``start(resident)`` ... ``stop()`` or ``window()``.

    ``method``: ``auto`` (CUDA counter on CUDA, ``profiler`` on CPU), ``profiler`` or ``tensors``
    (CPU). ``enabled=False`` makes every call a no-op returning no figures, so a caller can keep
    one code path and switch the (small) per-op cost off. The figure is ``mem/alloc_peak_mb``.
    """

    def __init__(self, device: Any = "cpu", method: str = "auto", enabled: bool = True) -> None:
        if method not in METHODS:
            raise OptionError(f"method: expected one of {', '.join(METHODS)}, got {method!r}")
        self.device = torch.device(device)
        self.enabled = enabled
        self.method = "cuda" if self.device.type == "cuda" else (
            "profiler" if method == "auto" else method)
        self._window = {"profiler": _ProfilerWindow, "tensors": _TensorWindow}.get(
            self.method, lambda: None)()
        self._resident = 0
        self._running = False
        #: Peak bytes of the last finished window (None when not measured).
        self.peak_bytes: Optional[int] = None

    def start(self, resident: int = 0) -> None:
        """Open a window; ``resident`` = bytes alive now (ignored on CUDA, which knows them)."""
        if not self.enabled or self._running:
            return
        self._resident = resident
        if self.method == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
            self._running = True
        else:
            self._running = self._window.start()

    def stop(self) -> dict[str, float]:
        """Close the window: ``{"mem/alloc_peak_mb": ...}`` (empty if nothing was measured)."""
        if not self._running:
            self.peak_bytes = None
            return {}
        self._running = False
        if self.method == "cuda":
            self.peak_bytes = torch.cuda.max_memory_allocated(self.device)
        else:
            self.peak_bytes = self._resident + self._window.stop()
        return {"mem/alloc_peak_mb": self.peak_bytes / MB}

    @contextlib.contextmanager
    def window(self, resident: int = 0) -> Iterator["AllocatorPeakMeter"]:
        """``with meter.window(resident): ...`` then read ``meter.peak_bytes``."""
        self.start(resident)
        try:
            yield self
        finally:
            self.stop()


def measure_peak(fn: Any, device: Any = "cpu", resident: Iterable[Any] = (),
                 method: str = "auto") -> int:
    """Run ``fn()`` once and return its allocator peak in bytes, counting ``resident`` objects
    (modules, optimizers, tensors) as alive throughout."""
    meter = AllocatorPeakMeter(device, method)
    with meter.window(resident_bytes(*resident)):
        fn()
    return meter.peak_bytes
