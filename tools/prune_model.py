"""Prune a trained checkpoint offline (no fine-tuning) and write a weights file that describes
its pruned network, so tools/infer.py and tools/profile_model.py load it with no option file.

    python tools/prune_model.py --checkpoint experiments/x/models/net_g_latest.pth \\
        --ratio 0.5 --output pruned.pth                                    # half the channels
    python tools/prune_model.py --checkpoint net.pth --pruner MemoryAwarePruner --compactors \\
        --peak-memory-mb 512 --input-shape 1 3 1024 1024 --round-to 8 --output pruned.pth
    python tools/prune_model.py -opt options/train_unet_demo.yml --checkpoint state_dict.pth \\
        --ratio 0.3 --ratio-of params --output pruned.pth

The network is the one the checkpoint describes (its spec; a pruned checkpoint is pruned further),
else ``network_g`` of ``-opt``. The option file's ``prune:`` section, if any, gives the pruner's
options; the flags here override it. ``params`` and ``params_ema`` (when present) are both
pruned with one plan, chosen on ``--param-key``'s weights; the output holds them and
``network`` (the new spec). The report (params, MACs, estimated peaks, widths) is printed and,
with ``--json``, written.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import OptionError  # noqa: E402

RATIO_KINDS = {"channels": "channel_ratio", "params": "params_ratio", "macs": "macs_ratio"}
RUNNER_ONLY = ("schedule",)  # prune: keys the training runner reads, not the pruner


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--checkpoint", required=True, help="net_g_*.pth or a plain state_dict")
    parser.add_argument("-opt", default=None,
                        help="option file: network_g (for a bare state_dict) and prune: options")
    parser.add_argument("--output", required=True, help="the pruned weights file to write")
    parser.add_argument("--pruner", default=None,
                        help="UniformPruner, MagnitudePruner or MemoryAwarePruner "
                             "(default: the option file's prune.type, else MagnitudePruner)")
    goal = parser.add_mutually_exclusive_group()
    goal.add_argument("--ratio", type=float, default=None,
                      help="fraction to remove (of channels; see --ratio-of)")
    goal.add_argument("--peak-memory-mb", type=float, default=None,
                      help="estimated peak memory budget at --input-shape")
    parser.add_argument("--ratio-of", default="channels", choices=sorted(RATIO_KINDS),
                        help="what --ratio removes (default channels)")
    parser.add_argument("--input-shape", nargs=4, type=int, default=None,
                        metavar=("N", "C", "H", "W"),
                        help="shape of the budget (and of the report; default 1 C 256 256)")
    parser.add_argument("--mode", default="inference", choices=["inference", "train"],
                        help="the peak the budget is for (default inference)")
    parser.add_argument("--importance", default=None, help="l1, l2, bn_scale or random")
    parser.add_argument("--round-to", type=int, default=None, help="keep widths multiples of N")
    parser.add_argument("--compactors", action="store_true",
                        help="MemoryAwarePruner: add identity compactors on the long skips")
    parser.add_argument("--ignored-layers", nargs="+", default=None, metavar="LAYER",
                        help="layers (names or globs) whose output width is kept")
    parser.add_argument("--param-key", default="auto",
                        help="weights the plan is chosen on (default: params_ema, else params)")
    parser.add_argument("--device", default="cpu", help="device to prune on (default cpu)")
    parser.add_argument("--json", default=None, metavar="OUT", help="also write the report")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options of -opt, e.g. --set prune.round_to=8")
    return parser.parse_args(argv)


def pruner_options(args: argparse.Namespace, section: Optional[dict]) -> dict:
    """The ``prune:`` section (without runner-only keys) with the flags applied."""
    cfg = {k: v for k, v in (section or {}).items() if k not in RUNNER_ONLY}
    cfg["type"] = args.pruner or cfg.get("type") or "MagnitudePruner"
    if args.ratio is not None:
        cfg["target"] = {RATIO_KINDS[args.ratio_of]: args.ratio}
    elif args.peak_memory_mb is not None:
        if args.input_shape is None:
            raise OptionError("--input-shape: a --peak-memory-mb budget needs the shape it holds "
                              "at, e.g. --input-shape 1 3 1024 1024")
        cfg["target"] = {"peak_memory_mb": args.peak_memory_mb, "mode": args.mode}
    elif "target" not in cfg:
        raise OptionError("--ratio or --peak-memory-mb: say what to prune to (or give -opt "
                          "with prune.target)")
    if args.input_shape is not None:
        cfg["target"] = {**cfg["target"], "input_shape": list(args.input_shape)}
    for key, value in (("importance", args.importance), ("round_to", args.round_to),
                       ("ignored_layers", args.ignored_layers)):
        if value is not None:
            cfg[key] = value
    if args.compactors:
        cfg["compactors"] = True
    return cfg


def load_states(path: str, spec: dict, device: Any) -> dict:
    """The networks of the file's ``params`` and ``params_ema`` (those it holds), loaded."""
    from llcv.network import build_network, load_weights, pick_state_dict
    from llcv.serialization import load_checkpoint

    ckpt = load_checkpoint(path, "--checkpoint")
    keys = [k for k in ("params", "params_ema") if isinstance(ckpt.get(k), dict)]
    out = {}
    for key in keys or [None]:
        model = build_network(spec, device, init=False)
        load_weights(model, pick_state_dict(ckpt, key, path, "--checkpoint"), True, path,
                     "--checkpoint")
        out[key or "params"] = model.eval()
    return out


def main(argv: Optional[list[str]] = None) -> dict:
    """Prune the checkpoint and write ``--output``; returns the report as a dict."""
    import torch

    from llcv.network import load_network
    from llcv.options import network_options, read_with_overrides
    from llcv.registry import PRUNERS, build
    from llcv.serialization import atomic_save

    args = parse_args(argv)
    opt = {} if args.opt is None else read_with_overrides(args.opt, args.set)
    network_g = None if args.opt is None else network_options(opt, args.opt)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise OptionError(f"--device: unknown device '{args.device}'; use cpu or cuda") from None
    model, spec, load_report = load_network(args.checkpoint, "--checkpoint", args.param_key,
                                            network_g, device)
    print(load_report)
    pruner = build(PRUNERS, pruner_options(args, opt.get("prune")), "prune")
    result = pruner.prune(model, spec)
    print(result.report.format())
    out = {key: result.apply(net).state_dict()
           for key, net in load_states(args.checkpoint, spec, device).items()}
    atomic_save({**out, "network": result.spec}, args.output)
    print(f"wrote {args.output} ({', '.join(out)}; network spec with the plan)")
    report = {**result.report.to_dict(), "output": args.output}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=2)
    return report


if __name__ == "__main__":
    run_cli(main)
