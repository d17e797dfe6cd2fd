"""How well a network's deep features classify degradations (DCPT's pre-experiment, ICLR 2025):
kNN (k = 5, as the paper) or linear-probe accuracy, mean ± std over stratified folds.

    python tools/probe_degradation.py -opt options/train_allinone_demo.yml  # network_g, random init
    python tools/probe_degradation.py --network "{type: NAFNet, width: 16, enc_blk_nums: [1, 1, 1],
        middle_blk_num: 1, dec_blk_nums: [1, 1, 1]}" --network "{type: UNet, widths: [16, 32, 64],
        blocks: [1, 1, 1]}"                                          # several networks, random init
    python tools/probe_degradation.py -opt options/train_allinone_demo.yml \\
        --checkpoint experiments/train_allinone_demo/models/net_g_latest.pth   # + trained weights
    python tools/probe_degradation.py ... --method linear --pool flatten --samples 1000 --crop 128

The labelled set: ``--samples`` crops (``--crop`` pixels) of the bundled photos (or ``--dataroot``
clean images, or the option file's AllInOneDataset training set), each under one degradation of
the 5-degradation benchmark (haze, rain, noise, motion blur, low light). Features of each
network's feature layers (``--feature-layers``, default the architecture's, as DCPT uses them)
are pooled per channel (``--pool meanstd``: mean and std over space; ``flatten``: the paper's
whole map). A reference row probes the LQ pixels themselves, pooled the same way, so a figure
can be read against what needs no network at all. Prints chance (1 / classes) and the majority
share; ``--json FILE`` writes every fold's accuracy.
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


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", default=None,
                        help="training option file: its network_g (random init), feature layers "
                             "and, if AllInOneDataset, its training set")
    parser.add_argument("--network", action="append", default=[], metavar="YAML",
                        help="a network_g mapping to probe at random init; repeatable")
    parser.add_argument("--checkpoint", action="append", default=[],
                        help="a weights file to probe (params_ema, else params); repeatable")
    parser.add_argument("--feature-layers", nargs="+", default=None,
                        help="module paths ('*' and negative indices allowed; default: the arch's)")
    parser.add_argument("--method", choices=["knn", "linear"], default="knn")
    parser.add_argument("--pool", choices=["meanstd", "mean", "flatten"], default="meanstd")
    parser.add_argument("--k", type=int, default=5, help="neighbours of the kNN (default 5)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds")
    parser.add_argument("--samples", type=int, default=500, help="labelled crops (default 500)")
    parser.add_argument("--crop", type=int, default=64, help="crop size in pixels (default 64)")
    parser.add_argument("--dataroot", default=None, help="folder or .lmdb of clean images")
    parser.add_argument("--builtin-images", nargs="+", default=None,
                        help="bundled photos to crop (default: all of them)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the crops, folds and inits")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    parser.add_argument("--no-progress", action="store_true", help="no progress bars")
    return parser.parse_args(argv)


def check_args(args: argparse.Namespace) -> None:
    """One-line errors for arguments argparse cannot check."""
    if args.opt is None and not args.network and not args.checkpoint:
        raise OptionError("-opt: give an option file, --network or --checkpoint to probe")
    for name in ("k", "folds", "samples", "crop"):
        if getattr(args, name) < 1:
            raise OptionError(f"--{name}: must be a positive integer, got {getattr(args, name)}")
    if args.dataroot is not None and args.builtin_images is not None:
        raise OptionError("--dataroot: give either --dataroot or --builtin-images")


def probe_dataset(args: argparse.Namespace, opt: Optional[dict]):
    """The labelled training-phase set the crops come from."""
    from llcv.data.builtin_images import BUILTIN_IMAGE_NAMES
    from llcv.data.loader import dataset_kwargs
    from llcv.registry import DATASETS, build

    section: dict[str, Any] = {"type": "AllInOneDataset"}
    train = opt["datasets"]["train"] if opt else {}
    if train.get("type") == "AllInOneDataset" and args.dataroot is None \
            and args.builtin_images is None:
        section = dataset_kwargs(train)
    elif args.dataroot is not None:
        section["dataroot_gt"] = args.dataroot
    else:
        section["builtin_images"] = args.builtin_images or list(BUILTIN_IMAGE_NAMES)
    section.update(gt_size=args.crop, use_hflip=False, use_rot=False)
    return build(DATASETS, section, "probe set", phase="train")


def candidates(args: argparse.Namespace, opt: Optional[dict]) -> list[tuple[str, dict, Any]]:
    """(row label, network_g, weights file or None) for every network to probe."""
    from llcv.options import parse_yaml
    from llcv.schema import check_component

    rows = []
    if opt is not None:
        rows.append((f"{opt['network_g']['type']} (random init)", opt["network_g"], None))
    for i, text in enumerate(args.network):
        cfg = parse_yaml(text)
        check_component(cfg, "arch", f"--network[{i}]")
        rows.append((f"{cfg['type']} (random init)", cfg, None))
    for path in args.checkpoint:
        rows.append((path, None, path))
    return rows


def build_model(network_g: Optional[dict], path: Optional[str], seed: int, device: Any):
    """The network at random init (seeded), or loaded from a weights file; and its options."""
    import torch

    from llcv.network import build_network, load_network, network_spec

    if path is not None:
        model, spec, _ = load_network(path, "--checkpoint", "auto", None, device)
        return model, spec["network_g"]
    torch.manual_seed(seed)
    return build_network(network_spec(network_g), device), network_g


def main(argv: Optional[list[str]] = None) -> dict:
    """Probe every network; returns what ``--json`` writes."""
    import numpy as np
    import torch

    from llcv.analysis import degradation_probe as dp
    from llcv.models.deep_features import image_channels, resolve_feature_layers
    from llcv.options import load_options

    args = parse_args(argv)
    check_args(args)
    opt = load_options(args.opt) if args.opt else None
    layers_opt = args.feature_layers
    if layers_opt is None and opt is not None and "dcpt" in opt["train"]:
        layers_opt = opt["train"]["dcpt"]["feature_layers"]
    networks = candidates(args, opt)
    dataset = probe_dataset(args, opt)
    progress = not args.no_progress
    images, labels = dp.labelled_crops(dataset, args.samples, args.seed, progress)
    counts = np.bincount(labels, minlength=len(dataset.tasks))
    result = {"tasks": dataset.tasks, "counts": counts.tolist(), "method": args.method,
              "pool": args.pool, "k": args.k, "folds": args.folds, "crop": args.crop,
              "chance": 1.0 / len(dataset.tasks), "majority": float(counts.max() / counts.sum()),
              "rows": []}
    pixels = dp.pool(images, args.pool).double().numpy()
    result["rows"].append(_row("LQ pixels (no network)", [], pixels, labels, args))
    for label, network_g, path in networks:
        model, cfg = build_model(network_g, path, args.seed, torch.device(args.device))
        layers = resolve_feature_layers(model, cfg["type"], layers_opt, "--feature-layers")
        inputs = dp.match_channels(images, image_channels(cfg))
        feats = dp.extract_features(model, layers, inputs, args.pool, device=args.device,
                                    progress=progress)
        result["rows"].append(_row(label, layers, feats, labels, args))
    print(format_table(result))
    if args.json:
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(result, f, indent=2)
    return result


def _row(label: str, layers: list[str], feats, labels, args: argparse.Namespace) -> dict:
    """Cross-validated accuracy of one feature set."""
    import numpy as np

    from llcv.analysis.degradation_probe import cross_validate

    scores = cross_validate(feats, labels, args.method, args.folds, args.k, args.seed)
    return {"name": label, "layers": layers, "dims": int(feats.shape[1]), "folds": scores,
            "mean": float(np.mean(scores)), "std": float(np.std(scores))}


def format_table(result: dict) -> str:
    """Chance line, then one line per probed network."""
    method = f"{result['k']}-NN" if result["method"] == "knn" else "linear probe"
    lines = [f"degradation probe: {method} on {result['pool']}-pooled features, "
             f"{result['folds']}-fold CV, {sum(result['counts'])} crops of {result['crop']} px, "
             f"tasks {', '.join(result['tasks'])} (counts {result['counts']})",
             f"chance {100 * result['chance']:.1f}%, majority class "
             f"{100 * result['majority']:.1f}%"]
    width = max(len(r["name"]) for r in result["rows"])
    for r in result["rows"]:
        layers = ", ".join(r["layers"]) or "-"
        lines.append(f"  {r['name']:<{width}}  accuracy {100 * r['mean']:5.1f}% ± "
                     f"{100 * r['std']:4.1f}  ({r['dims']} dims; layers {layers})")
    return "\n".join(lines)


if __name__ == "__main__":
    run_cli(main)
