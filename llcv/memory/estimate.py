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
512-byte blocks, and the allocation/free stream of the step is replayed through a model of the
caching allocator (``llcv.memory.cuda_estimate``) for what the card really holds: ``allocated``
(block sizes, library workspaces), ``reserved`` (segments) and, with a device calibration
(``llcv.memory.calibration``), the ``device`` total with the CUDA context.

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
from llcv.memory.alloc_conf import AllocatorConfig
from llcv.memory.calibration import Calibration, resolve_calibration
from llcv.memory.cuda_estimate import DeviceFigures, MemoryTrace, device_figures, workspace_hook
from llcv.memory.naming import ModuleNames
from llcv.memory.tracker import LiveStorageTracker, StorageInfo
from llcv.memory.workspace import kernel_extra
from llcv.registry import OPTIMIZERS, lookup
from llcv.utils import MB, is_int, module_device, module_modes

KINDS = ("weight", "input", "optimizer_state", "gradient", "activation", "transient")
#: What a memory budget may mean: the tensors' peak, the CUDA allocator's allocated or reserved
#: peak, or the device total (reserved plus the calibrated context). On CPU all are the tensors'.
MEMORY_KINDS = ("tensors", "allocated", "reserved", "device")
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
    # CUDA targets (None on CPU): the caching allocator's peaks and what sits outside it
    allocated: Optional[int] = None  # max_memory_allocated: blocks, incl. library workspaces
    reserved: Optional[int] = None  # max_memory_reserved: segments
    workspace: Optional[int] = None  # cuBLAS workspace kept + largest cuDNN workspace
    context: Optional[int] = None  # calibrated CUDA context (None: no calibration)
    device_total: Optional[int] = None  # reserved + context
    calibration: Optional[str] = None  # the calibration file used
    trace = None  # (not a field) the MemoryTrace of a CUDA estimate made with keep_trace

    @property
    def total_mb(self) -> float:
        return self.total / MB

    def peak(self, kind: str = "reserved") -> int:
        """The peak bytes a budget of ``kind`` (one of MEMORY_KINDS) is checked against; on CPU
        every kind is the tensors' peak ``total``. ``device`` needs a calibration."""
        if kind not in MEMORY_KINDS:
            raise OptionError(f"memory kind: expected one of {', '.join(MEMORY_KINDS)}, "
                              f"got {kind!r}")
        if self.reserved is None:
            return self.total
        if kind == "device" and self.device_total is None:
            raise OptionError("memory kind 'device': the CUDA context is not known; measure it "
                              "once with tools/calibrate_memory.py and pass the file (or set "
                              "LLCV_MEMORY_CALIBRATION)")
        return {"tensors": self.total, "allocated": self.allocated, "reserved": self.reserved,
                "device": self.device_total}[kind]

    def device_line(self) -> str:
        """``tensors -> allocated -> reserved -> device total`` (MiB) of a CUDA estimate."""
        line = (f"  on the device: tensors {self.total / MB:.2f} -> allocated "
                f"{self.allocated / MB:.2f} (workspaces {self.workspace / MB:.2f}) -> reserved "
                f"{self.reserved / MB:.2f} -> device total ")
        if self.device_total is None:
            return line + "unknown (no calibration: run tools/calibrate_memory.py)"
        return line + (f"{self.device_total / MB:.2f} (context {self.context / MB:.2f}, "
                       f"{self.calibration})")

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
        if self.reserved is not None:
            lines.append(self.device_line())
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


def _capability(device: torch.device) -> Optional[tuple]:
    """Compute capability of the CUDA target when a card is present (else unknown)."""
    if device.type == "cuda" and torch.cuda.is_available():
        return tuple(torch.cuda.get_device_capability(device))
    return None


def _device_calibration(device: torch.device, calibration: Any) -> Optional[Calibration]:
    """The calibration for a CUDA target (argument or LLCV_MEMORY_CALIBRATION), checked
    against the card when one is present."""
    if device.type != "cuda":
        return None
    found = resolve_calibration(calibration)
    if found is not None and torch.cuda.is_available():
        name = torch.cuda.get_device_name(device)
        if name != found.device_name:
            raise OptionError(f"calibration: {found.source} was measured on "
                              f"{found.device_name!r}, this card is {name!r}; calibrate it "
                              f"with tools/calibrate_memory.py")
    return found


def _allocator_config(allocator: Union[AllocatorConfig, str, None]) -> AllocatorConfig:
    """The caching allocator's options: given, a PYTORCH_CUDA_ALLOC_CONF-style string, or
    the process environment's."""
    if isinstance(allocator, AllocatorConfig):
        return allocator
    return AllocatorConfig.from_env() if allocator is None else AllocatorConfig.parse(allocator)


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
                 train: bool, workspace: bool, calibration: Optional[Calibration] = None) -> None:
        self.model, self.device, self.dtype, self.train = model, device, dtype, train
        cuda = device.type == "cuda"
        self.exec_device = torch.device("cpu") if cuda and not torch.backends.cuda.is_built() \
            else device
        self.names = ModuleNames(model)
        on_op = (lambda f, a, k, o: kernel_extra(f, a, k, o, device.type)) if workspace else None
        library = workspace_hook(calibration, _capability(device)) if cuda and workspace \
            else None
        self.tracker = LiveStorageTracker(_size_of(device), on_op, snapshots=True,
                                          namer=self.names, record_events=cuda,
                                          workspace=library)
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

    def on_host(self, info: StorageInfo) -> bool:
        """A storage a CUDA run keeps in host memory: a CPU tensor, or (when CPU tensors stand
        in for CUDA ones) an optimizer's scalar ``step``, which torch.optim keeps on the CPU
        unless ``capturable`` or ``fused``."""
        if self.exec_device.type == "cuda":
            return info.device == "cpu"
        options = self.optimizer_options
        return info.kind == "optimizer_state" and info.name == "optimizer.step" and \
            info.shape == () and not options.get("capturable") and not options.get("fused")


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


def _result(run: _Run, gradients: set[int], meta: dict[str, Any],
            device: Optional[DeviceFigures] = None) -> MemoryEstimate:
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
        live_at_peak=live, **({} if device is None else asdict(device)))


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
    allocator: AllocatorConfig = field(default_factory=AllocatorConfig)
    calibration: Optional[Calibration] = None


def _execute(spec: _Spec) -> tuple[_Run, set[int]]:
    """Build the data-less weights and inputs and run the step; returns the run and grads."""
    run = _Run(spec.model, spec.device, spec.dtype, spec.train, spec.workspace, spec.calibration)
    with FakeTensorMode(allow_non_fake_inputs=True), module_modes(spec.model, spec.train):
        run.build_state()
        x = run.input(spec.shape, "input")
        optimizer = target = None
        if spec.train:
            target = run.input(spec.target_shape or spec.shape, "target")
            optimizer = run.warm_optimizer(*spec.optimizer)
        return run, _step(run, x, target, optimizer, spec.loss_fn, spec.amp_dtype)


def output_shape(model: nn.Module, shape: Sequence[int], dtype: torch.dtype = torch.float32
                 ) -> tuple:
    """The shape of ``model``'s output for an input of ``shape``, from a data-less forward (on
    the meta device, or on fake tensors: no memory used, no weight touched)."""
    device = module_device(model)
    with torch.no_grad(), module_modes(model, False):
        if device.type == "meta":
            return tuple(model(torch.empty(tuple(shape), dtype=dtype, device=device)).shape)
        with FakeTensorMode(allow_non_fake_inputs=True):
            return tuple(model(torch.empty(tuple(shape), dtype=dtype, device=device)).shape)


def estimate_peak_memory(model: nn.Module, input_shape: Sequence[int], mode: str = "inference",
                         optimizer: Union[str, Mapping[str, Any]] = "AdamW",
                         dtype: torch.dtype = torch.float32,
                         amp: Union[bool, str, torch.dtype] = False, device: Any = None,
                         loss: Union[str, Callable] = "l1",
                         target_shape: Optional[Sequence[int]] = None,
                         optimizer_kwargs: Optional[Mapping[str, Any]] = None,
                         kernel_workspace: bool = True,
                         allocator: Union[AllocatorConfig, str, None] = None,
                         calibration: Union[Calibration, str, None, bool] = None,
                         keep_trace: bool = False) -> MemoryEstimate:
    """Peak memory of ``model`` on ``input_shape`` without running it on real memory.

    ``mode``: ``inference`` (eval mode, no grad) or ``train`` (one steady-state step with
    ``optimizer``: a name — SGD, Adam, AdamW — or an ``optim_g``-style dict, plus
    ``optimizer_kwargs``; the loss ``l1``, ``mse`` or a callable against a target of
    ``target_shape``, default the output's shape: an SR network's is its input's times the
    scale). ``dtype`` is that of weights and inputs;
    ``amp`` runs forward and loss under autocast (True: the device's default, or 'bf16'/'fp16').
    ``device`` defaults to the model's (CPU for a model on the meta device).
    ``kernel_workspace=False`` leaves out kernel-internal buffers (and library workspaces).
    For a CUDA target, ``allocator`` gives the caching allocator's options (an
    ``AllocatorConfig`` or a ``PYTORCH_CUDA_ALLOC_CONF`` string; default: the environment's)
    and ``calibration`` the device's memory calibration (a file, a ``Calibration``, None for
    ``LLCV_MEMORY_CALIBRATION``, False for none); the estimate then also has ``allocated``,
    ``reserved`` and (calibrated) ``device_total``: read a budget's figure with
    ``estimate.peak(kind)``; ``keep_trace`` keeps the step's allocation stream on the
    estimate (``estimate.trace``, to replay several in turn). The model's weights are never
    touched and every module's train/eval mode is restored.
    """
    shape = _check_args(input_shape, mode)
    device = _target_device(model, device)
    train = mode == "train"
    if train and not target_shape:
        target_shape = output_shape(model, shape, dtype)
    spec = _Spec(model, shape, device, dtype, train, kernel_workspace, _amp_dtype(amp, device),
                 _loss_fn(loss) if train else None,
                 _optimizer_factory(optimizer, device, optimizer_kwargs) if train else None,
                 tuple(target_shape) if target_shape else None, _allocator_config(allocator),
                 _device_calibration(device, calibration))
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
    if device.type != "cuda":
        return _result(run, gradients, meta)
    trace = MemoryTrace.of(run.tracker, run.on_host)
    est = _result(run, gradients, meta, device_figures(trace, spec.allocator, spec.calibration))
    if keep_trace:
        est.trace = trace
    return est
