"""Test a trained (dense or pruned) network: PSNR/SSIM per test set and per image, with the cost
of running it (params, MACs, estimated and measured peak memory, latency).

    python tools/test.py -opt options/test_nafnet_sidd.yml             # BasicSR/NAFNet test file
    python tools/test.py -opt options/train_unet_demo.yml   # the run's latest weights, val sets
    python tools/test.py -opt options/train_unet_demo.yml \\
        --checkpoint experiments/train_unet_demo/models/net_g_2000.pth
    python tools/test.py --checkpoint X.pth --dataset datasets/Set5/HR datasets/Set5/LR \\
        --test-y-channel --crop-border 4                       # no option file: X holds its network
    python tools/test.py -opt FILE.yml --memory-budget-mb 1024       # + a 100-MP tiled run

A test option file has ``network_g``, ``path.pretrain_network_g`` (``param_key_g``,
``strict_load_g``), ``datasets.test_*`` / ``datasets.val*`` blocks and ``val.metrics``; a training
option file works too: its validation sets are tested, by default on the run's
``models/net_g_latest.pth``. The weights are a test file's ``param_key_g`` when it names one, else
``params_ema`` when present, else ``params`` — what the training run validated. A checkpoint's
own network spec (pruned or dense) wins over ``network_g``.
Writes ``<results_root>/<name>/metrics.json`` (read by tools/pareto.py), ``<dataset>.csv`` (one row
per image) and, with ``--save-img``, the outputs under ``visualization/<dataset>/``.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Mapping, NamedTuple, Optional, Sequence

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import OptionError  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", default=None, help="test (or training) option file")
    parser.add_argument("--checkpoint", default=None,
                        help="weights file (default: the option file's path.pretrain_network_g)")
    parser.add_argument("--param-key", default=None,
                        help="weights in the checkpoint: params, params_ema, or none for a bare "
                             "state_dict (default: param_key_g, else params_ema, else params)")
    parser.add_argument("--dataset", nargs="+", action="append", default=[],
                        metavar="GT LQ [NAME]",
                        help="a paired folder (or .lmdb) test set; repeatable")
    parser.add_argument("--metrics", nargs="+", default=["psnr", "ssim"],
                        help="without -opt: metrics (psnr, ssim)")
    parser.add_argument("--crop-border", type=int, default=0, help="without -opt: crop border")
    parser.add_argument("--test-y-channel", action="store_true", help="without -opt: Y channel")
    parser.add_argument("--protocol", choices=["uint8", "float"], default="uint8",
                        help="without -opt: uint8 (BasicSR) or float (SIDD tables)")
    parser.add_argument("--name", default=None, help="results name (default: the option file's)")
    parser.add_argument("--results-root", default="results", help="default: results")
    parser.add_argument("--method", default=None,
                        help="series name for tools/pareto.py (default: dense or pruned)")
    parser.add_argument("--label", default=None, help="point label in plots (default: name)")
    parser.add_argument("--device", default=None, help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--save-img", action="store_true", help="save outputs as PNG")
    parser.add_argument("--save-lq-gt", action="store_true",
                        help="with --save-img, also save LQ and GT (for tools/compare_crops.py)")
    parser.add_argument("--warmup", type=int, default=3, help="untimed runs before timing")
    parser.add_argument("--runs", type=int, default=10, help="timed runs (the median is kept)")
    parser.add_argument("--memory-budget-mb", type=float, default=None,
                        help="also restore a synthetic large image tile by tile under this budget")
    parser.add_argument("--tiled-mp", type=float, default=100.0,
                        help="megapixels of that image (default 100)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --set datasets.test_1.dataroot_gt=DIR")
    return parser.parse_args(argv)


METRIC_TYPES = {"psnr": "calculate_psnr", "ssim": "calculate_ssim"}


class Weights(NamedTuple):
    """Which weights a test loads: the file, the option key that named it, the entry in it."""

    path: Optional[str]
    key: str
    param_key: Any  # a name, None (a bare state_dict) or "auto" (params_ema, else params)
    strict: bool = True


def read_test_options(path: str, overrides: Sequence[str] = (),
                      extra_sets: Optional[Mapping[str, Any]] = None) -> tuple[dict, Weights]:
    """Validated test (or training) options of ``path`` after ``--set`` overrides, with
    ``extra_sets`` added to its datasets, and the weights they name (:func:`option_weights`)."""
    from llcv.options import apply_override, read_yaml, validate_test_options

    raw = read_yaml(path)
    for item in overrides:
        apply_override(raw, item)
    if extra_sets:
        if not isinstance(raw.get("datasets"), dict):
            raw["datasets"] = {}
        raw["datasets"].update(extra_sets)
    opt = validate_test_options(raw)
    return opt, option_weights(raw, opt)


def option_weights(raw: Mapping[str, Any], opt: Mapping[str, Any]) -> Weights:
    """A test file's weights: ``path.pretrain_network_g``, ``strict_load_g`` and, when the file
    names it, ``param_key_g``. A training file's ``path`` names its *initial* weights, so it is
    tested on the run's ``models/net_g_latest.pth``. Without a named key: ``params_ema``, else
    ``params`` — the weights the training run validated."""
    if "train" in raw:
        latest = os.path.join(opt["path"]["experiments_root"], opt["name"], "models",
                              "net_g_latest.pth")
        return Weights(latest, "--checkpoint (default: the run's latest weights)", "auto")
    named = raw.get("path") if isinstance(raw.get("path"), Mapping) else {}
    return Weights(opt["path"]["pretrain_network_g"], "path.pretrain_network_g",
                   named["param_key_g"] if "param_key_g" in named else "auto",
                   opt["path"]["strict_load_g"])


def checkpoint_options(name: str, network_g: Mapping[str, Any], sets: Mapping[str, Any],
                       metrics: Sequence[str] = ("psnr", "ssim"), crop_border: int = 0,
                       test_y_channel: bool = False, protocol: str = "uint8") -> dict:
    """Validated test options for a checkpoint tested on ``sets`` without an option file."""
    from llcv.options import validate_test_options

    unknown = [m for m in metrics if m not in METRIC_TYPES]
    if unknown:
        raise OptionError(f"--metrics: '{unknown[0]}' is not one of {', '.join(METRIC_TYPES)}")
    cfg = {m: {"type": METRIC_TYPES[m], "crop_border": crop_border,
               "test_y_channel": test_y_channel} for m in metrics}
    return validate_test_options({"name": name, "network_g": dict(network_g),
                                  "datasets": dict(sets),
                                  "val": {"protocol": protocol, "metrics": cfg}})



def check_args(args: argparse.Namespace) -> None:
    """One-line errors for arguments argparse cannot check."""
    if args.opt is None and (args.checkpoint is None or not args.dataset):
        raise OptionError("-opt: give a test option file, or --checkpoint with --dataset GT LQ")
    for pair in args.dataset:
        if len(pair) not in (2, 3):
            raise OptionError(f"--dataset: expected GT LQ [NAME], got {' '.join(pair)}")
    if args.runs < 1 or args.warmup < 0:
        raise OptionError(f"--runs/--warmup: need runs >= 1 and warmup >= 0, got "
                          f"{args.runs}/{args.warmup}")
    if args.memory_budget_mb is not None and (args.memory_budget_mb <= 0 or args.tiled_mp <= 0):
        raise OptionError("--memory-budget-mb/--tiled-mp: must be positive")


def main(argv: Optional[list[str]] = None) -> dict:
    """Test the network; returns what metrics.json holds."""
    from llcv import evaluation as ev
    from llcv.engine.dist import DistInfo, select_device
    from llcv.network import load_network

    args = parse_args(argv)
    check_args(args)
    opt, weights = (None, Weights(None, "--checkpoint", "auto")) if args.opt is None else \
        read_test_options(args.opt, args.set, ev.folder_sets(args.dataset, first=101))
    if args.checkpoint is not None:
        weights = weights._replace(path=args.checkpoint, key="--checkpoint")
    if weights.path is None:
        raise OptionError(f"path.pretrain_network_g: '{args.opt}' names no weights; set it or "
                          f"give --checkpoint")
    if args.param_key is not None:
        weights = weights._replace(
            param_key=None if args.param_key.lower() in ("none", "~") else args.param_key)
    device = select_device(args.device or (opt["device"] if opt else "auto"), DistInfo())
    model, spec, report = load_network(weights.path, weights.key, weights.param_key,
                                       opt["network_g"] if opt else None, device, weights.strict)
    print(report)
    if opt is None:
        sets = ev.folder_sets(args.dataset, scale=ev.network_scale(spec["network_g"]))
        opt = checkpoint_options(args.name or ev.run_name(weights.path), spec["network_g"],
                                 sets, args.metrics, args.crop_border,
                                 args.test_y_channel, args.protocol)
    name = args.name or opt["name"]
    settings = ev.EvalSettings(
        out_dir=os.path.join(args.results_root, name),
        method=args.method or ("pruned" if spec["plan"] else "dense"), label=args.label or name,
        warmup=args.warmup, runs=args.runs, save_img=args.save_img or opt["val"]["save_img"],
        save_lq_gt=args.save_lq_gt, memory_budget_mb=args.memory_budget_mb,
        tiled_megapixels=args.tiled_mp, progress=not args.no_progress)
    result = ev.evaluate_network(model, spec, dict(opt, name=name), device, settings,
                                 {"checkpoint": weights.path, "load_report": report})
    print(ev.format_summary(result))
    print(f"wrote {os.path.join(settings.out_dir, 'metrics.json')}")
    return result


if __name__ == "__main__":
    run_cli(main)
