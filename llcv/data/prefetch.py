"""Batch prefetching (``datasets.train.prefetch_mode``): the next batches are ready before needed.

``cpu``: a background thread keeps ``num_batches`` batches ready (helps most with
``num_worker_per_gpu: 0``, where loading otherwise stalls the step). ``cuda``: batches are pinned
and copied to the GPU on a side stream while the current step runs. Both yield exactly the
loader's batches, in its order, so the data stream (and resume) is unchanged.
"""
from __future__ import annotations

import queue
import threading
from typing import Any, Iterator, Optional

import torch

from llcv.errors import OptionError

OPTION = "datasets.train.prefetch_mode"
_DONE = object()


class Prefetcher(Iterator):
    """An iterator over batches with :meth:`close` to release its resources."""

    def close(self) -> None:
        """Stop prefetching; safe to call more than once."""


class PassThrough(Prefetcher):
    """No prefetching: the loader's iterator as is."""

    def __init__(self, loader_iter: Iterator) -> None:
        self.loader_iter = loader_iter

    def __next__(self) -> Any:
        return next(self.loader_iter)


class CPUPrefetcher(Prefetcher):
    """A daemon thread pulls batches from ``loader_iter`` into a queue of ``num_batches``.

    An exception in the thread (a DataError from a corrupt image) is raised by ``next``.
    """

    def __init__(self, loader_iter: Iterator, num_batches: int = 2) -> None:
        self.queue: queue.Queue = queue.Queue(maxsize=num_batches)
        self.stop = threading.Event()
        self.finished = False
        self.thread = threading.Thread(target=self._fill, args=(loader_iter,), daemon=True,
                                       name="llcv-prefetch")
        self.thread.start()

    def _fill(self, loader_iter: Iterator) -> None:
        while not self.stop.is_set():
            try:
                item: Any = next(loader_iter)
            except StopIteration:
                item = _DONE
            except Exception as err:  # handed to the consumer, raised there
                item = err
            if not self._put(item) or item is _DONE or isinstance(item, Exception):
                return

    def _put(self, item: Any) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __next__(self) -> Any:
        if self.finished:
            raise StopIteration
        item = self.queue.get()
        if item is _DONE or isinstance(item, Exception):
            self.finished = True
            if item is _DONE:
                raise StopIteration
            raise item
        return item

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)


class CUDAPrefetcher(Prefetcher):
    """Copies the next batch to ``device`` on a side stream while the caller uses the current one.

    Tensors are pinned first (unless the loader already pinned them) so the copy is
    asynchronous; the consumer's stream waits for the copy before it sees the batch.
    """

    def __init__(self, loader_iter: Iterator, device: torch.device) -> None:
        self.loader_iter, self.device = loader_iter, device
        self.stream = torch.cuda.Stream(device=device)
        self.next_batch: Optional[Any] = None
        self.pending: Optional[BaseException] = None  # StopIteration or a loader error, raised in turn
        self._preload()

    def _to_device(self, value: Any) -> Any:
        if isinstance(value, torch.Tensor):
            pinned = value if value.is_pinned() else value.pin_memory()
            return pinned.to(self.device, non_blocking=True)
        if isinstance(value, dict):
            return {k: self._to_device(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return type(value)(self._to_device(v) for v in value)
        return value

    def _preload(self) -> None:
        try:
            batch = next(self.loader_iter)
        except Exception as err:  # StopIteration too: raised after the batch already copied
            self.next_batch, self.pending = None, err
            return
        with torch.cuda.stream(self.stream):
            self.next_batch = self._to_device(batch)

    def _record(self, value: Any, stream: torch.cuda.Stream) -> None:
        """Tell the caching allocator the batch is used on ``stream`` (not freed early)."""
        if isinstance(value, torch.Tensor):
            value.record_stream(stream)
        elif isinstance(value, dict):
            for v in value.values():
                self._record(v, stream)
        elif isinstance(value, (list, tuple)):
            for v in value:
                self._record(v, stream)

    def __next__(self) -> Any:
        if self.pending is not None:
            raise self.pending
        current = torch.cuda.current_stream(self.device)
        current.wait_stream(self.stream)
        batch = self.next_batch
        self._record(batch, current)
        self._preload()
        return batch


def check_prefetch_mode(mode: Optional[str], device: torch.device) -> None:
    """Fail naming the option unless ``mode`` can run on ``device`` (call it before training)."""
    if mode not in (None, "cpu", "cuda"):
        raise OptionError(f"{OPTION}: '{mode}' is not one of cpu, cuda (or null for none)")
    if mode == "cuda" and torch.device(device).type != "cuda":
        raise OptionError(f"{OPTION}: 'cuda' needs a CUDA device but this run uses '{device}'; "
                          f"use prefetch_mode: cpu (or leave it unset)")


def wrap_prefetch(loader_iter: Iterator, mode: Optional[str], device: torch.device,
                  num_batches: int = 2) -> Prefetcher:
    """``loader_iter`` wrapped as ``mode`` says (None: unchanged); call ``close()`` when done."""
    check_prefetch_mode(mode, device)
    if mode == "cpu":
        return CPUPrefetcher(loader_iter, num_batches)
    if mode == "cuda":
        return CUDAPrefetcher(loader_iter, torch.device(device))
    return PassThrough(loader_iter)
