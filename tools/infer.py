"""Restore images of any size with a trained network, tile by tile under a memory budget.

    python tools/infer.py -opt options/train_unet_demo.yml \\
        --checkpoint experiments/train_unet_demo/models/net_g_latest.pth \\
        --input photo.png --output results/ --memory-budget-mb 1024
    python tools/infer.py -opt FILE.yml --checkpoint X --input DIR --output DIR \
        --tile 512 --overlap 32

The network is the ``network_g`` stored in the checkpoint (else the option file's); its weights
are ``params_ema`` when present, else ``params`` (or a plain state_dict), loaded with
``weights_only=True``. ``--memory-budget-mb`` picks the largest tile whose estimated peak (weights,
tile, activations, kernel buffers) fits 90% of the budget; the full-size image and result are
held in host memory on top. ``--overlap`` is the context each tile gets per side (default: the
network's receptive-field radius, for which tiled output equals whole-image output). Results are
PNG files of the input's bit depth (8 or 16 bits; ``--bit-depth`` to choose).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Any, Mapping, Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import DataError, LLCVError, OptionError  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", required=True, help="YAML option file with a network_g section")
    parser.add_argument("--checkpoint", required=True, help="net_g_*.pth or a plain state_dict")
    parser.add_argument("--param-key", default=None,
                        help="weights in the checkpoint (default: params_ema, else params)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the restored PNG files")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--memory-budget-mb", type=float, default=None,
                      help="pick the largest tile that fits (default 1024 without --tile)")
    size.add_argument("--tile", type=int, default=None, help="tile side in pixels")
    parser.add_argument("--overlap", type=int, default=None,
                        help="context per tile side (default: receptive-field radius)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--bit-depth", type=int, choices=[8, 16], default=None,
                        help="PNG bit depth of the results (default: the input's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --set network_g.width=64")
    return parser.parse_args(argv)


def read_network_option(path: str, overrides: list[str]) -> Optional[dict]:
    """``network_g`` of the option file after overrides (None when it has none)."""
    from llcv.options import apply_override, read_yaml

    opt = read_yaml(path)
    for item in overrides:
        apply_override(opt, item)
    return opt.get("network_g")


def pick_weights(ckpt: Mapping[str, Any], key: Optional[str], path: str) -> Mapping[str, Any]:
    """The state_dict in a checkpoint: ``key``, else params_ema, else params, else all of it."""
    if key is not None:
        if key not in ckpt:
            raise OptionError(f"--param-key: '{path}' has no '{key}'; it holds "
                              f"{', '.join(map(str, ckpt))}")
        return ckpt[key]
    for name in ("params_ema", "params"):
        if isinstance(ckpt.get(name), Mapping):
            return ckpt[name]
    return ckpt


def load_network(opt_path: str, overrides: list[str], checkpoint: str, param_key: Optional[str],
                 device: Any):
    """Build the checkpoint's (else the option file's) network_g and load its weights."""
    from llcv.engine.checkpoint import load_checkpoint
    from llcv.options import check_component
    from llcv.registry import ARCHS, build

    ckpt = load_checkpoint(checkpoint, "--checkpoint")
    network_opt = ckpt.get("network_g") or read_network_option(opt_path, overrides)
    if network_opt is None:
        raise OptionError(f"network_g: neither '{checkpoint}' nor '{opt_path}' describes the "
                          f"network; add e.g. network_g: {{type: UNet}} to the option file")
    check_component(network_opt, "arch", "network_g")
    model = build(ARCHS, network_opt, "network_g", device=device)
    try:
        model.load_state_dict(pick_weights(ckpt, param_key, checkpoint))
    except RuntimeError as err:
        detail = str(err).strip().splitlines()[-1].strip()[:300]
        raise LLCVError(f"--checkpoint: '{checkpoint}' does not fit network_g {network_opt} "
                        f"({detail})") from None
    return model.eval(), network_opt


def list_images(path: str) -> list[str]:
    """``path`` itself, or the images of a folder (sorted)."""
    from llcv.data.image_io import IMAGE_EXTENSIONS

    if os.path.isfile(path):
        return [path]
    if not os.path.isdir(path):
        raise OptionError(f"--input: '{path}' does not exist; give an image or a folder")
    files = sorted(os.path.join(path, f) for f in os.listdir(path)
                   if os.path.splitext(f)[1].lower() in IMAGE_EXTENSIONS)
    if not files:
        raise DataError(f"--input: folder '{path}' holds no images "
                        f"({', '.join(e[1:] for e in IMAGE_EXTENSIONS)})")
    return files


def read_image(path: str, channels: int):
    """HWC RGB (or gray) array of the file's bit depth; alpha is dropped."""
    import cv2
    import numpy as np

    img = cv2.imread(path, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DataError(f"--input: cannot read '{path}' as an image")
    if img.ndim == 2:
        img = img[:, :, None]
    if img.shape[2] == 4:
        img = img[:, :, :3]
    if img.shape[2] == 3:
        img = np.ascontiguousarray(img[:, :, ::-1])  # BGR -> RGB
    if img.shape[2] != channels:
        raise DataError(f"--input: '{path}' has {img.shape[2]} channel(s); the network takes "
                        f"{channels}")
    return img


def write_image(path: str, img) -> None:
    """Write an HWC RGB (or gray) array as PNG (fast compression: outputs may be huge)."""
    import cv2

    if img.shape[2] == 3:
        img = img[:, :, ::-1]
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    if not cv2.imwrite(path, img, [cv2.IMWRITE_PNG_COMPRESSION, 1]):
        raise DataError(f"--output: cannot write '{path}'")


def input_channels(model) -> int:
    """Channels of the network's first convolution (3 when it has none)."""
    first = next((p for p in model.parameters() if p.dim() == 4), None)
    return 3 if first is None else first.shape[1]


def restore(model, path: str, args: argparse.Namespace, device) -> tuple[str, str]:
    """Restore one image file into ``args.output``; returns the written path and a report."""
    import numpy as np

    from llcv.inference import choose_tile, plan_overlap, tiled_inference, tile_peak_bytes
    from llcv.memory.estimate import MB

    img = read_image(path, input_channels(model))
    h, w, c = img.shape
    overlap, _ = plan_overlap(model, args.overlap, c, device)
    if args.tile is not None:
        tile = args.tile
    else:
        budget = (args.memory_budget_mb or 1024.0) * MB
        tile = choose_tile(model, int(budget), overlap, (h, w), c, device)
    bits = args.bit_depth or (8 if img.dtype == np.uint8 else 16)
    start = time.perf_counter()
    out = tiled_inference(model, img, tile, overlap, device=device,
                          out_dtype=np.uint8 if bits == 8 else np.uint16,
                          progress=not args.no_progress)
    target = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
    write_image(target, out)
    peak = tile_peak_bytes(model, min(tile, h), min(tile, w), c, device) / MB
    return target, (f"{path}: {w}x{h} -> {target} ({bits}-bit), tile {tile} overlap {overlap},"
                    f" estimated peak {peak:.1f} MiB, {time.perf_counter() - start:.1f} s")


def main(argv: Optional[list[str]] = None) -> list[str]:
    """Restore every input image; returns the written paths."""
    import torch

    args = parse_args(argv)
    if args.tile is not None and args.tile <= 0:
        raise OptionError(f"--tile: must be positive, got {args.tile}")
    if args.memory_budget_mb is not None and args.memory_budget_mb <= 0:
        raise OptionError(f"--memory-budget-mb: must be positive, got {args.memory_budget_mb}")
    try:
        device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    except RuntimeError:
        raise OptionError(f"--device: unknown device '{args.device}'; use cpu or cuda") from None
    images = list_images(args.input)
    model, network_opt = load_network(args.opt, args.set, args.checkpoint, args.param_key,
                                      device)
    print(f"network_g: {network_opt}")
    written = []
    for path in images:
        target, report = restore(model, path, args, device)
        print(report)
        written.append(target)
    return written


if __name__ == "__main__":
    run_cli(main)
