"""Pruning toward a peak-memory budget against its baselines, side by side on the demo task.

Every row trains for the same number of iterations on ``options/prune_unet_demo.yml``'s data
and network and is then measured at ``--shape`` (default 1x3x512x512), under one budget: a
fraction (default 0.5) of the unpruned network's estimated inference peak there.

  (a) base            the unpruned network
  (b) thinner         the same architecture with the width multiplier the estimator picks to
                      meet the budget, trained from scratch
  (c) UniformPruner   every width shrunk by one factor at the demo's three schedule points
  (d) MagnitudePruner global L1 ranking at the same points
  (e) GALPruner       soft masks learnt adversarially before each point (label-free GAL,
                      sparsity weighted by the bytes at the peak), thresholded to the same
                      budget: ``options/prune_unet_gal_demo.yml``'s step and settings, its mask
                      phases 1/16 of the run long before each point
  (f) MemoryAwarePruner  the demo's own pruner (Taylor importance, skip compactors)

Printed: a Markdown table (PSNR/SSIM on the demo's validation photos, params, MACs, estimated
and allocator-measured inference peak at the shape), the run-to-run spread of row (f) over two
seeds, row (e)'s PSNR minus row (f)'s, and last ``result: memory_aware_minus_best_other_db = <x>
(target >= 0)``: row (f) minus the best of (b)-(d). Schedule points scale with ``--iters`` (at
1/4, 3/8 and 1/2 of the run).

    python tools/bench_pruning.py                     # about 20 minutes on 2 CPU cores
    python tools/bench_pruning.py --iters 2000 --out experiments/bench_pruning
    python tools/bench_pruning.py --quick             # a smoke run of a few iterations
"""
from __future__ import annotations

import argparse
import copy
import os
import sys
import tempfile
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402

OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "options")
DEMO = os.path.join(OPTIONS, "prune_unet_demo.yml")
GAL_DEMO = os.path.join(OPTIONS, "prune_unet_gal_demo.yml")
ROWS = ("base", "thinner", "UniformPruner", "MagnitudePruner", "GALPruner", "MemoryAwarePruner")
GAL_TRAIN_KEYS = ("optim_d", "gan_opt", "gal")  # GALModel's own train.* sections


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--iters", type=int, default=4000, help="iterations of every row")
    parser.add_argument("--budget-fraction", type=float, default=0.5,
                        help="budget as a fraction of the base's estimated peak (default 0.5)")
    parser.add_argument("--shape", type=int, nargs=4, default=[1, 3, 512, 512],
                        metavar=("N", "C", "H", "W"), help="where the budget holds")
    parser.add_argument("--seeds", type=int, nargs=2, default=[10, 11],
                        help="seed of every row, and the second seed of row (f)")
    parser.add_argument("--out", default=None, help="keep the runs here (default: a temp dir)")
    parser.add_argument("--quick", action="store_true",
                        help="smoke run: 12 iterations at 1x3x128x128, tiny validation crops")
    return parser.parse_args(argv)


def base_options(args: argparse.Namespace, root: str) -> dict:
    """The demo's raw options without its prune section, for ``args.iters`` iterations."""
    from llcv.options import read_yaml

    opt = read_yaml(DEMO)
    opt.pop("prune")
    opt["train"]["total_iter"] = args.iters
    opt["train"]["scheduler"]["T_max"] = args.iters
    opt["val"]["val_freq"] = args.iters
    opt["logger"].update(print_freq=max(args.iters // 10, 1), save_checkpoint_freq=args.iters,
                         use_tb_logger=False)
    opt["path"] = {"experiments_root": root}
    opt["manual_seed"] = args.seeds[0]
    if args.quick:
        opt["datasets"]["val"]["crop_val"] = 64
    return opt


def prune_section(pruner: str, args: argparse.Namespace, budget_mb: float) -> dict:
    """The demo's prune section with ``pruner``, its schedule scaled to ``args.iters``."""
    from llcv.options import read_yaml
    from llcv.sweep import default_schedule, prune_section as section_for

    template = read_yaml(DEMO)["prune"]
    if args.quick:
        template["importance"]["iterations"] = 1
    target = {"peak_memory_mb": budget_mb, "input_shape": list(args.shape), "mode": "inference"}
    return section_for(template, pruner, target, default_schedule(args.iters))


def gal_options(base: dict, args: argparse.Namespace, budget_mb: float) -> dict:
    """Row (e): ``base`` trained by GALModel with the GAL demo's discriminator, losses and
    pruner settings, at the other rows' schedule and budget (mask phases of 1/16 of the run)."""
    from llcv.options import read_yaml

    gal = read_yaml(GAL_DEMO)
    opt = dict(copy.deepcopy(base), name="bench_GALPruner", model_type=gal["model_type"],
               network_d=gal["network_d"])
    opt["train"].update({k: gal["train"][k] for k in GAL_TRAIN_KEYS})
    section = prune_section("GALPruner", args, budget_mb)  # the demo's keys GALPruner takes
    section.update({k: v for k, v in gal["prune"].items()
                    if k not in ("type", "schedule", "target")},
                   mask_iters=max(args.iters // 16, 1))
    opt["prune"] = section
    return opt


def measure(model: Any, spec: dict, shape: list, device: Any) -> dict:
    """Params, MACs, estimated and measured inference peak (MiB) of ``model`` at ``shape``."""
    from llcv.analysis.profile import count_parameters, profile_model
    from llcv.evaluation import measured_inference_peak
    from llcv.memory import estimate_peak_memory
    from llcv.network import build_network
    from llcv.utils import MB

    return {"params": count_parameters(model),
            "macs": profile_model(build_network(spec, "meta"), shape).macs,
            "est_mb": estimate_peak_memory(model, shape, "inference", device=device).total / MB,
            "measured_mb": measured_inference_peak(model, shape, device) / MB}


def train_row(name: str, opt: dict, shape: list) -> dict:
    """Train one row and return its validation metrics and costs."""
    from llcv.engine.runner import Runner
    from llcv.options import validate_options

    runner = Runner(validate_options(opt))
    runner.train()
    values = runner.validators[0].run(runner.state.model, show_progress=False)
    final = {k.split("/")[1]: v for k, v in values.items()}
    return {"row": name, **final, **measure(runner.state.model, runner.state.spec, shape,
                                            runner.device)}


def rows_to_run(args: argparse.Namespace, root: str) -> tuple[list[tuple[str, dict]], float]:
    """(name, raw options) of every row, and the budget (MiB) computed from the base network."""
    from llcv.memory import estimate_peak_memory
    from llcv.pruners.width import largest_multiplier
    from llcv.registry import ARCHS, build
    from llcv.utils import MB

    base = base_options(args, root)
    dense = build(ARCHS, base["network_g"], "network_g", device="meta")
    full_mb = estimate_peak_memory(dense, args.shape, "inference", device="cpu").total / MB
    budget = args.budget_fraction * full_mb
    print(f"budget: {budget:.2f} MiB = {args.budget_fraction:g} x {full_mb:.2f} MiB (the base's "
          f"estimated inference peak at {'x'.join(map(str, args.shape))})")
    runs = [("base", dict(copy.deepcopy(base), name="bench_base"))]
    thin = largest_multiplier(base["network_g"], budget, args.shape, round_to=4, device="cpu")
    runs.append((f"thinner x{thin.factor:.2f}",
                 dict(copy.deepcopy(base), name="bench_thinner", network_g=thin.network_g)))
    for pruner in ROWS[2:]:
        opt = gal_options(base, args, budget) if pruner == "GALPruner" else \
            dict(copy.deepcopy(base), name=f"bench_{pruner}",
                 prune=prune_section(pruner, args, budget))
        runs.append((pruner, opt))
    second = copy.deepcopy(runs[-1][1])
    second.update(name="bench_MemoryAwarePruner_seed2", manual_seed=args.seeds[1])
    runs.append((f"MemoryAwarePruner (seed {args.seeds[1]})", second))
    return runs, budget


def table(results: list[dict], budget: float) -> str:
    """The Markdown table of every row."""
    head = ("| row | PSNR | SSIM | params | MACs | est. peak (MiB) | measured peak (MiB) | "
            "fits |\n|---|---|---|---|---|---|---|---|")
    lines = [head]
    for r in results:
        fits = "yes" if r["measured_mb"] <= budget and r["est_mb"] <= budget else "no"
        lines.append(f"| {r['row']} | {r['psnr']:.3f} | {r['ssim']:.4f} | {r['params']:,} | "
                     f"{r['macs'] / 1e9:.2f} G | {r['est_mb']:.2f} | {r['measured_mb']:.2f} | "
                     f"{fits} |")
    return "\n".join(lines)


def main(argv: Optional[list[str]] = None) -> dict:
    args = parse_args(argv)
    if args.quick:
        args.iters, args.shape = 12, [1, 3, 128, 128]
    with tempfile.TemporaryDirectory() as tmp:
        root = args.out or tmp
        runs, budget = rows_to_run(args, root)
        results = []
        for i, (name, opt) in enumerate(runs):
            print(f"[{i + 1}/{len(runs)}] training {name} for {args.iters} iterations", flush=True)
            results.append(train_row(name, opt, args.shape))
    print(table(results, budget))
    aware, again = results[-2], results[-1]
    others = max(r["psnr"] for r in results[1:4])
    spread = abs(aware["psnr"] - again["psnr"])
    print(f"run-to-run spread of MemoryAwarePruner over seeds {args.seeds}: {spread:.3f} dB")
    gal = results[4]["psnr"] - aware["psnr"]
    print(f"GALPruner minus MemoryAwarePruner: {gal:.3f} dB")
    margin = aware["psnr"] - others
    print(f"result: memory_aware_minus_best_other_db = {margin:.3f} (target >= 0)")
    return {"budget_mb": budget, "rows": results, "margin_db": margin, "spread_db": spread,
            "gal_minus_memory_aware_db": gal}


if __name__ == "__main__":
    run_cli(main)
