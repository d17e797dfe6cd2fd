"""Kernel-internal memory: bytes a CPU kernel allocates and frees inside one ATen call.

A dispatch-level tracker sees the tensors an op returns, not the buffers its kernel uses on the
way, yet those count in the allocator's peak: on CPU a oneDNN convolution reorders its input,
weights and output into channel-blocked layouts (channels padded to 16 with AVX-512, 8 with
AVX2), the native fallback builds an im2col matrix, LayerNorm copies a non-contiguous input.
Each rule below returns the bytes alive at the kernel's internal peak *on top of* its outputs.
They were read off allocator traces (``torch.profiler`` memory events) of PyTorch 2.x / oneDNN
3.x and are checked end to end by ``tools/bench_memory.py``. The backend choice mirrors ATen's
(``ConvParams::use_mkldnn``). CUDA workspaces (cuDNN, cuBLAS) depend on the algorithm picked at
run time and are not modelled: on CUDA the rules add nothing.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Sequence

import torch

aten = torch.ops.aten

#: Deconvolution-type oneDNN kernels keep one image of output plus this much scratch.
DECONV_SCRATCH_CONST = 28848
#: Constant scratch of a oneDNN channels-last convolution and of a weight-gradient reduction.
NHWC_SCRATCH_CONST = 12336
WGRAD_SCRATCH_CONST = 8448


@functools.lru_cache(maxsize=None)
def cpu_block() -> int:
    """oneDNN's channel block for fp32 on this CPU: 16 with AVX-512, else 8."""
    return 16 if "AVX512" in torch.backends.cpu.get_cpu_capability() else 8


def _pad(channels: int, block: int) -> int:
    return -(-channels // block) * block


def _nbytes(t: Any) -> int:
    return t.numel() * t.element_size() if isinstance(t, torch.Tensor) else 0


def _channels_last(t: torch.Tensor) -> bool:
    return not t.is_contiguous() and t.is_contiguous(memory_format=torch.channels_last)


def _use_mkldnn(x: torch.Tensor, w: torch.Tensor, stride: Sequence[int],
                dilation: Sequence[int], groups: int) -> bool:
    """ATen's choice of oneDNN over the native CPU convolution (ConvParams::use_mkldnn)."""
    if not torch.backends.mkldnn.is_available() or not torch.backends.mkldnn.enabled:
        return False
    if x.dtype in (torch.bfloat16, torch.float16):
        return True
    if x.dtype != torch.float32:
        return False
    one_by_one = w.shape[-1] == 1 and w.shape[-2] == 1
    strided, dilated = any(s != 1 for s in stride), any(d != 1 for d in dilation)
    worth = strided or dilated or x.shape[0] >= 16 or not one_by_one \
        or torch.get_num_threads() > 1
    big = groups > 1 or (w.shape[-1] > 3 and w.shape[-2] > 3) or x.shape[0] > 1 \
        or x.numel() > 20480
    return worth and big


class _Conv:
    """Shapes of one 2-D convolution call: batch, channels, sizes, kernel, element size."""

    def __init__(self, x: torch.Tensor, w: torch.Tensor, y_shape: Sequence[int], groups: int,
                 transposed: bool) -> None:
        self.n, self.h, self.w = x.shape[0], x.shape[-2], x.shape[-1]
        self.ho, self.wo = y_shape[-2], y_shape[-1]
        self.k = w.shape[-2] * w.shape[-1]
        self.ic = w.shape[0] if transposed else w.shape[1] * groups
        self.oc = w.shape[1] * groups if transposed else w.shape[0]
        self.groups, self.e, self.b = groups, x.element_size(), cpu_block()
        self.depthwise = groups > 1 and groups == self.ic == self.oc

    def act(self, channels: int, out: bool) -> int:
        """Bytes of a blocked (channel-padded) copy of the input or output activation."""
        size = self.ho * self.wo if out else self.h * self.w
        return self.n * _pad(channels, self.b) * size * self.e

    def weights(self, ic_padded: bool = True) -> int:
        """Bytes of a blocked copy of the weights."""
        if self.depthwise:
            return _pad(self.oc, self.b) * self.k * self.e
        ic = _pad(self.ic, self.b) if ic_padded else self.ic
        return _pad(self.oc, self.b) * (ic // self.groups) * self.k * self.e

    def deconv_scratch(self, channels: int, out: bool) -> int:
        """One image of a deconvolution kernel's result plus a constant."""
        size = self.ho * self.wo if out else self.h * self.w
        return _pad(channels, self.b) * size * self.e + DECONV_SCRATCH_CONST


def _native_columns(c: _Conv, transposed: bool, stride, padding) -> int:
    """The im2col / col2im matrix of ATen's native (slow) CPU convolution."""
    if transposed:
        return c.oc * c.k * c.h * c.w * c.e
    if c.k == 1 and all(s == 1 for s in stride) and all(p == 0 for p in padding):
        return 0
    return c.n * (c.ic // c.groups) * c.k * c.ho * c.wo * c.e


def _conv_forward(args: Sequence[Any], kwargs: dict, out: Any) -> int:
    x, w, bias, stride, padding, dilation, transposed, _, groups = args[:9]
    if x.dim() != 4:
        return 0
    c = _Conv(x, w, out.shape, groups, transposed)
    y = _nbytes(out)
    if not _use_mkldnn(x, w, stride, dilation, groups):
        return _native_columns(c, transposed, stride, padding)
    if _channels_last(x) or _channels_last(w):
        twice = 2 if c.k > 1 and groups == 1 else 1
        return twice * _nbytes(w) + (NHWC_SCRATCH_CONST if groups == 1 else 0)
    dst = c.act(c.oc, out=True)
    if transposed:
        inner = c.deconv_scratch(c.oc, out=True) + c.act(c.ic, out=False) + c.weights() + dst
        return max(inner, dst + 2 * y) - y
    plain_src = groups == 1 and c.ic < c.b and c.k > 1  # first-layer kernels read NCHW as is
    src = 0 if plain_src else c.act(c.ic, out=False)
    bias_copy = (_pad(c.oc, c.b) + 32) * c.e if bias is not None and c.oc % c.b else 0
    inner = bias_copy + src + c.weights(ic_padded=not plain_src) + dst
    return max(inner, dst + y) - y


def _wgrad_channels(c: _Conv, channels: int, is_input: bool) -> int:
    """Channels of the weight-gradient kernel's copy of x or gy: none for a first-layer input
    (1-3 channels, read as is), 8-blocked for 8 channels, else padded to the block."""
    spatial = c.k > 1 and c.groups == 1
    first_layer = spatial and c.ic < 4
    if first_layer and is_input:
        return 0
    keep = spatial and not first_layer and channels % 8 == 0 and channels < c.b
    return channels if keep else _pad(channels, c.b)


def _conv_backward(args: Sequence[Any], kwargs: dict, out: Any) -> int:
    gy, x, w = args[:3]
    stride, padding, dilation, transposed, _, groups, mask = args[4:11]
    if x.dim() != 4:
        return 0
    c = _Conv(x, w, gy.shape, groups, transposed)
    outputs = sum(_nbytes(t) for t in out)
    if not _use_mkldnn(x, w, stride, dilation, groups):
        return _native_columns(c, transposed, stride, padding)
    if _channels_last(x) or _channels_last(w):
        gy_copy = 0 if _channels_last(gy) else _nbytes(gy)  # gy is made channels-last
        scratch = NHWC_SCRATCH_CONST + (_nbytes(w) if c.k > 1 else 0) if groups == 1 else 0
        return gy_copy + scratch
    gx = _nbytes(x) if mask[0] else 0
    peak = 0
    if mask[0]:
        gx_blocked = c.act(c.ic, out=False)
        deconv = not transposed and any(s != 1 for s in stride)
        scratch = c.deconv_scratch(c.ic, out=False) if deconv else 0
        inner = c.act(c.oc, out=True) + c.weights() + gx_blocked + scratch
        peak = max(inner, gx_blocked + (2 if deconv else 1) * gx)
    if mask[1]:
        wgrad = c.weights()
        reduction = (torch.get_num_threads() - 1) * wgrad + WGRAD_SCRATCH_CONST \
            if groups == 1 else 0
        copies = c.n * (_wgrad_channels(c, c.ic, True) * c.h * c.w
                        + _wgrad_channels(c, c.oc, False) * c.ho * c.wo) * c.e
        peak = max(peak, gx + copies + wgrad + reduction)
    return max(peak - outputs, 0)


def _layer_norm(args: Sequence[Any], kwargs: dict, out: Any) -> int:
    x = args[0]
    return 0 if x.is_contiguous() else _nbytes(x)  # the kernel works on a contiguous copy


def _layer_norm_backward(args: Sequence[Any], kwargs: dict, out: Any) -> int:
    return sum(_nbytes(t) for t in args[:2] if not t.is_contiguous())


def _batch_norm_backward(args: Sequence[Any], kwargs: dict, out: Any) -> int:
    return _nbytes(args[1])  # one input-sized temporary


CPU_RULES: dict[Any, Callable[[Sequence[Any], dict, Any], int]] = {
    aten.convolution.default: _conv_forward,
    aten.convolution_backward.default: _conv_backward,
    aten.native_layer_norm.default: _layer_norm,
    aten.native_layer_norm_backward.default: _layer_norm_backward,
    aten.native_batch_norm_backward.default: _batch_norm_backward,
}


def kernel_extra(func: Any, args: Sequence[Any], kwargs: dict, out: Any, device_type: str) -> int:
    """Bytes ``func`` holds inside its kernel on top of its outputs, on ``device_type``."""
    if device_type != "cpu":
        return 0
    rule = CPU_RULES.get(func)
    return rule(args, kwargs, out) if rule is not None else 0
