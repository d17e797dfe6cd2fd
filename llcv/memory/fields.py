"""Estimated-memory fields for the per-iteration log, re-estimated only when the model changes.

An estimate costs milliseconds to a few hundred, so it is cached per model *structure* (every
parameter's and buffer's name, shape and dtype): a pruned or replaced model gets new figures on
the next call, an unchanged one costs a dictionary lookup.
"""
from __future__ import annotations

from typing import Any, Mapping, Optional, Sequence

from torch import nn

from llcv.memory.estimate import MemoryEstimate, estimate_peak_memory
from llcv.utils import MB


def structure_key(model: nn.Module) -> tuple:
    """Identity of what the memory estimate depends on: the model object and its tensors'
    names, shapes, dtypes and whether they train."""
    params = tuple((n, tuple(p.shape), p.dtype, p.requires_grad)
                   for n, p in model.named_parameters())
    buffers = tuple((n, tuple(b.shape), b.dtype) for n, b in model.named_buffers())
    return id(model), params, buffers


def _device_fields(prefix: str, est: MemoryEstimate, extra: int = 0) -> dict[str, float]:
    """``<prefix>_alloc_mb``, ``_reserved_mb`` and (calibrated) ``_device_mb`` of a CUDA
    estimate; none for a CPU one."""
    if est.reserved is None:
        return {}
    figures = {f"{prefix}_alloc_mb": (est.allocated + extra) / MB,
               f"{prefix}_reserved_mb": (est.reserved + extra) / MB}
    if est.device_total is not None:
        figures[f"{prefix}_device_mb"] = (est.device_total + extra) / MB
    return figures


class MemoryEstimateFields:
    """``mem/est_train_peak_mb`` at ``train_shape`` and ``mem/est_infer_peak_mb`` at
    ``val_shape`` (either may be None) for the current model, cached per structure. On CUDA
    also the caching allocator's figures: ``mem/est_{train,infer}_alloc_mb``, ``..._reserved_mb``
    and, with a memory calibration, ``..._device_mb`` (see ``MemoryEstimate.peak``).

    ``optimizer`` is the ``train.optim_g`` section (or a name); ``device`` the run's device;
    ``train_target_shape`` the loss target's shape (the GT batch; default: the input's).
    ``extra_train_bytes`` is memory the training process holds beside the step (e.g. an EMA
    copy of the weights), added to the training figure. ``kernel_workspace=False`` leaves out CPU
    kernels' internal scratch buffers, to compare with a measurement that counts tensors only.
    """

    def __init__(self, train_shape: Optional[Sequence[int]], val_shape: Optional[Sequence[int]],
                 optimizer: Any = "AdamW", device: Any = None, amp: Any = False,
                 loss: Any = "l1", train_target_shape: Optional[Sequence[int]] = None,
                 extra_train_bytes: int = 0, kernel_workspace: bool = True) -> None:
        self.train_shape = None if train_shape is None else list(train_shape)
        self.train_target_shape = None if train_target_shape is None else list(train_target_shape)
        self.val_shape = None if val_shape is None else list(val_shape)
        self.optimizer, self.device, self.amp, self.loss = optimizer, device, amp, loss
        self.extra_train_bytes = extra_train_bytes
        self.kernel_workspace = kernel_workspace
        self._key: Optional[tuple] = None
        self._figures: dict[str, float] = {}
        #: The estimates behind the figures (for a breakdown in the log when the model changes).
        self.estimates: dict[str, MemoryEstimate] = {}

    def __call__(self, model: nn.Module) -> Mapping[str, float]:
        """The fields for ``model``; estimates again only if its structure changed."""
        key = structure_key(model)
        if key != self._key:
            self._figures = self._estimate(model)
            self._key = key
        return self._figures

    def _estimate(self, model: nn.Module) -> dict[str, float]:
        figures, self.estimates = {}, {}
        if self.train_shape is not None:
            est = estimate_peak_memory(model, self.train_shape, "train", self.optimizer,
                                       amp=self.amp, device=self.device, loss=self.loss,
                                       target_shape=self.train_target_shape,
                                       kernel_workspace=self.kernel_workspace)
            self.estimates["train"] = est
            figures["mem/est_train_peak_mb"] = (est.total + self.extra_train_bytes) / MB
            figures.update(_device_fields("mem/est_train", est, self.extra_train_bytes))
        if self.val_shape is not None:
            est = estimate_peak_memory(model, self.val_shape, "inference", amp=self.amp,
                                       device=self.device, kernel_workspace=self.kernel_workspace)
            self.estimates["inference"] = est
            figures["mem/est_infer_peak_mb"] = est.total / MB
            figures.update(_device_fields("mem/est_infer", est))
        return figures
