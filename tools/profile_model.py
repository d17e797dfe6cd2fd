"""Profile the network of an option file: parameters, MACs, FLOPs, a per-layer table, and the
estimated peak memory of inference and of a training step, with their breakdown.

    python tools/profile_model.py -opt options/train_nafnet_sidd.yml --input-shape 1 3 256 256
    python tools/profile_model.py -opt FILE.yml --checkpoint experiments/x/net_g_latest.pth \\
        --input-shape 1 3 1024 1024 --device meta --json profile.json

FLOPs = 2 x MACs, counted by PyTorch's torch.utils.flop_counter.FlopCounterMode (convolutions,
matmuls, attention; element-wise ops are not counted). Only ``network_g`` of the option file is
read, so training and test option files both work. With ``--device meta`` nothing is computed:
the figures are the same and any resolution profiles in seconds. Peak memory is estimated on
data-less tensors (``llcv.memory.estimate_peak_memory``) for the target ``--device`` (CPU for
meta); the training step uses the option file's ``train.optim_g`` (else ``--optimizer``) with the
batch size of ``--input-shape``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any, Mapping

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import LLCVError, OptionError  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", required=True, help="YAML option file with a network_g section")
    parser.add_argument("--checkpoint", default=None,
                        help="weights to load (an llcv net_g_*.pth or a plain state_dict); "
                             "its network_g, if stored, is the one profiled")
    parser.add_argument("--param-key", default="params",
                        help="key of the weights in the checkpoint (default: params)")
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
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --set network_g.width=64")
    return parser.parse_args(argv)


def read_options(path: str, overrides: list[str]) -> dict:
    """The option file after overrides, with ``network_g`` checked against the arch's signature."""
    from llcv.options import apply_override, check_component, read_yaml

    opt = read_yaml(path)
    for item in overrides:
        apply_override(opt, item)
    if opt.get("network_g") is None:
        raise OptionError(f"network_g: missing in '{path}'; add e.g. network_g: {{type: NAFNet}}")
    check_component(opt["network_g"], "arch", "network_g")
    return opt


def read_network_options(path: str, overrides: list[str]) -> dict:
    """``network_g`` of the option file after overrides, checked against the arch's signature."""
    return read_options(path, overrides)["network_g"]


def memory_estimates(model: Any, input_shape: list[int], optimizer: Any, amp: str) -> dict:
    """Estimated inference and training-step peaks (``MemoryEstimate`` by mode)."""
    from llcv.memory import estimate_peak_memory

    amp_arg = False if amp == "none" else amp
    return {"inference": estimate_peak_memory(model, input_shape, "inference", amp=amp_arg),
            "train": estimate_peak_memory(model, input_shape, "train", optimizer, amp=amp_arg)}


def estimate_figures(estimates: dict) -> dict:
    """JSON fields: the two peaks in bytes and each breakdown with its 10 largest tensors."""
    figures = {"est_infer_peak_bytes": estimates["inference"].total,
               "est_train_peak_bytes": estimates["train"].total, "memory_estimates": {}}
    for mode, est in estimates.items():
        fields = est.to_dict()
        fields["live_at_peak"] = fields["live_at_peak"][:10]
        figures["memory_estimates"][mode] = fields
    return figures


def load_weights(path: str, param_key: str) -> tuple[Mapping[str, Any], dict | None]:
    """The state_dict in ``path`` and the ``network_g`` options stored with it (if any)."""
    from llcv.engine.checkpoint import load_checkpoint

    ckpt = load_checkpoint(path, "--checkpoint")
    if param_key in ckpt:
        return ckpt[param_key], ckpt.get("network_g")
    if any(isinstance(v, Mapping) for v in ckpt.values()):
        keys = ", ".join(k for k, v in ckpt.items() if isinstance(v, Mapping))
        raise LLCVError(f"--param-key: '{path}' has no '{param_key}'; it holds {keys}")
    return ckpt, None


def build_network(network_opt: Mapping[str, Any], checkpoint: str | None, param_key: str,
                  device: Any) -> tuple[Any, Mapping[str, Any]]:
    """Build ``network_g`` on ``device``, load the checkpoint's weights (strictly); returns the
    model and the network options actually used."""
    from llcv.registry import ARCHS, build

    state, stored_opt = (None, None) if checkpoint is None else load_weights(checkpoint, param_key)
    if stored_opt is not None and stored_opt != network_opt:
        print(f"note: profiling the network_g stored in {checkpoint}: {stored_opt}")
        network_opt = stored_opt
    model = build(ARCHS, network_opt, "network_g", device=device)
    if state is not None:
        try:
            model.load_state_dict(state)
        except RuntimeError as err:
            detail = str(err).strip().splitlines()[-1].strip()[:300]
            raise LLCVError(f"--checkpoint: '{checkpoint}' does not fit network_g "
                            f"{network_opt} ({detail})") from None
    return model, network_opt


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
    opt = read_options(args.opt, args.set)
    model, network_opt = build_network(opt["network_g"], args.checkpoint, args.param_key, device)
    if any(n <= 0 for n in args.input_shape):
        raise OptionError(f"--input-shape: sizes must be positive, got {args.input_shape}")
    try:
        profile = profile_model(model, args.input_shape)
    except RuntimeError as err:
        raise LLCVError(f"--input-shape: {network_opt['type']} cannot run on an input of shape "
                        f"{args.input_shape} ({str(err).strip().splitlines()[0][:300]})") from None
    print(format_profile(profile, layers=not args.no_layers))
    figures = {"network_g": network_opt, **profile.to_dict()}
    if not args.no_memory:
        optimizer = (opt.get("train") or {}).get("optim_g") or args.optimizer
        estimates = memory_estimates(model, args.input_shape, optimizer, args.amp)
        for est in estimates.values():
            print(est.format())
        figures.update(estimate_figures(estimates))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(figures, f, indent=2)
    return figures


if __name__ == "__main__":
    run_cli(main)
