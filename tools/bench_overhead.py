"""What the training loop costs beyond the step itself: a bare loop vs ``Runner.train()``.

Both loops train the same network on the same dataset object (the demo's bundled photos), with
the same loss, optimizer and data loader; the bare one is ``next(batch)`` -> forward -> loss ->
backward -> step and nothing else. ``Runner`` runs with the option file's own logging defaults
(memory every iteration, TensorBoard, JSONL, text log; its console lines are captured, not
printed), and once more with ``logger.measure_allocator: false`` to show what the scheduled
allocator meter costs. They take turns, ``--rounds`` times each, in one process; per round the
milliseconds per iteration are timed over ``--iters`` iterations after ``--warmup`` (start-up,
validation and the final checkpoint excluded: the runner's clock runs from its first timed
iteration's start to the next one's after the last).

    python tools/bench_overhead.py                          # UNet and NAFNet demos
    python tools/bench_overhead.py --iters 100 --rounds 3 --demos options/train_unet_demo.yml

Ends with ``result: llcv_overhead = <x> (target <= 0.05)``: the largest relative overhead of the
defaults (median llcv / median bare - 1) over the demos.
"""
from __future__ import annotations

import argparse
import contextlib
import io
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
    parser.add_argument("--iters", type=int, default=200, help="timed iterations per round")
    parser.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    parser.add_argument("--rounds", type=int, default=3, help="rounds of each loop")
    parser.add_argument("--demos", nargs="+", default=DEMOS, help="option files to compare on")
    parser.add_argument("--device", default="cpu", help="cpu or cuda (default cpu)")
    return parser.parse_args(argv)


def bare_loop(opt: dict, iters: int, warmup: int) -> float:
    """Milliseconds per iteration of the bare loop on the options' data, network and losses
    (on the options' ``device``)."""
    import torch

    from llcv.data.loader import build_dataset, build_train_loader
    from llcv.network import build_network, network_spec
    from llcv.optim.optimizers import build_optimizer
    from llcv.registry import MODELS, build

    device = torch.device(opt["device"])
    section = opt["datasets"]["train"]
    loader = build_train_loader(build_dataset(section, "train"), section, opt["manual_seed"], 0,
                                1, 0, device)
    model = build_network(network_spec(opt["network_g"]), device)
    losses = build(MODELS, {"type": opt["model_type"]}, "model_type", opt=opt,
                   device=device).losses
    optimizer = build_optimizer(model.parameters(), opt["train"]["optim_g"])
    batches = iter(loader)
    start = 0.0
    for i in range(warmup + iters):
        if i == warmup:
            start = time.perf_counter()
        batch = next(batches)
        lq = batch["lq"].to(device, non_blocking=True)
        gt = batch["gt"].to(device, non_blocking=True)
        optimizer.zero_grad(set_to_none=True)
        out = model(lq)
        total = sum(loss(out, gt) for loss in losses.values())
        total.item()  # as the runner reads each term for the log and the NaN check
        total.backward()
        optimizer.step()
    return (time.perf_counter() - start) / iters * 1e3


def llcv_loop(opt: dict, iters: int, warmup: int, root: str) -> float:
    """Milliseconds per iteration of ``Runner.train()`` on the same options."""
    from llcv.engine.hooks import Hook
    from llcv.engine.runner import Runner
    from llcv.options import validate_options

    marks: dict[int, float] = {}

    class Clock(Hook):
        priority = 0

        def before_train_iter(self, runner, it):
            if it in (warmup + 1, warmup + iters + 1):
                marks[it] = time.perf_counter()

    run = dict(opt, name=f"bench_overhead_{time.monotonic_ns()}",
               path={"experiments_root": root})
    run["train"] = dict(opt["train"], total_iter=warmup + iters + 1)
    with contextlib.redirect_stdout(io.StringIO()):  # the log lines, still formatted and written
        runner = Runner(validate_options(run))
        runner.hooks = sorted(runner.hooks + [Clock()], key=lambda h: h.priority)
        runner.train()
    return (marks[warmup + iters + 1] - marks[warmup + 1]) / iters * 1e3


def compare(path: str, args: argparse.Namespace, root: str) -> float:
    """Median bare, llcv and llcv-without-allocator-meter ms/iter on one demo, printed; returns
    the relative overhead of the defaults."""
    from llcv.options import load_options

    opt = load_options(path, [f"device={args.device}"])
    no_meter = load_options(path, [f"device={args.device}", "logger.measure_allocator=false"])
    bare, ours, unmetered = [], [], []
    for round_ in range(args.rounds):
        bare.append(bare_loop(opt, args.iters, args.warmup))
        ours.append(llcv_loop(opt, args.iters, args.warmup, root))
        unmetered.append(llcv_loop(no_meter, args.iters, args.warmup, root))
        print(f"  round {round_ + 1}: bare {bare[-1]:.2f} ms/iter, llcv {ours[-1]:.2f} ms/iter, "
              f"llcv without the allocator meter {unmetered[-1]:.2f} ms/iter", flush=True)
    b, o, u = (statistics.median(v) for v in (bare, ours, unmetered))
    print(f"{os.path.basename(path)} (median of {args.rounds} x {args.iters}): bare {b:.2f} "
          f"ms/iter, llcv {o:.2f} ({o / b - 1:+.1%}), llcv without the allocator meter "
          f"{u:.2f} ({u / b - 1:+.1%})")
    return o / b - 1


def main(argv: Optional[list[str]] = None) -> float:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory() as root:
        overhead = max(compare(path, args, root) for path in args.demos)
    print(f"result: llcv_overhead = {overhead:.3f} (target <= 0.05)")
    return overhead


if __name__ == "__main__":
    run_cli(main)
