"""Checkpoint write time: the weights serialized once (``net_g_latest.pth`` a hard link) against
the earlier three serializations per checkpoint (weights, latest, state), side by side.

Each demo's network gets an Adam state (one step, so the moments exist); a checkpoint is its
weights file and its training state, written with fsync as a run writes them. The two ways
take turns, ``--rounds`` times, in a temporary folder under ``--dir``.

    python tools/bench_checkpoint.py                     # UNet and NAFNet demos
    python tools/bench_checkpoint.py --rounds 10 --dir /scratch/me

Ends with ``result: once/three = <x>`` (the largest ratio of median times over the demos).
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMOS = [os.path.join(ROOT, "options", f) for f in ("train_unet_demo.yml",
                                                    "train_nafnet_demo.yml")]


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5, help="checkpoints of each kind")
    parser.add_argument("--demos", nargs="+", default=DEMOS, help="option files to take "
                                                                  "network_g and optim_g from")
    parser.add_argument("--dir", default=None, help="where to write (default: the system's "
                                                    "temporary folder)")
    return parser.parse_args(argv)


def checkpoint_of(path: str) -> tuple[dict, dict]:
    """(weights, training state) of the network and optimizer an option file describes."""
    import torch

    from llcv.network import build_network, network_spec
    from llcv.optim.optimizers import build_optimizer
    from llcv.options import load_options

    opt = load_options(path)
    spec = network_spec(opt["network_g"])
    model = build_network(spec)
    optimizer = build_optimizer(model.parameters(), opt["train"]["optim_g"])
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    optimizer.step()
    weights = {"params": model.state_dict(), "network": spec}
    return weights, {**weights, "optimizer": optimizer.state_dict(), "iter": 1}


def write_three(folder: str, it: int, weights: dict, state: dict) -> None:
    """The earlier way: the weights serialized twice, then the state."""
    from llcv.serialization import atomic_save

    atomic_save(weights, os.path.join(folder, "models", f"net_g_{it}.pth"))
    atomic_save(weights, os.path.join(folder, "models", "net_g_latest.pth"))
    atomic_save(state, os.path.join(folder, "training_states", f"{it}.state"))


def milliseconds(write, folder: str, weights: dict, state: dict, rounds: int) -> list[float]:
    """Time per checkpoint of ``write`` over ``rounds`` checkpoints."""
    times = []
    for it in range(1, rounds + 1):
        start = time.perf_counter()
        write(folder, it, weights, state)
        times.append((time.perf_counter() - start) * 1e3)
    return times


def main(argv: Optional[list[str]] = None) -> float:
    """Print both ways' median milliseconds per demo; returns the largest once/three ratio."""
    from llcv.engine.checkpoint import write_checkpoint
    from llcv.utils import MB

    args = parse_args(argv)
    ratios = []
    for path in args.demos:
        weights, state = checkpoint_of(path)
        medians = {}
        with tempfile.TemporaryDirectory(dir=args.dir) as folder:
            for sub in ("models", "training_states"):
                os.makedirs(os.path.join(folder, sub))
            for name, write in (("three", write_three), ("once", write_checkpoint)):
                medians[name] = statistics.median(milliseconds(write, folder, weights, state,
                                                               args.rounds))
            size = os.path.getsize(os.path.join(folder, "training_states", "1.state")) / MB
        ratios.append(medians["once"] / medians["three"])
        print(f"{os.path.basename(path)}: state {size:.1f} MiB; weights written three times "
              f"{medians['three']:.1f} ms, once {medians['once']:.1f} ms per checkpoint "
              f"(ratio {ratios[-1]:.2f})")
    print(f"result: once/three = {max(ratios):.2f}")
    return max(ratios)


if __name__ == "__main__":
    run_cli(main)
