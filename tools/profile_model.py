"""Profile the network of an option file: parameters, MACs, FLOPs, a per-layer table, and the
estimated peak memory of inference and of a training step, with their breakdown.

    python tools/profile_model.py -opt options/train_nafnet_sidd.yml --input-shape 1 3 256 256
    python tools/profile_model.py --checkpoint experiments/x/models/net_g_latest.pth \\
        --input-shape 1 3 1024 1024 --device meta --json profile.json

FLOPs = 2 x MACs, counted by PyTorch's torch.utils.flop_counter.FlopCounterMode (convolutions,
matmuls, attention; element-wise ops are not counted). Only ``network_g`` (and
``train.optim_g``) of the option file is read, so training and test option files both work; a
checkpoint that describes its network (pruned or not) needs no option file. With ``--device meta`` nothing is computed:
the figures are the same and any resolution profiles in seconds. Peak memory is estimated on
data-less tensors (``llcv.memory.estimate_peak_memory``) for the target ``--memory-device``
(default ``--device``; CPU for meta); the training step uses the option file's ``train.optim_g``
(else ``--optimizer``) with the batch size of ``--input-shape``. For a CUDA target no GPU is
needed, and each estimate also prints what the card holds, as a line
``tensors -> allocated (workspaces) -> reserved -> device total``: the caching allocator's
``max_memory_allocated`` and ``max_memory_reserved`` (its options from ``--alloc-conf`` or
``PYTORCH_CUDA_ALLOC_CONF``) and, with a ``--calibration`` file of tools/calibrate_memory.py
(or ``LLCV_MEMORY_CALIBRATION``), the CUDA context on top:

    python tools/profile_model.py -opt FILE.yml --device meta --memory-device cuda \
        --input-shape 8 3 256 256 --calibration h200.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import LLCVError, OptionError  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", default=None,
                        help="YAML option file with a network_g section (optional with a "
                             "--checkpoint that describes its network)")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to load (an llcv net_g_*.pth or a plain state_dict); "
                             "the network it describes (pruned or not) is the one profiled")
    parser.add_argument("--param-key", default="auto",
                        help="key of the weights in the checkpoint (default: params_ema, "
                             "else params)")
    parser.add_argument("--input-shape", nargs=4, type=int, default=[1, 3, 256, 256],
                        metavar=("N", "C", "H", "W"), help="input shape (default 1 3 256 256)")
    parser.add_argument("--device", default="cpu",
                        help="cpu, cuda[:i] or meta (shapes only, no compute); default cpu")
    parser.add_argument("--json", default=None, metavar="OUT",
                        help="also write params, macs, flops and the per-layer list to OUT")
    parser.add_argument("--no-layers", action="store_true", help="print the totals only")
    parser.add_argument("--optimizer", default="AdamW",
                        help="optimizer of the training estimate when the option file has no "
                             "train.optim_g: SGD, Adam or AdamW (default AdamW)")
    parser.add_argument("--amp", default="none", choices=["none", "bf16", "fp16"],
                        help="estimate mixed precision (autocast) training and inference")
    parser.add_argument("--no-memory", action="store_true", help="skip the memory estimates")
    parser.add_argument("--memory-device", default=None,
                        help="target device of the memory estimates, e.g. cuda on a machine "
                             "without one (default: --device; cpu for meta)")
    parser.add_argument("--alloc-conf", default=None, metavar="CONF",
                        help="CUDA caching-allocator options for the estimate, as in "
                             "PYTORCH_CUDA_ALLOC_CONF (default: that variable)")
    parser.add_argument("--calibration", default=None,
                        help="memory calibration of the CUDA card (tools/calibrate_memory.py; "
                             "default: LLCV_MEMORY_CALIBRATION)")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --set network_g.width=64")
    return parser.parse_args(argv)


def memory_estimates(model: Any, input_shape: list[int], optimizer: Any, amp: str,
                     device: Any = None, alloc_conf: Any = None, calibration: Any = None) -> dict:
    """Estimated inference and training-step peaks (``MemoryEstimate`` by mode) for the
    target ``device`` (default: the model's)."""
    from llcv.memory import estimate_peak_memory

    options = {"amp": False if amp == "none" else amp, "device": device,
               "allocator": alloc_conf, "calibration": calibration}
    return {"inference": estimate_peak_memory(model, input_shape, "inference", **options),
            "train": estimate_peak_memory(model, input_shape, "train", optimizer, **options)}


def estimate_figures(estimates: dict) -> dict:
    """JSON fields: the two peaks in bytes (on CUDA also ``est_<mode>_allocated_bytes``,
    ``_reserved_bytes`` and, calibrated, ``_device_bytes``) and each breakdown with its 10
    largest tensors."""
    figures = {"est_infer_peak_bytes": estimates["inference"].total,
               "est_train_peak_bytes": estimates["train"].total, "memory_estimates": {}}
    for mode, est in estimates.items():
        short = "infer" if mode == "inference" else mode
        for kind, value in (("allocated", est.allocated), ("reserved", est.reserved),
                            ("device", est.device_total)):
            if value is not None:
                figures[f"est_{short}_{kind}_bytes"] = value
        fields = est.to_dict()
        fields["live_at_peak"] = fields["live_at_peak"][:10]
        figures["memory_estimates"][mode] = fields
    return figures


def load_model(args: argparse.Namespace, network_g: dict | None, device: Any) -> tuple[Any, dict]:
    """The network to profile and its spec: the checkpoint's (with its weights), else the
    option file's ``network_g``."""
    from llcv.network import build_network, load_network, network_spec

    if args.checkpoint is None:
        if network_g is None:
            raise OptionError("-opt: give an option file with network_g, or --checkpoint")
        spec = network_spec(network_g)
        return build_network(spec, device), spec
    model, spec, report = load_network(args.checkpoint, "--checkpoint", args.param_key,
                                       network_g, device)
    if network_g is not None and network_g != spec["network_g"]:
        print(f"note: profiling the network_g stored in {args.checkpoint}: {spec['network_g']}")
    print(report)
    return model, spec


def main(argv: list[str] | None = None) -> dict:
    """Print the profile of the option file's network; returns the JSON-ready figures."""
    import torch

    from llcv.analysis.profile import format_profile, profile_model

    args = parse_args(argv)
    try:
        device = torch.device(args.device)
    except RuntimeError:
        raise OptionError(f"--device: unknown device '{args.device}'; use cpu, cuda or meta") \
            from None
    from llcv.options import network_options, read_with_overrides

    opt = {} if args.opt is None else read_with_overrides(args.opt, args.set)
    network_g = None if args.opt is None else network_options(opt, args.opt)
    model, spec = load_model(args, network_g, device)
    network_opt = spec["network_g"]
    if any(n <= 0 for n in args.input_shape):
        raise OptionError(f"--input-shape: sizes must be positive, got {args.input_shape}")
    try:
        profile = profile_model(model, args.input_shape)
    except RuntimeError as err:
        raise LLCVError(f"--input-shape: {network_opt['type']} cannot run on an input of shape "
                        f"{args.input_shape} ({str(err).strip().splitlines()[0][:300]})") from None
    print(format_profile(profile, layers=not args.no_layers))
    figures = {"network_g": network_opt, "network": spec, **profile.to_dict()}
    if not args.no_memory:
        optimizer = (opt.get("train") or {}).get("optim_g") or args.optimizer
        target = args.memory_device or ("cpu" if device.type == "meta" else device)
        estimates = memory_estimates(model, args.input_shape, optimizer, args.amp, target,
                                     args.alloc_conf, args.calibration)
        for est in estimates.values():
            print(est.format())
        figures.update(estimate_figures(estimates))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    run_cli(main)
