"""Tiled inference of a large synthetic image (default 25 megapixels) under a memory budget.

    python tools/bench_tiled_inference.py [--size 5000] [--budget-mb 256]

Runs the demo UNet (widths 16-32-64, random weights) tile by tile with the tile picked from the
budget by the estimator, measures the allocator peak over the whole run (CPU: profiler allocator
events + resident weights; CUDA: max_memory_allocated), and checks the result against whole-image
inference on crops: a crop with receptive-field context on every side (aligned to the model's
pixel grid) gives exactly the whole-image values inside it, without the gigabytes a whole-image
run of 25 MP would need.
"""
from __future__ import annotations

import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from llcv.archs.unet_arch import UNet  # noqa: E402
from llcv.inference import (axis_windows, choose_tile, plan_overlap,  # noqa: E402
                            receptive_field_radius, tile_peak_bytes, tiled_inference)
from llcv.memory import AllocatorPeakMeter, MemoryMeter, resident_bytes  # noqa: E402
from llcv.utils import MB  # noqa: E402


def synthetic_photo(h: int, w: int) -> np.ndarray:
    """uint8 RGB with smooth shading, hard edges and noise, built row band by row band."""
    out = np.empty((h, w, 3), np.uint8)
    rng = np.random.default_rng(0)
    xx = np.arange(w, dtype=np.float32)[None, :]
    for y0 in range(0, h, 512):
        yy = np.arange(y0, min(y0 + 512, h), dtype=np.float32)[:, None]
        base = np.stack([0.5 + 0.4 * np.sin(xx / 97 + yy / 131) + 0 * yy,
                         0.5 + 0.4 * np.cos(yy / 53) + 0 * xx,
                         ((xx // 128 + yy // 128) % 2) * 0.6 + 0.2], axis=2)
        noisy = base + rng.normal(0, 0.04, base.shape).astype(np.float32)
        out[y0:y0 + len(yy)] = np.clip(noisy * 255, 0, 255).round().astype(np.uint8)
    return out


def crop_error(model, img, out, y0, x0, size, context) -> float:
    """Max |tiled - whole-image| on ``[y0, y0+size) x [x0, x0+size)`` (context-padded crop)."""
    h, w = img.shape[:2]
    wy0, wx0 = max(y0 - context, 0), max(x0 - context, 0)
    wy1, wx1 = min(y0 + size + context, h), min(x0 + size + context, w)
    crop = img[wy0:wy1, wx0:wx1].astype(np.float32).transpose(2, 0, 1) / 255.0
    with torch.no_grad():
        ref = model(torch.from_numpy(np.ascontiguousarray(crop))[None])[0].permute(1, 2, 0)
    ref = ref.numpy()[y0 - wy0:y0 - wy0 + size, x0 - wx0:x0 - wx0 + size]
    return float(np.abs(out[y0:y0 + size, x0:x0 + size] - ref).max())


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--size", type=int, default=5000, help="image side (default 5000)")
    parser.add_argument("--budget-mb", type=float, default=256.0)
    args = parser.parse_args(argv)
    torch.manual_seed(0)
    model = UNet(widths=[16, 32, 64], blocks=[1, 1, 1]).eval()
    img = synthetic_photo(args.size, args.size)
    h, w = img.shape[:2]
    radius = receptive_field_radius(model)
    overlap, feather = plan_overlap(model, None, 3)
    start = time.perf_counter()
    tile = choose_tile(model, int(args.budget_mb * MB), overlap, (h, w))
    choose_s = time.perf_counter() - start
    windows = len(axis_windows(h, tile, overlap)) * len(axis_windows(w, tile, overlap))
    print(f"image {w}x{h} ({w * h / 1e6:.1f} MP), receptive-field radius {radius}, overlap "
          f"{overlap}, feather {feather}; budget {args.budget_mb:.0f} MiB -> tile {tile} "
          f"({windows} windows, estimated window peak "
          f"{tile_peak_bytes(model, tile, tile) / MB:.1f} MiB, chosen in {choose_s:.2f} s)")
    allocator, rss = AllocatorPeakMeter("cpu"), MemoryMeter(torch.device("cpu"))
    rss.reset()
    start = time.perf_counter()
    with allocator.window(resident_bytes(model)):
        out = tiled_inference(model, img, tile, overlap)
    seconds = time.perf_counter() - start
    print(f"tiled inference: {seconds:.1f} s; allocator peak {allocator.peak_bytes / MB:.1f} MiB "
          f"(budget {args.budget_mb:.0f} MiB); host arrays: input {img.nbytes / MB:.0f} MiB, "
          f"output {out.nbytes / MB:.0f} MiB; process RSS peak "
          f"{rss.read()['mem/rss_peak_mb']:.0f} MiB")
    size, context = 384, -(-radius // model.size_multiple) * model.size_multiple
    spots = [(0, 0), (h - size, w - size), (h // 2 // 4 * 4, w // 2 // 4 * 4),
             (tile - overlap - 8, tile - overlap - 8), (0, w - size), (h - size, 0)]
    diff = max(crop_error(model, img, out, y, x, size, context) for y, x in spots)
    print(f"max |tiled - whole-image| over {len(spots)} crops of {size}x{size}: {diff:.2e}")
    print(f"result: tiled_peak_mb = {allocator.peak_bytes / MB:.1f} (budget "
          f"{args.budget_mb:.0f}), max_abs_diff = {diff:.2e} (target <= 1e-4)")


if __name__ == "__main__":
    main()
