"""Make a bicubic LR folder (x2, x3, x4, ...) from a folder of HR images, as SR benchmarks do.

    python tools/make_lr.py --input datasets/DIV2K/DIV2K_train_HR \\
        --output datasets/DIV2K/DIV2K_train_LR_bicubic/X4 --scale 4 --suffix x4
    python tools/make_lr.py --input datasets/Set5/original --output datasets/Set5/LRbicx2 \\
        --hr-output datasets/Set5/GTmod2 --scale 2

The resize is MATLAB's imresize(hr, 1/scale, 'bicubic') with its antialiasing kernel (BasicSR's
imresize), computed in float64 and rounded once to the HR's 8 or 16 bits; LR images are
written as <name><suffix>.png. HR sides must be multiples of the scale so that the pairs fit;
when some are not, --hr-output DIR also writes every HR image cropped to a multiple of the scale
(bottom/right cut, as BasicSR's mod_crop), and those are the GT images to train and test on.
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from llcv.data.parallel import default_workers

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--input", required=True, help="folder of HR images (not recursive)")
    parser.add_argument("--output", required=True, help="folder for the LR images")
    parser.add_argument("--scale", type=int, required=True, help="downscaling factor (2, 3, 4 ...)")
    parser.add_argument("--hr-output", default=None,
                        help="also write the HR images cropped to a multiple of --scale here")
    parser.add_argument("--suffix", default="",
                        help="appended to LR file names, e.g. x4 for DIV2K's 0001x4.png")
    parser.add_argument("--compress-level", type=int, default=3, help="PNG compression 0-9")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes (default: CPU count, max 8)")
    parser.add_argument("--force", action="store_true",
                        help="replace the PNGs of existing output folders")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from llcv.data.make_lr import make_lr

    args = parse_args(argv)
    result = make_lr(args.input, args.output, args.scale, args.hr_output, args.suffix,
                     args.compress_level, args.workers, args.force)
    print(f"wrote {result['images']} LR x{args.scale} images to {args.output}")
    if args.hr_output:
        print(f"wrote {result['images']} HR images to {args.hr_output} "
              f"({len(result['cropped'])} cropped to a multiple of {args.scale})")
    return result


if __name__ == "__main__":
    run_cli(main)
