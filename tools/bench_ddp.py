"""Data-parallel scaling on this machine: samples/s with 1 and with 2 processes (gloo, CPU).

Both runs use the same per-process batch, model and data, and the same code path as
``torchrun ... --launcher pytorch`` (process group from RANK/WORLD_SIZE/MASTER_* variables).
The cores are split evenly: 1 process x N threads against N processes x 1 thread.

    python tools/bench_ddp.py [--iters 60] [--batch 8] [--nproc 2]
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time

import torch
import torch.multiprocessing as mp

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.engine.dist import free_port  # noqa: E402
from llcv.engine.hooks import Hook  # noqa: E402
from llcv.engine.runner import Runner  # noqa: E402
from llcv.options import validate_options  # noqa: E402

WARMUP = 10


class Stopwatch(Hook):
    """Records the time at the end of the warm-up and at the last iteration."""

    priority = 99

    def __init__(self, total: int) -> None:
        self.total, self.marks = total, {}

    def after_train_iter(self, runner, it, batch, record) -> None:
        if it in (WARMUP, self.total):
            self.marks[it] = time.perf_counter()


def bench_options(root: str, iters: int, batch: int) -> dict:
    return validate_options({
        "name": "bench_ddp", "manual_seed": 0, "path": {"experiments_root": root},
        "datasets": {"train": {
            "type": "SyntheticPairedDataset", "builtin_images": ["astronaut", "coffee", "rocket"],
            "degradation": {"type": "PoissonGaussianNoise"}, "gt_size": 64, "use_hflip": True,
            "use_rot": True, "batch_size_per_gpu": batch, "dataset_enlarge_ratio": 100}},
        "network_g": {"type": "UNet", "widths": [16, 32, 64], "blocks": [1, 1, 1]},
        "train": {"total_iter": iters, "optim_g": {"type": "AdamW", "lr": 1e-3},
                  "pixel_opt": {"type": "L1Loss"}},
        "logger": {"print_freq": 10**9, "save_checkpoint_freq": 10**9, "use_tb_logger": False},
    })


def worker(rank: int, world: int, port: int, threads: int, root: str, iters: int, batch: int,
           results) -> None:
    torch.set_num_threads(threads)
    launcher = "none"
    if world > 1:
        os.environ.update(RANK=str(rank), LOCAL_RANK=str(rank), WORLD_SIZE=str(world),
                          MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
        launcher = "pytorch"
    runner = Runner(bench_options(root, iters, batch), launcher=launcher)
    watch = Stopwatch(iters)
    runner.hooks.append(watch)
    runner.train()
    if rank == 0:
        results[world] = (iters - WARMUP) * batch * world / (watch.marks[iters] - watch.marks[WARMUP])
    if world > 1:
        torch.distributed.destroy_process_group()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--iters", type=int, default=60)
    parser.add_argument("--batch", type=int, default=8, help="per process")
    parser.add_argument("--nproc", type=int, default=2)
    args = parser.parse_args()
    cores = os.cpu_count() or 1
    results = mp.Manager().dict()
    with tempfile.TemporaryDirectory() as root:
        for world in (1, args.nproc):
            threads = max(1, cores // world)
            mp.spawn(worker, args=(world, free_port(), threads, root, args.iters, args.batch, results),
                     nprocs=world, join=True)
            print(f"{world} process(es) x {threads} thread(s): {results[world]:8.1f} samples/s "
                  f"(batch {args.batch} per process)")
    efficiency = results[args.nproc] / (args.nproc * results[1])
    print(f"speed-up {results[args.nproc] / results[1]:.2f}x with {args.nproc} processes on {cores} cores")
    print(f"result: ddp_scaling_efficiency = {efficiency:.3f}")


if __name__ == "__main__":
    main()
