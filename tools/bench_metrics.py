"""Benchmark PSNR+SSIM on SIDD-sized validation data: BasicSR-style numpy loop vs batched torch.

Default: 1280 blocks of 256x256x3 (the SIDD validation protocol), made from crops of photos bundled
with scikit-image plus seeded Gaussian noise. Both paths start from the same uint8 BGR stacks; the
torch time includes turning them into RGB NCHW float tensors in [0, 1]. The two paths take turns on
each batch of blocks, so whatever else loads the machine slows both alike.

    python tools/bench_metrics.py                 # full run (~1-2 min on 2 cores)
    python tools/bench_metrics.py --blocks 64     # quick look
"""
from __future__ import annotations

import argparse
import os
import time

import numpy as np
import torch

from llcv.metrics import calculate_psnr, calculate_psnr_pt, calculate_ssim, calculate_ssim_pt

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")


def load_photos() -> list[np.ndarray]:
    """RGB uint8 photos bundled with scikit-image (no download needed)."""
    from skimage import data

    return [np.ascontiguousarray(getattr(data, name)()[..., :3]) for name in PHOTOS]


def make_blocks(count: int, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """``count`` GT / noisy uint8 BGR blocks (count, size, size, 3): random photo crops + noise."""
    rng = np.random.default_rng(seed)
    photos = [p for p in load_photos() if min(p.shape[:2]) >= size]
    gt = np.empty((count, size, size, 3), np.uint8)
    lq = np.empty_like(gt)
    for i in range(count):
        photo = photos[rng.integers(len(photos))]
        top = rng.integers(photo.shape[0] - size + 1)
        left = rng.integers(photo.shape[1] - size + 1)
        crop = photo[top:top + size, left:left + size, ::-1]  # RGB -> BGR, as cv2.imread gives
        if rng.random() < 0.5:
            crop = crop[:, ::-1]
        gt[i] = crop
        sigma = rng.uniform(2.0, 30.0)
        noise = rng.standard_normal(crop.shape, dtype=np.float32) * np.float32(sigma)
        lq[i] = np.clip(np.rint(crop + noise), 0, 255)
    return gt, lq


def run_numpy(gt: np.ndarray, lq: np.ndarray, test_y: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-image PSNR and SSIM, one block at a time (how BasicSR validates)."""
    psnr = [calculate_psnr(a, b, 0, test_y_channel=test_y) for a, b in zip(gt, lq)]
    ssim = [calculate_ssim(a, b, 0, test_y_channel=test_y) for a, b in zip(gt, lq)]
    return np.array(psnr), np.array(ssim)


def to_tensor(blocks: np.ndarray) -> torch.Tensor:
    """uint8 NHWC BGR stack -> float64 NCHW RGB in [0, 1] (per-channel copies measured fastest)."""
    src = torch.from_numpy(blocks)
    out = torch.empty((blocks.shape[0], 3, *blocks.shape[1:3]), dtype=torch.float64)
    for c in range(3):
        out[:, c].copy_(src[..., 2 - c])
    return out.div_(255.0)


def run_torch(gt: np.ndarray, lq: np.ndarray, test_y: bool) -> tuple[np.ndarray, np.ndarray]:
    """Batched PSNR and SSIM of a stack of blocks, conversion to tensors included."""
    x, y = to_tensor(gt), to_tensor(lq)
    psnr = calculate_psnr_pt(x, y, 0, test_y_channel=test_y)
    ssim = calculate_ssim_pt(x, y, 0, test_y_channel=test_y)
    return psnr.numpy(), ssim.numpy()


def compare(gt: np.ndarray, lq: np.ndarray, test_y: bool, batch: int) -> dict[str, tuple]:
    """(seconds, PSNRs, SSIMs) of each path, run on each batch of blocks in turn.

    The paths alternate which goes first: both get the same share of whatever else runs.
    """
    runs = {"numpy": run_numpy, "torch": run_torch}
    seconds = dict.fromkeys(runs, 0.0)
    values: dict[str, list] = {name: [] for name in runs}
    for k, start in enumerate(range(0, len(gt), batch)):
        pair = gt[start:start + batch], lq[start:start + batch]
        for name in (list(runs) if k % 2 == 0 else list(runs)[::-1]):
            begin = time.perf_counter()
            values[name].append(runs[name](*pair, test_y))
            seconds[name] += time.perf_counter() - begin
    return {name: (seconds[name], *map(np.concatenate, zip(*values[name]))) for name in runs}


def choose_threads(requested: int) -> tuple[int, str]:
    """Torch threads for the batched path, and why.

    Auto uses torch's default unless other processes already load the machine (1-minute load
    average >= half the cores): then one thread, since two workers sharing busy cores measured
    slower than one (each waits for the other's preempted turn).
    """
    if requested > 0:
        return requested, "--threads"
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load >= cores / 2:
        return 1, f"auto: machine busy, load {load:.1f} on {cores} cores"
    return torch.get_num_threads(), f"auto: machine idle, load {load:.1f} on {cores} cores"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--blocks", type=int, default=1280, help="number of blocks (default 1280)")
    parser.add_argument("--size", type=int, default=256, help="block side in pixels")
    parser.add_argument("--batch", type=int, default=16, help="blocks per torch call")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--test-y-channel", action="store_true", help="evaluate on BT.601 Y")
    parser.add_argument("--threads", type=int, default=0,
                        help="torch threads; 0 = auto (see choose_threads)")
    args = parser.parse_args()
    threads, why = choose_threads(args.threads)
    torch.set_num_threads(threads)

    gt, lq = make_blocks(args.blocks, args.size, args.seed)
    print(f"{args.blocks} blocks of {args.size}x{args.size}x3, "
          f"test_y_channel={args.test_y_channel}, torch threads={threads} ({why})")
    results = compare(gt, lq, args.test_y_channel, args.batch)

    print(f"{'path':<22}{'time s':>9}{'ms/block':>10}{'mean PSNR':>13}{'mean SSIM':>12}")
    labels = {"numpy": "numpy (BasicSR-style)", "torch": "torch (batched)"}
    for name, (seconds, psnr, ssim) in results.items():
        print(f"{labels[name]:<22}{seconds:>9.2f}{1000 * seconds / args.blocks:>10.2f}"
              f"{psnr.mean():>13.6f}{ssim.mean():>12.8f}")
    (t_np, psnr_np, ssim_np), (t_pt, psnr_pt, ssim_pt) = results["numpy"], results["torch"]
    print(f"max |diff| per block: PSNR {np.abs(psnr_np - psnr_pt).max():.2e} dB, "
          f"SSIM {np.abs(ssim_np - ssim_pt).max():.2e}; "
          f"|diff| of means: PSNR {abs(psnr_np.mean() - psnr_pt.mean()):.2e}, "
          f"SSIM {abs(ssim_np.mean() - ssim_pt.mean()):.2e}")
    print(f"result: metrics_speedup = {t_np / t_pt:.2f} (target >= 5)")


if __name__ == "__main__":
    main()
