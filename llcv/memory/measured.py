"""Measured memory over a window (one training iteration): peak since the last reset.

CUDA: the caching allocator's peak allocated and peak reserved bytes (``reset_peak_memory_stats``
each window). CPU: the process resident set size now and its peak in the window — Linux lets a
process reset its RSS high-water mark by writing ``5`` to ``/proc/self/clear_refs``; where that
is not possible the peak is the process-lifetime peak and ``rss_peak_resettable`` says so.
"""
from __future__ import annotations

import resource
import sys

import torch

from llcv.utils import MB



def _read_status_kb(*fields: str) -> dict[str, float]:
    """The ``kB`` values of ``fields`` in ``/proc/self/status`` (empty without ``/proc``)."""
    found: dict[str, float] = {}
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                name, _, rest = line.partition(":")
                if name in fields:
                    found[name] = float(rest.split()[0])
    except OSError:
        return {}
    return found


class MemoryMeter:
    """Reads memory figures for ``device``; ``reset()`` starts a new window, ``read()`` ends it.

    Field names (same in text log, JSONL and TensorBoard): CUDA ``mem/alloc_peak_mb``,
    ``mem/reserved_peak_mb``, ``mem/alloc_mb``; CPU ``mem/rss_mb``, ``mem/rss_peak_mb``.
    """

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)
        self.rss_peak_resettable = self._try_reset_rss_peak()

    @staticmethod
    def _try_reset_rss_peak() -> bool:
        try:
            with open("/proc/self/clear_refs", "w", encoding="ascii") as f:
                f.write("5")
            return True
        except OSError:
            return False

    def reset(self) -> None:
        """Start a new measurement window."""
        if self.device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(self.device)
        elif self.rss_peak_resettable:
            self._try_reset_rss_peak()

    def read(self) -> dict[str, float]:
        """Peak figures since the last ``reset()`` in MiB."""
        if self.device.type == "cuda":
            return {
                "mem/alloc_peak_mb": torch.cuda.max_memory_allocated(self.device) / MB,
                "mem/reserved_peak_mb": torch.cuda.max_memory_reserved(self.device) / MB,
                "mem/alloc_mb": torch.cuda.memory_allocated(self.device) / MB,
            }
        status = _read_status_kb("VmRSS", "VmHWM")
        if "VmRSS" in status and "VmHWM" in status:
            rss_kb, peak_kb = status["VmRSS"], status["VmHWM"]
        else:  # no /proc (e.g. macOS): lifetime peak from getrusage
            scale = 1.0 if sys.platform == "darwin" else 1024.0  # bytes on macOS, KiB on Linux
            rss_kb = peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale / 1024.0
        return {"mem/rss_mb": rss_kb / 1024.0, "mem/rss_peak_mb": peak_kb / 1024.0}

