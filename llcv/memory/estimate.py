"""Estimated peak memory of a model at an input shape, for inference or one training step.

How: the model's real code runs on FakeTensors (``torch._subclasses.FakeTensorMode``) — tensors
with shapes, dtypes, strides and a device but no data — under :class:`LiveStorageTracker`, a
dispatch-level tracker that counts every storage an ATen op returns and drops it when PyTorch
frees it (storage weak references). Nothing is allocated, so any resolution costs the same
milliseconds. Why this rather than a live-range analysis of a traced graph: a traced forward
graph does not contain what autograd saves for backward, the backward pass itself, views and
in-place ops, the optimizer's state and temporaries, or autocast's casts; executing the real code
gets all of them exactly as PyTorch schedules them (including when saved tensors are released).
Why fake tensors rather than the meta device: a fake tensor keeps its target device, so autocast
and device-dependent choices behave as in the real run (a CPU convolution keeps a channels-last
input channels-last, which changes its kernel buffers — on meta, NAFNet's estimate was 23% off;
CUDA picks foreach optimizers). A single-tensor optimizer (CPU) updates one parameter at a time
with temporaries proportional to it, so only its largest parameter's update is run. On top of
the tensors, ``llcv.memory.workspace`` adds what a CPU kernel allocates inside one call (oneDNN
reorder buffers, im2col matrices); on CUDA each storage is rounded to the caching allocator's
512-byte blocks and cuDNN workspaces are not modelled.

A training step is modelled in steady state as llcv's runner does it: gradients set to None,
forward, loss (the output and loss stay referenced until the step ends), backward, optimizer
step, with the optimizer state already allocated by earlier steps. Mixed precision runs forward
and loss under ``torch.autocast`` with fp32 master weights (GradScaler's few scalars are left out).
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Optional, Sequence, Union

import torch
import torch.nn.functional as F
from torch import nn
from torch._subclasses.fake_tensor import FakeTensorMode
from torch.func import functional_call

from llcv.errors import LLCVError, OptionError
from llcv.memory.naming import ModuleNames
from llcv.memory.tracker import LiveStorageTracker, StorageInfo
from llcv.memory.workspace import kernel_extra
from llcv.registry import OPTIMIZERS, lookup
from llcv.utils import MB, is_int, module_device, module_modes

KINDS = ("weight", "input", "optimizer_state", "gradient", "activation", "transient")
LOSSES: dict[str, Callable[[torch.Tensor, torch.Tensor], torch.Tensor]] = {
    "l1": F.l1_loss, "mse": F.mse_loss}


@dataclass
class LiveTensor:
    """A storage alive at the peak: who made it, what it is, how big."""

    name: str  # "<module> / <op>" or the parameter / input name
    kind: str  # one of KINDS
    bytes: int
    shape: list
    dtype: str
    phase: str  # forward, loss, backward, optimizer (or the kind for pre-existing storages)


@dataclass
class MemoryEstimate:
    """Peak bytes and their breakdown; ``total`` is the sum of the six parts."""

    mode: str
    input_shape: list
    device: str
    dtype: str
    amp: Optional[str]
    optimizer: Optional[str]
    weights: int
    inputs: int
    gradients: int
    optimizer_state: int
    activations: int
    transient: int
    total: int
    peak_op: str  # "<module> / <op>" running when the peak was reached
    peak_phase: str
    live_at_peak: list = field(default_factory=list)  # LiveTensor, largest first

    @property
    def total_mb(self) -> float:
        return self.total / MB

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready figures (bytes) with the live list."""
        return asdict(self)

    def format(self, top: int = 8) -> str:
        """A few lines: the total, the breakdown, and the largest tensors live at the peak."""
        what = self.mode if self.optimizer is None else f"{self.mode} ({self.optimizer})"
        lines = [f"estimated {what} peak at {'x'.join(map(str, self.input_shape))}: "
                 f"{self.total / MB:.2f} MiB (at {self.peak_phase}: {self.peak_op})"]
        parts = ("weights", "inputs", "gradients", "optimizer_state", "activations", "transient")
        lines.append("  " + ", ".join(f"{p} {getattr(self, p) / MB:.2f}" for p in parts))
        for t in self.live_at_peak[:top]:
            shape = "x".join(map(str, t.shape))
            lines.append(f"    {t.bytes / MB:9.3f} MiB  {t.kind:<15} {t.name} [{shape}]")
        return "\n".join(lines)


# ---------------------------------------------------------------------- set-up
def _target_device(model: nn.Module, device: Any) -> torch.device:
    if device is not None:
        return torch.device(device)
    found = module_device(model)
    return torch.device("cpu") if found.type == "meta" else found


def _amp_dtype(amp: Union[bool, torch.dtype, str, None], device: torch.device):
    if amp is None or amp is False:
        return None
    if amp is True:
        return torch.get_autocast_dtype(device.type)
    if isinstance(amp, str):
        amp = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16,
               "float16": torch.float16}.get(amp, amp)
    if amp not in (torch.bfloat16, torch.float16):
        raise OptionError(f"amp: expected False, True, 'bf16' or 'fp16', got {amp!r}")
    return amp


def _size_of(device: torch.device) -> Callable[[int], int]:
    """Bytes the device's allocator really holds for a storage of ``n`` bytes."""
    if device.type == "cuda":
        return lambda n: 0 if n == 0 else -(-n // 512) * 512
    return int


def _optimizer_factory(spec: Union[str, Mapping[str, Any]], device: torch.device,
                       kwargs: Optional[Mapping[str, Any]]) -> tuple[type, dict[str, Any]]:
    """The torch optimizer class named by ``spec`` and its options, with the implementation
    (foreach or single-tensor) that a real run on ``device`` uses."""
    cfg = {"type": spec} if isinstance(spec, str) else dict(spec)
    cls = lookup(OPTIMIZERS, cfg.get("type"), "optimizer.type")
    options = {"lr": 1e-3, **{k: v for k, v in cfg.items() if k != "type"}, **(kwargs or {})}
    options = {k: tuple(v) if isinstance(v, list) else v for k, v in options.items()}
    if options.get("foreach") is None:
        # torch picks foreach for real CUDA tensors; meta/fake tensors would fool that check.
        options["foreach"] = device.type in ("cuda", "xpu")
    return cls, options


# ---------------------------------------------------------------------- the run
class _Run:
    """One execution on FakeTensors of the target device: weights and inputs, the tracker,
    the pieces of the step. (The meta device would be faster but loses what depends on the
    device: e.g. a CPU convolution keeps a channels-last input's layout, a meta one does not.)
    A PyTorch built without CUDA cannot run CUDA FakeTensors: a CUDA target then executes on
    CPU FakeTensors, keeping CUDA's allocator rounding, optimizer choice and autocast dtype.
    """

    def __init__(self, model: nn.Module, device: torch.device, dtype: torch.dtype,
                 train: bool, workspace: bool) -> None:
        self.model, self.device, self.dtype, self.train = model, device, dtype, train
        cuda_unbuilt = device.type == "cuda" and not torch.backends.cuda.is_built()
        self.exec_device = torch.device("cpu") if cuda_unbuilt else device
        self.names = ModuleNames(model)
        on_op = (lambda f, a, k, o: kernel_extra(f, a, k, o, device.type)) if workspace else None
        self.tracker = LiveStorageTracker(_size_of(device), on_op, snapshots=True,
                                          namer=self.names)
        self.params: dict[str, torch.Tensor] = {}
        self.state: dict[str, torch.Tensor] = {}
        self.optimizer_options: dict[str, Any] = {}

    def _empty(self, t: torch.Tensor) -> torch.Tensor:
        dtype = self.dtype if t.is_floating_point() else t.dtype
        return torch.empty_strided(t.shape, t.stride(), dtype=dtype, device=self.exec_device)

    def build_state(self) -> None:
        """Parameters (leaves requiring grad in training) and buffers, registered as weights."""
        for name, p in self.model.named_parameters():
            self.params[name] = self._empty(p).requires_grad_(self.train and p.requires_grad)
            self.tracker.register(self.params[name], "weight", name)
        self.state = dict(self.params)
        for name, b in self.model.named_buffers():
            self.state[name] = self._empty(b)
            self.tracker.register(self.state[name], "weight", name)

    def input(self, shape: Sequence[int], name: str) -> torch.Tensor:
        x = torch.empty(tuple(shape), dtype=self.dtype, device=self.exec_device)
        self.tracker.register(x, "input", name)
        return x

    def trainable(self) -> list[torch.Tensor]:
        return [p for p in self.params.values() if p.requires_grad]

    def warm_optimizer(self, cls: type, options: dict[str, Any]) -> torch.optim.Optimizer:
        """The optimizer with its state allocated as after earlier steps (one step on zero
        gradients). A single-tensor optimizer keeps the same state for every parameter, so
        only the largest one is stepped and the others' state is counted by its pattern."""
        params = self.trainable()
        self.optimizer_options = options
        optimizer = cls(params, **options)
        if not params:
            return optimizer
        largest = max(params, key=lambda p: p.numel() * p.element_size())
        warm = params if options["foreach"] else [largest]
        for p in warm:
            p.grad = torch.zeros_like(p)
        twin = cls(warm, **options)
        twin.step()
        optimizer.state.update(twin.state)
        for p in warm:
            p.grad = None
            for key, value in optimizer.state[p].items():
                if isinstance(value, torch.Tensor):
                    self.tracker.register(value, "optimizer_state", f"optimizer.{key}")
        for p in params if not options["foreach"] else ():
            if p is not largest:
                self._register_like(optimizer.state[largest], largest, p)
        return optimizer

    def _register_like(self, pattern: Mapping[str, Any], like: torch.Tensor,
                       p: torch.Tensor) -> None:
        """Count ``p``'s state as ``like``'s: parameter-shaped slots scale, others are copied."""
        for key, value in pattern.items():
            if isinstance(value, torch.Tensor):
                numel = p.numel() if value.shape == like.shape else value.numel()
                shape = tuple(p.shape) if value.shape == like.shape else tuple(value.shape)
                self.tracker.register_bytes(numel * value.element_size(), "optimizer_state",
                                            f"optimizer.{key}", shape,
                                            str(value.dtype).replace("torch.", ""))

    def forward(self, x: torch.Tensor) -> Any:
        return functional_call(self.model, self.state, (x,))


def _optimizer_step(optimizer: torch.optim.Optimizer, options: dict[str, Any]) -> None:
    """The step's memory: a foreach step runs whole; a single-tensor step updates one parameter
    at a time with temporaries proportional to it, so its peak is that of the largest one."""
    if options["foreach"]:
        optimizer.step()
        return
    params = [p for group in optimizer.param_groups for p in group["params"]
              if p.grad is not None]
    if not params:
        return
    largest = max(params, key=lambda p: p.numel() * p.element_size())
    solo = type(optimizer)([largest], **options)
    solo.state[largest] = optimizer.state[largest]
    solo.step()


def _classify(info: StorageInfo, gradients: set[int]) -> str:
    if info.kind:
        return info.kind
    if info.serial in gradients:
        return "gradient"
    return "activation" if info.phase in ("forward", "loss") else "transient"


def _result(run: _Run, gradients: set[int], meta: dict[str, Any]) -> MemoryEstimate:
    snap = run.tracker.snapshot
    live = [LiveTensor(i.name, _classify(i, gradients), i.nbytes, list(i.shape), i.dtype,
                       i.phase) for i in snap.live]
    if snap.extra:
        live.append(LiveTensor(f"{snap.op} [kernel workspace]", "transient", snap.extra, [],
                               "", snap.phase))
    live.sort(key=lambda t: -t.bytes)
    sums = {kind: sum(t.bytes for t in live if t.kind == kind) for kind in KINDS}
    total = sum(sums.values())
    assert total == run.tracker.peak, (total, run.tracker.peak)
    return MemoryEstimate(
        **meta, weights=sums["weight"], inputs=sums["input"], gradients=sums["gradient"],
        optimizer_state=sums["optimizer_state"], activations=sums["activation"],
        transient=sums["transient"], total=total, peak_op=snap.op, peak_phase=snap.phase,
        live_at_peak=live)


def _check_args(input_shape: Sequence[int], mode: str) -> tuple[int, ...]:
    shape = tuple(input_shape)
    if not shape or any(not is_int(n) or n <= 0 for n in shape):
        raise OptionError(f"input_shape: expected positive integers like [1, 3, 256, 256], "
                          f"got {list(input_shape)!r}")
    if mode not in ("inference", "train"):
        raise OptionError(f"mode: expected 'inference' or 'train', got {mode!r}")
    return shape


def _loss_fn(loss: Union[str, Callable]) -> Callable:
    if callable(loss):
        return loss
    if loss not in LOSSES:
        raise OptionError(f"loss: unknown loss {loss!r}; use {', '.join(LOSSES)} or a callable")
    return LOSSES[loss]


def _step(run: _Run, x: torch.Tensor, target: Optional[torch.Tensor],
          optimizer: Optional[torch.optim.Optimizer], loss_fn: Optional[Callable],
          amp_dtype: Optional[torch.dtype]) -> set[int]:
    """Run inference or one training step under the tracker; returns the gradients' serials."""
    tracker = run.tracker
    autocast = (torch.autocast(run.exec_device.type, dtype=amp_dtype) if amp_dtype is not None
                else contextlib.nullcontext())
    with tracker, run.names.hooks():
        if optimizer is None:
            with torch.no_grad(), autocast:
                out = run.forward(x)
            del out
            return set()
        with autocast:
            out = run.forward(x)
            tracker.phase = "loss"
            loss = loss_fn(out, target)
        tracker.phase = "backward"
        loss.backward()
        infos = [tracker.info(p.grad) for p in run.trainable() if p.grad is not None]
        tracker.phase = "optimizer"
        _optimizer_step(optimizer, run.optimizer_options)
        del out, loss  # like the runner, output and loss stay referenced until the step ends
    return {info.serial for info in infos if info is not None}


@dataclass
class _Spec:
    """What to estimate (the checked arguments of :func:`estimate_peak_memory`)."""

    model: nn.Module
    shape: tuple
    device: torch.device
    dtype: torch.dtype
    train: bool
    workspace: bool
    amp_dtype: Optional[torch.dtype]
    loss_fn: Optional[Callable] = None
    optimizer: Optional[tuple] = None  # (class, options)
    target_shape: Optional[tuple] = None


def _execute(spec: _Spec) -> tuple[_Run, set[int]]:
    """Build the data-less weights and inputs and run the step; returns the run and grads."""
    run = _Run(spec.model, spec.device, spec.dtype, spec.train, spec.workspace)
    with FakeTensorMode(allow_non_fake_inputs=True), module_modes(spec.model, spec.train):
        run.build_state()
        x = run.input(spec.shape, "input")
        optimizer = target = None
        if spec.train:
            target = run.input(spec.target_shape or spec.shape, "target")
            optimizer = run.warm_optimizer(*spec.optimizer)
        return run, _step(run, x, target, optimizer, spec.loss_fn, spec.amp_dtype)


def estimate_peak_memory(model: nn.Module, input_shape: Sequence[int], mode: str = "inference",
                         optimizer: Union[str, Mapping[str, Any]] = "AdamW",
                         dtype: torch.dtype = torch.float32,
                         amp: Union[bool, str, torch.dtype] = False, device: Any = None,
                         loss: Union[str, Callable] = "l1",
                         target_shape: Optional[Sequence[int]] = None,
                         optimizer_kwargs: Optional[Mapping[str, Any]] = None,
                         kernel_workspace: bool = True) -> MemoryEstimate:
    """Peak memory of ``model`` on ``input_shape`` without running it on real memory.

    ``mode``: ``inference`` (eval mode, no grad) or ``train`` (one steady-state step with
    ``optimizer``: a name — SGD, Adam, AdamW — or an ``optim_g``-style dict, plus
    ``optimizer_kwargs``; the loss ``l1``, ``mse`` or a callable against a target of
    ``target_shape``, default the input's shape). ``dtype`` is that of weights and inputs;
    ``amp`` runs forward and loss under autocast (True: the device's default, or 'bf16'/'fp16').
    ``device`` defaults to the model's (CPU for a model on the meta device).
    ``kernel_workspace=False`` leaves out kernel-internal buffers. The model's weights are never
    touched and every module's train/eval mode is restored.
    """
    shape = _check_args(input_shape, mode)
    device = _target_device(model, device)
    train = mode == "train"
    spec = _Spec(model, shape, device, dtype, train, kernel_workspace, _amp_dtype(amp, device),
                 _loss_fn(loss) if train else None,
                 _optimizer_factory(optimizer, device, optimizer_kwargs) if train else None,
                 tuple(target_shape) if target_shape else None)
    meta = {"mode": mode, "input_shape": list(shape), "device": str(device),
            "dtype": str(dtype).replace("torch.", ""),
            "amp": None if spec.amp_dtype is None else str(spec.amp_dtype).replace("torch.", ""),
            "optimizer": spec.optimizer[0].__name__ if train else None}
    try:
        run, gradients = _execute(spec)
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[0][:300] if str(err).strip() else repr(err)
        raise LLCVError(f"input_shape: {type(model).__name__} cannot run on {list(shape)} "
                        f"({detail})") from None
    return _result(run, gradients, meta)
