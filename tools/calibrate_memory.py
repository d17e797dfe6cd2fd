"""Measure once what this CUDA card holds outside the tensors; write the JSON the estimator reads.

    python tools/calibrate_memory.py --out calibration/h200.json
    LLCV_MEMORY_CALIBRATION=calibration/h200.json python tools/profile_model.py -opt FILE.yml \\
        --device meta --memory-device cuda --input-shape 1 3 1024 1024

Measured on an otherwise idle card (the figures are device-wide):

- cuBLAS workspace: ``memory_allocated`` growth at the first matmul beyond its output.
- cuDNN workspaces: every convolution of the reference models (UNet, NAFNet, DnCNN at demo
  widths, two input sizes) run alone, forward and backward (input and weight gradients); the
  workspace is the peak of ``max_memory_allocated`` beyond the blocks of the op's tensors (as
  the allocator model places them). Per family the rule ``const + ratio x tensor bytes`` is the
  envelope of those samples (``const`` the smallest, ``ratio`` the largest excess per byte).
- CUDA context: with CUDA, cuBLAS and cuDNN initialised and the reference models' kernels
  loaded (a training step with AdamW and an inference each), ``total - free -
  memory_reserved`` after ``empty_cache``.

Run it with the ``torch.backends.cudnn.benchmark`` setting and ``PYTORCH_CUDA_ALLOC_CONF`` of
the runs you plan for (recorded in the file). Without a CUDA device it refuses.
"""
from __future__ import annotations

import argparse
import gc
import os
import sys
from typing import Any, Iterable, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import LLCVError  # noqa: E402
from llcv.memory.alloc_conf import AllocatorConfig  # noqa: E402
from llcv.memory.calibration import Calibration, WorkspaceRule  # noqa: E402
from llcv.memory.cuda_allocator import CachingAllocatorModel  # noqa: E402
from llcv.utils import MB  # noqa: E402

REFERENCE_MODELS = {
    "UNet": {"type": "UNet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
    "NAFNet": {"type": "NAFNet", "width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1,
               "dec_blk_nums": [1, 1]},
    "DnCNN": {"type": "DnCNN", "in_ch": 3, "depth": 6, "features": 16},
}
REFERENCE_SHAPES = [(1, 3, 256, 256), (2, 3, 512, 512)]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--out", default="memory_calibration.json",
                        help="the calibration file to write (default memory_calibration.json)")
    parser.add_argument("--device", default="cuda", help="the CUDA device (default cuda)")
    return parser.parse_args(argv)


def require_cuda(name: str) -> Any:
    """The CUDA device ``name``; a clear refusal where there is none."""
    import torch

    if not torch.cuda.is_available():
        built = "built with CUDA" if torch.backends.cuda.is_built() else "a CPU-only build"
        raise LLCVError(f"calibrate_memory: no CUDA device here (torch {torch.__version__}, "
                        f"{built}); a calibration measures a CUDA card: run this on the "
                        f"machine whose memory you plan for")
    device = torch.device(name)
    if device.type != "cuda":
        raise LLCVError(f"--device: expected a CUDA device, got {name!r}")
    return device


def clean(device: Any) -> None:
    """Free everything cached: Python garbage, cuBLAS workspaces, the allocator's cache."""
    import torch

    gc.collect()
    torch.cuda.synchronize(device)
    if hasattr(torch._C, "_cuda_clearCublasWorkspaces"):
        torch._C._cuda_clearCublasWorkspaces()
    torch.cuda.empty_cache()


class Mirror:
    """The allocator model fed the same allocations as the real run, for the blocks' sizes."""

    def __init__(self) -> None:
        self.model = CachingAllocatorModel(AllocatorConfig.from_env())
        self.count = 0

    def add(self, *tensors: Any) -> list[int]:
        keys = []
        for t in tensors:
            if t is not None and t.untyped_storage().nbytes():
                self.count += 1
                self.model.malloc(self.count, t.untyped_storage().nbytes())
                keys.append(self.count)
        return keys

    def drop(self, keys: Iterable[int]) -> None:
        for key in keys:
            self.model.free(key)


def cublas_workspace(device: Any) -> int:
    """Bytes the first matmul keeps allocated beyond its output (PyTorch's cuBLAS workspace)."""
    import torch

    clean(device)
    a, b = torch.ones(64, 64, device=device), torch.ones(64, 64, device=device)
    mirror = Mirror()
    mirror.add(a, b)
    c = a @ b
    torch.cuda.synchronize(device)
    mirror.add(c)
    return max(torch.cuda.memory_allocated(device) - mirror.model.stats.allocated, 0)


def conv_specs(device: Any) -> list[tuple]:
    """Every distinct 2-D convolution of the reference models at the reference shapes:
    ``(input shape, weight shape, has bias, stride, padding, dilation, groups)``."""
    import torch

    from llcv.registry import ARCHS, build

    specs: dict[tuple, None] = {}

    def record(module: Any, args: tuple) -> None:
        if isinstance(module.padding, str):  # convolution_backward takes integer padding only
            return
        specs[(tuple(args[0].shape), tuple(module.weight.shape), module.bias is not None,
               module.stride, module.padding, module.dilation, module.groups)] = None

    for cfg in REFERENCE_MODELS.values():
        model = build(ARCHS, cfg, "network_g", device="meta")
        hooks = [m.register_forward_pre_hook(record) for m in model.modules()
                 if isinstance(m, torch.nn.Conv2d)]
        for shape in REFERENCE_SHAPES:
            with torch.no_grad():
                model(torch.empty(shape, device="meta"))
        for hook in hooks:
            hook.remove()
    return list(specs)


def conv_workspace(spec: tuple, device: Any, backward: bool) -> tuple[int, int]:
    """``(tensor bytes, workspace bytes)`` of one convolution (after a warm-up call)."""
    import torch
    import torch.nn.functional as F

    x_shape, w_shape, has_bias, stride, padding, dilation, groups = spec
    clean(device)
    mirror = Mirror()
    x = torch.randn(x_shape, device=device)
    w = torch.randn(w_shape, device=device)
    b = torch.randn(w_shape[0], device=device) if has_bias and not backward else None
    y_shape = F.conv2d(x.to("meta"), w.to("meta"), None, stride, padding, dilation,
                       groups).shape
    gy = torch.randn(y_shape, device=device) if backward else None
    mirror.add(x, w, b, gy)

    def run() -> tuple:
        if not backward:
            with torch.no_grad():
                return (F.conv2d(x, w, b, stride, padding, dilation, groups),)
        return torch.ops.aten.convolution_backward(
            gy, x, w, None, stride, padding, dilation, False, [0, 0], groups,
            [True, True, False])[:2]

    mirror.drop(mirror.add(*run()))  # warm-up: plans and handles made, outputs freed
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    outputs = run()
    torch.cuda.synchronize(device)
    mirror.add(*outputs)
    tensors = sum(t.nbytes for t in (x, w, gy, *outputs) if t is not None)
    return tensors, max(torch.cuda.max_memory_allocated(device) - mirror.model.stats.allocated, 0)


def fit_rule(samples: list[tuple[int, int]]) -> WorkspaceRule:
    """The envelope ``const + ratio x bytes`` of ``(tensor bytes, workspace)`` samples:
    ``const`` the smallest workspace, ``ratio`` the largest excess per tensor byte."""
    if not samples:
        return WorkspaceRule()
    const = min(ws for _, ws in samples)
    ratio = max((ws - const) / size for size, ws in samples if size > 0)
    return WorkspaceRule(int(const), round(ratio, 6))


def context_bytes(device: Any) -> int:
    """Device memory in use outside the caching allocator once the reference models ran."""
    import torch

    from llcv.registry import ARCHS, build

    for cfg in REFERENCE_MODELS.values():
        model = build(ARCHS, cfg, "network_g", device=device)
        optimizer = torch.optim.AdamW(model.parameters())
        x = torch.rand(REFERENCE_SHAPES[0], device=device)
        torch.nn.functional.l1_loss(model(x), x).backward()
        optimizer.step()
        with torch.no_grad():
            model.eval()(x)
        del model, optimizer, x
    clean(device)
    free, total = torch.cuda.mem_get_info(device)
    return total - free - torch.cuda.memory_reserved(device)


def calibrate(device: Any, source: str = "") -> Calibration:
    """Measure this card (see the module docstring)."""
    import torch

    cublas = cublas_workspace(device)
    specs = conv_specs(device)
    rules = {family: fit_rule([conv_workspace(spec, device, backward) for spec in specs])
             for family, backward in (("conv_forward", False), ("conv_backward", True))}
    context = context_bytes(device)
    _, total = torch.cuda.mem_get_info(device)
    software = {"torch": torch.__version__, "cuda": torch.version.cuda,
                "cudnn": torch.backends.cudnn.version(),
                "cudnn_benchmark": bool(torch.backends.cudnn.benchmark),
                "alloc_conf": AllocatorConfig.from_env().text}
    return Calibration(torch.cuda.get_device_name(device),
                       tuple(torch.cuda.get_device_capability(device)), total, context, cublas,
                       rules, software, source)


def main(argv: Optional[list[str]] = None) -> Calibration:
    """Calibrate the CUDA device and write the file; prints the figures."""
    args = parse_args(argv)
    device = require_cuda(args.device)
    calibration = calibrate(device, args.out)
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    calibration.save(args.out)
    print(f"{calibration.device_name} (capability {calibration.capability}): context "
          f"{calibration.context_bytes / MB:.1f} MiB, cuBLAS workspace "
          f"{calibration.cublas_workspace_bytes / MB:.2f} MiB, cuDNN workspaces "
          + ", ".join(f"{k} {v.const / MB:.2f} MiB + {v.ratio:.4f} x tensors"
                      for k, v in calibration.workspace.items()))
    print(f"wrote {args.out}; use it with LLCV_MEMORY_CALIBRATION={args.out}")
    return calibration


if __name__ == "__main__":
    run_cli(main)
