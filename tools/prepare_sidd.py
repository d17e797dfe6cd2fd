"""Prepare SIDD (sRGB) for options/train_unet_sidd.yml: training crops in LMDB, validation blocks.

    python tools/prepare_sidd.py --medium /data/SIDD_Medium_Srgb \\
        --val-noisy /data/ValidationNoisyBlocksSrgb.mat --val-gt /data/ValidationGtBlocksSrgb.mat \\
        --out datasets/SIDD

--medium: the unpacked SIDD-Medium sRGB folder (Data/<scene>/..._NOISY_SRGB_010.PNG, GT_SRGB_010.PNG,
and _011): 320 pairs cut into 512 px sub-images every 384 px ->
<out>/train/gt_crops.lmdb and <out>/train/input_crops.lmdb (same keys).
--val-noisy/--val-gt: the SIDD validation .mat files (40 images x 32 blocks of 256 px) ->
<out>/val/gt_blocks and <out>/val/input_blocks (1280 PNGs each; --val-format lmdb for LMDBs).
Either part may be given alone. Raw LMDB values (default) take more space than --format png
(about 1.5x on clean+noisy photo crops: 768 KiB per 512 px crop) but make training crops many
times faster to read (tools/bench_data.py).
"""
from __future__ import annotations

import argparse
import os
import sys

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from llcv.cli import run_cli  # noqa: E402
from llcv.errors import OptionError  # noqa: E402


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    from llcv.data.lmdb_io import FORMATS
    from llcv.data.parallel import default_workers

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--medium", default=None, help="SIDD_Medium_Srgb folder (training pairs)")
    parser.add_argument("--val-noisy", default=None, help="ValidationNoisyBlocksSrgb.mat")
    parser.add_argument("--val-gt", default=None, help="ValidationGtBlocksSrgb.mat")
    parser.add_argument("--out", default="datasets/SIDD", help="output root (default datasets/SIDD)")
    parser.add_argument("--crop-size", type=int, default=512, help="training sub-image side")
    parser.add_argument("--step", type=int, default=384, help="training sub-image stride")
    parser.add_argument("--thresh-size", type=int, default=0, help="see extract_subimages.py")
    parser.add_argument("--format", choices=FORMATS, default="raw", help="LMDB value format")
    parser.add_argument("--val-format", choices=("png", "lmdb"), default="png",
                        help="validation blocks as PNG folders (default) or LMDBs")
    parser.add_argument("--workers", type=int, default=default_workers(),
                        help="processes cutting the training images (default: CPU count, max 8)")
    parser.add_argument("--force", action="store_true", help="replace existing outputs")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> dict:
    from llcv.data.sidd import find_sidd_pairs, prepare_sidd_train, prepare_sidd_val

    args = parse_args(argv)
    if (args.val_noisy is None) != (args.val_gt is None):
        raise OptionError("val_gt: give both --val-noisy and --val-gt (or neither)")
    if args.medium is None and args.val_noisy is None:
        raise OptionError("medium: nothing to do; give --medium and/or --val-noisy with --val-gt")
    for flag, path in (("val_noisy", args.val_noisy), ("val_gt", args.val_gt)):
        if path is not None and not os.path.isfile(path):  # checked before the long part runs
            raise OptionError(f"{flag}: '{path}' does not exist; download it from the SIDD site")
    if args.medium is not None:
        find_sidd_pairs(args.medium)
    done = {}
    if args.medium is not None:
        done["train_crops"] = prepare_sidd_train(
            args.medium, args.out, args.crop_size, args.step, args.thresh_size, args.format,
            workers=args.workers, force=args.force)
        print(f"wrote {done['train_crops']} training pairs to {args.out}/train/gt_crops.lmdb "
              f"and input_crops.lmdb")
    if args.val_noisy is not None:
        done["val_blocks"] = prepare_sidd_val(args.val_noisy, args.val_gt, args.out,
                                              args.val_format == "lmdb", args.format, args.force)
        print(f"wrote {done['val_blocks']} validation pairs to {args.out}/val/")
    print("next: python tools/train.py -opt options/train_unet_sidd.yml")
    return done


if __name__ == "__main__":
    run_cli(main)
