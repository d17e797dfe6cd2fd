"""Estimated vs measured peak memory: UNet, NAFNet and DnCNN (demo widths) x three input sizes x
{inference, training step}.

    python tools/bench_memory.py [--device cpu|cuda] [--quick]

The estimate (``llcv.memory.estimate_peak_memory``) runs the model on fake tensors — no data, no
memory — and adds modelled kernel buffers. The measurement runs the real model on real tensors:
on CPU it is the peak of PyTorch's CPU allocator over the window, from the profiler's allocator
events (``AllocatorPeakMeter(method="profiler")``: every allocation and free, including kernel
scratch), plus the bytes resident when the window opens (weights, optimizer state, batch); on
CUDA it is ``torch.cuda.max_memory_allocated``. The ``tensors`` column is the cheaper
dispatch-level measurement, shown to size what it misses. A training step is the runner's: zero
grads (set to None), forward, L1 loss, backward, AdamW step, measured in steady state. The last
line is the worst |estimate / measured - 1| over all cells.
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

from llcv.memory.allocator import AllocatorPeakMeter, resident_bytes  # noqa: E402
from llcv.memory.estimate import estimate_peak_memory  # noqa: E402
from llcv.registry import ARCHS, build  # noqa: E402
from llcv.utils import MB  # noqa: E402

MODELS = {
    "UNet": {"type": "UNet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
    "NAFNet": {"type": "NAFNet", "width": 8, "enc_blk_nums": [1, 1], "middle_blk_num": 1,
               "dec_blk_nums": [1, 1]},
    "DnCNN": {"type": "DnCNN", "in_ch": 3, "depth": 6, "features": 16},
}
SHAPES = [(1, 3, 128, 128), (2, 3, 256, 256), (1, 3, 512, 512)]
QUICK_SHAPES = [(1, 3, 64, 64), (2, 3, 96, 96), (1, 3, 128, 128)]


def measure_inference(model, shape, device, method) -> int:
    """Allocator peak of one no-grad forward (input and weights resident)."""
    model.eval()
    model.zero_grad(set_to_none=True)  # gradients of an earlier training cell are not resident
    x = torch.rand(shape, device=device)
    with torch.no_grad():
        model(x)  # warm-up: one-time allocations of the backends
    meter = AllocatorPeakMeter(device, method)
    with meter.window(resident_bytes(model, x)), torch.no_grad():
        out = model(x)
        del out
    return meter.peak_bytes


def train_step(model, optimizer, lq, gt) -> None:
    """The runner's step: output and loss stay referenced until the step returns."""
    optimizer.zero_grad(set_to_none=True)
    output = model(lq)
    loss = F.l1_loss(output, gt)
    loss.backward()
    optimizer.step()


def measure_train(model, shape, device, method) -> int:
    """Allocator peak of one steady-state training step (state and batch resident)."""
    model.train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    lq, gt = torch.rand(shape, device=device), torch.rand(shape, device=device)
    for _ in range(2):
        train_step(model, optimizer, lq, gt)
    optimizer.zero_grad(set_to_none=True)  # freed before the window, as in the runner's step
    meter = AllocatorPeakMeter(device, method)
    with meter.window(resident_bytes(model, optimizer, lq, gt)):
        train_step(model, optimizer, lq, gt)
    return meter.peak_bytes


def timed_estimate(model, shape, mode, device, repeat: int = 3):
    """The estimate and the median wall time of a call."""
    times, est = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        est = estimate_peak_memory(model, shape, mode, optimizer="AdamW", device=device)
        times.append(time.perf_counter() - start)
    return est, statistics.median(times)


def run(device: torch.device, shapes) -> float:
    header = (f"{'model':<7} {'input':<12} {'mode':<9} {'estimate MiB':>12} {'measured MiB':>12} "
              f"{'error':>7} {'tensors MiB':>11} {'est. ms':>8}  peak at")
    print(header)
    print("-" * len(header))
    worst = 0.0
    for name, cfg in MODELS.items():
        torch.manual_seed(0)
        model = build(ARCHS, cfg, "network_g", device=device)
        for shape in shapes:
            for mode, measure in (("inference", measure_inference), ("train", measure_train)):
                est, seconds = timed_estimate(model, shape, mode, device)
                measured = measure(model, shape, device, "auto")
                tensors = "" if device.type == "cuda" else \
                    f"{measure(model, shape, device, 'tensors') / MB:11.2f}"
                error = est.total / measured - 1
                worst = max(worst, abs(error))
                print(f"{name:<7} {'x'.join(map(str, shape)):<12} {mode:<9} "
                      f"{est.total / MB:12.2f} {measured / MB:12.2f} {error:+7.1%} {tensors:>11} "
                      f"{seconds * 1e3:8.1f}  {est.peak_phase}: {est.peak_op}")
    return worst


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--quick", action="store_true", help="small inputs (a smoke run)")
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    print(f"device {device}, torch {torch.__version__}, {torch.get_num_threads()} threads, "
          f"CPU capability {torch.backends.cpu.get_cpu_capability()}")
    worst = run(device, QUICK_SHAPES if args.quick else SHAPES)
    print(f"result: memory_estimate_worst_error = {worst:.4f} (target <= 0.10)")


if __name__ == "__main__":
    main()
