"""Restore images of any size with a trained network, tile by tile under a memory budget.

    python tools/infer.py --checkpoint experiments/train_unet_demo/models/net_g_latest.pth \\
        --input photo.png --output results/ --memory-budget-mb 1024
    python tools/infer.py -opt FILE.yml --checkpoint plain_state_dict.pth --input DIR \\
        --output DIR --tile 512 --overlap 32

The network is the one the checkpoint describes (its network spec: ``network_g`` and, for a
pruned model, its plan), so no option file is needed; ``-opt`` gives ``network_g`` for a bare
state_dict. Weights are ``params_ema`` when present, else ``params`` (or a plain state_dict),
loaded with ``weights_only=True``. ``--memory-budget-mb`` picks the largest tile whose
estimated peak (weights, tile, activations, kernel buffers) fits 90% of the budget; the
full-size image and result are held in host memory on top. ``--memory-budget-kind`` says what
the budget bounds on CUDA: ``reserved`` (default: what PyTorch's caching allocator holds,
``torch.cuda.max_memory_reserved``), ``allocated``, ``tensors``, or ``device`` (reserved plus the
CUDA context of a ``--calibration`` file from tools/calibrate_memory.py, else
``LLCV_MEMORY_CALIBRATION``); on CPU every kind is the tensors' peak. ``--overlap`` is the
context each tile gets per side (default: the network's receptive-field radius, for which tiled
output equals whole-image output). Results are PNG files of the input's bit depth (8 or 16
bits; ``--bit-depth`` to choose).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from typing import Optional

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import DataError, OptionError  # noqa: E402


def parse_args(argv: Optional[list[str]] = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("-opt", default=None,
                        help="option file with network_g (needed only for a bare state_dict)")
    parser.add_argument("--checkpoint", required=True, help="net_g_*.pth or a plain state_dict")
    parser.add_argument("--param-key", default="auto",
                        help="weights in the checkpoint (default: params_ema, else params)")
    parser.add_argument("--input", required=True, help="an image file or a folder of images")
    parser.add_argument("--output", required=True, help="folder for the restored PNG files")
    size = parser.add_mutually_exclusive_group()
    size.add_argument("--memory-budget-mb", type=float, default=None,
                      help="pick the largest tile that fits (default 1024 without --tile)")
    size.add_argument("--tile", type=int, default=None, help="tile side in pixels")
    parser.add_argument("--memory-budget-kind", default=None,
                        choices=["tensors", "allocated", "reserved", "device"],
                        help="what the budget bounds on CUDA (default reserved; device needs "
                             "a calibration); on CPU all are the tensors' peak")
    parser.add_argument("--calibration", default=None,
                        help="memory calibration of the CUDA card (tools/calibrate_memory.py; "
                             "default: LLCV_MEMORY_CALIBRATION)")
    parser.add_argument("--overlap", type=int, default=None,
                        help="context per tile side (default: receptive-field radius)")
    parser.add_argument("--device", default=None, help="cpu, cuda or cuda:N (default: auto)")
    parser.add_argument("--bit-depth", type=int, choices=[8, 16], default=None,
                        help="PNG bit depth of the results (default: the input's)")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--set", nargs="+", action="extend", default=[], metavar="KEY=VALUE",
                        help="override options, e.g. --set network_g.width=64")
    return parser.parse_args(argv)


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

    from llcv.inference import budget_kind, choose_tile, plan_overlap, tiled_inference, \
        tiling_peak_bytes
    from llcv.utils import MB

    img = read_image(path, input_channels(model))
    h, w, c = img.shape
    overlap, _ = plan_overlap(model, args.overlap, c, device)
    kind = budget_kind(args.memory_budget_kind, device)
    if args.tile is not None:
        tile = args.tile
    else:
        budget = (args.memory_budget_mb or 1024.0) * MB
        tile = choose_tile(model, int(budget), overlap, (h, w), c, device, kind=kind,
                           calibration=args.calibration)
    bits = args.bit_depth or (8 if img.dtype == np.uint8 else 16)
    start = time.perf_counter()
    out = tiled_inference(model, img, tile, overlap, device=device,
                          out_dtype=np.uint8 if bits == 8 else np.uint16,
                          progress=not args.no_progress)
    target = os.path.join(args.output, os.path.splitext(os.path.basename(path))[0] + ".png")
    write_image(target, out)
    peak = tiling_peak_bytes(model, tile, overlap, (h, w), c, device, kind,
                             args.calibration) / MB
    return target, (f"{path}: {w}x{h} -> {target} ({bits}-bit), tile {tile} overlap {overlap},"
                    f" estimated peak {peak:.1f} MiB ({kind}), "
                    f"{time.perf_counter() - start:.1f} s")


def main(argv: Optional[list[str]] = None) -> list[str]:
    """Restore every input image; returns the written paths. A bad image is skipped and the
    run goes on; the failures are listed at the end with a non-zero exit."""
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
    from llcv.network import load_network
    from llcv.options import network_options, read_with_overrides

    images = list_images(args.input)
    network_g = None if args.opt is None else \
        network_options(read_with_overrides(args.opt, args.set), args.opt)
    model, spec, report = load_network(args.checkpoint, "--checkpoint", args.param_key,
                                       network_g, device)
    pruned = "" if spec["plan"] is None else " (pruned)"
    print(f"network_g{pruned}: {spec['network_g']}, "
          f"{sum(p.numel() for p in model.parameters()):,} parameters; {report}")
    written, failed = [], []
    for path in images:
        try:
            target, report = restore(model, path, args, device)
        except DataError as err:  # a bad file: go on with the others, report it at the end
            print(f"skipped {path}: {err}")
            failed.append(str(err))
            continue
        print(report)
        written.append(target)
    if failed:
        raise DataError(f"{len(failed)} of {len(images)} input image(s) failed (the other "
                        f"{len(written)} were written): {'; '.join(failed)}")
    return written


if __name__ == "__main__":
    run_cli(main)
