"""DCPT pre-training or not, side by side: the demo all-in-one task (five degradations), the same
network and data, **equal total iterations** (pre-training counted), two seeds; per-degradation
and average PSNR/SSIM of the final weights as a table, then the average PSNR gain.

    python tools/bench_dcpt.py                      # the demo files for 600 iterations, seeds 0 1
    python tools/bench_dcpt.py --total-iter 3000    # the option files' own length
    python tools/bench_dcpt.py --total-iter 6000 --pretrain-iter 2000 --seeds 0 1 2
    python tools/bench_dcpt.py --quick              # a seconds-long smoke run, not a measurement

The plain run (``--baseline-opt``, default options/train_allinone_demo.yml) trains restoration for
all ``train.total_iter`` iterations; the DCPT run (``--dcpt-opt``, default
options/train_allinone_dcpt_demo.yml) spends its first ``train.dcpt.iters`` on degradation
classification + clean-image auto-encoding (two updates each), then fine-tunes. ``--total-iter``
and ``--pretrain-iter`` rescale both schedules (cosine ``T_max``; the DCPT file's two restart
periods become [pretrain, total - pretrain]). Validation runs once, at the end, on the
single-degradation sets (``datasets.val*`` holding one task); the average row is their mean, as
the paper's table. Each run's wall time is printed too: a pre-training iteration costs more
than a restoration one. Ends with ``result: dcpt_gain_db = <x>``, the average PSNR difference
(DCPT minus plain) over the seeds.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import OptionError  # noqa: E402

OPTIONS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "options")
KINDS = ("plain", "dcpt")
# --quick: a tiny network on tiny crops for a few iterations (checks the tool, measures nothing)
QUICK = {"total_iter": 4, "pretrain_iter": 2, "network_g": {"type": "UNet", "widths": [4, 8],
                                                            "blocks": [1, 1]},
         "gt_size": 32, "batch": 2, "crop_val": 32, "val_images": ["chelsea"]}


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--baseline-opt", default=os.path.join(OPTIONS, "train_allinone_demo.yml"))
    parser.add_argument("--dcpt-opt", default=os.path.join(OPTIONS, "train_allinone_dcpt_demo.yml"))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--total-iter", type=int, default=600,
                        help="iterations of both runs (default 600, minutes on 2 CPU cores; "
                             "the option files have 3000)")
    parser.add_argument("--pretrain-iter", type=int, default=None,
                        help="DCPT iterations within them (default: the file's share of its total)")
    parser.add_argument("--root", default=os.path.join("experiments", "bench_dcpt"),
                        help="where the runs are written (default experiments/bench_dcpt)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch CPU threads (default 1: steadier on a shared machine)")
    parser.add_argument("--json", default=None, help="write every figure to this JSON file")
    parser.add_argument("--quick", action="store_true", help="tiny smoke run")
    return parser.parse_args(argv)


def set_schedule(train: dict, total: int, pretrain: Optional[int], key: str) -> None:
    """Set ``total_iter`` (and ``dcpt.iters``, which must leave both phases) and fit the
    scheduler's lengths to them."""
    old_total = train.get("total_iter")
    train["total_iter"] = total
    if "dcpt" in train:
        old = train["dcpt"].get("iters", 0)
        pretrain = pretrain if pretrain is not None else round(total * old / old_total)
        if not 0 < pretrain < total:
            raise OptionError(f"--pretrain-iter: {pretrain} pre-training iterations leave no "
                              f"{'pre-training' if pretrain <= 0 else 'fine-tuning'}; give "
                              f"0 < --pretrain-iter < --total-iter ({total})")
        train["dcpt"]["iters"] = pretrain
    sched = train.get("scheduler")
    if sched is None:
        return
    if "T_max" in sched:
        sched["T_max"] = total
    elif "periods" in sched and len(sched["periods"]) == 1:
        sched["periods"] = [total]
    elif "periods" in sched and len(sched["periods"]) == 2 and "dcpt" in train:
        sched["periods"] = [pretrain, total - pretrain]
    else:
        raise OptionError(f"--total-iter: cannot rescale {key}'s scheduler {sched.get('type')}; "
                          f"edit the option file's lengths instead")


def single_task_sets(datasets: dict) -> dict:
    """The train set and the validation sets of one degradation each (the average is computed)."""
    return {phase: s for phase, s in datasets.items()
            if phase == "train" or (isinstance(s, dict) and len(s.get("tasks", [None, None])) == 1)}


def prepare(path: str, kind: str, seed: int, args: argparse.Namespace) -> dict:
    """Validated options of one run: its seed, name, root, iterations; validation at the end."""
    from llcv.options import read_yaml, validate_options

    raw = read_yaml(path)
    raw.update(name=f"{kind}_seed{seed}", manual_seed=seed)
    raw.setdefault("path", {})["experiments_root"] = args.root
    raw["datasets"] = single_task_sets(raw.get("datasets", {}))
    if args.quick:
        _quick(raw)
    total, pretrain = args.total_iter, args.pretrain_iter
    if args.quick:
        total, pretrain = QUICK["total_iter"], QUICK["pretrain_iter"]
    set_schedule(raw["train"], total, pretrain, path)
    raw.setdefault("val", {})["val_freq"] = total
    raw.setdefault("logger", {}).update(save_checkpoint_freq=total,
                                        print_freq=max(total // 10, 1))
    return validate_options(raw)


def _quick(raw: dict) -> None:
    """Shrink a run to the --quick smoke size."""
    raw["network_g"] = dict(QUICK["network_g"])
    train = raw["datasets"]["train"]
    train.update(gt_size=QUICK["gt_size"], batch_size_per_gpu=QUICK["batch"],
                 dataset_enlarge_ratio=1)
    for phase, section in raw["datasets"].items():
        if phase != "train":
            section.update(crop_val=QUICK["crop_val"], builtin_images=QUICK["val_images"])
    raw["logger"] = {"use_tb_logger": False}


def final_metrics(exp_dir: str) -> dict[str, dict[str, float]]:
    """``phase -> {metric: value}`` of the last validation in ``metrics.jsonl``."""
    last: dict = {}
    with open(os.path.join(exp_dir, "metrics.jsonl"), encoding="utf-8") as f:
        for line in f:
            record = json.loads(line)
            if any(k.startswith("val") and "/" in k for k in record):
                last = record
    out: dict[str, dict[str, float]] = {}
    for key, value in last.items():
        phase, _, metric = key.partition("/")
        if phase.startswith("val") and metric and not metric.startswith(("lq_", "best_")):
            out.setdefault(phase, {})[metric] = value
    return out


def run_one(opt: dict) -> dict:
    """Train one run; its final metrics per validation set and its wall time."""
    from llcv.engine.runner import Runner

    runner = Runner(opt)
    start = time.perf_counter()
    runner.train()
    seconds = time.perf_counter() - start
    names = {phase: opt["datasets"][phase].get("name") or phase for phase in opt["datasets"]}
    metrics = final_metrics(runner.exp_dir)
    return {"seconds": seconds, "exp_dir": runner.exp_dir,
            "sets": {names[p]: v for p, v in metrics.items()}}


def with_average(sets: dict[str, dict[str, float]]) -> dict[str, dict[str, float]]:
    """The per-degradation figures plus their mean (the paper's "average" column)."""
    metrics = next(iter(sets.values())).keys()
    avg = {m: statistics.fmean(v[m] for v in sets.values()) for m in metrics}
    return {**sets, "average": avg}


def format_table(results: dict, seeds: list[int]) -> str:
    """Rows: degradations + average; per seed PSNR/SSIM of both runs and the PSNR gain."""
    rows = list(with_average(results[(seeds[0], "plain")]["sets"]))
    head = ["degradation"] + [f"s{s} {c}" for s in seeds for c in
                              ("plain PSNR/SSIM", "DCPT PSNR/SSIM", "dPSNR")] + ["mean dPSNR"]
    lines = [head]
    for row in rows:
        cells, gains = [row], []
        for s in seeds:
            plain = with_average(results[(s, "plain")]["sets"])[row]
            dcpt = with_average(results[(s, "dcpt")]["sets"])[row]
            gains.append(dcpt["psnr"] - plain["psnr"])
            cells += [f"{plain['psnr']:.2f}/{plain['ssim']:.4f}",
                      f"{dcpt['psnr']:.2f}/{dcpt['ssim']:.4f}", f"{gains[-1]:+.2f}"]
        lines.append(cells + [f"{statistics.fmean(gains):+.2f}"])
    lines.append(["wall time (s)"] + [c for s in seeds for c in (
        f"{results[(s, 'plain')]['seconds']:.1f}", f"{results[(s, 'dcpt')]['seconds']:.1f}", "")]
        + [""])
    widths = [max(len(r[i]) for r in lines) for i in range(len(head))]
    return "\n".join("  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                               for i, (c, w) in enumerate(zip(r, widths))) for r in lines)


def main(argv: Optional[list[str]] = None) -> dict:
    """Run both trainings per seed, print the table and the result line; returns the figures."""
    import torch
    from tqdm import tqdm

    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    plans = [(seed, kind, prepare(args.baseline_opt if kind == "plain" else args.dcpt_opt,
                                  kind, seed, args)) for seed in args.seeds for kind in KINDS]
    check_comparable(plans[0][2], plans[1][2])
    pre = plans[1][2]["train"]["dcpt"]["iters"]
    print(f"bench_dcpt: {plans[0][2]['network_g']['type']}, {plans[0][2]['train']['total_iter']} "
          f"iterations each ({pre} of them DCPT pre-training in the DCPT run), seeds {args.seeds}")
    results: dict[tuple[int, str], Any] = {}
    for seed, kind, opt in tqdm(plans, desc="runs", unit="run", dynamic_ncols=True):
        results[(seed, kind)] = run_one(opt)
    print(format_table(results, args.seeds))
    gains = [with_average(results[(s, "dcpt")]["sets"])["average"]["psnr"]
             - with_average(results[(s, "plain")]["sets"])["average"]["psnr"] for s in args.seeds]
    gain = statistics.fmean(gains)
    summary = {"seeds": args.seeds, "gain_db_per_seed": gains, "dcpt_gain_db": gain,
               "runs": {f"{k}_seed{s}": v for (s, k), v in results.items()}}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(summary, f, indent=2)
    print(f"result: dcpt_gain_db = {gain:+.2f} (paper: >= 2 on the full benchmark)")
    return summary


def check_comparable(plain: dict, dcpt: dict) -> None:
    """Both runs train the same network on the same data for the same number of iterations."""
    if dcpt["model_type"] != "DCPTModel":
        raise OptionError(f"--dcpt-opt: model_type is {dcpt['model_type']}, not DCPTModel")
    total = dcpt["train"]["total_iter"]
    if plain["train"]["total_iter"] != total:
        raise OptionError(f"--dcpt-opt: train.total_iter {total} differs from the baseline's "
                          f"{plain['train']['total_iter']}; the runs must be equally long")
    for key in ("network_g", "datasets"):
        if plain[key] != dcpt[key]:
            raise OptionError(f"--dcpt-opt: {key} differs from --baseline-opt's; compare the "
                              f"same network on the same data")


if __name__ == "__main__":
    run_cli(main)
