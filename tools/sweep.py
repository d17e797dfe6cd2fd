"""Sweep peak-memory budgets: one network per budget, trained and tested, for tools/pareto.py.

    python tools/sweep.py -opt options/train_unet_demo.yml --budgets-mb 20 40 80 \\
        --input-shape 1 3 256 256 --dry-run                       # print the plan only
    python tools/sweep.py -opt options/train_unet_demo.yml --budgets-mb 20 40 80 \\
        --input-shape 1 3 256 256                                  # run here, one after another
    python tools/sweep.py -opt options/train_nafnet_sidd.yml --budgets-mb 2048 4096 8192 \\
        --input-shape 1 3 1024 1024 --slurm --gpus 8 --sbatch-arg=--partition=gpu
    python tools/sweep.py -opt options/train_unet_demo.yml --budgets-mb 14 18 26 \\
        --input-shape 1 3 256 256 --round-to 4 --methods width uniform magnitude memory_aware \\
        --dry-run                                                  # pruner series beside widths
    python tools/pareto.py experiments/sweep_train_unet_demo/results

Method ``width``: the base network with every width scaled by the largest multiplier whose
estimated ``--mode`` peak at --input-shape fits the budget (widths rounded to --round-to; the
widths are those the architecture's pruning declaration names), trained from scratch without
the option file's ``prune:`` section. Each point gets an option file under
``<experiments_root>/sweep_<name>/options/``, trains into ``<experiments_root>/<point>``
(tools/train.py --auto_resume) and is tested into ``sweep_<name>/results/<point>``
(tools/test.py --method <method>, on the option file's validation sets). Rerunning resumes:
points with results are skipped, an interrupted training continues. --slurm writes a
``sbatch --array`` job instead (one task per point: a torchrun of tools/train.py, then
tools/test.py).

Methods ``uniform``, ``magnitude``, ``memory_aware``: the base network trained with a ``prune:``
section (UniformPruner, MagnitudePruner, MemoryAwarePruner) whose target is the budget: the
option file's own prune settings and schedule where it has them (the keys that pruner takes;
UniformPruner and MagnitudePruner rank by L1), else prune points at 1/4, 3/8 and 1/2 of
train.total_iter with L1 importance. A --mode train target is a step with train.optim_g, as for
``width``. A budget the dense network cannot reach is refused while planning, with the smallest
figure it reaches; the plan shows '-' as the point's multiplier and the budget as its estimate
(the dense network's, when that is lower: nothing is pruned then).
"""
from __future__ import annotations

import argparse
import os
import shlex
import sys
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import OptionError  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", required=True, help="base training option file")
    parser.add_argument("--budgets-mb", nargs="+", type=float, required=True,
                        help="peak-memory budgets in MiB, one point each")
    parser.add_argument("--input-shape", nargs=4, type=int, default=[1, 3, 256, 256],
                        metavar=("N", "C", "H", "W"), help="shape the budgets hold at")
    parser.add_argument("--mode", choices=["inference", "train"], default="inference",
                        help="what must fit the budget (train: a step with train.optim_g)")
    parser.add_argument("--methods", nargs="+", default=["width"],
                        help="series to sweep, one point per budget each: width (thinner "
                             "network from scratch), uniform, magnitude, memory_aware (the base "
                             "network pruned during training by UniformPruner, MagnitudePruner, "
                             "MemoryAwarePruner; default: width)")
    parser.add_argument("--name", default=None, help="sweep name (default: the option file's)")
    parser.add_argument("--device", default=None,
                        help="device the budgets are for, e.g. cuda to plan GPU budgets on a CPU "
                             "machine (default: the option file's device here)")
    parser.add_argument("--round-to", type=int, default=8,
                        help="widths are multiples of this (default 8)")
    parser.add_argument("--max-multiplier", type=float, default=4.0,
                        help="widest multiplier tried for large budgets (default 4)")
    parser.add_argument("--test-args", default="",
                        help="extra tools/test.py arguments, e.g. '--memory-budget-mb 1024'")
    parser.add_argument("--dry-run", action="store_true", help="print the plan, write nothing")
    parser.add_argument("--slurm", action="store_true", help="write a SLURM array job, run nothing")
    parser.add_argument("--gpus", type=int, default=1, help="with --slurm: GPUs per point")
    parser.add_argument("--time", default="1-00:00:00", help="with --slurm: time per point")
    parser.add_argument("--sbatch-arg", action="append", default=[],
                        help="with --slurm: extra #SBATCH line, e.g. --sbatch-arg=--partition=gpu")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options of every point, e.g. train.total_iter=2000")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for arguments argparse cannot check."""
    if any(b <= 0 for b in args.budgets_mb) or len(set(args.budgets_mb)) != len(args.budgets_mb):
        raise OptionError(f"--budgets-mb: need distinct positive budgets, got {args.budgets_mb}")
    if any(n <= 0 for n in args.input_shape):
        raise OptionError(f"--input-shape: sizes must be positive, got {args.input_shape}")
    if len(set(args.methods)) != len(args.methods):
        raise OptionError(f"--methods: need distinct methods, got {args.methods}")
    if args.round_to < 1 or args.max_multiplier <= 0 or args.gpus < 1:
        raise OptionError("--round-to/--max-multiplier/--gpus: must be positive")


def main(argv: Optional[list[str]] = None) -> dict:
    """Plan the sweep and print it; then run it, or write its SLURM job; returns the plan."""
    from llcv import sweep
    from llcv.engine.dist import DistInfo, select_device
    from llcv.options import apply_override, read_yaml, validate_options

    args = parse_args(argv)
    check_args(args)
    raw = read_yaml(args.opt)
    for item in args.set:
        apply_override(raw, item)
    base = validate_options(raw)
    device = args.device or str(select_device(base["device"], DistInfo()))
    sweep_dir = os.path.join(base["path"]["experiments_root"], f"sweep_{args.name or base['name']}")
    points = sweep.plan_points(base, sorted(args.budgets_mb), args.methods, sweep_dir,
                               args.input_shape, args.mode, device, args.round_to,
                               args.max_multiplier, not args.no_progress)
    total_iter, test_args = base["train"]["total_iter"], shlex.split(args.test_args)
    print(f"sweep {sweep_dir}: {args.mode} peak at {args.input_shape} on {device}")
    print(sweep.format_plan(points, total_iter))
    for p in points:
        if p.prune is not None and p.est_peak_mb < p.budget_mb:
            print(f"note: {p.name}: the dense network's {p.est_peak_mb:.2f} MiB is within the "
                  f"budget; nothing is pruned")
    result = {"sweep_dir": sweep_dir, "points": points}
    if args.dry_run:
        for p in points:
            for cmd in sweep.commands(p, sweep_dir, test_args=test_args):
                print(shlex.join(cmd))
        return result
    settings = {"base": os.path.abspath(args.opt), "overrides": args.set, "mode": args.mode,
                "input_shape": args.input_shape, "device": device}
    print(f"wrote {sweep.write_plan(points, raw, sweep_dir, settings)}")
    if args.slurm:
        path = os.path.join(sweep_dir, "sweep.sbatch")
        os.makedirs(os.path.join(sweep_dir, "logs"), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(sweep.slurm_script(points, sweep_dir, total_iter, args.gpus, args.time,
                                       args.sbatch_arg, test_args))
        print(f"wrote {path}; submit with: sbatch {path}")
        return {**result, "sbatch": path}
    result["ran"] = sweep.run_points(points, sweep_dir, total_iter, test_args,
                                     not args.no_progress)
    print(f"results in {os.path.join(sweep_dir, 'results')}; plot with: python tools/pareto.py "
          f"{os.path.join(sweep_dir, 'results')}")
    return result


if __name__ == "__main__":
    run_cli(main)
