"""A dispatch-level tracker of live tensor storages: the core of both the estimator and the cheap
``tensors`` measurement.

Every ATen call below autograd passes through :class:`LiveStorageTracker` (a
``TorchDispatchMode``). A storage returned by an op for the first time is counted, and a weak
reference to its Python object (kept alive by PyTorch as long as the C++ storage lives) tells
exactly when it is freed — by Python, by autograd releasing a saved tensor, or by an optimizer.
Views and in-place results share their input's storage and add nothing. What this cannot see is
memory a kernel allocates and frees inside one call (oneDNN reorder buffers, im2col columns);
``on_op`` lets the caller add that as a per-op extra (see ``llcv.memory.workspace``).

With ``record_events`` the tracker also keeps, in order, every allocation and free of a storage
(:class:`MemoryEvent`) — what a model of an allocator (``llcv.memory.cuda_allocator``) replays —
and ``workspace(func, args, kwargs, out)`` adds library workspaces to that stream only: a
transient buffer allocated and freed inside the op, and named buffers kept from first use on
(e.g. the cuBLAS workspace). The byte counts (``level``, ``peak``) never include them.
"""
from __future__ import annotations

import itertools
import weakref
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, NamedTuple, Optional

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_leaves


@dataclass(eq=False)
class StorageInfo:
    """One tracked storage: its size and who made it (for the breakdown of a peak)."""

    serial: int
    nbytes: int
    name: str  # "<module> / <op>", or what the caller registered it as
    phase: str  # forward, loss, backward, optimizer; or the registered kind
    shape: tuple = ()
    dtype: str = ""
    kind: str = ""  # set for registered storages (weight, input, optimizer_state)
    device: str = ""  # device type of the tensor that made it


class MemoryEvent(NamedTuple):
    """One allocation or free of a storage, in the order PyTorch makes them."""

    op: str  # "alloc" or "free"
    serial: Hashable  # the storage's StorageInfo.serial (or a workspace's own number)
    nbytes: int  # bytes requested (the storage's size, unrounded); 0 for a free
    phase: str  # forward, loss, backward, optimizer; or the registered kind
    tag: str = ""  # registered kind, "workspace" (transient), "persistent" (kept from first use)


@dataclass
class PeakSnapshot:
    """The live storages when the running total reached its maximum, plus a kernel's extra."""

    level: int = 0
    live: list = field(default_factory=list)
    extra: int = 0  # kernel-internal bytes of the op at the peak
    op: str = ""  # "<module> / <op>" at the peak
    phase: str = ""


def _storage(t: torch.Tensor) -> Optional[torch.UntypedStorage]:
    """The untyped storage of ``t``, or None for tensors without one (sparse, nested, ...)."""
    try:
        return t.untyped_storage()
    except (RuntimeError, NotImplementedError):
        return None


class LiveStorageTracker(TorchDispatchMode):
    """Running total and peak of bytes held by tracked storages, updated at every ATen call.

    ``size_of(nbytes)`` maps a storage size to what the allocator really holds (e.g. CUDA's
    512-byte rounding). ``on_op(func, args, kwargs, out)`` returns kernel-internal bytes alive
    at the op's internal peak on top of its outputs. ``snapshots`` keeps the live list at the
    peak (costs a list copy at every new peak); ``namer()`` names an op for that list.
    """

    def __init__(self, size_of: Callable[[int], int] = int,
                 on_op: Optional[Callable[..., int]] = None, snapshots: bool = False,
                 namer: Optional[Callable[[Any], str]] = None, record_events: bool = False,
                 workspace: Optional[Callable[..., tuple[int, dict[str, int]]]] = None) -> None:
        super().__init__()
        self.size_of, self.on_op, self.snapshots, self.namer = size_of, on_op, snapshots, namer
        self.workspace = workspace
        #: Allocations and frees in order (with ``record_events``); ``step_start`` is the index
        #: of the first one made inside the tracker (those before are registered storages).
        self.events: Optional[list[MemoryEvent]] = [] if record_events else None
        self.step_start = 0
        self.infos: dict[int, StorageInfo] = {}  # every recorded storage, by serial
        self._persistent: set[str] = set()
        self._closed = False  # set on exit: later frees (the run torn down) are not recorded
        self._event_serial: dict[int, int] = {}  # storage key -> serial of its live allocation
        self.live: dict[int, StorageInfo] = {}
        self._refs: dict[int, weakref.ref] = {}
        self._serials = itertools.count()
        self.level = 0
        self.peak = 0
        self.phase = "forward"
        self.snapshot = PeakSnapshot()

    # ------------------------------------------------------------------ bookkeeping
    def _release(self, key: int, _ref: Any = None) -> None:
        info = self.live.pop(key, None)
        self._refs.pop(key, None)
        if info is not None:
            self.level -= info.nbytes
            if info.nbytes:
                self._record("free", self._event_serial.pop(key, info.serial), 0, info.phase)

    def _record(self, op: str, serial: int, nbytes: int, phase: str, tag: str = "",
                info: Optional[StorageInfo] = None) -> None:
        """Append an event (when recording); an allocation of ``info`` keeps its record."""
        if self.events is None or self._closed:
            return
        self.events.append(MemoryEvent(op, serial, nbytes, phase, tag))
        if info is not None:
            self.infos[serial] = info

    def _track(self, t: torch.Tensor, name: str, phase: str, kind: str = "") -> int:
        """Count ``t``'s storage if new (or grown); returns the bytes added."""
        st = _storage(t)
        if st is None:
            return 0
        key = st._cdata
        raw = st.nbytes()
        nbytes = self.size_of(raw)
        info = self.live.get(key)
        if info is not None:
            grown = nbytes - info.nbytes  # resize_ / out= variants may enlarge a storage
            if grown > 0:
                info.nbytes = nbytes
                self.level += grown
                self._regrow(key, raw, info)
            return max(grown, 0)
        info = StorageInfo(next(self._serials), nbytes, name, phase, tuple(t.shape),
                           str(t.dtype).replace("torch.", ""), kind, t.device.type)
        self.live[key] = info
        self._refs[key] = weakref.ref(st, lambda ref, key=key: self._release(key))
        self.level += nbytes
        if raw:
            self._record("alloc", info.serial, raw, phase, kind, info)
        return nbytes

    def _regrow(self, key: int, raw: int, info: StorageInfo) -> None:
        """A grown storage is a new allocation, then the old one's free (as ``resize_`` does)."""
        if self.events is None or raw == 0:
            return
        serial, old = next(self._serials), self._event_serial.get(key, info.serial)
        self._record("alloc", serial, raw, self.phase, "", info)
        if old in self.infos:  # (a storage grown from 0 bytes had no allocation)
            self._record("free", old, 0, self.phase)
        self._event_serial[key] = serial

    def register(self, tensor: torch.Tensor, kind: str, name: str) -> None:
        """Count a storage that exists before tracking starts (weights, inputs, state); the
        peak takes it into account when the tracker is entered."""
        self._track(tensor, name, kind, kind)

    def register_bytes(self, nbytes: int, kind: str, name: str, shape: tuple = (),
                       dtype: str = "") -> None:
        """Count ``nbytes`` that stay allocated throughout without a tensor to watch."""
        serial = next(self._serials)
        info = StorageInfo(serial, self.size_of(nbytes), name, kind, shape, dtype, kind)
        self.live[-1 - serial] = info
        self.level += info.nbytes
        if nbytes:
            self._record("alloc", serial, nbytes, kind, kind, info)

    def info(self, tensor: torch.Tensor) -> Optional[StorageInfo]:
        """The record of ``tensor``'s storage, if tracked and alive."""
        st = _storage(tensor)
        return None if st is None else self.live.get(st._cdata)

    def _bump(self, extra: int, op: str) -> None:
        if self.level + extra > self.peak:
            self.peak = self.level + extra
            if self.snapshots:
                self.snapshot = PeakSnapshot(self.level, list(self.live.values()), extra, op,
                                             self.phase)

    # ------------------------------------------------------------------ dispatch
    def __enter__(self):
        self._bump(0, "(before the first op)")  # registered storages alone may be the peak
        self.step_start = len(self.events) if self.events is not None else 0
        return super().__enter__()

    def __exit__(self, *exc: Any) -> Any:
        result = super().__exit__(*exc)
        self._closed = True
        return result

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = self.namer(func) if self.namer is not None else ""
        for t in tree_leaves(out):
            if isinstance(t, torch.Tensor):
                self._track(t, name, self.phase)
        extra = self.on_op(func, args, kwargs, out) if self.on_op is not None else 0
        if self.workspace is not None and self.events is not None:
            self._workspace_events(*self.workspace(func, args, kwargs, out))
        self._bump(extra, name)
        return out

    def _workspace_events(self, transient: int, persistent: dict[str, int]) -> None:
        """A transient workspace allocated and freed inside the op; named ones kept."""
        for name, nbytes in persistent.items():
            if name not in self._persistent and nbytes > 0:
                self._persistent.add(name)
                self._record("alloc", next(self._serials), nbytes, self.phase, "persistent")
        if transient > 0:
            serial = next(self._serials)
            self._record("alloc", serial, transient, self.phase, "workspace")
            self._record("free", serial, 0, self.phase, "workspace")
